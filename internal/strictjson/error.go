package strictjson

import (
	"errors"
	"strconv"
	"strings"
)

// Category classifies an *Error the way serde_json's Error::classify does.
type Category uint8

const (
	// CategorySyntax: the input is not syntactically valid JSON.
	CategorySyntax Category = iota + 1
	// CategoryData: valid JSON whose shape or values do not fit the target type.
	CategoryData
	// CategoryEOF: the input ended before a complete JSON value was read.
	CategoryEOF
)

func (c Category) String() string {
	switch c {
	case CategorySyntax:
		return "syntax"
	case CategoryData:
		return "data"
	case CategoryEOF:
		return "eof"
	}
	return "unknown"
}

// Sentinels matched by errors.Is on an *Error of the same category.
var (
	ErrSyntax = errors.New("strictjson: syntax error")
	ErrData   = errors.New("strictjson: data error")
	ErrEOF    = errors.New("strictjson: unexpected end of input")
)

// ErrUnsupportedType reports a Go type that has no serde equivalent here. It is a
// programming error, never caused by input, so it is not an *Error.
var ErrUnsupportedType = errors.New("strictjson: unsupported type")

// Error is a decoding failure whose Error() text is exactly serde_json's Display:
// "<Msg> at line <Line> column <Column>", or just Msg when Line is 0 (serde reports
// some data errors without a position). Column counts bytes, as serde_json does.
type Error struct {
	Msg      string
	Line     int
	Column   int
	Category Category
	cause    error
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return e.Msg + " at line " + strconv.Itoa(e.Line) + " column " + strconv.Itoa(e.Column)
}

// Debug renders the error as Rust's `{:?}` of serde_json::Error does, e.g.
// Error("missing field `x`", line: 1, column: 9) (line 0 when unpositioned).
func (e *Error) Debug() string {
	return "Error(" + RustDebugString(e.Msg) + ", line: " + strconv.Itoa(e.Line) +
		", column: " + strconv.Itoa(e.Column) + ")"
}

// Custom is serde_json::Error::custom(msg) built outside a deserializer, as
// Firecracker does for its own checks: a data error with no position (unless
// msg ends in " at line L column C", which serde_json parses back out).
func Custom(msg string) *Error { return dataError(msg, nil) }

// Is makes errors.Is(err, ErrSyntax|ErrData|ErrEOF) test the category.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrSyntax:
		return e.Category == CategorySyntax
	case ErrData:
		return e.Category == CategoryData
	case ErrEOF:
		return e.Category == CategoryEOF
	}
	return false
}

// Unwrap returns the error a custom hook (UnmarshalSerdeString and friends) returned.
func (e *Error) Unwrap() error { return e.cause }

// code is one of serde_json's fixed syntax/EOF error texts.
type code uint8

const (
	codeEOFList code = iota
	codeEOFObject
	codeEOFString
	codeEOFValue
	codeExpectedColon
	codeExpectedListCommaOrEnd
	codeExpectedObjectCommaOrEnd
	codeExpectedIdent
	codeExpectedValue
	codeInvalidEscape
	codeInvalidNumber
	codeNumberOutOfRange
	codeInvalidUnicode
	codeControlChar
	codeKeyMustBeString
	codeLoneSurrogate
	codeTrailingComma
	codeTrailingChars
	codeUnexpectedEndOfHexEscape
	codeRecursionLimit
)

var codeText = [...]string{
	codeEOFList:                  "EOF while parsing a list",
	codeEOFObject:                "EOF while parsing an object",
	codeEOFString:                "EOF while parsing a string",
	codeEOFValue:                 "EOF while parsing a value",
	codeExpectedColon:            "expected `:`",
	codeExpectedListCommaOrEnd:   "expected `,` or `]`",
	codeExpectedObjectCommaOrEnd: "expected `,` or `}`",
	codeExpectedIdent:            "expected ident",
	codeExpectedValue:            "expected value",
	codeInvalidEscape:            "invalid escape",
	codeInvalidNumber:            "invalid number",
	codeNumberOutOfRange:         "number out of range",
	codeInvalidUnicode:           "invalid unicode code point",
	codeControlChar:              "control character (\\u0000-\\u001F) found while parsing a string",
	codeKeyMustBeString:          "key must be a string",
	codeLoneSurrogate:            "lone leading surrogate in hex escape",
	codeTrailingComma:            "trailing comma",
	codeTrailingChars:            "trailing characters",
	codeUnexpectedEndOfHexEscape: "unexpected end of hex escape",
	codeRecursionLimit:           "recursion limit exceeded",
}

func (c code) category() Category {
	switch c {
	case codeEOFList, codeEOFObject, codeEOFString, codeEOFValue:
		return CategoryEOF
	}
	return CategorySyntax
}

// dataError builds an error through serde's Error::custom: if the text ends in
// " at line L column C" (e.g. a nested error's Display), serde_json takes the
// position from it, so a hook's error keeps the place it names.
func dataError(msg string, cause error) *Error {
	e := &Error{Msg: msg, Category: CategoryData, cause: cause}
	i := strings.LastIndex(msg, " at line ")
	if i < 0 {
		return e
	}
	rest := msg[i+len(" at line "):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	if !strings.HasPrefix(rest[j:], " column ") {
		return e
	}
	colText := rest[j+len(" column "):]
	k := 0
	for k < len(colText) && colText[k] >= '0' && colText[k] <= '9' {
		k++
	}
	if k < len(colText) {
		return e
	}
	line, err1 := strconv.ParseUint(rest[:j], 10, 64)
	col, err2 := strconv.ParseUint(colText, 10, 64)
	if err1 != nil || err2 != nil || line > 1<<40 || col > 1<<40 {
		return e
	}
	e.Msg = msg[:i]
	e.Line, e.Column = int(line), int(col)
	return e
}

// Unexpected describes an input value in serde's "invalid type"/"invalid value"
// messages (serde::de::Unexpected as serde_json displays it).
type Unexpected struct{ text string }

func (u Unexpected) String() string { return u.text }

// UnexpectedBool, UnexpectedUnsigned, ... build the serde_json renderings.
func UnexpectedBool(b bool) Unexpected {
	if b {
		return Unexpected{"boolean `true`"}
	}
	return Unexpected{"boolean `false`"}
}
func UnexpectedUnsigned(u uint64) Unexpected {
	return Unexpected{"integer `" + strconv.FormatUint(u, 10) + "`"}
}
func UnexpectedSigned(i int64) Unexpected {
	return Unexpected{"integer `" + strconv.FormatInt(i, 10) + "`"}
}
func UnexpectedFloat(f float64) Unexpected {
	return Unexpected{"floating point `" + string(appendFloat64(nil, f)) + "`"}
}
func UnexpectedString(s string) Unexpected {
	return Unexpected{"string " + RustDebugString(s)}
}
func UnexpectedNull() Unexpected { return Unexpected{"null"} }
func UnexpectedSeq() Unexpected  { return Unexpected{"sequence"} }
func UnexpectedMap() Unexpected  { return Unexpected{"map"} }

// UnexpectedOther renders verbatim (serde's Unexpected::Other).
func UnexpectedOther(s string) Unexpected { return Unexpected{s} }

// InvalidType returns serde's "invalid type: <unexp>, expected <exp>" data error,
// for hooks that want serde's wording.
func InvalidType(unexp Unexpected, expected string) error {
	return dataError("invalid type: "+unexp.text+", expected "+expected, nil)
}

// InvalidValue returns serde's "invalid value: <unexp>, expected <exp>" data error.
func InvalidValue(unexp Unexpected, expected string) error {
	return dataError("invalid value: "+unexp.text+", expected "+expected, nil)
}

func invalidLength(n int, expected string) *Error {
	return dataError("invalid length "+strconv.Itoa(n)+", expected "+expected, nil)
}

func missingField(name string) *Error {
	return dataError("missing field `"+name+"`", nil)
}

func duplicateField(name string) *Error {
	return dataError("duplicate field `"+name+"`", nil)
}

func unknownField(name string, expected []string) *Error {
	if len(expected) == 0 {
		return dataError("unknown field `"+name+"`, there are no fields", nil)
	}
	return dataError("unknown field `"+name+"`, expected "+oneOf(expected), nil)
}

func unknownVariant(name string, expected []string) *Error {
	if len(expected) == 0 {
		return dataError("unknown variant `"+name+"`, there are no variants", nil)
	}
	return dataError("unknown variant `"+name+"`, expected "+oneOf(expected), nil)
}

// oneOf lists names as serde does: `a` / `a` or `b` / one of `a`, `b`, `c`.
func oneOf(names []string) string {
	switch len(names) {
	case 1:
		return "`" + names[0] + "`"
	case 2:
		return "`" + names[0] + "` or `" + names[1] + "`"
	}
	var b strings.Builder
	b.WriteString("one of ")
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("`" + n + "`")
	}
	return b.String()
}
