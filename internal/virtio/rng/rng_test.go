package rng

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/virtio"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

const memSize = 4 << 20

func start(t *testing.T, cfg Config) (*Device, *vt.VQ, *vt.Transport) {
	t.Helper()
	mem := vt.NewMemory(t, memSize)
	vq := vt.NewVQ(mem, vt.NewAllocator(0x1000, memSize), 16)
	q := vq.Queue(virtio.MaxQueueSize)
	if err := q.Activate(mem, false); err != nil {
		t.Fatal(err)
	}
	d := New(cfg)
	tr := vt.NewTransport()
	if err := d.Activate(virtio.Activation{Mem: mem, Queues: []*virtio.Queue{q}, Transport: tr}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, vq, tr
}

func TestFill(t *testing.T) {
	d, vq, tr := start(t, Config{})
	tests := []struct {
		bufs []vt.Buf
		want uint32
	}{
		{[]vt.Buf{vt.W(32), vt.W(16)}, 48},
		{[]vt.Buf{vt.W(100000)}, MaxRequestBytes},
		{[]vt.Buf{vt.R([]byte("ignored"))}, 0},
		{[]vt.Buf{vt.R([]byte("x")), vt.W(8)}, 8},
	}
	for i, tc := range tests {
		head := vq.Add(tc.bufs...)
		d.Notify(0)
		u := vq.WaitUsed(t, 1, 5*time.Second)
		if u[0].ID != uint32(head) || u[0].Len != tc.want {
			t.Fatalf("case %d: used %+v, want head %d len %d", i, u, head, tc.want)
		}
		if tc.want >= 32 {
			addr := vq.Chains[head][0]
			if got := vq.Read(addr, 32); bytes.Equal(got, make([]byte, 32)) {
				t.Fatalf("case %d: buffer still zero", i)
			}
		}
	}
	vt.Wait(t, time.Second, "signals", func() bool { return tr.UsedSignals(0) == len(tests) })
	if d.Requests() != uint64(len(tests)) || d.Bytes() != 48+MaxRequestBytes+8 {
		t.Fatalf("counters %d %d", d.Requests(), d.Bytes())
	}
}

type limiter struct {
	mu     sync.Mutex
	denies int
	asked  []uint64
}

func (l *limiter) Allow(ops, bytes uint64) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked = append(l.asked, bytes)
	if l.denies > 0 {
		l.denies--
		return false, 5 * time.Millisecond
	}
	return true, 0
}

func TestLimiter(t *testing.T) {
	l := &limiter{denies: 2}
	d, vq, _ := start(t, Config{Limiter: l})
	vq.Add(vt.W(10))
	d.Notify(0)
	u := vq.WaitUsed(t, 1, 5*time.Second)
	if u[0].Len != 10 {
		t.Fatalf("used %+v", u)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.asked) != 3 {
		t.Fatalf("limiter asked %d times, want 3 (two refusals, then the retry)", len(l.asked))
	}
}

func TestBrokenDriver(t *testing.T) {
	d, vq, tr := start(t, Config{})
	vq.SetAvailIdx(1000)
	d.Notify(0)
	vt.Wait(t, 5*time.Second, "NeedsReset", func() bool { return len(tr.Errors()) == 1 })
	if !errors.Is(tr.Errors()[0], virtio.ErrBroken) {
		t.Fatal(tr.Errors())
	}
	if err := d.Reset(); err != nil {
		t.Fatal(err)
	}
	d.Notify(0) // inactive: ignored
}

func TestActivateErrors(t *testing.T) {
	d := New(Config{})
	if err := d.Activate(virtio.Activation{Queues: []*virtio.Queue{nil}}); err == nil {
		t.Fatal("activated without a queue")
	}
	var cfg [4]byte
	d.ReadConfig(0, cfg[:])
	if d.Type() != virtio.TypeRng || d.Features() != virtio.Bit(virtio.FeatureVersion1) || len(d.QueueMaxSizes()) != 1 {
		t.Fatal("identity")
	}
}

// TestThroughMMIO brings the device up as Linux would.
func TestThroughMMIO(t *testing.T) {
	mem := vt.NewMemory(t, memSize)
	d := New(Config{})
	defer d.Close()
	irq := &vt.Interrupt{}
	tr := mmio.New(d, mem, irq, logger.Discard)
	drv := &vt.MMIODriver{Regs: tr, Mem: mem, Alloc: vt.NewAllocator(0x1000, memSize)}
	if s, err := drv.Setup(^uint64(0), []uint16{256}); err != nil || s != 0xf {
		t.Fatalf("setup: %#x %v", s, err)
	}
	vq := drv.VQs[0]
	for range 300 { // more than the ring holds, in rounds
		vq.Add(vt.W(64))
		drv.Kick(0)
		vq.WaitUsed(t, 1, 5*time.Second)
	}
	vt.Wait(t, time.Second, "interrupts", func() bool { return irq.Count() > 0 })
	drv.Status(0)
	if tr.Active() {
		t.Fatal("still active after reset")
	}
}
