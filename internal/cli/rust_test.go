package cli

import "testing"

func TestParseRustUint(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		err  string // "" for success, else the Debug kind
	}{
		{"0", 0, ""},
		{"007", 7, ""},
		{"+51200", 51200, ""},
		{"18446744073709551615", 1<<64 - 1, ""},
		{"", 0, "ParseIntError { kind: Empty }"},
		{"+", 0, "ParseIntError { kind: InvalidDigit }"},
		{"-0", 0, "ParseIntError { kind: InvalidDigit }"},
		{"++1", 0, "ParseIntError { kind: InvalidDigit }"},
		{" 1", 0, "ParseIntError { kind: InvalidDigit }"},
		{"1 ", 0, "ParseIntError { kind: InvalidDigit }"},
		{"1_000", 0, "ParseIntError { kind: InvalidDigit }"},
		{"0x10", 0, "ParseIntError { kind: InvalidDigit }"},
		{"１", 0, "ParseIntError { kind: InvalidDigit }"}, // fullwidth digit
		{"18446744073709551616", 0, "ParseIntError { kind: PosOverflow }"},
		{"99999999999999999999x", 0, "ParseIntError { kind: PosOverflow }"}, // overflow seen before the x
		{"9x999999999999999999999", 0, "ParseIntError { kind: InvalidDigit }"},
	}
	for _, tt := range tests {
		got, err := parseRustUint(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("parseRustUint(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || err.debug() != tt.err):
			t.Errorf("parseRustUint(%q) = %d, %v; want error %s", tt.in, got, err, tt.err)
		}
	}
}

func TestValidateInstanceID(t *testing.T) {
	tests := []struct {
		in   string
		want string // Debug form of the error, "" if valid
	}{
		{"anonymous-instance", ""},
		{"12-3aa", ""},
		{"-", ""},
		{"ÄÖü", ""},
		{"٣४", ""},                          // Arabic-Indic and Devanagari digits are numeric
		{"ⅫⅩ", ""},                          // letter numbers (Nl)
		{"ने", ""},                          // a combining vowel sign is Other_Alphabetic
		{"स्", `InvalidChar('\u{94d}', 1)`}, // a virama is not, and Debug escapes it
		{"12_3aa", "InvalidChar('_', 2)"},
		{"12:3aa", "InvalidChar(':', 2)"},
		{"a b", "InvalidChar(' ', 1)"},
		{"a\nb", `InvalidChar('\n', 1)`},
		{"ab\x7f", `InvalidChar('\u{7f}', 2)`},
		{"x\u00a0", `InvalidChar('\u{a0}', 1)`},
		{"é\"", `InvalidChar('"', 1)`},
		{"", "InvalidLen(0, 1, 64)"},
		{string(make([]byte, 65)), "InvalidLen(65, 1, 64)"},
	}
	for _, tt := range tests {
		err := validateInstanceID(tt.in)
		got := ""
		if err != nil {
			got = err.debug()
		}
		if got != tt.want {
			t.Errorf("validateInstanceID(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRustDebugStr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{`a"b`, `"a\"b"`},
		{`it's`, `"it's"`},
		{`c:\x`, `"c:\\x"`},
		{"\x00\t\r\n", `"\0\t\r\n"`},
		{"\x1b[0m", `"\u{1b}[0m"`},
		{"héllo wörld", `"héllo wörld"`},
		{"e\u0301", `"e\u{301}"`}, // combining mark
		{"\u200b", `"\u{200b}"`},  // format character
		{"\xff\x01", `"\xFF\u{1}"`},
		{"a\x80b", `"a\x80b"`},
	}
	for _, tt := range tests {
		if got := rustDebugStr(tt.in); got != tt.want {
			t.Errorf("rustDebugStr(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
