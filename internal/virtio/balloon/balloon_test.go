package balloon

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/virtio"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

const memSize = 16 << 20

func TestLayout(t *testing.T) {
	v1 := virtio.Bit(virtio.FeatureVersion1)
	tests := []struct {
		cfg            Config
		features       uint64
		queues, sq, rq int
	}{
		{Config{AmountMiB: 1}, v1, 2, -1, -1},
		{Config{DeflateOnOOM: true}, v1 | virtio.Bit(FeatureDeflateOnOOM), 2, -1, -1},
		{Config{StatsIntervalS: 1}, v1 | virtio.Bit(FeatureStatsVQ), 3, 2, -1},
		{Config{FreePageReporting: true}, v1 | virtio.Bit(FeatureFreePageReporting), 3, -1, 2},
		{Config{StatsIntervalS: 5, FreePageReporting: true, DeflateOnOOM: true},
			v1 | virtio.Bit(FeatureStatsVQ) | virtio.Bit(FeatureFreePageReporting) | virtio.Bit(FeatureDeflateOnOOM), 4, 2, 3},
	}
	for _, tc := range tests {
		d, err := New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if d.Features() != tc.features || len(d.QueueMaxSizes()) != tc.queues || d.statsQ != tc.sq || d.reportQ != tc.rq {
			t.Errorf("%+v: features %#x queues %d stats %d report %d", tc.cfg, d.Features(), len(d.QueueMaxSizes()), d.statsQ, d.reportQ)
		}
	}
	if _, err := New(Config{AmountMiB: 1 << 24}); !errors.Is(err, ErrTooMuchMemory) {
		t.Fatalf("huge amount: %v", err)
	}
}

func TestConfigSpace(t *testing.T) {
	d, _ := New(Config{AmountMiB: 3})
	b := make([]byte, 16)
	d.ReadConfig(0, b)
	if binary.LittleEndian.Uint32(b) != 768 || !bytes.Equal(b[4:], make([]byte, 12)) {
		t.Fatalf("config %x", b)
	}
	d.WriteConfig(4, []byte{0x10, 0, 0, 0})
	d.WriteConfig(10, []byte{1, 2, 3, 4}) // out of bounds: ignored
	if d.ActualPages() != 16 || d.TargetPages() != 768 {
		t.Fatalf("actual %d target %d", d.ActualPages(), d.TargetPages())
	}
	d.ReadConfig(8, b[:8])
	if !bytes.Equal(b[:8], make([]byte, 8)) {
		t.Fatalf("tail %x", b[:8])
	}
}

type rig struct {
	d   *Device
	mem *guestmem.Memory
	vqs []*vt.VQ
	tr  *vt.Transport
}

func start(t *testing.T, cfg Config, mem *guestmem.Memory) *rig {
	t.Helper()
	if mem == nil {
		mem = vt.NewMemory(t, memSize)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	alloc := vt.NewAllocator(0x1000, 0x100000) // the first MiB holds rings and buffers
	r := &rig{d: d, mem: mem, tr: vt.NewTransport()}
	var qs []*virtio.Queue
	for range d.QueueMaxSizes() {
		vq := vt.NewVQ(mem, alloc, 16)
		q := vq.Queue(virtio.MaxQueueSize)
		if err := q.Activate(mem, false); err != nil {
			t.Fatal(err)
		}
		r.vqs = append(r.vqs, vq)
		qs = append(qs, q)
	}
	if err := d.Activate(virtio.Activation{Mem: mem, Queues: qs, Transport: r.tr}); err != nil {
		t.Fatal(err)
	}
	return r
}

func pfnList(pfns ...uint32) []byte {
	b := make([]byte, 4*len(pfns))
	for i, p := range pfns {
		binary.LittleEndian.PutUint32(b[4*i:], p)
	}
	return b
}

func fillPages(t *testing.T, mem *guestmem.Memory, first, n uint64) {
	t.Helper()
	page := bytes.Repeat([]byte{0xab}, 4096)
	for p := first; p < first+n; p++ {
		if err := mem.WriteAt(page, p<<PageShift); err != nil {
			t.Fatal(err)
		}
	}
}

func pageIsZero(t *testing.T, mem *guestmem.Memory, pfn uint64) bool {
	b := make([]byte, 4096)
	if err := mem.ReadAt(b, pfn<<PageShift); err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(b, make([]byte, 4096))
}

func TestInflateDeflate(t *testing.T) {
	r := start(t, Config{AmountMiB: 1}, nil)
	fillPages(t, r.mem, 0x400, 16) // pages 0x400-0x40f (4 MiB on)
	// Runs, a duplicate, and a page beyond RAM (logged, skipped).
	r.vqs[InflateQueue].Add(vt.R(pfnList(0x401, 0x402, 0x400, 0x402, 0x408, 0x1000000)))
	r.d.Notify(InflateQueue)
	if u := r.vqs[InflateQueue].WaitUsed(t, 1, 5*time.Second); u[0].Len != 0 {
		t.Fatalf("used %+v", u)
	}
	for p := uint64(0x400); p < 0x410; p++ {
		want := p <= 0x402 || p == 0x408
		if got := pageIsZero(t, r.mem, p); got != want {
			t.Errorf("page %#x zero=%v, want %v", p, got, want)
		}
	}
	// More pages than one chain may name: skipped, chain still returned.
	fillPages(t, r.mem, 0x500, 1)
	many := make([]uint32, MaxPagesPerDesc+1)
	for i := range many {
		many[i] = 0x500
	}
	r.vqs[InflateQueue].Add(vt.R(pfnList(many...)))
	r.d.Notify(InflateQueue)
	r.vqs[InflateQueue].WaitUsed(t, 1, 5*time.Second)
	if pageIsZero(t, r.mem, 0x500) {
		t.Fatal("an over-long inflate chain was honoured")
	}
	// Deflate just returns the chains.
	r.vqs[DeflateQueue].Add(vt.R(pfnList(0x401)))
	r.d.Notify(DeflateQueue)
	r.vqs[DeflateQueue].WaitUsed(t, 1, 5*time.Second)
	vt.Wait(t, time.Second, "signals", func() bool {
		return r.tr.UsedSignals(InflateQueue) == 2 && r.tr.UsedSignals(DeflateQueue) == 1
	})
}

func TestSharedMemoryDiscard(t *testing.T) {
	mem, err := guestmem.New([]guestmem.Region{{GPA: 0, Size: memSize}}, guestmem.Options{Backing: guestmem.Shared})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	fillPages(t, mem, 0x800, 4)
	if err := Discard(mem, 0x800<<PageShift, 2<<PageShift); err != nil {
		t.Fatal(err)
	}
	if !pageIsZero(t, mem, 0x800) || !pageIsZero(t, mem, 0x801) || pageIsZero(t, mem, 0x802) {
		t.Fatal("punched range wrong")
	}
	if err := Discard(mem, memSize-4096, 8192); err == nil {
		t.Fatal("discard beyond RAM succeeded")
	}
}

func TestFreePageReporting(t *testing.T) {
	r := start(t, Config{FreePageReporting: true}, nil)
	fillPages(t, r.mem, 0x600, 8)
	vq := r.vqs[2]
	vq.Add(vt.Buf{Write: true, Len: 4 << PageShift, Addr: 0x600 << PageShift}, vt.Buf{Write: true, Len: 1 << PageShift, Addr: 0x606 << PageShift})
	r.d.Notify(2)
	vq.WaitUsed(t, 1, 5*time.Second)
	for p := uint64(0x600); p < 0x608; p++ {
		want := p <= 0x603 || p == 0x606
		if got := pageIsZero(t, r.mem, p); got != want {
			t.Errorf("page %#x zero=%v, want %v", p, got, want)
		}
	}
}

func statsBuf(kv ...uint64) []byte {
	b := make([]byte, 10*len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		binary.LittleEndian.PutUint16(b[5*i:], uint16(kv[i]))
		binary.LittleEndian.PutUint64(b[5*i+2:], kv[i+1])
	}
	return b
}

func TestStats(t *testing.T) {
	r := start(t, Config{AmountMiB: 2, StatsIntervalS: 1}, nil)
	sq := r.vqs[2]
	sq.Add(vt.R(statsBuf(tagFreeMemory, 1000, tagTotalMemory, 5000, 99, 7, tagOOMKill, 3)))
	r.d.Notify(2)
	vt.Wait(t, 5*time.Second, "stats read", func() bool {
		s, _ := r.d.Stats()
		return s.FreeMemory != nil
	})
	s, err := r.d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if *s.FreeMemory != 1000 || *s.TotalMemory != 5000 || *s.OOMKill != 3 || s.SwapIn != nil {
		t.Fatalf("stats %+v", s)
	}
	if s.TargetPages != 512 || s.TargetMiB != 2 || s.ActualPages != 0 {
		t.Fatalf("sizes %+v", s)
	}
	// The device holds the buffer until the poll; the 1 s timer returns it.
	if sq.UsedIdx() != 0 {
		t.Fatal("stats buffer returned before the poll")
	}
	sq.WaitUsed(t, 1, 3*time.Second)
	// A new interval returns the (next) buffer at once.
	sq.Add(vt.R(statsBuf(tagFreeMemory, 2000)))
	r.d.Notify(2)
	vt.Wait(t, 5*time.Second, "second stats", func() bool {
		s, _ := r.d.Stats()
		return *s.FreeMemory == 2000
	})
	if err := r.d.SetStatsInterval(60); err != nil {
		t.Fatal(err)
	}
	sq.WaitUsed(t, 1, 2*time.Second)
	if r.d.StatsInterval() != 60 {
		t.Fatal("interval not updated")
	}
	for _, bad := range []uint16{0} {
		if err := r.d.SetStatsInterval(bad); !errors.Is(err, ErrStatsStateChange) {
			t.Fatalf("SetStatsInterval(%d) = %v", bad, err)
		}
	}
	if err := r.d.SetStatsInterval(60); err != nil {
		t.Fatal("same interval refused")
	}
}

func TestStatsDisabled(t *testing.T) {
	d, _ := New(Config{})
	if _, err := d.Stats(); !errors.Is(err, ErrStatsDisabled) {
		t.Fatal(err)
	}
	if err := d.SetStatsInterval(5); !errors.Is(err, ErrStatsStateChange) {
		t.Fatal(err)
	}
	if err := d.SetTarget(1); !errors.Is(err, virtio.ErrNotActive) || err.Error() != "Device not activated yet." {
		t.Fatal(err)
	}
}

func TestSetTarget(t *testing.T) {
	r := start(t, Config{AmountMiB: 1}, nil)
	if err := r.d.SetTarget(8); err != nil {
		t.Fatal(err)
	}
	if r.d.TargetPages() != 8*256 || r.tr.ConfigChanges() != 1 {
		t.Fatalf("target %d, config changes %d", r.d.TargetPages(), r.tr.ConfigChanges())
	}
	err := r.d.SetTarget(17) // the guest has 16 MiB
	var tm *TooMuchMemoryError
	if !errors.As(err, &tm) || err.Error() != "Requested memory should be less than 17MiB" {
		t.Fatalf("SetTarget(17) = %v", err)
	}
	if r.d.TargetPages() != 8*256 {
		t.Fatal("refused target applied")
	}
}

func TestThroughMMIO(t *testing.T) {
	mem := vt.NewMemory(t, memSize)
	d, _ := New(Config{AmountMiB: 4, StatsIntervalS: 30, DeflateOnOOM: true})
	defer d.Close()
	irq := &vt.Interrupt{}
	tr := mmio.New(d, mem, irq, logger.Discard)
	drv := &vt.MMIODriver{Regs: tr, Mem: mem, Alloc: vt.NewAllocator(0x1000, 0x100000)}
	if s, err := drv.Setup(^uint64(0), []uint16{256, 256, 256}); err != nil || s != 0xf {
		t.Fatalf("setup %#x %v", s, err)
	}
	if got := binary.LittleEndian.Uint32(drv.ReadConfig(0, 4)); got != 1024 {
		t.Fatalf("num_pages %d", got)
	}
	if err := d.SetTarget(2); err != nil {
		t.Fatal(err)
	}
	if drv.Ack()&mmio.IntConfig == 0 {
		t.Fatal("no config interrupt")
	}
	fillPages(t, mem, 0x700, 2)
	drv.VQs[InflateQueue].Add(vt.R(pfnList(0x700, 0x701)))
	drv.Kick(InflateQueue)
	drv.VQs[InflateQueue].WaitUsed(t, 1, 5*time.Second)
	if !pageIsZero(t, mem, 0x700) || !pageIsZero(t, mem, 0x701) {
		t.Fatal("inflated pages kept")
	}
	// The driver reports its progress in actual.
	tr.Write(mmio.ConfigOffset+4, []byte{0, 2, 0, 0})
	if d.ActualPages() != 512 {
		t.Fatal("actual not written")
	}
	drv.Status(0)
	if d.ActualPages() != 0 {
		t.Fatal("reset kept actual")
	}
}
