package strictjson

import (
	"math"
	"sort"
	"strconv"
	"unicode/utf8"
)

// appendFloat64 writes f as serde_json does (via the zmij crate): the shortest
// digits that round-trip, in plain notation with a ".0" or fraction when the
// decimal exponent is within -5..=15, otherwise as d.ddde±X. NaN and
// infinities have no JSON form; they are written as null like serde_json does.
func appendFloat64(dst []byte, f float64) []byte {
	return appendFloat(dst, f, 64, -5, 15)
}

// appendFloat32 is the f32 variant (plain notation for exponents -6..=12).
func appendFloat32(dst []byte, f float32) []byte {
	return appendFloat(dst, float64(f), 32, -6, 12)
}

func appendFloat(dst []byte, f float64, bits int, minPlain, maxPlain int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	if f == 0 {
		if math.Signbit(f) {
			return append(dst, "-0.0"...)
		}
		return append(dst, "0.0"...)
	}
	var tmp [32]byte
	sci := strconv.AppendFloat(tmp[:0], f, 'e', -1, bits) // [-]d[.ddd]e±XX
	if sci[0] == '-' {
		dst = append(dst, '-')
		sci = sci[1:]
	}
	ePos := 0
	for sci[ePos] != 'e' {
		ePos++
	}
	exp, _ := strconv.Atoi(string(sci[ePos+1:]))
	var digits []byte
	for _, c := range sci[:ePos] {
		if c != '.' {
			digits = append(digits, c)
		}
	}
	n := len(digits)
	switch {
	case exp < minPlain || exp > maxPlain:
		dst = append(dst, digits[0])
		if n > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if exp >= 0 {
			dst = append(dst, '+')
		}
		return strconv.AppendInt(dst, int64(exp), 10)
	case exp >= n-1:
		dst = append(dst, digits...)
		for k := 0; k < exp-(n-1); k++ {
			dst = append(dst, '0')
		}
		return append(dst, ".0"...)
	case exp >= 0:
		dst = append(dst, digits[:exp+1]...)
		dst = append(dst, '.')
		return append(dst, digits[exp+1:]...)
	default:
		dst = append(dst, "0."...)
		for k := 0; k < -exp-1; k++ {
			dst = append(dst, '0')
		}
		return append(dst, digits...)
	}
}

// appendQuoted writes s as a JSON string the way serde_json's serializer does:
// only '"', '\\' and bytes below 0x20 are escaped (short forms for \b \t \n \f
// \r, \u00XX with lowercase hex otherwise); everything else is copied raw.
func appendQuoted(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for k := 0; k < len(s); k++ {
		c := s[k]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:k]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		start = k + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// RustDebugString renders s like Rust's `{:?}` for str (Rust 1.95's Unicode
// tables), which serde uses for `string "..."` in messages: \0 \t \r \n \\ \"
// short escapes, and \u{hex} for characters Rust considers non-printable or
// grapheme-extending. Invalid UTF-8 bytes render as U+FFFD.
func RustDebugString(s string) string {
	const hex = "0123456789abcdef"
	out := make([]byte, 0, len(s)+2)
	out = append(out, '"')
	for _, c := range s {
		switch c {
		case 0:
			out = append(out, '\\', '0')
		case '\t':
			out = append(out, '\\', 't')
		case '\r':
			out = append(out, '\\', 'r')
		case '\n':
			out = append(out, '\\', 'n')
		case '\\':
			out = append(out, '\\', '\\')
		case '"':
			out = append(out, '\\', '"')
		default:
			if !rustDebugEscapes(c) {
				out = utf8.AppendRune(out, c)
				continue
			}
			out = append(out, '\\', 'u', '{')
			shift := 28
			for shift > 0 && (c>>uint(shift))&0xF == 0 {
				shift -= 4
			}
			for ; shift >= 0; shift -= 4 {
				out = append(out, hex[(c>>uint(shift))&0xF])
			}
			out = append(out, '}')
		}
	}
	return string(append(out, '"'))
}

// rustDebugEscapes reports whether Rust's str Debug escapes c.
func rustDebugEscapes(c rune) bool {
	k := sort.Search(len(debugEscapeRanges), func(i int) bool { return debugEscapeRanges[i][1] >= uint32(c) })
	return k < len(debugEscapeRanges) && debugEscapeRanges[k][0] <= uint32(c)
}
