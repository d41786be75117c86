package bus

import (
	"errors"
	"math"
	"sync"
	"testing"
)

// recorder is a device that remembers its last access and reads back a
// fixed pattern derived from the offset.
type recorder struct {
	mu      sync.Mutex
	name    string
	lastOff uint64
	lastLen int
	written []byte
}

func (r *recorder) Read(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastOff, r.lastLen = off, len(data)
	for i := range data {
		data[i] = byte(off) + byte(i)
	}
}

func (r *recorder) Write(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastOff, r.lastLen = off, len(data)
	r.written = append([]byte(nil), data...)
}

func TestInsertRejects(t *testing.T) {
	var b Bus
	a := &recorder{name: "a"}
	if err := b.Insert(a, 0x100, 0x10); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		dev        Device
		base, size uint64
		want       error
	}{
		{"zero size", a, 0x200, 0, ErrInvalidRange},
		{"wraps", a, math.MaxUint64 - 1, 3, ErrInvalidRange},
		{"nil device", nil, 0x300, 1, ErrInvalidRange},
		{"same base", a, 0x100, 1, ErrOverlap},
		{"overlaps start", a, 0xf8, 0x9, ErrOverlap},
		{"overlaps end", a, 0x10f, 0x1, ErrOverlap},
		{"covers", a, 0x0, 0x1000, ErrOverlap},
		{"inside", a, 0x104, 0x4, ErrOverlap},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := b.Insert(tc.dev, tc.base, tc.size); !errors.Is(err, tc.want) {
				t.Fatalf("Insert(%#x, %#x) = %v, want %v", tc.base, tc.size, err, tc.want)
			}
		})
	}
	if n := len(b.Ranges()); n != 1 {
		t.Fatalf("%d ranges after rejected inserts, want 1", n)
	}
	// Adjacent ranges on both sides are fine, and the top of the space too.
	for _, r := range []struct{ base, size uint64 }{{0xf0, 0x10}, {0x110, 0x10}, {math.MaxUint64, 1}} {
		if err := b.Insert(&recorder{}, r.base, r.size); err != nil {
			t.Fatalf("Insert(%#x, %#x): %v", r.base, r.size, err)
		}
	}
	rs := b.Ranges()
	for i := 1; i < len(rs); i++ {
		if rs[i-1].Base >= rs[i].Base {
			t.Fatalf("ranges not sorted: %+v", rs)
		}
	}
}

func TestDispatch(t *testing.T) {
	var b Bus
	devs := map[string]*recorder{}
	layout := []struct {
		name       string
		base, size uint64
	}{
		{"serial", 0x3f8, 8},
		{"i8042", 0x60, 5},
		{"virtio0", 0xc0001000, 0x1000},
		{"virtio1", 0xc0002000, 0x1000},
	}
	for _, l := range layout {
		devs[l.name] = &recorder{name: l.name}
		if err := b.Insert(devs[l.name], l.base, l.size); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		addr uint64
		n    int
		dev  string // "" = unmapped
		off  uint64
	}{
		{0x3f8, 1, "serial", 0},
		{0x3ff, 1, "serial", 7},
		{0x3ff, 2, "", 0}, // runs past the end
		{0x400, 1, "", 0},
		{0x3f7, 1, "", 0},
		{0x64, 1, "i8042", 4},
		{0x65, 1, "", 0},
		{0xc0001000, 4, "virtio0", 0},
		{0xc0001ffc, 4, "virtio0", 0xffc},
		{0xc0001ffe, 4, "", 0}, // straddles two devices
		{0xc0002050, 4, "virtio1", 0x50},
		{0xc0003000, 4, "", 0},
		{0, 1, "", 0},
		{math.MaxUint64, 1, "", 0},
	}
	for _, tc := range tests {
		data := make([]byte, tc.n)
		ok := b.Read(tc.addr, data)
		if ok != (tc.dev != "") {
			t.Errorf("Read(%#x, %d) = %v, want mapped=%v", tc.addr, tc.n, ok, tc.dev != "")
			continue
		}
		if !ok {
			for _, c := range data {
				if c != 0 {
					t.Errorf("unmapped Read(%#x) changed data: %x", tc.addr, data)
				}
			}
			if b.Write(tc.addr, data) {
				t.Errorf("Write(%#x, %d) mapped, want unmapped", tc.addr, tc.n)
			}
			continue
		}
		d := devs[tc.dev]
		if d.lastOff != tc.off || d.lastLen != tc.n {
			t.Errorf("Read(%#x): %s got offset %#x len %d, want %#x len %d", tc.addr, tc.dev, d.lastOff, d.lastLen, tc.off, tc.n)
		}
		if data[0] != byte(tc.off) {
			t.Errorf("Read(%#x): data %x", tc.addr, data)
		}
		payload := []byte{0xaa, 0xbb, 0xcc, 0xdd}[:tc.n]
		if !b.Write(tc.addr, payload) || string(d.written) != string(payload) || d.lastOff != tc.off {
			t.Errorf("Write(%#x): device saw %x at %#x", tc.addr, d.written, d.lastOff)
		}
	}
}

func TestRemove(t *testing.T) {
	var b Bus
	d := &recorder{}
	if err := b.Insert(d, 0x1000, 0x1000); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(0x1001); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove(wrong base) = %v", err)
	}
	if err := b.Remove(0x1000); err != nil {
		t.Fatal(err)
	}
	if b.Read(0x1000, make([]byte, 1)) {
		t.Fatal("removed device still reached")
	}
	if err := b.Insert(d, 0x1800, 0x10); err != nil {
		t.Fatalf("reinsert after remove: %v", err)
	}
}

// TestConcurrent runs lookups while ranges change; run with -race.
func TestConcurrent(t *testing.T) {
	var b Bus
	fixed := &recorder{}
	if err := b.Insert(fixed, 0, 0x10); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !b.Read(0x8, buf) {
					t.Error("fixed device vanished")
					return
				}
				b.Read(0x1000, buf)
			}
		}()
	}
	for i := range 200 {
		base := uint64(0x1000 + i%4*0x100)
		if err := b.Insert(&recorder{}, base, 0x100); err != nil {
			t.Fatal(err)
		}
		if err := b.Remove(base); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

func BenchmarkLookup(b *testing.B) {
	var bus Bus
	for i := range 20 {
		if err := bus.Insert(&recorder{}, 0xc0001000+uint64(i)*0x1000, 0x1000); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, ok := bus.Lookup(0xc0001050+uint64(i%20)*0x1000, 4); !ok {
			b.Fatal("miss")
		}
	}
}
