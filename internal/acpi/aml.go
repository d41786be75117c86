package acpi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ErrAML is returned (wrapped) when a term cannot be encoded: a bad name,
// string or EISA id, or an object too large for its length field.
var ErrAML = errors.New("acpi: cannot encode AML")

// Term is an AML object or statement: a data object, a named object or a
// resource template. The encoder covers what ember's tables need.
type Term interface {
	encode(e *encoder)
}

// encoder accumulates AML bytes; the first error sticks.
type encoder struct {
	b   []byte
	err error
}

func (e *encoder) fail(format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf("%w: "+format, append([]any{ErrAML}, args...)...)
	}
}

// Encode returns the AML byte code of terms, in order.
func Encode(terms ...Term) ([]byte, error) {
	e := &encoder{}
	for _, t := range terms {
		t.encode(e)
	}
	if e.err != nil {
		return nil, e.err
	}
	return e.b, nil
}

// AML opcodes and prefixes.
const (
	opZero        = 0x00
	opOne         = 0x01
	opName        = 0x08
	opBytePrefix  = 0x0a
	opWordPrefix  = 0x0b
	opDWordPrefix = 0x0c
	opString      = 0x0d
	opQWordPrefix = 0x0e
	opScope       = 0x10
	opBuffer      = 0x11
	opPackage     = 0x12
	opMethod      = 0x14
	opDualName    = 0x2e
	opMultiName   = 0x2f
	opExt         = 0x5b
	opExtDevice   = 0x82
	opReturn      = 0xa4
	opOnes        = 0xff
)

// maxPkgLength is the largest PkgLength: 28 bits.
const maxPkgLength = 1<<28 - 1

// pkg writes op, the PkgLength of body (which counts its own bytes) and
// body. body is built by f in a sub-encoder.
func (e *encoder) pkg(op []byte, f func(e *encoder)) {
	sub := &encoder{}
	f(sub)
	if sub.err != nil {
		if e.err == nil {
			e.err = sub.err
		}
		return
	}
	n := len(sub.b)
	e.b = append(e.b, op...)
	switch {
	case n+1 <= 0x3f:
		e.b = append(e.b, byte(n+1))
	case n+2 <= 0xfff:
		n += 2
		e.b = append(e.b, 1<<6|byte(n&0xf), byte(n>>4))
	case n+3 <= 0xf_ffff:
		n += 3
		e.b = append(e.b, 2<<6|byte(n&0xf), byte(n>>4), byte(n>>12))
	case n+4 <= maxPkgLength:
		n += 4
		e.b = append(e.b, 3<<6|byte(n&0xf), byte(n>>4), byte(n>>12), byte(n>>20))
	default:
		e.fail("object of %d bytes exceeds the PkgLength limit", n)
		return
	}
	e.b = append(e.b, sub.b...)
}

// nameString encodes an ACPI path: an optional root "\" or parent "^"
// prefixes, then dot-separated segments of up to four characters
// ([A-Z_] then [A-Z0-9_]), padded with "_" as ASL does.
func (e *encoder) nameString(path string) {
	p := path
	var prefix []byte
	if strings.HasPrefix(p, `\`) {
		prefix, p = []byte{'\\'}, p[1:]
	} else {
		for strings.HasPrefix(p, "^") {
			prefix, p = append(prefix, '^'), p[1:]
		}
	}
	if p == "" {
		if len(prefix) == 1 && prefix[0] == '\\' {
			e.b = append(e.b, '\\', 0) // the root itself: NullName
			return
		}
		e.fail("empty name %q", path)
		return
	}
	segs := strings.Split(p, ".")
	if len(segs) > 255 {
		e.fail("name %q has too many segments", path)
		return
	}
	out := append([]byte(nil), prefix...)
	switch len(segs) {
	case 1:
	case 2:
		out = append(out, opDualName)
	default:
		out = append(out, opMultiName, byte(len(segs)))
	}
	for _, s := range segs {
		if len(s) == 0 || len(s) > 4 {
			e.fail("name segment %q of %q is not 1 to 4 characters", s, path)
			return
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
				e.fail("invalid character %q in name %q", c, path)
				return
			}
		}
		out = append(out, s+strings.Repeat("_", 4-len(s))...)
	}
	e.b = append(e.b, out...)
}

// Integer is an AML integer, encoded in the fewest bytes (Zero, One,
// Ones, or a byte, word, dword or qword constant).
type Integer uint64

func (i Integer) encode(e *encoder) {
	v := uint64(i)
	switch {
	case v == 0:
		e.b = append(e.b, opZero)
	case v == 1:
		e.b = append(e.b, opOne)
	case v == ^uint64(0):
		e.b = append(e.b, opOnes)
	case v <= 0xff:
		e.b = append(e.b, opBytePrefix, byte(v))
	case v <= 0xffff:
		e.b = binary.LittleEndian.AppendUint16(append(e.b, opWordPrefix), uint16(v))
	case v <= 0xffff_ffff:
		e.b = binary.LittleEndian.AppendUint32(append(e.b, opDWordPrefix), uint32(v))
	default:
		e.b = binary.LittleEndian.AppendUint64(append(e.b, opQWordPrefix), v)
	}
}

// String is an AML string of ASCII characters (no NUL).
type String string

func (s String) encode(e *encoder) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] > 0x7f {
			e.fail("string %q has a non-ASCII or NUL byte", string(s))
			return
		}
	}
	e.b = append(append(append(e.b, opString), s...), 0)
}

// EISAID is a compressed EISA id such as "PNP0303" (three letters, four
// hex digits), encoded as ASL's EisaId() is: a dword constant.
type EISAID string

func (id EISAID) encode(e *encoder) {
	s := string(id)
	valid := len(s) == 7
	for i := 0; valid && i < 7; i++ {
		c := s[i]
		if i < 3 {
			valid = c >= 'A' && c <= 'Z'
		} else {
			valid = c >= '0' && c <= '9' || c >= 'A' && c <= 'F'
		}
	}
	if !valid {
		e.fail("invalid EISA id %q", s)
		return
	}
	hex := func(c byte) uint32 {
		if c <= '9' {
			return uint32(c - '0')
		}
		return uint32(c-'A') + 10
	}
	v := uint32(s[0]-'@')<<26 | uint32(s[1]-'@')<<21 | uint32(s[2]-'@')<<16 |
		hex(s[3])<<12 | hex(s[4])<<8 | hex(s[5])<<4 | hex(s[6])
	// The id is stored most significant byte first.
	e.b = binary.BigEndian.AppendUint32(append(e.b, opDWordPrefix), v)
}

// Buffer is an AML buffer with the given contents.
type Buffer []byte

func (b Buffer) encode(e *encoder) {
	e.pkg([]byte{opBuffer}, func(e *encoder) {
		Integer(len(b)).encode(e)
		e.b = append(e.b, b...)
	})
}

// Package is an AML package of at most 255 elements.
type Package []Term

func (p Package) encode(e *encoder) {
	if len(p) > 255 {
		e.fail("package of %d elements", len(p))
		return
	}
	e.pkg([]byte{opPackage}, func(e *encoder) {
		e.b = append(e.b, byte(len(p)))
		for _, t := range p {
			t.encode(e)
		}
	})
}

// Name binds Path to the data object Value.
type Name struct {
	Path  string
	Value Term
}

func (n Name) encode(e *encoder) {
	if n.Value == nil {
		e.fail("name %q without a value", n.Path)
		return
	}
	e.b = append(e.b, opName)
	e.nameString(n.Path)
	n.Value.encode(e)
}

// Scope opens the namespace scope Path for Body.
type Scope struct {
	Path string
	Body []Term
}

func (s Scope) encode(e *encoder) {
	e.pkg([]byte{opScope}, func(e *encoder) {
		e.nameString(s.Path)
		for _, t := range s.Body {
			t.encode(e)
		}
	})
}

// Device declares the device Path with the objects in Body.
type Device struct {
	Path string
	Body []Term
}

func (d Device) encode(e *encoder) {
	e.pkg([]byte{opExt, opExtDevice}, func(e *encoder) {
		e.nameString(d.Path)
		for _, t := range d.Body {
			t.encode(e)
		}
	})
}

// Method declares the control method Path taking Args (0..7) arguments.
type Method struct {
	Path       string
	Args       int
	Serialized bool
	Body       []Term
}

func (m Method) encode(e *encoder) {
	if m.Args < 0 || m.Args > 7 {
		e.fail("method %q with %d arguments", m.Path, m.Args)
		return
	}
	e.pkg([]byte{opMethod}, func(e *encoder) {
		e.nameString(m.Path)
		flags := byte(m.Args)
		if m.Serialized {
			flags |= 1 << 3
		}
		e.b = append(e.b, flags)
		for _, t := range m.Body {
			t.encode(e)
		}
	})
}

// Return returns Value from a method.
type Return struct{ Value Term }

func (r Return) encode(e *encoder) {
	if r.Value == nil {
		e.fail("return without a value")
		return
	}
	e.b = append(e.b, opReturn)
	r.Value.encode(e)
}

// Resource is a small or large resource descriptor of a resource
// template.
type Resource interface {
	appendResource(b []byte) []byte
}

// ResourceTemplate is a buffer of resource descriptors closed by an end
// tag, as ASL's ResourceTemplate() builds it.
type ResourceTemplate []Resource

func (rt ResourceTemplate) encode(e *encoder) {
	var b []byte
	for _, r := range rt {
		b = r.appendResource(b)
	}
	// End tag; a zero checksum means "treat as valid".
	Buffer(append(b, 0x79, 0)).encode(e)
}

// Memory32Fixed is a fixed 32-bit memory range.
type Memory32Fixed struct {
	Base, Size uint32
	ReadWrite  bool
}

func (m Memory32Fixed) appendResource(b []byte) []byte {
	b = append(b, 0x86, 9, 0, boolBit(m.ReadWrite, 0))
	b = binary.LittleEndian.AppendUint32(b, m.Base)
	return binary.LittleEndian.AppendUint32(b, m.Size)
}

// Interrupt is an extended interrupt descriptor for one GSI.
type Interrupt struct {
	GSI       uint32
	Consumer  bool // the device consumes the interrupt (ResourceConsumer)
	Edge      bool // edge-triggered, else level
	ActiveLow bool
	Shared    bool
}

func (i Interrupt) appendResource(b []byte) []byte {
	flags := boolBit(i.Consumer, 0) | boolBit(i.Edge, 1) | boolBit(i.ActiveLow, 2) | boolBit(i.Shared, 3)
	b = append(b, 0x89, 6, 0, flags, 1)
	return binary.LittleEndian.AppendUint32(b, i.GSI)
}

// IO is an I/O port range decoding 16 address bits.
type IO struct {
	Min, Max   uint16
	Align, Len uint8
}

func (io IO) appendResource(b []byte) []byte {
	b = append(b, 0x47, 1)
	b = binary.LittleEndian.AppendUint16(b, io.Min)
	b = binary.LittleEndian.AppendUint16(b, io.Max)
	return append(b, io.Align, io.Len)
}

func boolBit(v bool, bit uint) byte {
	if v {
		return 1 << bit
	}
	return 0
}
