package guestmem

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
)

func newTest(t *testing.T, o Options) *Memory {
	t.Helper()
	m, err := New([]Region{{GPA: 0x10000, Size: 0x10000}, {GPA: 0x0, Size: 0x10000}, {GPA: 0x100000, Size: 0x1000}}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestBounds(t *testing.T) {
	m := newTest(t, Options{})
	if got := m.Size(); got != 0x21000 {
		t.Errorf("size = %#x", got)
	}
	tests := []struct {
		gpa, n uint64
		ok     bool
	}{
		{0, 1, true},
		{0xffff, 1, true},
		{0xffff, 2, false}, // Slice must stay in one region
		{0x20000, 1, false},
		{0x100fff, 1, true},
		{0x100fff, 2, false},
		{1<<64 - 1, 2, false}, // wraps around
		{0x50000, 0, false},   // not RAM even for zero length
	}
	for _, tt := range tests {
		_, err := m.Slice(tt.gpa, tt.n)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrOutOfRange)) {
			t.Errorf("Slice(%#x, %d) err = %v, want ok=%v", tt.gpa, tt.n, err, tt.ok)
		}
	}
}

func TestSpanningReadWrite(t *testing.T) {
	m := newTest(t, Options{})
	data := bytes.Repeat([]byte{0xab}, 32)
	if err := m.WriteAt(data, 0xfff0); err != nil { // spans the two adjacent regions
		t.Fatal(err)
	}
	got := make([]byte, 32)
	if err := m.ReadAt(got, 0xfff0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %x, %v", got, err)
	}
	// A write running past RAM writes nothing at all.
	if err := m.WriteAt([]byte{1, 2, 3, 4}, 0x1ffffe); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("err = %v", err)
	}
	if err := m.WriteAt(bytes.Repeat([]byte{7}, 8), 0x1fffc); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("write past the hole: %v", err)
	}
	b, _ := m.Slice(0x1fffc, 4)
	if !bytes.Equal(b, make([]byte, 4)) {
		t.Errorf("partial write happened: %x", b)
	}
}

func TestAtomics(t *testing.T) {
	m := newTest(t, Options{})
	if err := m.Store16(0x102, 0xbeef); err != nil {
		t.Fatal(err)
	}
	if err := m.Store16(0x100, 0x1234); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Load32(0x100); v != 0xbeef1234 {
		t.Errorf("word = %#x", v)
	}
	if v, _ := m.Load16(0x102); v != 0xbeef {
		t.Errorf("Load16 = %#x", v)
	}
	if _, err := m.Load16(0x101); !errors.Is(err, ErrMisaligned) {
		t.Errorf("misaligned: %v", err)
	}
	// Concurrent 16-bit stores to the two halves of one word never lose
	// each other's value.
	var wg sync.WaitGroup
	for half := uint64(0); half < 2; half++ {
		wg.Add(1)
		go func(gpa uint64) {
			defer wg.Done()
			for i := 0; i < 10000; i++ {
				m.Store16(gpa, uint16(i))
			}
		}(0x200 + 2*half)
	}
	wg.Wait()
	if v, _ := m.Load32(0x200); v != 9999<<16|9999 {
		t.Errorf("word after concurrent stores = %#x", v)
	}
}

func TestOwnMappingPerRegion(t *testing.T) {
	m, err := New([]Region{{GPA: 0, Size: 3 << 20}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	addr, err := m.HostAddress(0)
	if err != nil {
		t.Fatal(err)
	}
	maps, _ := os.ReadFile("/proc/self/maps")
	found := false
	for _, l := range strings.Split(string(maps), "\n") {
		var lo, hi uintptr
		if n, _ := sscanRange(l, &lo, &hi); n == 2 && lo == addr && hi-lo == 3<<20 {
			found = true
		}
	}
	if !found {
		t.Errorf("no mapping of exactly 3 MiB at %#x", addr)
	}
}

func TestShared(t *testing.T) {
	m := newTest(t, Options{Backing: Shared})
	fd, off := m.Fd(0x10010)
	if fd < 0 || off != 0x10 {
		t.Errorf("Fd = %d, %#x", fd, off)
	}
}

func TestInvalidLayout(t *testing.T) {
	for _, l := range [][]Region{
		{{GPA: 0, Size: 0}},
		{{GPA: 0, Size: 0x2000}, {GPA: 0x1000, Size: 0x1000}},
	} {
		if m, err := New(l, Options{}); err == nil {
			m.Close()
			t.Errorf("layout %v accepted", l)
		}
	}
}
