package kvmstate

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ember-vmm/ember/internal/kvm"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// fill sets every settable field under v to pseudo-random values, giving
// slices n elements, so a round trip that drops any field fails.
func fill(v reflect.Value, r *rand.Rand, n int) {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if f := v.Field(i); f.CanSet() {
				fill(f, r, n)
			}
		}
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			fill(v.Index(i), r, n)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := 0; i < n; i++ {
			fill(v.Index(i), r, n)
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), r, n)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(r.Uint64())
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		v.SetInt(int64(r.Uint64()))
	}
}

// randomState is a State with every field set, sized like a real one.
func randomState(seed int64, vcpus int) *State {
	r := rand.New(rand.NewSource(seed))
	s := &State{VM: &VMState{}}
	fill(reflect.ValueOf(s.VM).Elem(), r, 0)
	for i := 0; i < vcpus; i++ {
		c := &VCPUState{}
		fill(reflect.ValueOf(c).Elem(), r, 3)
		c.XSAVE = make([]byte, minXSAVEBytes)
		r.Read(c.XSAVE)
		// Only the first NrXCRS entries are state.
		c.XCRS.NrXCRS = 2
		for j := 2; j < len(c.XCRS.XCRS); j++ {
			c.XCRS.XCRS[j] = kvm.XCR{}
		}
		s.VCPUs = append(s.VCPUs, c)
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		seed  int64
		vcpus int
	}{{"one vCPU", 1, 1}, {"two vCPUs", 2, 2}, {"many vCPUs", 3, 32}} {
		t.Run(tc.name, func(t *testing.T) {
			want := randomState(tc.seed, tc.vcpus)
			b, err := Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Unmarshal(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip differs:\n got %+v\nwant %+v", got.VCPUs[0], want.VCPUs[0])
			}
			// A second encoding is byte-identical: the format is canonical.
			b2, err := Marshal(got)
			if err != nil || !bytes.Equal(b, b2) {
				t.Fatalf("re-encoding differs (%v)", err)
			}
		})
	}
}

// TestRoundTripDetectsLoss checks the round-trip test can fail: a field
// changed after encoding is seen.
func TestRoundTripDetectsLoss(t *testing.T) {
	want := randomState(4, 1)
	b, err := Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	got.VCPUs[0].Events.SMI.LatchedInit ^= 1
	if reflect.DeepEqual(got, want) {
		t.Fatal("DeepEqual missed a changed field")
	}
}

// TestGolden pins the encoding: a change to field names or layout shows up
// here and must come with a new FormatVersion.
func TestGolden(t *testing.T) {
	s := randomState(42, 1)
	// Keep the golden file small.
	s.VCPUs[0].XSAVE = bytes.Repeat([]byte{0xa5}, minXSAVEBytes)
	b, err := Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", "state_v1.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Fatalf("encoding differs from %s; if the format changed on purpose, bump FormatVersion and run with -update", path)
	}
	got, err := Unmarshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatal("golden file does not decode to the state it was made from")
	}
}

// mutate decodes b as generic JSON, applies f, and re-encodes.
func mutate(t *testing.T, b []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUnmarshalErrors(t *testing.T) {
	good, err := Marshal(randomState(7, 2))
	if err != nil {
		t.Fatal(err)
	}
	vcpu0 := func(m map[string]any) map[string]any { return m["vcpus"].([]any)[0].(map[string]any) }
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrFormat},
		{"not JSON", []byte("snapshot"), ErrFormat},
		{"array", []byte("[]"), ErrFormat},
		{"no version", mutate(t, good, func(m map[string]any) { delete(m, "version") }), ErrFormat},
		{"newer version", mutate(t, good, func(m map[string]any) { m["version"] = FormatVersion + 1 }), ErrVersion},
		{"version 0", mutate(t, good, func(m map[string]any) { m["version"] = 0 }), ErrVersion},
		{"other arch", mutate(t, good, func(m map[string]any) { m["arch"] = "aarch64" }), ErrVersion},
		{"vCPU of a newer version", mutate(t, good, func(m map[string]any) { vcpu0(m)["version"] = FormatVersion + 1 }), ErrVersion},
		{"VM of a newer version", mutate(t, good, func(m map[string]any) { m["vm"].(map[string]any)["version"] = 9 }), ErrVersion},
		{"unknown field", mutate(t, good, func(m map[string]any) { m["extra"] = 1 }), ErrFormat},
		{"unknown vCPU field", mutate(t, good, func(m map[string]any) { vcpu0(m)["fpu"] = 1 }), ErrFormat},
		{"no vCPUs", mutate(t, good, func(m map[string]any) { m["vcpus"] = []any{} }), ErrFormat},
		{"no VM", mutate(t, good, func(m map[string]any) { delete(m, "vm") }), ErrFormat},
		{"short LAPIC", mutate(t, good, func(m map[string]any) { vcpu0(m)["lapic"] = "AAAA" }), ErrFormat},
		{"short XSAVE", mutate(t, good, func(m map[string]any) { vcpu0(m)["xsave"] = "AAAA" }), ErrFormat},
		{"bad base64", mutate(t, good, func(m map[string]any) { vcpu0(m)["xsave"] = "!!" }), ErrFormat},
		{"too many XCRs", mutate(t, good, func(m map[string]any) {
			x := vcpu0(m)["xcrs"].(map[string]any)
			x["xcrs"] = make([]any, 17)
		}), ErrFormat},
		{"register out of range", []byte(strings.Replace(string(good), `"rax":`, `"rax":-`, 1)), ErrFormat},
		{"trailing data", append(append([]byte{}, good...), "{}"...), ErrFormat},
		{"truncated", good[:len(good)/2], ErrFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Unmarshal(tc.in)
			if !errors.Is(err, tc.want) || s != nil {
				t.Fatalf("got %v, %v; want %v", s, err, tc.want)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	bad := randomState(8, 1)
	bad.VCPUs[0].XCRS.NrXCRS = 17
	for _, tc := range []struct {
		name string
		in   *State
	}{
		{"nil", nil},
		{"no VM", &State{VCPUs: []*VCPUState{{}}}},
		{"no vCPUs", &State{VM: &VMState{}}},
		{"nil vCPU", &State{VM: &VMState{}, VCPUs: []*VCPUState{nil}}},
		{"bad XCR count", bad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Marshal(tc.in); !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want ErrFormat", err)
			}
		})
	}
}

func FuzzUnmarshal(f *testing.F) {
	good, err := Marshal(randomState(9, 1))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"version":1,"arch":"x86_64"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Unmarshal(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrVersion) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if _, err := Marshal(s); err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
	})
}
