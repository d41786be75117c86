package strictjson

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzUnmarshal feeds arbitrary bytes to several targets. Decoding must never
// panic or hang, every failure must be an *Error with a sane position, and a
// successful decode must survive Marshal and decode again unchanged. Targets
// holding floats only need to decode again: serde_json's default float parser
// is not correctly rounded, so text -> f64 -> text may drift (ember matches it).
func FuzzUnmarshal(f *testing.F) {
	for _, c := range serdeCases {
		f.Add([]byte(c.in))
	}
	for _, seeds := range seedInputs {
		for _, s := range seeds {
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range []string{"mc", "drive", "tb", "mmds", "value", "with_value", "huge", "nest", "vec_level"} {
			floats := typ == "value" || typ == "with_value"
			v := testTypes[typ]()
			err := Unmarshal(data, v)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("%s: non-serde error %v", typ, err)
				}
				if e.Msg == "" || e.Line < 0 || e.Column < 0 || e.Line > bytes.Count(data, []byte{'\n'})+1 || e.Column > len(data) {
					t.Fatalf("%s: bad error %+v", typ, *e)
				}
				continue
			}
			out, err := Marshal(v)
			if err != nil {
				t.Fatalf("%s: Marshal after Unmarshal(%q): %v", typ, data, err)
			}
			w := testTypes[typ]()
			if err := Unmarshal(out, w); err != nil {
				t.Fatalf("%s: re-decoding %s: %v", typ, out, err)
			}
			again, err := Marshal(w)
			if err != nil || (!floats && !bytes.Equal(again, out)) {
				t.Fatalf("%s: round trip %s -> %s (%v)", typ, out, again, err)
			}
		}
	})
}
