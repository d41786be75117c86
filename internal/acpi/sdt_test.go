package acpi

import (
	"encoding/binary"
	"testing"
)

func TestSDT(t *testing.T) {
	b := finish(newSDT("TEST", 3, "EMBRTEST", []byte{1, 2, 3}))
	if len(b) != headerSize+3 || binary.LittleEndian.Uint32(b[4:]) != uint32(len(b)) {
		t.Fatalf("length %d, field %d", len(b), binary.LittleEndian.Uint32(b[4:]))
	}
	if string(b[:4]) != "TEST" || b[8] != 3 || string(b[10:16]) != OEMID || string(b[16:24]) != "EMBRTEST" ||
		string(b[28:32]) != CreatorID || binary.LittleEndian.Uint32(b[32:]) != CreatorRevision {
		t.Errorf("header % x", b[:headerSize])
	}
	var s byte
	for _, c := range b {
		s += c
	}
	if s != 0 {
		t.Errorf("table sums to %#x", s)
	}
	// A short table id is padded with spaces.
	if b := newSDT("TEST", 1, "AB", nil); string(b[16:24]) != "AB      " {
		t.Errorf("table id %q", b[16:24])
	}

	x := xsdt(0x1000, 0x2000)
	if len(x) != headerSize+16 || binary.LittleEndian.Uint64(x[headerSize+8:]) != 0x2000 || checksum(x) != 0 {
		t.Errorf("xsdt % x", x)
	}
	r := rsdp(0x9fd00)
	if len(r) != 36 || string(r[:8]) != "RSD PTR " || checksum(r[:20]) != 0 || checksum(r) != 0 || binary.LittleEndian.Uint64(r[24:]) != 0x9fd00 {
		t.Errorf("rsdp % x", r)
	}
}

func TestChecksum(t *testing.T) {
	tests := []struct {
		in   []byte
		want byte
	}{
		{nil, 0},
		{[]byte{1, 2, 3}, 250},
		{[]byte{1, 2, 3, 250}, 0},
		{[]byte{255}, 1},
	}
	for _, tt := range tests {
		if got := checksum(tt.in); got != tt.want {
			t.Errorf("checksum(% x) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
