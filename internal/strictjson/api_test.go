package strictjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
)

func TestErrorCategories(t *testing.T) {
	tests := []struct {
		typ, in string
		want    error
	}{
		{"mc", `{"vcpu_count": 2,}`, ErrSyntax},
		{"mc", `{"vcpu_count": 2`, ErrEOF},
		{"mc", `{"vcpu_count": "2", "mem_size_mib": 1}`, ErrData},
		{"mc", `{"mem_size_mib": 1}`, ErrData},
		{"value", `[1e999]`, ErrSyntax},
		{"value", `"abc`, ErrEOF},
		{"level", `"nope"`, ErrData},
	}
	for _, tc := range tests {
		err := Unmarshal([]byte(tc.in), testTypes[tc.typ]())
		if !errors.Is(err, tc.want) {
			t.Errorf("%s %q: %v is not %v", tc.typ, tc.in, err, tc.want)
		}
		for _, other := range []error{ErrSyntax, ErrData, ErrEOF} {
			if other != tc.want && errors.Is(err, other) {
				t.Errorf("%s %q: %v also matches %v", tc.typ, tc.in, err, other)
			}
		}
	}
}

func TestErrorFields(t *testing.T) {
	var mc MachineConfig
	err := Unmarshal([]byte("{\n  \"vcpu_count\": 300}"), &mc)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("not an *Error: %v", err)
	}
	if e.Msg != "invalid value: integer `300`, expected u8" || e.Line != 2 || e.Column != 19 || e.Category != CategoryData {
		t.Errorf("got %+v", *e)
	}
	var lvl LevelFilter
	err = Unmarshal([]byte(`"loud"`), &lvl)
	if !errors.As(err, &e) || e.Line != 0 || err.Error() != "Invalid LevelFilter" {
		t.Errorf("top-level custom error: %v (%+v)", err, e)
	}
	if errors.Unwrap(err) == nil || errors.Unwrap(err).Error() != "Invalid LevelFilter" {
		t.Errorf("hook error not wrapped: %v", errors.Unwrap(err))
	}
}

// A hook error that already names a place keeps it, as serde_json's
// Error::custom parses a trailing " at line L column C".
type placed string

func (p *placed) UnmarshalSerdeString(s string) error {
	if s == "bad" {
		return fmt.Errorf("inner failure at line 7 column 3")
	}
	if s == "zero" {
		return fmt.Errorf("inner failure at line 0 column 3")
	}
	*p = placed(s)
	return nil
}

func TestCustomErrorKeepsNamedPosition(t *testing.T) {
	var v struct {
		P placed `json:"p"`
	}
	err := Unmarshal([]byte(`{"p": "bad"}`), &v)
	if err == nil || err.Error() != "inner failure at line 7 column 3" {
		t.Errorf("got %v", err)
	}
	// Line 0 means "no position": the enclosing object supplies one.
	err = Unmarshal([]byte(`{"p": "zero"}`), &v)
	if err == nil || err.Error() != "inner failure at line 1 column 13" {
		t.Errorf("got %v", err)
	}
}

type upper string

func (u *upper) UnmarshalSerde(v Value) error {
	s, ok := v.Str()
	if !ok {
		return InvalidType(UnexpectedOther("JSON "+v.Kind().String()), "an upper-case string")
	}
	if strings.ToUpper(s) != s {
		return InvalidValue(UnexpectedString(s), "an upper-case string")
	}
	*u = upper(s)
	return nil
}

func (u upper) MarshalSerde() (any, error) { return strings.ToLower(string(u)), nil }

func TestValueHookAndMarshaler(t *testing.T) {
	var v struct {
		U []upper `json:"u"`
	}
	if err := Unmarshal([]byte(`{"u": ["AB", "CD"]}`), &v); err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(v)
	if err != nil || string(out) != `{"u":["ab","cd"]}` {
		t.Errorf("Marshal = %s, %v", out, err)
	}
	err = Unmarshal([]byte(`{"u": ["AB", "cd"] }`), &v)
	if err == nil || err.Error() != `invalid value: string "cd", expected an upper-case string at line 1 column 18` {
		t.Errorf("got %v", err)
	}
	err = Unmarshal([]byte(`{"u": [1]}`), &v)
	if err == nil || err.Error() != `invalid type: JSON number, expected an upper-case string at line 1 column 9` {
		t.Errorf("got %v", err)
	}
}

func TestMarshal(t *testing.T) {
	tmpl := StaticCpuTemplate("T2")
	one := uint64(5)
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"skip_if_none omitted", MachineConfig{VcpuCount: 2, MemSizeMib: 128, HugePages: "None"},
			`{"vcpu_count":2,"mem_size_mib":128,"smt":false,"track_dirty_pages":false,"huge_pages":"None"}`},
		{"skip_if_none present", MachineConfig{VcpuCount: 2, MemSizeMib: 128, CPUTemplate: &tmpl, HugePages: "2M"},
			`{"vcpu_count":2,"mem_size_mib":128,"smt":false,"cpu_template":"T2","track_dirty_pages":false,"huge_pages":"2M"}`},
		{"nil pointer is null", TokenBucket{Size: 1}, `{"size":1,"one_time_burst":null,"refill_time":0}`},
		{"pointer", TokenBucket{OneTimeBurst: &one}, `{"size":0,"one_time_burst":5,"refill_time":0}`},
		{"nil slice", Mmds{Version: "V1"}, `{"version":"V1","network_interfaces":[],"ipv4_address":null,"imds_compat":false}`},
		{"map sorted", map[string]int32{"b": 1, "a": -2, "": 0}, `{"":0,"a":-2,"b":1}`},
		{"nil map", map[string]string(nil), `{}`},
		{"escapes", "q\"\\/\b\f\n\r\t\x00\x1f\x7f é\u2028", `"q\"\\/\b\f\n\r\t\u0000\u001f` + "\x7f é\u2028\""},
		{"floats", []float64{0, math.Copysign(0, -1), 1, 0.1, 1e15, 1e16, 1e-5, 1e-6, 123456.789, math.NaN(), math.Inf(1)},
			`[0.0,-0.0,1.0,0.1,1000000000000000.0,1e+16,0.00001,1e-6,123456.789,null,null]`},
		{"float32", []float32{0.1, 1e12, 1e13, 1e-6, 1e-7}, `[0.1,1000000000000.0,1e+13,0.000001,1e-7]`},
		{"raw message", struct {
			R json.RawMessage `json:"r"`
			E json.RawMessage `json:"e"`
		}{json.RawMessage(` {"b": 1, "a": [1.50, 2]} `), nil}, `{"r":{"a":[1.5,2],"b":1},"e":null}`},
		{"any", []any{nil, "s", uint8(3), Null(), map[string]any{"k": true}}, `[null,"s",3,null,{"k":true}]`},
		{"nil", nil, `null`},
	}
	for _, tc := range tests {
		got, err := Marshal(tc.in)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: got %s, %v; want %s", tc.name, got, err, tc.want)
		}
	}
}

func TestMarshalErrors(t *testing.T) {
	for name, v := range map[string]any{
		"bad variant": HugePageConfig("1G"),
		"chan":        make(chan int),
		"int key":     map[int]string{1: "a"},
		"bad raw":     json.RawMessage(`{`),
		"flatten": struct {
			TokenBucket
		}{},
	} {
		if out, err := Marshal(v); err == nil {
			t.Errorf("%s: Marshal = %s, want an error", name, out)
		}
	}
}

func TestUnmarshalRejectsBadTargets(t *testing.T) {
	var ch chan int
	var pp **int
	for name, v := range map[string]any{
		"nil":      nil,
		"non-ptr":  MachineConfig{},
		"nil ptr":  (*MachineConfig)(nil),
		"chan":     &ch,
		"ptr ptr":  &pp,
		"func map": &map[string]func(){},
	} {
		err := Unmarshal([]byte(`{}`), v)
		var e *Error
		if err == nil || errors.As(err, &e) {
			t.Errorf("%s: got %v, want a non-serde error", name, err)
		}
	}
	err := Unmarshal([]byte(`1`), &ch)
	if !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("chan: %v is not ErrUnsupportedType", err)
	}
}

func TestValue(t *testing.T) {
	v, err := ParseValue([]byte(` {"b": [1, -2, 3.0, "x"], "a": {"z": null, "y": false}, "b": true} `))
	if err != nil {
		t.Fatal(err)
	}
	if got := v.String(); got != `{"a":{"y":false,"z":null},"b":true}` {
		t.Errorf("Compact = %s", got)
	}
	if string(v.Raw()) != `{"b": [1, -2, 3.0, "x"], "a": {"z": null, "y": false}, "b": true}` {
		t.Errorf("Raw = %q", v.Raw())
	}
	if b, ok := v.Get("b"); !ok || b.Kind() != KindBool {
		t.Errorf("Get(b) = %v %v", b, ok)
	}
	if _, ok := v.Get("c"); ok {
		t.Error("Get(c) found something")
	}
	a, _ := v.Get("a")
	members, ok := a.Object()
	if !ok || len(members) != 2 || members[0].Key != "y" || a.Raw() != nil {
		t.Errorf("a = %v %v raw=%q", members, ok, a.Raw())
	}

	built := ObjectValue([]Member{
		{"k", NumberValue(NumberFromI64(-3))},
		{"a", ArrayValue(nil)},
		{"k", StringValue("last")},
		{"f", NumberValue(NumberFromU64(math.MaxUint64))},
	})
	if got := built.String(); got != `{"a":[],"f":18446744073709551615,"k":"last"}` {
		t.Errorf("built = %s", got)
	}
	back, err := ParseValue(built.Compact())
	if err != nil || !back.Equal(built) {
		t.Errorf("round trip: %v %v", back, err)
	}
	if _, ok := NumberFromF64(math.NaN()); ok {
		t.Error("NaN accepted")
	}
	n, _ := NumberFromF64(2.5)
	if n.String() != "2.5" || !n.IsF64() || n.IsI64() {
		t.Errorf("float number %v", n)
	}
	if i, ok := NumberFromI64(7).I64(); !ok || i != 7 {
		t.Error("I64")
	}
	if u, ok := NumberFromI64(-7).U64(); ok {
		t.Errorf("U64 of -7 = %d", u)
	}
	enc, err := json.Marshal(map[string]Value{"v": built})
	if err != nil || string(enc) != `{"v":{"a":[],"f":18446744073709551615,"k":"last"}}` {
		t.Errorf("encoding/json: %s %v", enc, err)
	}
}

func TestValueFields(t *testing.T) {
	var v struct {
		A any             `json:"a"`
		R json.RawMessage `json:"r"`
		V Value           `json:"v"`
		P *Value          `json:"p"`
	}
	in := `{"a": {"x": 1}, "r": [ 1,2 ], "v": null, "p": null}`
	if err := Unmarshal([]byte(in), &v); err != nil {
		t.Fatal(err)
	}
	av, ok := v.A.(Value)
	if !ok || av.String() != `{"x":1}` || string(av.Raw()) != `{"x": 1}` {
		t.Errorf("any = %#v", v.A)
	}
	if string(v.R) != `[ 1,2 ]` || !v.V.IsNull() || v.P != nil {
		t.Errorf("r=%q v=%v p=%v", v.R, v.V, v.P)
	}
}

// Structs the decoder allocates get their defaults from SetSerdeDefaults.
func TestDefaulterOnAllocatedStructs(t *testing.T) {
	var drives []Drive
	if err := Unmarshal([]byte(`[{"drive_id": "a", "is_root_device": true}]`), &drives); err != nil {
		t.Fatal(err)
	}
	if drives[0].CacheType != "Unsafe" {
		t.Errorf("cache_type = %q", drives[0].CacheType)
	}
	// A preset top-level value keeps absent default fields.
	mc := MachineConfig{Smt: true, HugePages: "2M"}
	if err := Unmarshal([]byte(`{"vcpu_count": 1, "mem_size_mib": 2}`), &mc); err != nil {
		t.Fatal(err)
	}
	if !mc.Smt || mc.HugePages != "2M" {
		t.Errorf("defaults lost: %+v", mc)
	}
	// An absent Option field is reset to None even if preset.
	burst := uint64(9)
	tb := TokenBucket{OneTimeBurst: &burst}
	if err := Unmarshal([]byte(`{"size": 1, "refill_time": 1}`), &tb); err != nil || tb.OneTimeBurst != nil {
		t.Errorf("one_time_burst = %v, %v", tb.OneTimeBurst, err)
	}
}

func TestConcurrentUse(t *testing.T) {
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 200; k++ {
				c := serdeCases[(g*31+k)%len(serdeCases)]
				if status, got := run(c.typ, []byte(c.in)); status != c.status || got != c.want {
					t.Errorf("%s %q: got %s %q", c.typ, c.in, status, got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestRustDebugString(t *testing.T) {
	tests := map[string]string{
		"plain":            `"plain"`,
		"it's":             `"it's"`,
		"\x00\x01\t\r\n":   `"\0\u{1}\t\r\n"`,
		"\u00a0\u00a1":     `"\u{a0}¡"`,
		"e\u0301":          `"e\u{301}"`,
		"\U0001F600\uFEFF": "\"\U0001F600\\u{feff}\"",
		"\U000E0001":       `"\u{e0001}"`,
	}
	for in, want := range tests {
		if got := RustDebugString(in); got != want {
			t.Errorf("RustDebugString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestCustomAndDebug(t *testing.T) {
	e := Custom("too many fields: either `mem_backend` or `mem_file_path` exclusively is required")
	if e.Error() != "too many fields: either `mem_backend` or `mem_file_path` exclusively is required" || e.Line != 0 || !errors.Is(e, ErrData) {
		t.Errorf("Custom = %+v", *e)
	}
	if got := Custom("x at line 2 column 5"); got.Msg != "x" || got.Line != 2 || got.Column != 5 {
		t.Errorf("Custom with position = %+v", *got)
	}
	var mc MachineConfig
	err := Unmarshal([]byte(`{"mem_size_mib": 128}`), &mc)
	var se *Error
	if !errors.As(err, &se) || se.Debug() != "Error(\"missing field `vcpu_count`\", line: 1, column: 21)" {
		t.Errorf("Debug = %v", se)
	}
	if got := Custom("a\"b\n").Debug(); got != `Error("a\"b\n", line: 0, column: 0)` {
		t.Errorf("Debug = %s", got)
	}
}
