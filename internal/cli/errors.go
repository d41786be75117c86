package cli

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// argErrorKind classifies command line errors as Firecracker's parser does,
// plus the value and conflict checks of ember's own flags.
type argErrorKind int

const (
	errForbidden argErrorKind = iota
	errMissingArgument
	errMissingValue
	errUnexpected
	errDuplicate
	errInvalidValue // ember: a value outside a flag's allowed set
	errConflict     // ember: two ember flags that contradict each other
)

// argError is an argument parsing error; every one ends the process with
// ExitArgParsing.
type argError struct {
	kind       argErrorKind
	a, b, c, d string
	allowed    []string
}

// Error returns the message as Firecracker's Display shows it.
func (e *argError) Error() string {
	switch e.kind {
	case errForbidden:
		return "Argument '" + e.b + "' cannot be used together with argument '" + e.a + "'."
	case errMissingArgument:
		return "Argument '" + e.a + "' required, but not found."
	case errMissingValue:
		return "The argument '" + e.a + "' requires a value, but none was supplied."
	case errUnexpected:
		return "Found argument '" + e.a + "' which wasn't expected, or isn't valid in this context."
	case errDuplicate:
		return "The argument '" + e.a + "' was provided more than once."
	case errInvalidValue:
		msg := "Invalid value '" + e.b + "' for argument '" + e.a + "'."
		if len(e.allowed) > 0 {
			msg += " Possible values: [" + strings.Join(e.allowed, ", ") + "]."
		}
		return msg
	case errConflict:
		return "Argument '" + e.c + "' with value '" + e.d + "' cannot be used together with argument '" +
			e.a + "' with value '" + e.b + "'."
	}
	return "unknown argument error"
}

// debug returns the error as Rust's derived Debug shows it.
func (e *argError) debug() string {
	q := rustDebugStr
	switch e.kind {
	case errForbidden:
		return "ForbiddenArgument(" + q(e.a) + ", " + q(e.b) + ")"
	case errMissingArgument:
		return "MissingArgument(" + q(e.a) + ")"
	case errMissingValue:
		return "MissingValue(" + q(e.a) + ")"
	case errUnexpected:
		return "UnexpectedArgument(" + q(e.a) + ")"
	case errDuplicate:
		return "DuplicateArgument(" + q(e.a) + ")"
	case errInvalidValue:
		return "InvalidValue(" + q(e.a) + ", " + q(e.b) + ")"
	case errConflict:
		return "ConflictingValues(" + q(e.a) + ", " + q(e.b) + ", " + q(e.c) + ", " + q(e.d) + ")"
	}
	return "Unknown"
}

// exit is what Firecracker does with a parse error: log its message, print
// its Debug form on stderr, exit 153.
func (e *argError) exit() *Exit {
	return &Exit{
		Code:   ExitArgParsing,
		Log:    "Arguments parsing error: " + e.Error() + " \n\nFor more information try --help.",
		Stderr: "Error: ParseArguments(" + e.debug() + ")\n",
		logID:  defaultLogID,
	}
}

// idError is an invalid --id.
type idError struct {
	char    rune // InvalidChar: the offending character
	pos     int  // InvalidChar: its index in characters
	badLen  bool // InvalidLen
	length  int  // InvalidLen: length in bytes
	min, mx int
}

const (
	minIDLen = 1
	maxIDLen = 64
)

// validateInstanceID accepts 1 to 64 bytes of Unicode letters, digits and
// hyphens, as Firecracker does.
func validateInstanceID(id string) *idError {
	if len(id) < minIDLen || len(id) > maxIDLen {
		return &idError{badLen: true, length: len(id), min: minIDLen, mx: maxIDLen}
	}
	i := 0
	for _, r := range id {
		if r != '-' && !isAlphanumeric(r) {
			return &idError{char: r, pos: i}
		}
		i++
	}
	return nil
}

// isAlphanumeric is Unicode's Alphabetic or Numeric property, which is what
// Rust's char::is_alphanumeric tests.
func isAlphanumeric(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Other_Alphabetic, r)
}

func (e *idError) Error() string {
	if e.badLen {
		return "Invalid len (" + strconv.Itoa(e.length) + ");  the length must be between " +
			strconv.Itoa(e.min) + " and " + strconv.Itoa(e.mx)
	}
	return "Invalid char (" + string(e.char) + ") at position " + strconv.Itoa(e.pos)
}

func (e *idError) debug() string {
	if e.badLen {
		return "InvalidLen(" + strconv.Itoa(e.length) + ", " + strconv.Itoa(e.min) + ", " + strconv.Itoa(e.mx) + ")"
	}
	return "InvalidChar(" + rustDebugChar(e.char) + ", " + strconv.Itoa(e.pos) + ")"
}

// intError is why a string is not an unsigned integer, in Rust's terms.
type intError int

const (
	intEmpty intError = iota
	intInvalidDigit
	intPosOverflow
)

func (e intError) Error() string {
	switch e {
	case intEmpty:
		return "cannot parse integer from empty string"
	case intInvalidDigit:
		return "invalid digit found in string"
	}
	return "number too large to fit in target type"
}

func (e intError) debug() string {
	kind := [...]string{"Empty", "InvalidDigit", "PosOverflow"}[e]
	return "ParseIntError { kind: " + kind + " }"
}

// parseRustUint parses a 64-bit unsigned decimal as Rust's str::parse does:
// an optional leading "+", then digits only, checked left to right, so an
// overflow is reported even if a bad character follows it.
func parseRustUint(s string) (uint64, *intError) {
	fail := func(e intError) (uint64, *intError) { return 0, &e }
	if s == "" {
		return fail(intEmpty)
	}
	digits := strings.TrimPrefix(s, "+")
	if digits == "" {
		return fail(intInvalidDigit)
	}
	var n uint64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return fail(intInvalidDigit)
		}
		d := uint64(c - '0')
		if n > (^uint64(0)-d)/10 {
			return fail(intPosOverflow)
		}
		n = n*10 + d
	}
	return n, nil
}

// rustDebugStr quotes s as Rust's Debug for str does.
func rustDebugStr(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && size == 1 {
			// Not UTF-8: Rust's OsStr Debug shows the raw byte.
			fmt.Fprintf(&b, `\x%02X`, s[0])
		} else {
			b.WriteString(rustEscape(r, '"'))
		}
		s = s[size:]
	}
	b.WriteByte('"')
	return b.String()
}

// rustDebugChar quotes r as Rust's Debug for char does.
func rustDebugChar(r rune) string { return "'" + rustEscape(r, '\'') + "'" }

// rustEscape escapes one character as Rust's escape_debug does inside a
// literal delimited by quote.
func rustEscape(r rune, quote rune) string {
	switch r {
	case 0:
		return `\0`
	case '\t':
		return `\t`
	case '\r':
		return `\r`
	case '\n':
		return `\n`
	case '\\':
		return `\\`
	case quote:
		return `\` + string(r)
	}
	if unicode.In(r, unicode.Mn, unicode.Me, unicode.Other_Grapheme_Extend) || !unicode.IsPrint(r) {
		return `\u{` + strconv.FormatUint(uint64(r), 16) + `}`
	}
	return string(r)
}
