package snapshot

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeRAM is guest memory for tests: regions of bytes by GPA.
type fakeRAM struct {
	regions []Region
	mem     [][]byte
	reads   int
	failAt  int // fail the n-th read (1-based); 0 never
}

func newRAM(regions ...Region) *fakeRAM {
	r := &fakeRAM{regions: regions}
	for _, g := range regions {
		r.mem = append(r.mem, make([]byte, g.Size))
	}
	return r
}

// page returns page p of region i.
func (r *fakeRAM) page(i int, p uint64) []byte { return r.mem[i][p*PageSize : (p+1)*PageSize] }

func (r *fakeRAM) read(gpa, n uint64) ([]byte, error) {
	r.reads++
	if r.reads == r.failAt {
		return nil, errors.New("injected read failure")
	}
	for i, g := range r.regions {
		if gpa >= g.GPA && gpa+n <= g.GPA+g.Size {
			return r.mem[i][gpa-g.GPA : gpa-g.GPA+n], nil
		}
	}
	return nil, errors.New("outside guest RAM")
}

// image is what the memory file must hold.
func (r *fakeRAM) image() []byte { return bytes.Join(r.mem, nil) }

func testRAM() *fakeRAM {
	// Two regions with a gap, larger than one read chunk.
	r := newRAM(Region{GPA: 0, Size: 300 * PageSize}, Region{GPA: 1 << 32, Size: 40 * PageSize})
	for _, p := range []uint64{0, 1, 2, 10, 255, 256, 257, 299} {
		copy(r.page(0, p), bytes.Repeat([]byte{byte(p + 1)}, 100))
	}
	r.page(1, 39)[PageSize-1] = 0xee // the last byte of the file
	return r
}

// allocated returns the bytes the file occupies on disk.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// supportsHoles reports whether dir's filesystem keeps a truncated file sparse.
func supportsHoles(t *testing.T, dir string) bool {
	p := filepath.Join(dir, ".probe")
	defer os.Remove(p)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(p, 1<<20)
	return allocated(t, p) == 0
}

func TestWriteMemoryFull(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mem")
	ram := testRAM()
	if err := WriteMemory(path, ram.regions, ram.read); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(got)) != MemSize(ram.regions) || !bytes.Equal(got, ram.image()) {
		t.Fatalf("memory file of %d bytes differs from guest RAM (%d bytes)", len(got), MemSize(ram.regions))
	}
	assertDir(t, dir, "mem")
	if !supportsHoles(t, dir) {
		t.Skipf("SKIPPED HOLE CHECK: the filesystem of %s does not keep files sparse", dir)
	}
	// 9 non-zero pages; a filesystem may round allocation up a little.
	if a := allocated(t, path); a > 64*PageSize {
		t.Errorf("%d bytes allocated for 9 non-zero pages: zero pages were written", a)
	}
	fd, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if off, err := unix.Seek(int(fd.Fd()), 3*PageSize, unix.SEEK_DATA); err != nil || off != 10*PageSize {
		t.Errorf("SEEK_DATA from page 3 = %d, %v; want page 10 at %d", off, err, 10*PageSize)
	}
}

func TestWriteMemoryFailure(t *testing.T) {
	for _, existed := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "mem")
		if existed {
			os.WriteFile(path, []byte("old"), 0o644)
		}
		ram := testRAM()
		ram.failAt = 2
		err := WriteMemory(path, ram.regions, ram.read)
		if err == nil || ram.reads != 2 {
			t.Fatalf("WriteMemory = %v after %d reads, want the injected failure", err, ram.reads)
		}
		if existed {
			assertDir(t, dir, "mem")
			if b, _ := os.ReadFile(path); string(b) != "old" {
				t.Errorf("existing file changed")
			}
		} else {
			assertDir(t, dir)
		}
	}
	// A failing write (disk full).
	dir := t.TempDir()
	setHook(t, func(s string) error {
		if s == "write" {
			return syscall.ENOSPC
		}
		return nil
	})
	ram := testRAM()
	if err := WriteMemory(filepath.Join(dir, "mem"), ram.regions, ram.read); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("WriteMemory = %v, want ENOSPC", err)
	}
	assertDir(t, dir)
	// A read returning too little.
	short := func(gpa, n uint64) ([]byte, error) { return make([]byte, n-1), nil }
	if err := WriteMemory(filepath.Join(dir, "mem"), ram.regions, short); err == nil {
		t.Error("a short read was accepted")
	}
	assertDir(t, dir)
}

func TestWriteMemoryInvalid(t *testing.T) {
	dir := t.TempDir()
	ram := testRAM()
	for name, rs := range map[string][]Region{
		"unaligned": {{GPA: 1, Size: PageSize}},
		"odd size":  {{GPA: 0, Size: 100}},
		"empty":     {{GPA: 0, Size: 0}},
		"overlap":   {{GPA: 0, Size: 2 * PageSize}, {GPA: PageSize, Size: PageSize}},
		"unordered": {{GPA: 1 << 32, Size: PageSize}, {GPA: 0, Size: PageSize}},
	} {
		if err := WriteMemory(filepath.Join(dir, "m"), rs, ram.read); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
		if err := WriteMemoryDiff(filepath.Join(dir, "m"), rs, make([][]uint64, len(rs)), ram.read); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s diff: %v, want ErrInvalid", name, err)
		}
	}
	if err := WriteMemoryDiff(filepath.Join(dir, "m"), ram.regions, [][]uint64{make([]uint64, 5)}, ram.read); !errors.Is(err, ErrInvalid) {
		t.Errorf("too few bitmaps: %v", err)
	}
	if err := WriteMemoryDiff(filepath.Join(dir, "m"), ram.regions, [][]uint64{make([]uint64, 4), {}}, ram.read); !errors.Is(err, ErrInvalid) {
		t.Errorf("too short a bitmap: %v", err)
	}
	assertDir(t, dir)
}

// bitmaps returns dirty bitmaps of ram with the given pages of region 0 set.
func bitmaps(ram *fakeRAM, pages ...uint64) [][]uint64 {
	d := make([][]uint64, len(ram.regions))
	for i, r := range ram.regions {
		d[i] = make([]uint64, (r.Size/PageSize+63)/64)
	}
	for _, p := range pages {
		d[0][p/64] |= 1 << (p % 64)
	}
	return d
}

func TestWriteMemoryDiffMerge(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mem")
	ram := testRAM()
	if err := WriteMemory(path, ram.regions, ram.read); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	want := ram.image()
	// The guest changes pages: one written, one zeroed, a run across a
	// bitmap word, and one page it changes without the change being dirty.
	copy(ram.page(0, 5), "five")
	clear(ram.page(0, 10))
	for p := uint64(60); p < 70; p++ {
		copy(ram.page(0, p), "run")
	}
	copy(ram.page(0, 100), "not dirty")
	pages := []uint64{5, 10, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69}
	if err := WriteMemoryDiff(path, ram.regions, bitmaps(ram, pages...), ram.read); err != nil {
		t.Fatal(err)
	}
	for _, p := range pages {
		copy(want[p*PageSize:(p+1)*PageSize], ram.page(0, p))
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, want) {
		t.Fatal("merged memory file is not the old image with the dirty pages replaced")
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Error("diff into a file of the right size replaced it instead of merging in place")
	}
	assertDir(t, dir, "mem")
}

func TestWriteMemoryDiffFresh(t *testing.T) {
	for _, existing := range []string{"", "wrong size"} {
		dir := t.TempDir()
		path := filepath.Join(dir, "mem")
		if existing != "" {
			os.WriteFile(path, []byte(existing), 0o644)
		}
		ram := testRAM()
		if err := WriteMemoryDiff(path, ram.regions, bitmaps(ram, 1, 255, 256), ram.read); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, MemSize(ram.regions))
		for _, p := range []uint64{1, 255, 256} {
			copy(want[p*PageSize:], ram.page(0, p))
		}
		got, _ := os.ReadFile(path)
		if !bytes.Equal(got, want) {
			t.Errorf("existing %q: fresh diff file is not the dirty pages over zeros", existing)
		}
		assertDir(t, dir, "mem")
	}
}

func TestWriteMemoryDiffFailure(t *testing.T) {
	dir := t.TempDir()
	ram := testRAM()
	ram.failAt = 1
	err := WriteMemoryDiff(filepath.Join(dir, "mem"), ram.regions, bitmaps(ram, 3), ram.read)
	if err == nil {
		t.Fatal("the injected read failure was lost")
	}
	assertDir(t, dir)
	// Into an existing file: the error is reported, the file stays.
	ram = testRAM()
	path := filepath.Join(dir, "mem")
	if err := WriteMemory(path, ram.regions, ram.read); err != nil {
		t.Fatal(err)
	}
	ram.failAt = ram.reads + 1
	var pe *fs.PathError
	if err := WriteMemoryDiff(path, ram.regions, bitmaps(ram, 3), ram.read); err == nil || errors.As(err, &pe) {
		t.Errorf("merge = %v, want the read failure", err)
	}
	assertDir(t, dir, "mem")
}
