package microhttp

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// Kinds of request parse error. Every *ParseError wraps exactly one of them,
// so callers classify with errors.Is.
var (
	ErrInvalidRequest  = errors.New("invalid request")
	ErrInvalidMethod   = errors.New("invalid HTTP method")
	ErrInvalidVersion  = errors.New("invalid HTTP version")
	ErrInvalidURI      = errors.New("invalid URI")
	ErrInvalidHeader   = errors.New("invalid header")
	ErrPayloadTooLarge = errors.New("request payload too large")
	ErrOverflow        = errors.New("parser overflow")
)

// ParseError is a request the parser refused. Its Error text is byte for
// byte the one Firecracker puts into its 400 answer.
type ParseError struct {
	Kind error
	// Reason is the detail Firecracker's MMDS shows on its own: the text
	// after "Invalid HTTP Method: " (and Version, URI), or after
	// "Invalid header. Reason: ". Empty for the other kinds.
	Reason string
	// Size and Limit describe an ErrPayloadTooLarge refusal.
	Size, Limit uint64
}

func (e *ParseError) Error() string {
	switch e.Kind {
	case ErrInvalidMethod:
		return "Invalid HTTP Method: " + e.Reason
	case ErrInvalidVersion:
		return "Invalid HTTP Version: " + e.Reason
	case ErrInvalidURI:
		return "Invalid URI: " + e.Reason
	case ErrInvalidHeader:
		return "Invalid header. Reason: " + e.Reason
	case ErrPayloadTooLarge:
		return "Request payload with size " + strconv.FormatUint(e.Size, 10) +
			" is larger than the limit of " + strconv.FormatUint(e.Limit, 10) +
			" allowed by server."
	case ErrOverflow:
		return "Overflow occurred when parsing a request."
	default:
		return "Invalid request."
	}
}

func (e *ParseError) Unwrap() error { return e.Kind }

// The errors a client can trigger, with Firecracker's reason texts.
var (
	errInvalidRequest = &ParseError{Kind: ErrInvalidRequest}
	errMethod         = &ParseError{Kind: ErrInvalidMethod, Reason: "Unsupported HTTP method."}
	errVersion        = &ParseError{Kind: ErrInvalidVersion, Reason: "Unsupported HTTP version."}
	errEmptyURI       = &ParseError{Kind: ErrInvalidURI, Reason: "Empty URI not allowed."}
	errURIUTF8        = &ParseError{Kind: ErrInvalidURI, Reason: "Cannot parse URI as UTF-8."}
	errOverflow       = &ParseError{Kind: ErrOverflow}
)

func headerError(reason string) *ParseError {
	return &ParseError{Kind: ErrInvalidHeader, Reason: reason}
}

// utf8Error reports where b stops being UTF-8 the way Rust's
// std::str::from_utf8 does: valid is the length of the valid prefix, bad
// the length of the invalid sequence that follows it, or 0 when b ends in
// the middle of a sequence. ok is true when all of b is valid.
func utf8Error(b []byte) (valid, bad int, ok bool) {
	if utf8.Valid(b) {
		return len(b), 0, true
	}
	i := 0
	for i < len(b) {
		c := b[i]
		if c < 0x80 {
			i++
			continue
		}
		var width int
		switch {
		case c >= 0xC2 && c <= 0xDF:
			width = 2
		case c >= 0xE0 && c <= 0xEF:
			width = 3
		case c >= 0xF0 && c <= 0xF4:
			width = 4
		default:
			return i, 1, false
		}
		// The second byte's range depends on the lead byte, which rules
		// out overlong forms, surrogates and code points past U+10FFFF.
		lo, hi := byte(0x80), byte(0xBF)
		switch c {
		case 0xE0:
			lo = 0xA0
		case 0xED:
			hi = 0x9F
		case 0xF0:
			lo = 0x90
		case 0xF4:
			hi = 0x8F
		}
		for k := 1; k < width; k++ {
			if i+k >= len(b) {
				return i, 0, false
			}
			n := b[i+k]
			if k == 1 && (n < lo || n > hi) || k > 1 && (n < 0x80 || n > 0xBF) {
				return i, k, false
			}
		}
		i += width
	}
	return len(b), 0, true
}

// utf8ErrorText is the Display of Rust's Utf8Error for b, which is not
// valid UTF-8.
func utf8ErrorText(b []byte) string {
	valid, bad, _ := utf8Error(b)
	if bad == 0 {
		return "incomplete utf-8 byte sequence from index " + strconv.Itoa(valid)
	}
	return "invalid utf-8 sequence of " + strconv.Itoa(bad) + " bytes from index " + strconv.Itoa(valid)
}

// lossyString converts b as Rust's String::from_utf8_lossy does: each
// invalid sequence (and an unfinished one at the end) becomes one U+FFFD.
func lossyString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	out := make([]byte, 0, len(b)+8)
	for len(b) > 0 {
		valid, bad, ok := utf8Error(b)
		out = append(out, b[:valid]...)
		if ok {
			break
		}
		out = append(out, "\uFFFD"...)
		if bad == 0 {
			break
		}
		b = b[valid+bad:]
	}
	return string(out)
}
