package guestmem

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// layout is three regions in the order newTest uses, 0x21000 bytes.
var layout = []Region{{GPA: 0x10000, Size: 0x10000}, {GPA: 0x0, Size: 0x10000}, {GPA: 0x100000, Size: 0x1000}}

// memFile writes a file of n bytes whose every page holds its own index.
func memFile(t *testing.T, n int) *os.File {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i / PageSize)
	}
	p := filepath.Join(t.TempDir(), "mem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestFileBacked(t *testing.T) {
	f := memFile(t, 0x21000)
	open := func() *Memory {
		m, err := New(layout, Options{File: f})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	a, b := open(), open()
	// Regions lie in the file in address order: page 0x11 of the file is
	// GPA 0x11000, page 0x20 is the region at 0x100000.
	for _, tc := range []struct {
		gpa  uint64
		page byte
	}{{0, 0}, {0xf000, 0xf}, {0x10000, 0x10}, {0x1f000, 0x1f}, {0x100000, 0x20}} {
		got := make([]byte, 2)
		if err := a.ReadAt(got, tc.gpa); err != nil {
			t.Fatal(err)
		}
		if got[0] != tc.page || got[1] != tc.page {
			t.Errorf("GPA %#x reads page %d, want %d", tc.gpa, got[0], tc.page)
		}
	}
	// Writes are private to each mapping and never reach the file.
	if err := a.WriteAt([]byte("mine"), 0x10000); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	b.ReadAt(got, 0x10000)
	if bytes.Equal(got, []byte("mine")) {
		t.Error("a write shows in another mapping of the file")
	}
	onDisk := make([]byte, 4)
	if _, err := f.ReadAt(onDisk, 0); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(onDisk, []byte("mine")) || onDisk[0] != 0 {
		t.Errorf("the file changed: %q", onDisk)
	}
}

func TestFileBackedRefused(t *testing.T) {
	short := memFile(t, 0x20000)
	if _, err := New(layout, Options{File: short}); !errors.Is(err, ErrFileSize) {
		t.Errorf("short file: %v, want ErrFileSize", err)
	}
	f := memFile(t, 0x21000)
	for _, o := range []Options{{File: f, Backing: Shared}, {File: f, HugePages: HugePages2M}} {
		if m, err := New(layout, o); err == nil {
			m.Close()
			t.Errorf("%+v accepted", o)
		}
	}
	closed, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if _, err := New(layout, Options{File: closed}); err == nil {
		t.Error("a closed file accepted")
	}
}

func TestDirtyTracking(t *testing.T) {
	untracked := newTest(t, Options{})
	untracked.WriteAt([]byte{1}, 0)
	untracked.MarkDirty(0, 0x1000)
	if d := untracked.TakeDirty(); d != nil {
		t.Fatalf("untracked memory reports dirty pages %v", d)
	}

	m := newTest(t, Options{TrackDirty: true})
	if !m.TrackingDirty() {
		t.Fatal("not tracking")
	}
	m.WriteAt([]byte{1, 2}, 0x0fff)      // pages 0 and 1 of region 0x0
	m.Store32(0x10008, 7)                // page 0 of region 0x10000
	m.Store16(0x100ffe, 7)               // the last region's only page
	m.MarkDirty(0x1e000, 0x3000)         // to the end of region 0x10000, then a hole
	m.MarkDirty(0xffff_ffff_f000, 1<<20) // outside RAM, wrapping: ignored
	m.ReadAt(make([]byte, 16), 0x5000)   // reads mark nothing
	want := [][]uint64{{0b11}, {1 | 1<<14 | 1<<15}, {1}}
	got := m.TakeDirty()
	if len(got) != len(want) {
		t.Fatalf("%d bitmaps", len(got))
	}
	for i := range want {
		if len(got[i]) != len(want[i]) || got[i][0] != want[i][0] {
			t.Errorf("region %d dirty %b, want %b", i, got[i], want[i])
		}
	}
	for i, bm := range m.TakeDirty() {
		if bm[0] != 0 {
			t.Errorf("region %d still dirty after TakeDirty: %b", i, bm)
		}
	}
}

func TestResidentPages(t *testing.T) {
	m := newTest(t, Options{})
	m.WriteAt([]byte{1}, 0x3000)
	m.WriteAt([]byte{1}, 0x10000)
	res, err := m.ResidentPages()
	if err != nil {
		t.Fatal(err)
	}
	if res[0][0]&(1<<3) == 0 || res[1][0]&1 == 0 {
		t.Errorf("written pages not resident: %b %b", res[0], res[1])
	}
	if res[0][0]&(1<<5) != 0 || res[2][0] != 0 {
		t.Errorf("untouched pages resident: %b %b", res[0], res[2])
	}
}
