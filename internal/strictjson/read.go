package strictjson

import (
	"bytes"
	"unicode/utf8"
)

// maxDepth is serde_json's recursion budget: the 128th nested array, object or
// struct fails with "recursion limit exceeded".
const maxDepth = 128

// reader is the byte-level JSON scanner. Its positions follow serde_json's
// SliceRead: pos() is the place after the last consumed byte, peekPos() also
// counts the byte under the cursor.
type reader struct {
	data  []byte
	i     int
	depth int // remaining nesting budget
	buf   []byte
}

func newReader(data []byte) *reader {
	return &reader{data: data, depth: maxDepth}
}

func (r *reader) peek() (byte, bool) {
	if r.i < len(r.data) {
		return r.data[r.i], true
	}
	return 0, false
}

// peekOrNul returns 0 at end of input, which no caller accepts as a digit.
func (r *reader) peekOrNul() byte {
	if r.i < len(r.data) {
		return r.data[r.i]
	}
	return 0
}

func (r *reader) next() (byte, bool) {
	if r.i < len(r.data) {
		b := r.data[r.i]
		r.i++
		return b, true
	}
	return 0, false
}

func (r *reader) eat() { r.i++ }

func (r *reader) lineCol(idx int) (int, int) {
	prefix := r.data[:idx]
	start := bytes.LastIndexByte(prefix, '\n') + 1
	return 1 + bytes.Count(prefix[:start], []byte{'\n'}), idx - start
}

// errAt reports c at the position after the last consumed byte.
func (r *reader) errAt(c code) *Error {
	line, col := r.lineCol(r.i)
	return &Error{Msg: codeText[c], Line: line, Column: col, Category: c.category()}
}

// errPeek reports c at the byte under the cursor.
func (r *reader) errPeek(c code) *Error {
	idx := r.i + 1
	if idx > len(r.data) {
		idx = len(r.data)
	}
	line, col := r.lineCol(idx)
	return &Error{Msg: codeText[c], Line: line, Column: col, Category: c.category()}
}

// fix gives a position-less error the current position, as serde_json does at
// the end of each deserialize_* call.
func (r *reader) fix(err error) error {
	if e, ok := err.(*Error); ok && e.Line == 0 {
		e.Line, e.Column = r.lineCol(r.i)
	}
	return err
}

// skipSpace consumes JSON whitespace and returns the next byte, if any.
func (r *reader) skipSpace() (byte, bool) {
	for r.i < len(r.data) {
		switch b := r.data[r.i]; b {
		case ' ', '\n', '\t', '\r':
			r.i++
		default:
			return b, true
		}
	}
	return 0, false
}

// enter spends one level of the nesting budget before an array/object/struct.
func (r *reader) enter() error {
	r.depth--
	if r.depth == 0 {
		return r.errPeek(codeRecursionLimit)
	}
	return nil
}

func (r *reader) leave() { r.depth++ }

// literal checks the rest of null/true/false after its first byte was consumed.
func (r *reader) literal(rest string) error {
	for k := 0; k < len(rest); k++ {
		b, ok := r.next()
		if !ok {
			return r.errAt(codeEOFValue)
		}
		if b != rest[k] {
			return r.errAt(codeExpectedIdent)
		}
	}
	return nil
}

func isStringSpecial(b byte) bool { return b == '"' || b == '\\' || b < 0x20 }

// str reads a string whose opening quote was consumed, unescaping it and
// requiring valid UTF-8 and paired surrogates. The result aliases r.buf or the
// input, so callers copy it if they keep it.
func (r *reader) str() ([]byte, error) {
	r.buf = r.buf[:0]
	start := r.i
	for {
		for r.i < len(r.data) && !isStringSpecial(r.data[r.i]) {
			r.i++
		}
		if r.i == len(r.data) {
			return nil, r.errAt(codeEOFString)
		}
		switch r.data[r.i] {
		case '"':
			var out []byte
			if len(r.buf) == 0 {
				out = r.data[start:r.i]
			} else {
				r.buf = append(r.buf, r.data[start:r.i]...)
				out = r.buf
			}
			r.i++
			if !utf8.Valid(out) {
				return nil, r.errAt(codeInvalidUnicode)
			}
			return out, nil
		case '\\':
			r.buf = append(r.buf, r.data[start:r.i]...)
			r.i++
			if err := r.escape(); err != nil {
				return nil, err
			}
			start = r.i
		default:
			r.i++
			return nil, r.errAt(codeControlChar)
		}
	}
}

// escape decodes one escape sequence after its backslash into r.buf.
func (r *reader) escape() error {
	c, ok := r.next()
	if !ok {
		return r.errAt(codeEOFString)
	}
	switch c {
	case '"', '\\', '/':
		r.buf = append(r.buf, c)
	case 'b':
		r.buf = append(r.buf, '\b')
	case 'f':
		r.buf = append(r.buf, '\f')
	case 'n':
		r.buf = append(r.buf, '\n')
	case 'r':
		r.buf = append(r.buf, '\r')
	case 't':
		r.buf = append(r.buf, '\t')
	case 'u':
		return r.unicodeEscape()
	default:
		return r.errAt(codeInvalidEscape)
	}
	return nil
}

func (r *reader) hex4() (uint16, error) {
	if len(r.data)-r.i < 4 {
		r.i = len(r.data)
		return 0, r.errAt(codeEOFString)
	}
	var v uint16
	bad := false
	for _, c := range r.data[r.i : r.i+4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			bad = true
		}
		v = v<<4 | uint16(d)
	}
	r.i += 4
	if bad {
		return 0, r.errAt(codeInvalidEscape)
	}
	return v, nil
}

func (r *reader) unicodeEscape() error {
	n, err := r.hex4()
	if err != nil {
		return err
	}
	switch {
	case n >= 0xDC00 && n <= 0xDFFF:
		// A trailing surrogate first: serde_json names it the same way.
		return r.errAt(codeLoneSurrogate)
	case n < 0xD800 || n > 0xDBFF:
		r.buf = utf8.AppendRune(r.buf, rune(n))
		return nil
	}
	for _, want := range []byte{'\\', 'u'} {
		b, ok := r.peek()
		if !ok {
			return r.errAt(codeEOFString)
		}
		r.eat()
		if b != want {
			return r.errAt(codeUnexpectedEndOfHexEscape)
		}
	}
	lo, err := r.hex4()
	if err != nil {
		return err
	}
	if lo < 0xDC00 || lo > 0xDFFF {
		return r.errAt(codeLoneSurrogate)
	}
	cp := (rune(n)-0xD800)<<10 | (rune(lo) - 0xDC00) + 0x10000
	r.buf = utf8.AppendRune(r.buf, cp)
	return nil
}

// skipStr passes over a string whose opening quote was consumed, checking only
// what serde_json checks when it ignores a value: escapes are well formed and no
// raw control bytes appear (UTF-8 and surrogates go unchecked).
func (r *reader) skipStr() error {
	for {
		for r.i < len(r.data) && !isStringSpecial(r.data[r.i]) {
			r.i++
		}
		if r.i == len(r.data) {
			return r.errAt(codeEOFString)
		}
		switch r.data[r.i] {
		case '"':
			r.i++
			return nil
		case '\\':
			r.i++
			c, ok := r.next()
			if !ok {
				return r.errAt(codeEOFString)
			}
			switch c {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if _, err := r.hex4(); err != nil {
					return err
				}
			default:
				return r.errAt(codeInvalidEscape)
			}
		default:
			// Unlike str(), the control byte is not consumed before reporting.
			return r.errAt(codeControlChar)
		}
	}
}

// skipValue passes over one JSON value without building it and without a
// nesting limit, as serde_json does for ignored struct fields. It is iterative,
// so deep input cannot exhaust the Go stack.
func (r *reader) skipValue() error {
	var stack []byte // enclosing '[' / '{' frames, innermost last
	var enclosing byte
	for {
		b, ok := r.skipSpace()
		if !ok {
			return r.errPeek(codeEOFValue)
		}
		var opened byte
		switch {
		case b == 'n':
			r.eat()
			if err := r.literal("ull"); err != nil {
				return err
			}
		case b == 't':
			r.eat()
			if err := r.literal("rue"); err != nil {
				return err
			}
		case b == 'f':
			r.eat()
			if err := r.literal("alse"); err != nil {
				return err
			}
		case b == '-':
			r.eat()
			if err := r.skipNumber(); err != nil {
				return err
			}
		case b >= '0' && b <= '9':
			if err := r.skipNumber(); err != nil {
				return err
			}
		case b == '"':
			r.eat()
			if err := r.skipStr(); err != nil {
				return err
			}
		case b == '[' || b == '{':
			if enclosing != 0 {
				stack = append(stack, enclosing)
				enclosing = 0
			}
			r.eat()
			opened = b
		default:
			return r.errPeek(codeExpectedValue)
		}

		var frame byte
		afterValue := false
		switch {
		case opened != 0:
			frame = opened
		case enclosing != 0:
			frame, enclosing, afterValue = enclosing, 0, true
		case len(stack) > 0:
			frame, stack, afterValue = stack[len(stack)-1], stack[:len(stack)-1], true
		default:
			return nil
		}

		// Close as many frames as the input closes here.
	closing:
		for {
			c, ok := r.skipSpace()
			if !ok {
				if frame == '[' {
					return r.errPeek(codeEOFList)
				}
				return r.errPeek(codeEOFObject)
			}
			switch {
			case c == ',' && afterValue:
				r.eat()
				break closing
			case (c == ']' && frame == '[') || (c == '}' && frame == '{'):
				r.eat()
				if len(stack) == 0 {
					return nil
				}
				frame, stack = stack[len(stack)-1], stack[:len(stack)-1]
				afterValue = true
			case afterValue:
				if frame == '[' {
					return r.errPeek(codeExpectedListCommaOrEnd)
				}
				return r.errPeek(codeExpectedObjectCommaOrEnd)
			default:
				break closing
			}
		}

		if frame == '{' {
			c, ok := r.skipSpace()
			switch {
			case !ok:
				return r.errPeek(codeEOFObject)
			case c != '"':
				return r.errPeek(codeKeyMustBeString)
			}
			r.eat()
			if err := r.skipStr(); err != nil {
				return err
			}
			c, ok = r.skipSpace()
			switch {
			case !ok:
				return r.errPeek(codeEOFObject)
			case c != ':':
				return r.errPeek(codeExpectedColon)
			}
			r.eat()
		}
		enclosing = frame
	}
}

// skipNumber passes over a number (after any '-') checking only its grammar.
func (r *reader) skipNumber() error {
	c := r.peekOrNul()
	if r.i < len(r.data) {
		r.i++
	}
	switch {
	case c == '0':
		if d := r.peekOrNul(); d >= '0' && d <= '9' {
			return r.errPeek(codeInvalidNumber)
		}
	case c >= '1' && c <= '9':
		r.skipDigits()
	default:
		return r.errAt(codeInvalidNumber)
	}
	switch r.peekOrNul() {
	case '.':
		r.eat()
		if d := r.peekOrNul(); d < '0' || d > '9' {
			return r.errPeek(codeInvalidNumber)
		}
		r.skipDigits()
		if c := r.peekOrNul(); c == 'e' || c == 'E' {
			return r.skipExponent()
		}
	case 'e', 'E':
		return r.skipExponent()
	}
	return nil
}

func (r *reader) skipDigits() {
	for r.i < len(r.data) && r.data[r.i] >= '0' && r.data[r.i] <= '9' {
		r.i++
	}
}

func (r *reader) skipExponent() error {
	r.eat()
	if c := r.peekOrNul(); c == '+' || c == '-' {
		r.eat()
	}
	c := r.peekOrNul()
	if r.i < len(r.data) {
		r.i++
	}
	if c < '0' || c > '9' {
		return r.errAt(codeInvalidNumber)
	}
	r.skipDigits()
	return nil
}

// Helpers shared by the sequence and map walkers (serde_json's SeqAccess and
// MapAccess). first is true before the first element.

// hasElement reports whether another array element follows.
func (r *reader) hasElement(first *bool) (bool, error) {
	b, ok := r.skipSpace()
	if !ok {
		return false, r.errPeek(codeEOFList)
	}
	switch {
	case b == ']':
		return false, nil
	case *first:
		*first = false
		return true, nil
	case b == ',':
		r.eat()
		c, ok := r.skipSpace()
		switch {
		case !ok:
			return false, r.errPeek(codeEOFValue)
		case c == ']':
			return false, r.errPeek(codeTrailingComma)
		}
		return true, nil
	}
	return false, r.errPeek(codeExpectedListCommaOrEnd)
}

// hasKey reports whether another object key follows; the cursor is then on its quote.
func (r *reader) hasKey(first *bool) (bool, error) {
	b, ok := r.skipSpace()
	if !ok {
		return false, r.errPeek(codeEOFObject)
	}
	switch {
	case b == '}':
		return false, nil
	case *first:
		*first = false
		if b == '"' {
			return true, nil
		}
		return false, r.errPeek(codeKeyMustBeString)
	case b == ',':
		r.eat()
		c, ok := r.skipSpace()
		switch {
		case !ok:
			return false, r.errPeek(codeEOFValue)
		case c == '"':
			return true, nil
		case c == '}':
			return false, r.errPeek(codeTrailingComma)
		}
		return false, r.errPeek(codeKeyMustBeString)
	}
	return false, r.errPeek(codeExpectedObjectCommaOrEnd)
}

// key reads an object key; the cursor is on its opening quote.
func (r *reader) key() ([]byte, error) {
	r.eat()
	return r.str()
}

func (r *reader) colon() error {
	b, ok := r.skipSpace()
	switch {
	case !ok:
		return r.errPeek(codeEOFObject)
	case b != ':':
		return r.errPeek(codeExpectedColon)
	}
	r.eat()
	return nil
}

// endSeq closes an array. It runs even after an element failed, because where
// it leaves the cursor decides the position of a position-less error.
func (r *reader) endSeq() error {
	b, ok := r.skipSpace()
	switch {
	case !ok:
		return r.errPeek(codeEOFList)
	case b == ']':
		r.eat()
		return nil
	case b == ',':
		r.eat()
		if c, ok := r.skipSpace(); ok && c == ']' {
			return r.errPeek(codeTrailingComma)
		}
	}
	return r.errPeek(codeTrailingChars)
}

// endMap closes an object; like endSeq it also runs on the error path.
func (r *reader) endMap() error {
	b, ok := r.skipSpace()
	switch {
	case !ok:
		return r.errPeek(codeEOFObject)
	case b == '}':
		r.eat()
		return nil
	case b == ',':
		return r.errPeek(codeTrailingComma)
	}
	return r.errPeek(codeTrailingChars)
}

// firstErr mirrors serde_json's (visit result, end result) rule: the visitor's
// error wins, otherwise the closing error.
func firstErr(visit, end error) error {
	if visit != nil {
		return visit
	}
	return end
}
