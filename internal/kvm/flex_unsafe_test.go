//go:build linux && amd64

package kvm

import (
	"encoding/binary"
	"testing"
	"unsafe"
)

func flexBytes(buf []uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*8)
}

// TestPackFlex checks the packed layout byte by byte against the C offsets
// (header, then entries at offsetof(..., entries)).
func TestPackFlex(t *testing.T) {
	h := cpuid2Header{Nent: 2}
	entries := []CPUIDEntry{{Function: 0x40000000, EAX: 0x40000001}, {Function: 7, Index: 1, Flags: CPUIDFlagSignificantIndex}}
	buf, view := packFlex(&h, entries)
	b := flexBytes(buf)
	if len(b) < 8+2*40 {
		t.Fatalf("buffer of %d bytes", len(b))
	}
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != 2 || le.Uint32(b[8:]) != 0x40000000 || le.Uint32(b[8+12:]) != 0x40000001 ||
		le.Uint32(b[48:]) != 7 || le.Uint32(b[52:]) != 1 || le.Uint32(b[56:]) != 1 {
		t.Fatalf("packed kvm_cpuid2 wrong: % x", b[:88])
	}
	view[1].EAX = 0x1234 // the kernel writing an answer
	if le.Uint32(b[48+12:]) != 0x1234 {
		t.Fatal("view does not alias the buffer")
	}

	lh := msrListHeader{NMSRs: 3}
	buf, _ = packFlex(&lh, []uint32{0x10, 0x174, 0xc0000080})
	b = flexBytes(buf)
	if le.Uint32(b[0:]) != 3 || le.Uint32(b[4:]) != 0x10 || le.Uint32(b[12:]) != 0xc0000080 {
		t.Fatalf("packed kvm_msr_list wrong: % x", b[:16])
	}

	sh := signalMaskHeader{Len: 8}
	buf, _ = packFlex(&sh, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	b = flexBytes(buf)
	if le.Uint32(b[0:]) != 8 || b[4] != 1 || b[11] != 8 {
		t.Fatalf("packed kvm_signal_mask wrong: % x", b[:12])
	}

	eh := irqRoutingHeader{}
	buf, view2 := packFlex[irqRoutingHeader, IRQRoutingEntry](&eh, nil)
	if len(buf) == 0 || view2 != nil {
		t.Fatal("empty flexible array must still give a header buffer")
	}
}
