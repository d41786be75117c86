package mmds

import (
	"errors"
	"testing"

	"github.com/ember-vmm/ember/internal/strictjson"
)

func val(t *testing.T, s string) strictjson.Value {
	t.Helper()
	v, err := strictjson.ParseValue([]byte(s))
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return v
}

// TestMergePatch uses the examples of RFC 7396's appendix A.
func TestMergePatch(t *testing.T) {
	tests := []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"a":1,"e":null}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	}
	for _, tt := range tests {
		got := MergePatch(val(t, tt.target), val(t, tt.patch)).String()
		if got != tt.want {
			t.Errorf("MergePatch(%s, %s) = %s, want %s", tt.target, tt.patch, got, tt.want)
		}
	}
}

func TestStore(t *testing.T) {
	s := NewStore(20)
	if !s.Value().IsNull() {
		t.Fatal("fresh store not null")
	}
	if err := s.Patch(val(t, `{"a":1}`)); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("patch before put: %v", err)
	}
	if err := s.Put(val(t, `{"a":"0123456789012345"}`)); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("oversized put: %v", err)
	}
	if err := s.Put(val(t, `{"b":1,"a":2}`)); err != nil {
		t.Fatal(err)
	}
	if got := s.Value().String(); got != `{"a":2,"b":1}` {
		t.Errorf("value = %s (keys must be sorted)", got)
	}
	// 20 bytes exactly is allowed; one more is not, and changes nothing.
	if err := s.Patch(val(t, `{"c":12}`)); err != nil {
		t.Fatalf("patch to the limit: %v", err)
	}
	if err := s.Patch(val(t, `{"d":1}`)); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("patch past the limit: %v", err)
	}
	if got := s.Value().String(); got != `{"a":2,"b":1,"c":12}` {
		t.Errorf("value after refused patch = %s", got)
	}
	s.Configure("V2", true, "id")
	if v, c := s.Config(); v != "V2" || !c {
		t.Errorf("config = %s %v", v, c)
	}
}
