package blk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/virtio"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

const memSize = 8 << 20

// image writes a disk image of size bytes whose byte i is i*7+i/512.
func image(t *testing.T, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + i/512)
	}
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func header(typ uint32, sector uint64) []byte {
	h := make([]byte, 16)
	binary.LittleEndian.PutUint32(h[0:], typ)
	binary.LittleEndian.PutUint64(h[8:], sector)
	return h
}

type rig struct {
	d  *Device
	vq *vt.VQ
	tr *vt.Transport
}

func start(t *testing.T, path string, cfg Config) *rig {
	t.Helper()
	mem := vt.NewMemory(t, memSize) // first, so it is unmapped after the device stops
	d, err := Open(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	vq := vt.NewVQ(mem, vt.NewAllocator(0x1000, memSize), 64)
	q := vq.Queue(virtio.MaxQueueSize)
	if err := q.Activate(mem, false); err != nil {
		t.Fatal(err)
	}
	tr := vt.NewTransport()
	if err := d.Activate(virtio.Activation{Mem: mem, Queues: []*virtio.Queue{q}, Transport: tr}); err != nil {
		t.Fatal(err)
	}
	return &rig{d, vq, tr}
}

// do runs one request and returns its used length, status byte and the
// device-writable buffers' contents.
func (r *rig) do(t *testing.T, bufs ...vt.Buf) (uint32, byte, [][]byte) {
	t.Helper()
	head := r.vq.Add(bufs...)
	r.d.Notify(0)
	u := r.vq.WaitUsed(t, 1, 5*time.Second)
	if u[0].ID != uint32(head) {
		t.Fatalf("used head %d, want %d", u[0].ID, head)
	}
	var out [][]byte
	for i, b := range bufs {
		if b.Write {
			out = append(out, r.vq.Read(r.vq.Chains[head][i], int(b.Len)))
		}
	}
	last := out[len(out)-1]
	return u[0].Len, last[len(last)-1], out
}

func TestReadWrite(t *testing.T) {
	path, data := image(t, 1<<20+100) // the 100-byte tail is not visible
	r := start(t, path, Config{ID: "rootfs"})
	if r.d.Capacity() != 2048 {
		t.Fatalf("capacity %d", r.d.Capacity())
	}
	cfg := make([]byte, 12)
	r.d.ReadConfig(0, cfg)
	if binary.LittleEndian.Uint64(cfg) != 2048 || !bytes.Equal(cfg[8:], make([]byte, 4)) {
		t.Fatalf("config %x", cfg)
	}

	// Read 2 sectors at sector 3, into three scattered buffers.
	n, st, out := r.do(t, vt.R(header(TypeIn, 3)), vt.W(100), vt.W(900), vt.W(25))
	if st != StatusOK || n != 1025 {
		t.Fatalf("read: status %d len %d", st, n)
	}
	got := append(append(append([]byte(nil), out[0]...), out[1]...), out[2][:24]...)
	if !bytes.Equal(got, data[3*512:5*512]) {
		t.Fatal("read returned the wrong data")
	}

	// A header split over two descriptors, and a write from two buffers.
	payload := bytes.Repeat([]byte("ember!!!"), 128) // 1024 bytes
	h := header(TypeOut, 10)
	n, st, _ = r.do(t, vt.R(h[:5]), vt.R(h[5:]), vt.R(payload[:300]), vt.R(payload[300:]), vt.W(1))
	if st != StatusOK || n != 1 {
		t.Fatalf("write: status %d len %d", st, n)
	}
	disk, _ := os.ReadFile(path)
	if !bytes.Equal(disk[10*512:12*512], payload) || !bytes.Equal(disk[:10*512], data[:10*512]) {
		t.Fatal("write did not land where asked")
	}

	// Read back the last sector of the disk.
	n, st, out = r.do(t, vt.R(header(TypeIn, 2047)), vt.W(513))
	if st != StatusOK || n != 513 || !bytes.Equal(out[0][:512], data[2047*512:2048*512]) {
		t.Fatalf("last sector: status %d len %d", st, n)
	}

	// Flush on an Unsafe drive succeeds without a data descriptor.
	if _, st, _ = r.do(t, vt.R(header(TypeFlush, 0)), vt.W(1)); st != StatusOK {
		t.Fatalf("flush status %d", st)
	}
	s := r.d.Stats()
	if s != (Stats{ReadBytes: 1536, WriteBytes: 1024, ReadCount: 2, WriteCount: 1, FlushCount: 1}) {
		t.Fatalf("stats %+v", s)
	}
	vt.Wait(t, time.Second, "used signals", func() bool { return r.tr.UsedSignals(0) == 4 })
}

func TestBadRequests(t *testing.T) {
	path, _ := image(t, 64*512)
	r := start(t, path, Config{})
	tests := []struct {
		name   string
		bufs   []vt.Buf
		status byte
		n      uint32
	}{
		{"read past the end", []vt.Buf{vt.R(header(TypeIn, 63)), vt.W(1024), vt.W(1)}, StatusIOErr, 1},
		{"write past the end", []vt.Buf{vt.R(header(TypeOut, 64)), vt.R(make([]byte, 512)), vt.W(1)}, StatusIOErr, 1},
		{"sector overflow", []vt.Buf{vt.R(header(TypeIn, ^uint64(0))), vt.W(512), vt.W(1)}, StatusIOErr, 1},
		{"partial sector", []vt.Buf{vt.R(header(TypeIn, 0)), vt.W(100), vt.W(1)}, StatusIOErr, 1},
		{"short id buffer", []vt.Buf{vt.R(header(TypeGetID, 0)), vt.W(10), vt.W(1)}, StatusIOErr, 1},
		{"unsupported", []vt.Buf{vt.R(header(11, 0)), vt.W(1)}, StatusUnsupp, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, st, _ := r.do(t, tc.bufs...)
			if st != tc.status || n != tc.n {
				t.Fatalf("status %d len %d, want %d %d", st, n, tc.status, tc.n)
			}
		})
	}
	// No room for a status: completed with length 0.
	for _, bufs := range [][]vt.Buf{{vt.R(header(TypeIn, 0))}, {vt.R([]byte("short")), vt.W(1)}} {
		head := r.vq.Add(bufs...)
		r.d.Notify(0)
		if u := r.vq.WaitUsed(t, 1, 5*time.Second); u[0].ID != uint32(head) || u[0].Len != 0 {
			t.Fatalf("used %+v", u)
		}
	}
}

func TestReadOnly(t *testing.T) {
	path, data := image(t, 8*512)
	r := start(t, path, Config{ReadOnly: true, Cache: Writeback})
	if f := r.d.Features(); f&virtio.Bit(FeatureRO) == 0 || f&virtio.Bit(FeatureFlush) == 0 {
		t.Fatalf("features %#x lack RO|FLUSH", f)
	}
	_, st, _ := r.do(t, vt.R(header(TypeOut, 0)), vt.R(make([]byte, 512)), vt.W(1))
	if st != StatusIOErr {
		t.Fatalf("write to a read-only drive: status %d", st)
	}
	if disk, _ := os.ReadFile(path); !bytes.Equal(disk, data) {
		t.Fatal("read-only drive was written")
	}
	if _, st, _ = r.do(t, vt.R(header(TypeIn, 1)), vt.W(512), vt.W(1)); st != StatusOK {
		t.Fatal("read from a read-only drive failed")
	}
	if _, st, _ = r.do(t, vt.R(header(TypeFlush, 0)), vt.W(1)); st != StatusOK {
		t.Fatal("flush failed")
	}
}

func TestFeatures(t *testing.T) {
	path, _ := image(t, 512)
	base := virtio.Bit(virtio.FeatureVersion1) | virtio.Bit(virtio.FeatureRingEventIdx)
	tests := []struct {
		cfg  Config
		want uint64
	}{
		{Config{}, base},
		{Config{Cache: Writeback}, base | virtio.Bit(FeatureFlush)},
		{Config{ReadOnly: true}, base | virtio.Bit(FeatureRO)},
	}
	for _, tc := range tests {
		d, err := Open(path, tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.Features(); got != tc.want {
			t.Errorf("%+v: features %#x, want %#x", tc.cfg, got, tc.want)
		}
		d.Close()
	}
}

func TestGetID(t *testing.T) {
	path, _ := image(t, 512)
	r := start(t, path, Config{})
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	want := []byte(fmt.Sprintf("%d%d%d", st.Dev, st.Rdev, st.Ino))
	if len(want) > IDBytes {
		want = want[:IDBytes]
	}
	n, status, out := r.do(t, vt.R(header(TypeGetID, 0)), vt.W(IDBytes), vt.W(1))
	if status != StatusOK || n != IDBytes+1 {
		t.Fatalf("status %d len %d", status, n)
	}
	if !bytes.Equal(out[0][:len(want)], want) || !bytes.Equal(out[0][len(want):], make([]byte, IDBytes-len(want))) {
		t.Fatalf("id %q, want %q", out[0], want)
	}
}

func TestFlushWriteback(t *testing.T) {
	path, _ := image(t, 4*512)
	r := start(t, path, Config{Cache: Writeback})
	if _, st, _ := r.do(t, vt.R(header(TypeFlush, 0)), vt.W(1)); st != StatusOK {
		t.Fatalf("flush status %d", st)
	}
	if r.d.Stats().FlushCount != 1 {
		t.Fatal("flush not counted")
	}
}

func TestUpdateFile(t *testing.T) {
	path, _ := image(t, 8*512)
	r := start(t, path, Config{})
	old := r.d.Serial()
	bigger := filepath.Join(t.TempDir(), "bigger.img")
	if err := os.WriteFile(bigger, bytes.Repeat([]byte{0x5a}, 32*512), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.d.UpdateFile(bigger); err != nil {
		t.Fatal(err)
	}
	if r.d.Capacity() != 32 || r.tr.ConfigChanges() != 1 {
		t.Fatalf("capacity %d, config changes %d", r.d.Capacity(), r.tr.ConfigChanges())
	}
	if r.d.Serial() == old {
		t.Fatal("serial did not follow the new file")
	}
	_, st, out := r.do(t, vt.R(header(TypeIn, 31)), vt.W(512), vt.W(1))
	if st != StatusOK || out[0][0] != 0x5a {
		t.Fatal("read does not come from the new file")
	}
	if err := r.d.UpdateFile(filepath.Join(t.TempDir(), "missing")); !os.IsNotExist(err) {
		t.Fatalf("UpdateFile(missing) = %v", err)
	}
	if r.d.Capacity() != 32 {
		t.Fatal("a failed update changed the drive")
	}
	// Before activation the capacity changes without an interrupt.
	d, err := Open(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.UpdateFile(bigger); err != nil || d.Capacity() != 32 {
		t.Fatalf("inactive update: %v %d", err, d.Capacity())
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "nope"), Config{}); !os.IsNotExist(err) {
		t.Fatalf("Open(missing) = %v", err)
	}
	path, _ := image(t, 512)
	os.Chmod(path, 0o400)
	if os.Geteuid() != 0 {
		if _, err := Open(path, Config{}); err == nil {
			t.Fatal("opened a read-only file for writing")
		}
	}
	if d, err := Open(path, Config{ReadOnly: true}); err != nil {
		t.Fatal(err)
	} else {
		d.Close()
	}
}

type denyOnce struct{ denied atomic.Bool }

func (l *denyOnce) Allow(ops, bytes uint64) (bool, time.Duration) {
	if !l.denied.Swap(true) {
		return false, 5 * time.Millisecond
	}
	return true, 0
}

func TestLimiter(t *testing.T) {
	path, _ := image(t, 8*512)
	l := &denyOnce{}
	r := start(t, path, Config{Limiter: l})
	if _, st, _ := r.do(t, vt.R(header(TypeIn, 0)), vt.W(512), vt.W(1)); st != StatusOK || !l.denied.Load() {
		t.Fatal("throttled request not retried")
	}
}

func TestThroughMMIO(t *testing.T) {
	path, data := image(t, 256*512)
	mem := vt.NewMemory(t, memSize)
	d, err := Open(path, Config{Cache: Writeback})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	irq := &vt.Interrupt{}
	tr := mmio.New(d, mem, irq, logger.Discard)
	drv := &vt.MMIODriver{Regs: tr, Mem: mem, Alloc: vt.NewAllocator(0x1000, memSize)}
	if s, err := drv.Setup(^uint64(0), []uint16{256}); err != nil || s != 0xf {
		t.Fatalf("setup %#x %v", s, err)
	}
	if drv.Features&virtio.Bit(virtio.FeatureRingEventIdx) == 0 {
		t.Fatal("EVENT_IDX not negotiated")
	}
	if c := drv.ReadConfig(0, 8); binary.LittleEndian.Uint64(c) != 256 {
		t.Fatalf("capacity %x", c)
	}
	vq := drv.VQs[0]
	vq.SetUsedEvent(0xffff) // interrupt only when used.idx passes 0xffff
	for i := range 40 {
		vq.Add(vt.R(header(TypeIn, uint64(i))), vt.W(512), vt.W(1))
	}
	drv.Kick(0)
	u := vq.WaitUsed(t, 40, 5*time.Second)
	for i, e := range u {
		if e.Len != 513 {
			t.Fatalf("request %d: len %d", i, e.Len)
		}
		head := uint16(e.ID)
		if got := vq.Read(vq.Chains[head][1], 512); !bytes.Equal(got, data[i*512:(i+1)*512]) {
			t.Fatalf("request %d read wrong data", i)
		}
	}
	if irq.Count() != 0 {
		t.Fatalf("%d interrupts despite used_event", irq.Count())
	}
	// The device asked to be notified at the driver's next publication.
	if ev := vq.AvailEvent(); ev != 40 {
		t.Fatalf("avail_event %d", ev)
	}
	vq.SetUsedEvent(40)
	vq.Add(vt.R(header(TypeFlush, 0)), vt.W(1))
	drv.Kick(0)
	vq.WaitUsed(t, 1, 5*time.Second)
	vt.Wait(t, time.Second, "interrupt", func() bool { return irq.Count() == 1 })
}

func writeZeros(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	_, err = f.WriteAt(make([]byte, 1<<20), 0)
	return err
}
