package snapshot

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCRC64(t *testing.T) {
	// Check values of CRC-64/Jones as the crc64 crate computes it (init 0,
	// no final xor); the second is from Firecracker's CRC64Writer doc test.
	for _, tc := range []struct {
		in   []byte
		want uint64
	}{
		{[]byte("123456789"), 0xe9c6d914c4b8d9ca},
		{bytes.Repeat([]byte{123}, 16), 0x29d5357216326566},
		{nil, 0},
	} {
		if got := crc64(0, tc.in); got != tc.want {
			t.Errorf("crc64(%q) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
	// Split input continues the checksum.
	if crc64(crc64(0, []byte("1234")), []byte("56789")) != 0xe9c6d914c4b8d9ca {
		t.Error("crc64 does not continue across calls")
	}
}

type vcpuState struct {
	RIP  uint64   `json:"rip"`
	MSRs []uint32 `json:"msrs"`
}

func sampleFile(t *testing.T) *File {
	t.Helper()
	f := &File{Header: Header{
		EmberVersion: "1.17.0-dev",
		Backend:      "kvm",
		Created:      time.Date(2026, 7, 1, 12, 30, 0, 123, time.UTC),
		MemSize:      3 << 20,
		Regions:      []Region{{GPA: 0, Size: 2 << 20}, {GPA: 4 << 30, Size: 1 << 20}},
	}}
	if err := f.AddJSON("vcpu0", vcpuState{RIP: 0xffff_ffff_8100_0000, MSRs: []uint32{0x10, 0xc000_0080}}); err != nil {
		t.Fatal(err)
	}
	if err := f.AddRaw("device/serial0", []byte{0, 1, 2, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := f.AddRaw("empty", nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vm.snap")
	want := sampleFile(t)
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, "kvm")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != Version || got.Format != Format || got.Arch != HostArch() {
		t.Errorf("header fields Write owns: %q %v %q", got.Version, got.Format, got.Arch)
	}
	if !got.Created.Equal(want.Created) || got.Backend != "kvm" || got.EmberVersion != want.EmberVersion ||
		got.MemSize != want.MemSize || !reflect.DeepEqual(got.Regions, want.Regions) {
		t.Errorf("header: got %+v, want %+v", got.Header, want.Header)
	}
	if len(got.Sections) != len(want.Sections) {
		t.Fatalf("%d sections, want %d", len(got.Sections), len(want.Sections))
	}
	for i, s := range want.Sections {
		g := got.Sections[i]
		if g.Name != s.Name || g.Encoding != s.Encoding || !bytes.Equal(g.Data, s.Data) {
			t.Errorf("section %d: got %+v, want %+v", i, g, s)
		}
	}
	var v vcpuState
	if err := got.JSON("vcpu0", &v); err != nil || v.RIP != 0xffff_ffff_8100_0000 || len(v.MSRs) != 2 {
		t.Errorf("JSON(vcpu0) = %+v, %v", v, err)
	}
	if b, err := got.Raw("device/serial0"); err != nil || !bytes.Equal(b, []byte{0, 1, 2, 0xff}) {
		t.Errorf("Raw = %v, %v", b, err)
	}
	if _, err := got.Raw("vcpu0"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Raw of a JSON section: %v", err)
	}
	if err := got.JSON("nope", &v); !errors.Is(err, ErrNoSection) {
		t.Errorf("JSON of a missing section: %v", err)
	}
	if d, err := Describe(path); err != nil || d != "v"+Version {
		t.Errorf("Describe = %q, %v", d, err)
	}
	// Write must not change the caller's File.
	if want.Version != "" || want.Arch != "" {
		t.Errorf("Write changed its argument: %+v", want.Header)
	}
}

func TestLayout(t *testing.T) {
	b, err := Encode(sampleFile(t))
	if err != nil {
		t.Fatal(err)
	}
	if m := binary.LittleEndian.Uint64(b); m != HostMagic() {
		t.Errorf("magic %#x", m)
	}
	if n := binary.LittleEndian.Uint64(b[8:]); n != uint64(len(Version)) || string(b[16:16+n]) != Version {
		t.Errorf("version field %d %q", n, b[16:16+n])
	}
	hl := binary.LittleEndian.Uint32(b[16+len(Version):])
	var h map[string]any
	if err := json.Unmarshal(b[20+len(Version):20+len(Version)+int(hl)], &h); err != nil {
		t.Fatalf("header is not JSON: %v", err)
	}
	for _, k := range []string{"format", "ember_version", "backend", "arch", "created", "mem_size", "regions", "sections"} {
		if _, ok := h[k]; !ok {
			t.Errorf("header lacks %q: %v", k, h)
		}
	}
	if got := binary.LittleEndian.Uint64(b[len(b)-8:]); got != crc64(0, b[:len(b)-8]) {
		t.Errorf("trailing CRC %#x", got)
	}
}

// build assembles a state file from parts, with a correct CRC.
func build(magic uint64, version string, header any, sections []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, magic)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(version)))
	b = append(b, version...)
	var hj []byte
	switch h := header.(type) {
	case []byte:
		hj = h
	default:
		hj, _ = json.Marshal(h)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(hj)))
	b = append(b, hj...)
	b = append(b, sections...)
	return binary.LittleEndian.AppendUint64(b, crc64(0, b))
}

func goodHeader() wireHeader {
	return wireHeader{Format: Format, Backend: "qemu", Arch: HostArch(), Created: time.Unix(1e9, 0), MemSize: 1 << 20,
		Regions: []Region{{0, 1 << 20}}, Sections: []wireSection{{"a", "raw", 3}}}
}

func TestDecodeErrors(t *testing.T) {
	good, err := Encode(sampleFile(t))
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(*wireHeader)) []byte {
		h := goodHeader()
		f(&h)
		return build(HostMagic(), Version, h, []byte("abc"))
	}
	tests := []struct {
		name string
		in   []byte
		want error
		text string
	}{
		{"empty", nil, ErrTooShort, "IO Error: File too short to contain CRC"},
		{"seven bytes", good[:7], ErrTooShort, ""},
		{"only a CRC", good[:8], ErrBadMagic, ""},
		{"cut by one", good[:len(good)-1], ErrCRC, "CRC64 validation failed"},
		{"cut in half", good[:len(good)/2], ErrCRC, ""},
		{"bad CRC", append(append([]byte{}, good[:len(good)-1]...), good[len(good)-1]^1), ErrCRC, ""},
		{"other arch", build(MagicAarch64^MagicX86_64^HostMagic(), Version, goodHeader(), []byte("abc")), ErrBadMagic, "Magic value does not match arch: "},
		{"zero magic", build(0, Version, goodHeader(), []byte("abc")), ErrBadMagic, "Magic value does not match arch: 0"},
		{"future major", build(HostMagic(), "12.0.0", goodHeader(), []byte("abc")), ErrVersion, "Invalid data version: 12.0.0"},
		{"future minor", build(HostMagic(), "11.1.0", goodHeader(), []byte("abc")), ErrVersion, "Invalid data version: 11.1.0"},
		{"old major", build(HostMagic(), "10.0.0", goodHeader(), []byte("abc")), ErrVersion, ""},
		{"future layout", with(func(h *wireHeader) { h.Format.Major++ }), ErrVersion, "layout 2.0"},
		{"newer layout minor", with(func(h *wireHeader) { h.Format.Minor++ }), ErrVersion, ""},
		{"bad version text", build(HostMagic(), "11.0", goodHeader(), []byte("abc")), ErrCorrupt, ""},
		{"leading zero", build(HostMagic(), "011.0.0", goodHeader(), []byte("abc")), ErrCorrupt, ""},
		{"huge version length", build(HostMagic(), strings.Repeat("1", 100), goodHeader(), nil), ErrCorrupt, ""},
		{"header not JSON", build(HostMagic(), Version, []byte("{"), nil), ErrCorrupt, ""},
		{"header trailing", build(HostMagic(), Version, []byte(`{} {}`), nil), ErrCorrupt, ""},
		{"section past end", with(func(h *wireHeader) { h.Sections[0].Size = 4 }), ErrCorrupt, ""},
		{"bytes after sections", with(func(h *wireHeader) { h.Sections[0].Size = 2 }), ErrCorrupt, ""},
		{"duplicate section", with(func(h *wireHeader) { h.Sections = []wireSection{{"a", "raw", 1}, {"a", "raw", 2}} }), ErrCorrupt, ""},
		{"unknown encoding", with(func(h *wireHeader) { h.Sections[0].Encoding = "xml" }), ErrCorrupt, ""},
		{"JSON section not JSON", with(func(h *wireHeader) { h.Sections[0].Encoding = "json" }), ErrCorrupt, ""},
		{"no backend", with(func(h *wireHeader) { h.Backend = "" }), ErrCorrupt, ""},
		{"other arch name", with(func(h *wireHeader) { h.Arch = "riscv64" }), ErrCorrupt, ""},
		{"no creation time", with(func(h *wireHeader) { h.Created = time.Time{} }), ErrCorrupt, ""},
		{"mem size mismatch", with(func(h *wireHeader) { h.MemSize++ }), ErrCorrupt, ""},
		{"unaligned region", with(func(h *wireHeader) { h.Regions[0].GPA = 1 }), ErrCorrupt, ""},
		{"overlapping regions", with(func(h *wireHeader) {
			h.Regions = []Region{{0, 1 << 20}, {4096, 4096}}
			h.MemSize += 4096
		}), ErrCorrupt, ""},
		{"region wraps", with(func(h *wireHeader) { h.Regions[0].GPA = 1<<64 - 4096 }), ErrCorrupt, ""},
		{"too large", make([]byte, MaxSize+1), ErrTooLarge, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Decode(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode = %v, %v; want %v", f, err, tc.want)
			}
			if tc.text != "" && !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q lacks %q", err, tc.text)
			}
		})
	}
}

func TestCompatibleVersions(t *testing.T) {
	for _, v := range []string{"11.0.0", "11.0.7", "11.0.0-rc.1", "11.0.1+ember.2"} {
		if _, err := Decode(build(HostMagic(), v, goodHeader(), []byte("abc"))); err != nil {
			t.Errorf("version %s: %v", v, err)
		}
	}
	h := goodHeader()
	h.Format.Minor = 0
	if _, err := Decode(build(HostMagic(), Version, h, []byte("abc"))); err != nil {
		t.Errorf("layout %v: %v", h.Format, err)
	}
}

// TestEveryFlippedByte: no single changed bit anywhere goes unnoticed.
func TestEveryFlippedByte(t *testing.T) {
	good, err := Encode(sampleFile(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x04
		_, err := Decode(b)
		want := ErrCRC
		if i < 8 {
			want = ErrBadMagic
		}
		if !errors.Is(err, want) {
			t.Fatalf("byte %d flipped: %v, want %v", i, err, want)
		}
	}
}

func TestLoadOtherBackend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	f := sampleFile(t)
	f.Backend = "qemu"
	if err := Write(path, f); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, "kvm")
	if !errors.Is(err, ErrBackend) {
		t.Fatalf("Load = %v, want ErrBackend", err)
	}
	if !strings.Contains(err.Error(), "qemu") || !strings.Contains(err.Error(), "kvm") {
		t.Errorf("message does not name both backends: %q", err)
	}
	// Describe does not care which backend wrote it, nor about versions.
	if d, err := Describe(path); err != nil || d != "v"+Version {
		t.Errorf("Describe = %q, %v", d, err)
	}
	future := filepath.Join(t.TempDir(), "future")
	os.WriteFile(future, build(HostMagic(), "12.3.4", goodHeader(), []byte("abc")), 0o644)
	if d, err := Describe(future); err != nil || d != "v12.3.4" {
		t.Errorf("Describe(future) = %q, %v", d, err)
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Read(filepath.Join(dir, "missing"))
	var oe *OpenError
	if !errors.As(err, &oe) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	// A directory opens but cannot be read.
	_, err = Read(dir)
	var ioe *IOError
	if !errors.As(err, &ioe) || !errors.Is(err, syscall.EISDIR) {
		t.Errorf("directory: %v", err)
	}
}

func TestWriteInvalid(t *testing.T) {
	dir := t.TempDir()
	for name, f := range map[string]*File{
		"no backend":     {Header: Header{}},
		"mem size":       {Header: Header{Backend: "kvm", MemSize: 1}},
		"bad region":     {Header: Header{Backend: "kvm", MemSize: 100, Regions: []Region{{0, 100}}}},
		"dup section":    {Header: Header{Backend: "kvm"}, Sections: []Section{{"a", "raw", nil}, {"a", "raw", nil}}},
		"bad json":       {Header: Header{Backend: "kvm"}, Sections: []Section{{"a", "json", []byte("{")}}},
		"bad encoding":   {Header: Header{Backend: "kvm"}, Sections: []Section{{"a", "", nil}}},
		"unnamed":        {Header: Header{Backend: "kvm"}, Sections: []Section{{"", "raw", nil}}},
		"over the limit": {Header: Header{Backend: "kvm"}, Sections: []Section{{"a", "raw", make([]byte, MaxSize)}}},
	} {
		if err := Write(filepath.Join(dir, "s"), f); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Write = %v, want ErrInvalid", name, err)
		}
	}
	assertDir(t, dir)
	f := &File{Header: Header{Backend: "kvm"}}
	if err := f.AddRaw("x", nil); err != nil {
		t.Fatal(err)
	}
	if err := f.AddJSON("x", 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("duplicate AddJSON = %v", err)
	}
	if err := f.AddJSON("y", func() {}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unencodable AddJSON = %v", err)
	}
}

// assertDir fails unless dir holds exactly the named files.
func assertDir(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if len(got) != len(names) || (len(names) > 0 && !reflect.DeepEqual(got, names)) {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

func setHook(t *testing.T, h func(string) error) {
	t.Cleanup(func() { testHook = nil })
	testHook = h
}

func TestWriteAtomic(t *testing.T) {
	for _, step := range []string{"write", "sync_all", "rename", "sync_dir"} {
		for _, existed := range []bool{false, true} {
			t.Run(step, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "vm.snap")
				if existed {
					os.WriteFile(path, []byte("old"), 0o644)
				}
				setHook(t, func(s string) error {
					if s == step {
						return syscall.ENOSPC
					}
					return nil
				})
				err := Write(path, sampleFile(t))
				var pe *fs.PathError
				if !errors.As(err, &pe) || pe.Op != step || !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("Write = %v, want a %s ENOSPC PathError", err, step)
				}
				switch {
				case !existed || step == "sync_dir":
					// After the rename the new file is removed: it might not survive a crash.
					assertDir(t, dir)
				default:
					assertDir(t, dir, "vm.snap")
					if b, _ := os.ReadFile(path); string(b) != "old" {
						t.Errorf("existing file changed to %q", b)
					}
				}
			})
		}
	}
}

func TestWritePaths(t *testing.T) {
	dir := t.TempDir()
	// Replaces an existing file.
	path := filepath.Join(dir, "s")
	os.WriteFile(path, bytes.Repeat([]byte("x"), 100000), 0o644)
	if err := Write(path, sampleFile(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); err != nil {
		t.Fatal(err)
	}
	// Follows a symlink: the link stays, its target is replaced.
	link := filepath.Join(dir, "link")
	os.Symlink("s", link)
	f := sampleFile(t)
	f.Backend = "qemu"
	if err := Write(link, f); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("symlink replaced: %v %v", fi, err)
	}
	if g, err := Read(path); err != nil || g.Backend != "qemu" {
		t.Errorf("symlink target not written: %v %v", g, err)
	}
	assertDir(t, dir, "link", "s")
	// A directory or a missing directory: the open fails, nothing is left.
	for _, p := range []string{dir, filepath.Join(dir, "nodir", "s")} {
		var pe *fs.PathError
		if err := Write(p, sampleFile(t)); !errors.As(err, &pe) || pe.Op != "open" {
			t.Errorf("Write(%s) = %v, want an open error", p, err)
		}
	}
	assertDir(t, dir, "link", "s")
	// A relative path is written in the working directory.
	t.Chdir(dir)
	if err := Write("rel", sampleFile(t)); err != nil {
		t.Fatal(err)
	}
	assertDir(t, dir, "link", "rel", "s")
	// A FIFO cannot be replaced by a rename; it is written in place, and
	// without a reader that fails at once (no hang) and leaves it a FIFO.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(fifo, sampleFile(t)); !errors.Is(err, syscall.ENXIO) {
		t.Errorf("Write(fifo) = %v, want ENXIO", err)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("fifo replaced: %v %v", fi, err)
	}
}
