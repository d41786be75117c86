package mmio_test

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/ember-vmm/ember/internal/virtio"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// echo is a fake device: on each notification it completes every chain on
// the queue with its writable length, synchronously.
type echo struct {
	mu          sync.Mutex
	features    uint64
	sizes       []uint16
	config      [16]byte
	act         *virtio.Activation
	activations int
	resets      int
	notifies    []int
	failWith    error
	chains      int
}

func newEcho() *echo {
	return &echo{
		features: virtio.Bit(virtio.FeatureVersion1) | virtio.Bit(virtio.FeatureRingEventIdx) | 1<<5,
		sizes:    []uint16{16, 8},
		config:   [16]byte{1, 2, 3, 4, 5, 6, 7, 8},
	}
}

func (e *echo) Type() virtio.DeviceType { return virtio.TypeRng }
func (e *echo) Features() uint64        { return e.features }
func (e *echo) QueueMaxSizes() []uint16 { return e.sizes }
func (e *echo) WriteConfig(off uint64, d []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if off < uint64(len(e.config)) {
		copy(e.config[off:], d)
	}
}
func (e *echo) ReadConfig(off uint64, d []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(d)
	if off < uint64(len(e.config)) {
		copy(d, e.config[off:])
	}
}
func (e *echo) Activate(a virtio.Activation) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failWith != nil {
		return e.failWith
	}
	e.act = &a
	e.activations++
	return nil
}
func (e *echo) Reset() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.act = nil
	e.resets++
	return nil
}
func (e *echo) Notify(q int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.notifies = append(e.notifies, q)
	if e.act == nil || q >= len(e.act.Queues) || e.act.Queues[q] == nil {
		return
	}
	vq := e.act.Queues[q]
	var c virtio.Chain
	for {
		ok, err := vq.Next(&c)
		if err != nil {
			e.act.Transport.NeedsReset(err)
			return
		}
		if !ok {
			break
		}
		e.chains++
		vq.Push(c.Head, uint32(c.InLen))
	}
	if vq.NeedsSignal() {
		e.act.Transport.SignalUsed(q)
	}
}

const memSize = 1 << 20

type fixture struct {
	dev *echo
	tr  *mmio.Transport
	irq *vt.Interrupt
	drv *vt.MMIODriver
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	mem := vt.NewMemory(t, memSize)
	f := &fixture{dev: newEcho(), irq: &vt.Interrupt{}}
	f.tr = mmio.New(f.dev, mem, f.irq, vtLog)
	f.drv = &vt.MMIODriver{Regs: f.tr, Mem: mem, Alloc: vt.NewAllocator(0x1000, memSize)}
	return f
}

func TestIdentity(t *testing.T) {
	f := newFixture(t)
	regs := []struct {
		off  uint64
		want uint32
	}{
		{mmio.RegMagic, 0x74726976},
		{mmio.RegVersion, 2},
		{mmio.RegDeviceID, uint32(virtio.TypeRng)},
		{mmio.RegVendorID, 0},
		{mmio.RegStatus, 0},
		{mmio.RegInterruptStatus, 0},
		{mmio.RegConfigGeneration, 0},
		{mmio.RegQueueNumMax, 16}, // queue 0 selected
		{mmio.RegQueueReady, 0},
		{mmio.RegDeviceFeatures, 1<<5 | 1<<virtio.FeatureRingEventIdx},
		{0x0b0, 0}, // SHM registers are not implemented
	}
	for _, r := range regs {
		if got := f.drv.Read32(r.off); got != r.want {
			t.Errorf("register %#x = %#x, want %#x", r.off, got, r.want)
		}
	}
	f.drv.Write32(mmio.RegDeviceFeatSel, 1)
	if got := f.drv.Read32(mmio.RegDeviceFeatures); got != 1 {
		t.Errorf("features page 1 = %#x, want VERSION_1", got)
	}
	f.drv.Write32(mmio.RegDeviceFeatSel, 2)
	if got := f.drv.Read32(mmio.RegDeviceFeatures); got != 0 {
		t.Errorf("features page 2 = %#x", got)
	}
	f.drv.Write32(mmio.RegQueueSel, 1)
	if got := f.drv.Read32(mmio.RegQueueNumMax); got != 8 {
		t.Errorf("queue 1 max = %d", got)
	}
	f.drv.Write32(mmio.RegQueueSel, 2)
	if got := f.drv.Read32(mmio.RegQueueNumMax); got != 0 {
		t.Errorf("queue 2 max = %d, want 0 (no such queue)", got)
	}
	if got := f.drv.ReadConfig(2, 4); binary.LittleEndian.Uint32(got) != 0x06050403 {
		t.Errorf("config read %x", got)
	}
}

func TestBadWidths(t *testing.T) {
	f := newFixture(t)
	for _, n := range []int{1, 2, 8} {
		b := make([]byte, n)
		for i := range b {
			b[i] = 0xee
		}
		f.tr.Read(mmio.RegMagic, b)
		for _, c := range b {
			if c != 0 {
				t.Errorf("%d-byte register read gave %x, want zeros", n, b)
				break
			}
		}
		f.tr.Write(mmio.RegStatus, b)
	}
	if s := f.tr.Status(); s != 0 {
		t.Fatalf("narrow status writes took effect: %#x", s)
	}
	b := make([]byte, 4)
	f.tr.Read(mmio.Size, b) // past the window
	f.tr.Write(mmio.Size+4, b)
}

func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	want := virtio.Bit(virtio.FeatureVersion1) | virtio.Bit(virtio.FeatureRingEventIdx) | 1<<7 // 7 is not offered
	status, err := f.drv.Setup(want, []uint16{16, 0})
	if err != nil {
		t.Fatal(err)
	}
	if status != 0xf {
		t.Fatalf("status %#x, want 0xf", status)
	}
	if !f.tr.Active() || f.dev.activations != 1 {
		t.Fatal("device not activated")
	}
	a := f.dev.act
	if a.Features != virtio.Bit(virtio.FeatureVersion1)|virtio.Bit(virtio.FeatureRingEventIdx) {
		t.Fatalf("negotiated %#x", a.Features)
	}
	if a.Queues[0] == nil || a.Queues[1] != nil || a.Queues[0].Size != 16 {
		t.Fatalf("queues %+v", a.Queues)
	}
	// Activation looks at every enabled queue once.
	if len(f.dev.notifies) != 1 || f.dev.notifies[0] != 0 {
		t.Fatalf("notifies after activation: %v", f.dev.notifies)
	}

	// A chain, kicked through QueueNotify.
	vq := f.drv.VQs[0]
	vq.Add(vt.R([]byte("x")), vt.W(5))
	f.drv.Kick(0)
	if u := vq.TakeUsed(); len(u) != 1 || u[0].Len != 5 {
		t.Fatalf("used %+v", u)
	}
	if f.irq.Count() != 1 || f.drv.Read32(mmio.RegInterruptStatus) != mmio.IntVring {
		t.Fatalf("interrupt %d isr %#x", f.irq.Count(), f.drv.Read32(mmio.RegInterruptStatus))
	}
	if isr := f.drv.Ack(); isr != mmio.IntVring || f.drv.Read32(mmio.RegInterruptStatus) != 0 {
		t.Fatal("ack did not clear the interrupt status")
	}
	// And through an ioeventfd-style Notify; out-of-range queues are dropped.
	vq.Add(vt.W(2))
	f.tr.Notify(0)
	f.tr.Notify(7)
	if u := vq.TakeUsed(); len(u) != 1 {
		t.Fatalf("used %+v", u)
	}

	// Queue configuration is frozen after DRIVER_OK.
	f.drv.Write32(mmio.RegQueueSel, 0)
	f.drv.Write32(mmio.RegQueueNum, 4)
	if a.Queues[0].Size != 16 {
		t.Fatal("queue size changed after DRIVER_OK")
	}
	// So are features.
	f.drv.Write32(mmio.RegDriverFeatSel, 0)
	f.drv.Write32(mmio.RegDriverFeatures, 1<<5)
	// Reset.
	gen := f.drv.Read32(mmio.RegConfigGeneration)
	f.tr.ChangeConfig(func() {})
	if f.drv.Read32(mmio.RegConfigGeneration) != gen+1 {
		t.Fatal("config generation did not move")
	}
	f.drv.Status(0)
	if f.tr.Active() || f.dev.resets != 1 || f.tr.Status() != 0 || f.drv.Read32(mmio.RegInterruptStatus) != 0 {
		t.Fatalf("after reset: active %v resets %d status %#x", f.tr.Active(), f.dev.resets, f.tr.Status())
	}
	if f.drv.Read32(mmio.RegConfigGeneration) != gen+1 {
		t.Fatal("reset cleared the config generation")
	}
	f.drv.Write32(mmio.RegQueueSel, 0)
	if f.drv.Read32(mmio.RegQueueReady) != 0 {
		t.Fatal("queue still ready after reset")
	}
	n := len(f.dev.notifies)
	f.drv.Kick(0)
	if len(f.dev.notifies) != n {
		t.Fatal("notification reached a reset device")
	}
	// A second bring-up works.
	if status, err := f.drv.Setup(want, []uint16{8, 8}); err != nil || status != 0xf {
		t.Fatalf("second setup: %#x %v", status, err)
	}
	if f.dev.activations != 2 {
		t.Fatal("not activated again")
	}
}

func TestStatusTransitions(t *testing.T) {
	const (
		ack = virtio.StatusAcknowledge
		drv = virtio.StatusDriver
		fok = virtio.StatusFeaturesOK
		dok = virtio.StatusDriverOK
	)
	tests := []struct {
		name   string
		writes []uint32
		want   uint32
	}{
		{"skip to driver", []uint32{ack | drv}, 0},
		{"skip to driver ok", []uint32{ack, ack | drv, ack | drv | dok}, ack | drv},
		{"clear a bit", []uint32{ack, ack | drv, ack}, ack | drv},
		{"failed", []uint32{ack, virtio.StatusFailed}, ack | virtio.StatusFailed},
		{"features ok", []uint32{ack, ack | drv, ack | drv | fok}, ack | drv | fok},
		{"needs reset is not the driver's", []uint32{ack, ack | virtio.StatusDeviceNeedsReset}, ack},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			for _, w := range tc.writes {
				f.drv.Status(w)
			}
			if got := f.tr.Status(); got != tc.want {
				t.Fatalf("status %#x, want %#x", got, tc.want)
			}
			if f.dev.activations != 0 {
				t.Fatal("activated")
			}
		})
	}
}

func TestGatedWrites(t *testing.T) {
	f := newFixture(t)
	// Features before DRIVER are ignored.
	f.drv.Write32(mmio.RegDriverFeatures, 1<<5)
	// Queue fields before FEATURES_OK are ignored.
	f.drv.Write32(mmio.RegQueueNum, 4)
	f.drv.Write32(mmio.RegQueueReady, 1)
	if f.drv.Read32(mmio.RegQueueReady) != 0 {
		t.Fatal("queue made ready before FEATURES_OK")
	}
	// Config writes before DRIVER are ignored.
	f.tr.Write(mmio.ConfigOffset, []byte{0xaa})
	if f.dev.config[0] != 1 {
		t.Fatal("config written before DRIVER")
	}
	f.drv.Status(virtio.StatusAcknowledge)
	f.drv.Status(virtio.StatusAcknowledge | virtio.StatusDriver)
	f.tr.Write(mmio.ConfigOffset, []byte{0xaa})
	if f.dev.config[0] != 0xaa {
		t.Fatal("config write refused with DRIVER set")
	}
	// Interrupt ack before DRIVER_OK is ignored.
	f.tr.ChangeConfig(func() {})
	f.drv.Write32(mmio.RegInterruptAck, mmio.IntConfig)
	if f.drv.Read32(mmio.RegInterruptStatus) != mmio.IntConfig {
		t.Fatal("interrupt acknowledged before DRIVER_OK")
	}
	// Unknown features pages.
	f.drv.Write32(mmio.RegDriverFeatSel, 5)
	f.drv.Write32(mmio.RegDriverFeatures, 0xffffffff)
	f.drv.Write32(0x0c0, 1) // unknown register
}

func TestActivationFailure(t *testing.T) {
	t.Run("bad queue", func(t *testing.T) {
		f := newFixture(t)
		f.drv.Status(0)
		f.drv.Status(virtio.StatusAcknowledge)
		f.drv.Status(virtio.StatusAcknowledge | virtio.StatusDriver)
		f.drv.Status(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK)
		f.drv.Write32(mmio.RegQueueSel, 0)
		f.drv.Write32(mmio.RegQueueNum, 16)
		f.drv.Write32(mmio.RegQueueDescLow, 0x1008) // misaligned
		f.drv.Write32(mmio.RegQueueReady, 1)
		f.drv.Status(0xf)
		if s := f.tr.Status(); s != 0xf|virtio.StatusDeviceNeedsReset {
			t.Fatalf("status %#x", s)
		}
		if f.dev.activations != 0 || f.tr.Active() {
			t.Fatal("activated with a bad queue")
		}
		if f.irq.Count() != 1 || f.drv.Read32(mmio.RegInterruptStatus) != mmio.IntConfig {
			t.Fatal("no config interrupt")
		}
		f.drv.Status(0)
		if f.tr.Status() != 0 {
			t.Fatal("reset did not clear NEEDS_RESET")
		}
	})
	t.Run("device refuses", func(t *testing.T) {
		f := newFixture(t)
		f.dev.failWith = errors.New("no")
		if s, err := f.drv.Setup(^uint64(0), []uint16{16, 8}); err != nil || s != 0xf|virtio.StatusDeviceNeedsReset {
			t.Fatalf("status %#x %v", s, err)
		}
	})
}

func TestDeviceNeedsReset(t *testing.T) {
	f := newFixture(t)
	if _, err := f.drv.Setup(^uint64(0), []uint16{16, 8}); err != nil {
		t.Fatal(err)
	}
	vq := f.drv.VQs[1]
	vq.SetAvailIdx(100) // a broken driver
	f.drv.Kick(1)
	if s := f.tr.Status(); s&virtio.StatusDeviceNeedsReset == 0 {
		t.Fatalf("status %#x lacks NEEDS_RESET", s)
	}
	if f.drv.Read32(mmio.RegInterruptStatus)&mmio.IntConfig == 0 {
		t.Fatal("no config interrupt")
	}
	// Config writes are refused until reset.
	f.tr.Write(mmio.ConfigOffset, []byte{0x55})
	if f.dev.config[0] == 0x55 {
		t.Fatal("config written while NEEDS_RESET")
	}
	f.drv.Status(0)
	if f.tr.Status() != 0 {
		t.Fatalf("status %#x after reset", f.tr.Status())
	}
}
