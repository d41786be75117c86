package snapshot

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus in testdata/fuzz")

// seeds are the inputs the corpus starts from: valid files and the shapes
// of each error.
func seeds(t testing.TB) map[string][]byte {
	f := &File{Header: Header{EmberVersion: "1.17.0-dev", Backend: "kvm", MemSize: 2 * PageSize,
		Regions: []Region{{0, PageSize}, {1 << 20, PageSize}}}}
	f.Created = f.Created.AddDate(2026, 0, 0)
	f.AddJSON("vcpu0", map[string]uint64{"rip": 0x100000})
	f.AddRaw("device", []byte{1, 2, 3})
	full, err := Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	empty, err := Encode(&File{Header: Header{Backend: "qemu", Created: f.Created}})
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"full":          full,
		"empty":         empty,
		"short":         full[:7],
		"bad-crc":       full[:len(full)-1],
		"future":        build(HostMagic(), "12.0.0", goodHeader(), []byte("abc")),
		"section-short": build(HostMagic(), Version, goodHeader(), []byte("ab")),
		"header-null":   build(HostMagic(), Version, []byte("null"), nil),
	}
}

// TestFuzzSeeds keeps the committed corpus in step with the format; run
// with -update after a format change.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	for name, b := range seeds(t) {
		path := filepath.Join(dir, name)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if *update {
			os.MkdirAll(dir, 0o755)
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestFuzzSeeds -update)", err)
		}
		if !bytes.Equal(got, []byte(want)) {
			t.Errorf("seed %s is stale: run go test -run TestFuzzSeeds -update", name)
		}
	}
}

// FuzzDecode: any input is refused with a classified error or decoded into
// a File that encodes and decodes back to the same File; never a panic.
func FuzzDecode(f *testing.F) {
	for _, b := range seeds(f) {
		f.Add(b)
	}
	f.Fuzz(checkDecode)
}

// FuzzPayload fuzzes what lies behind the CRC: the version, the header and
// the section bytes of a file whose magic and checksum are right.
func FuzzPayload(f *testing.F) {
	f.Add(Version, []byte(`{"format":{"major":1,"minor":0},"backend":"kvm","arch":"`+HostArch()+`","created":"2026-01-01T00:00:00Z","mem_size":4096,"regions":[{"gpa":0,"size":4096}],"sections":[{"name":"a","encoding":"json","size":2},{"name":"b","encoding":"raw","size":1}]}`), []byte("{}x"))
	f.Add("11.0.0-rc.1+b", []byte(`{"format":{"major":1},"backend":"q","arch":"`+HostArch()+`","created":"2026-01-01T00:00:00+01:00","sections":[]}`), []byte{})
	f.Fuzz(func(t *testing.T, version string, header, sections []byte) {
		checkDecode(t, build(HostMagic(), version, header, sections))
	})
}

func checkDecode(t *testing.T, b []byte) {
	{
		got, err := Decode(b)
		if err != nil {
			for _, e := range []error{ErrTooShort, ErrTooLarge, ErrBadMagic, ErrCRC, ErrVersion, ErrCorrupt} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("unclassified error: %v", err)
		}
		again, err := Encode(got)
		if err != nil {
			t.Fatalf("a decoded file does not encode: %v", err)
		}
		back, err := Decode(again)
		if err != nil {
			t.Fatalf("a re-encoded file does not decode: %v", err)
		}
		// Encode writes this ember's version; the rest must survive.
		back.Version, back.Format = got.Version, got.Format
		if !reflect.DeepEqual(normal(back), normal(got)) {
			t.Fatalf("round trip changed the file:\n%+v\n%+v", got, back)
		}
	}
}

// normal makes nil and empty slices compare equal.
func normal(f *File) *File {
	c := *f
	c.Created = c.Created.UTC()
	if len(c.Regions) == 0 {
		c.Regions = nil
	}
	c.Sections = nil
	for _, s := range f.Sections {
		if len(s.Data) == 0 {
			s.Data = nil
		}
		c.Sections = append(c.Sections, s)
	}
	return &c
}
