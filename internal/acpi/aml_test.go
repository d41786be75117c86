package acpi

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestEncode(t *testing.T) {
	tests := []struct {
		name string
		term Term
		want []byte
	}{
		{"zero", Integer(0), []byte{0x00}},
		{"one", Integer(1), []byte{0x01}},
		{"ones", Integer(^uint64(0)), []byte{0xff}},
		{"byte", Integer(0x0f), []byte{0x0a, 0x0f}},
		{"word", Integer(0x3f8), []byte{0x0b, 0xf8, 0x03}},
		{"dword", Integer(0xc000_1000), []byte{0x0c, 0x00, 0x10, 0x00, 0xc0}},
		{"qword", Integer(1 << 32), []byte{0x0e, 0, 0, 0, 0, 1, 0, 0, 0}},
		{"string", String("COM1"), []byte{0x0d, 'C', 'O', 'M', '1', 0}},
		{"empty string", String(""), []byte{0x0d, 0}},
		{"eisa id", EISAID("PNP0303"), []byte{0x0c, 0x41, 0xd0, 0x03, 0x03}},
		{"eisa id hex", EISAID("PNP0A03"), []byte{0x0c, 0x41, 0xd0, 0x0a, 0x03}},
		{"name", Name{"_UID", Integer(7)}, []byte{0x08, '_', 'U', 'I', 'D', 0x0a, 7}},
		{"short name padded", Name{"PS2", Integer(0)}, []byte{0x08, 'P', 'S', '2', '_', 0}},
		{"root name", Name{`\FOO`, Integer(0)}, []byte{0x08, '\\', 'F', 'O', 'O', '_', 0}},
		{"parent name", Name{`^^AB`, Integer(0)}, []byte{0x08, '^', '^', 'A', 'B', '_', '_', 0}},
		{"dual name", Name{"_SB_.COM1", Integer(0)}, []byte{0x08, 0x2e, '_', 'S', 'B', '_', 'C', 'O', 'M', '1', 0}},
		{"multi name", Name{`\A.B.C`, Integer(0)}, []byte{0x08, '\\', 0x2f, 3, 'A', '_', '_', '_', 'B', '_', '_', '_', 'C', '_', '_', '_', 0}},
		{"buffer", Buffer{1, 2, 3}, []byte{0x11, 0x06, 0x0a, 0x03, 1, 2, 3}},
		{"empty buffer", Buffer{}, []byte{0x11, 0x02, 0x00}},
		{"package", Package{Integer(1), String("a")}, []byte{0x12, 0x06, 0x02, 0x01, 0x0d, 'a', 0}},
		{"method", Method{Path: "_STA", Body: []Term{Return{Integer(0x0f)}}},
			[]byte{0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f}},
		{"serialized method", Method{Path: "_EVT", Args: 1, Serialized: true}, []byte{0x14, 0x06, '_', 'E', 'V', 'T', 0x09}},
		{"device", Device{Path: "DEV0", Body: []Term{Name{"_UID", Integer(0)}}},
			[]byte{0x5b, 0x82, 0x0b, 'D', 'E', 'V', '0', 0x08, '_', 'U', 'I', 'D', 0x00}},
		{"scope", Scope{Path: `\_SB_`}, []byte{0x10, 0x06, '\\', '_', 'S', 'B', '_'}},
		{"memory32fixed", ResourceTemplate{Memory32Fixed{Base: 0xc0001000, Size: 0x1000, ReadWrite: true}},
			[]byte{0x11, 0x11, 0x0a, 0x0e, 0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xc0, 0x00, 0x10, 0x00, 0x00, 0x79, 0x00}},
		{"interrupt", ResourceTemplate{Interrupt{GSI: 5, Consumer: true, Edge: true}},
			[]byte{0x11, 0x0e, 0x0a, 0x0b, 0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00, 0x79, 0x00}},
		{"level low shared interrupt", ResourceTemplate{Interrupt{GSI: 9, ActiveLow: true, Shared: true}},
			[]byte{0x11, 0x0e, 0x0a, 0x0b, 0x89, 0x06, 0x00, 0x0c, 0x01, 0x09, 0x00, 0x00, 0x00, 0x79, 0x00}},
		{"io", ResourceTemplate{IO{Min: 0x60, Max: 0x60, Align: 1, Len: 1}},
			[]byte{0x11, 0x0d, 0x0a, 0x0a, 0x47, 0x01, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01, 0x79, 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Encode(tt.term)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got  % x\nwant % x", got, tt.want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	many := make(Package, 256)
	for i := range many {
		many[i] = Integer(0)
	}
	tests := []struct {
		name string
		term Term
	}{
		{"empty name", Name{"", Integer(0)}},
		{"long segment", Name{"TOOLONG", Integer(0)}},
		{"leading digit", Name{"1ABC", Integer(0)}},
		{"lower case", Name{"_hid", Integer(0)}},
		{"empty segment", Name{"_SB_..FOO", Integer(0)}},
		{"nil value", Name{"_UID", nil}},
		{"nil return", Method{Path: "_STA", Body: []Term{Return{}}}},
		{"non-ASCII string", String("caf\xc3\xa9")},
		{"NUL in string", String("a\x00b")},
		{"short EISA id", EISAID("PNP030")},
		{"lower-case EISA id", EISAID("pnp0303")},
		{"EISA id bad hex", EISAID("PNP03G3")},
		{"method args", Method{Path: "_FOO", Args: 8}},
		{"package too big", many},
		{"error inside a device", Device{Path: "DEV0", Body: []Term{Name{"bad!", Integer(0)}}}},
		{"bad device name", Device{Path: "^"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := Encode(tt.term); !errors.Is(err, ErrAML) {
				t.Errorf("Encode = % x, %v; want ErrAML", b, err)
			}
		})
	}
}

// decodePkgLength reads a PkgLength as an AML interpreter does.
func decodePkgLength(b []byte) (length, size int) {
	n := int(b[0] >> 6)
	if n == 0 {
		return int(b[0] & 0x3f), 1
	}
	length = int(b[0] & 0x0f)
	for i := 1; i <= n; i++ {
		length |= int(b[i]) << (4 + 8*(i-1))
	}
	return length, n + 1
}

// TestPkgLength checks every encoding width at its boundaries: the length
// counts itself and covers exactly the object.
func TestPkgLength(t *testing.T) {
	for _, n := range []int{0, 1, 58, 59, 60, 61, 62, 63, 64, 4000, 4089, 4090, 4091, 4092, 4093, 4094, 1<<20 - 10, 1<<20 - 5, 1<<20 - 4, 1 << 20} {
		b, err := Encode(Buffer(make([]byte, n)))
		if err != nil {
			t.Fatal(err)
		}
		length, size := decodePkgLength(b[1:])
		if 1+length != len(b) {
			t.Errorf("buffer of %d: PkgLength %d (in %d bytes), object is %d bytes", n, length, size, len(b))
		}
		if size > 1 && b[1]&0x30 != 0 {
			t.Errorf("buffer of %d: reserved PkgLength bits set in %#x", n, b[1])
		}
		// The shortest encoding is used.
		content, want := len(b)-1-size, 4
		for w, limit := range []int{0x3f, 0xfff, 0xfffff} {
			if content+w+1 <= limit {
				want = w + 1
				break
			}
		}
		if size != want {
			t.Errorf("buffer of %d: %d-byte PkgLength, want %d", n, size, want)
		}
	}
}

func TestEncodeConcatenates(t *testing.T) {
	got, err := Encode(Integer(0), Integer(1), String("x"))
	if err != nil || !bytes.Equal(got, []byte{0, 1, 0x0d, 'x', 0}) {
		t.Errorf("Encode = % x, %v", got, err)
	}
	if _, err := Encode(Integer(0), String("\xff"), Integer(1)); err == nil || !strings.Contains(err.Error(), "non-ASCII") {
		t.Errorf("first error not kept: %v", err)
	}
}
