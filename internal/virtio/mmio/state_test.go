package mmio_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/ember-vmm/ember/internal/virtio"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// runningFixture is a device the driver brought up, with three chains
// completed on queue 0 and the selects moved off their defaults.
func runningFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	want := virtio.Bit(virtio.FeatureVersion1) | virtio.Bit(virtio.FeatureRingEventIdx) | 1<<5
	if status, err := f.drv.Setup(want, []uint16{16, 8}); err != nil || status != 0xf {
		t.Fatalf("setup: %#x %v", status, err)
	}
	vq := f.drv.VQs[0]
	for i := 0; i < 3; i++ {
		vq.Add(vt.W(uint32(10 + i)))
	}
	f.drv.Kick(0)
	if u := vq.TakeUsed(); len(u) != 3 {
		t.Fatalf("used %+v", u)
	}
	f.tr.ChangeConfig(func() {})
	f.drv.Write32(mmio.RegQueueSel, 1)
	f.drv.Write32(mmio.RegDeviceFeatSel, 1)
	return f
}

func TestQuiesceRestore(t *testing.T) {
	f := runningFixture(t)
	features := f.dev.act.Features
	st, err := f.tr.Quiesce()
	if err != nil {
		t.Fatal(err)
	}
	if f.dev.resets != 1 || f.tr.Active() {
		t.Fatalf("quiesce: %d device resets, active %v", f.dev.resets, f.tr.Active())
	}
	if !st.Active || st.Status != 0xf || st.QueueSel != 1 || st.FeatSel != 1 || st.ConfigGen != 1 {
		t.Fatalf("state %+v", st)
	}
	if q := st.Queues[0]; q.NextAvail != 3 || q.NextUsed != 3 || q.Size != 16 || !q.Ready || q.DescTable != f.drv.VQs[0].Desc {
		t.Fatalf("queue 0 state %+v", q)
	}
	// A notification while quiesced does not reach the device.
	n := len(f.dev.notifies)
	f.drv.Kick(0)
	if len(f.dev.notifies) != n {
		t.Fatal("notification reached a quiesced device")
	}

	// Through JSON into a new transport on the same memory, as a restore.
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var loaded mmio.State
	if err := json.Unmarshal(b, &loaded); err != nil {
		t.Fatal(err)
	}
	dev, irq := newEcho(), &vt.Interrupt{}
	tr := mmio.New(dev, f.drv.Mem, irq, vtLog)
	if err := tr.Restore(loaded); err != nil {
		t.Fatal(err)
	}
	if !tr.Active() || dev.activations != 1 {
		t.Fatalf("restored device: active %v, %d activations", tr.Active(), dev.activations)
	}
	if got := dev.act.Features; got != features {
		t.Errorf("restored features %#x, want %#x", got, features)
	}
	if dev.act.Queues[0] == nil || dev.act.Queues[1] == nil {
		t.Fatal("restored device lacks its queues")
	}
	if irq.Count() != 1 {
		t.Errorf("restore raised %d interrupts, want 1", irq.Count())
	}
	drv := &vt.MMIODriver{Regs: tr, Mem: f.drv.Mem}
	for _, r := range []struct{ off, want uint32 }{
		{mmio.RegStatus, 0xf}, {mmio.RegConfigGeneration, 1}, {mmio.RegQueueNumMax, 8}, {mmio.RegQueueReady, 1},
		{mmio.RegDeviceFeatures, 1}, {mmio.RegInterruptStatus, mmio.IntVring | mmio.IntConfig},
	} {
		if got := drv.Read32(uint64(r.off)); got != r.want {
			t.Errorf("register %#x = %#x after restore, want %#x", r.off, got, r.want)
		}
	}
	// The device continues the ring where the old one stopped.
	vq := f.drv.VQs[0]
	vq.Add(vt.W(42))
	drv.Kick(0)
	u := vq.TakeUsed()
	if len(u) != 1 || u[0].Len != 42 {
		t.Fatalf("used after restore %+v", u)
	}
	if idx := vq.UsedIdx(); idx != 4 {
		t.Errorf("used.idx %d after restore, want 4", idx)
	}

	// The quiesced transport resumes the same way.
	if err := f.tr.Restore(st); err != nil {
		t.Fatal(err)
	}
	if !f.tr.Active() || f.dev.activations != 2 {
		t.Fatalf("resumed: active %v, %d activations", f.tr.Active(), f.dev.activations)
	}
	if err := f.tr.Restore(st); !errors.Is(err, mmio.ErrState) {
		t.Errorf("restoring a running transport: %v, want ErrState", err)
	}
}

// TestQuiesceRetakes checks that a chain taken but not completed when the
// device stopped is taken again after a restore.
func TestQuiesceRetakes(t *testing.T) {
	f := runningFixture(t)
	st, err := f.tr.Quiesce()
	if err != nil {
		t.Fatal(err)
	}
	st.Queues[0].NextAvail++ // as if the device held the next chain
	vq := f.drv.VQs[0]
	vq.Add(vt.W(7))
	dev := newEcho()
	tr := mmio.New(dev, f.drv.Mem, &vt.Interrupt{}, vtLog)
	if err := tr.Restore(st); err != nil {
		t.Fatal(err)
	}
	if u := vq.TakeUsed(); len(u) != 1 || u[0].Len != 7 || dev.chains != 1 {
		t.Fatalf("held chain after restore: used %+v, %d chains", u, dev.chains)
	}
}

func TestQuiesceInactive(t *testing.T) {
	f := newFixture(t)
	f.drv.Status(virtio.StatusAcknowledge)
	st, err := f.tr.Quiesce()
	if err != nil {
		t.Fatal(err)
	}
	if st.Active || f.dev.resets != 0 || st.Status != virtio.StatusAcknowledge {
		t.Fatalf("state %+v, %d resets", st, f.dev.resets)
	}
	dev := newEcho()
	tr := mmio.New(dev, f.drv.Mem, &vt.Interrupt{}, vtLog)
	if err := tr.Restore(st); err != nil {
		t.Fatal(err)
	}
	if tr.Active() || dev.activations != 0 || tr.Status() != virtio.StatusAcknowledge {
		t.Fatalf("restored: active %v, %d activations, status %#x", tr.Active(), dev.activations, tr.Status())
	}
	// The driver carries on with its initialization.
	drv := &vt.MMIODriver{Regs: tr, Mem: f.drv.Mem, Alloc: f.drv.Alloc}
	if status, err := drv.Setup(virtio.Bit(virtio.FeatureVersion1), []uint16{4, 4}); err != nil || status != 0xf {
		t.Fatalf("setup after restore: %#x %v", status, err)
	}
}

func TestRestoreRefused(t *testing.T) {
	f := runningFixture(t)
	good, err := f.tr.Quiesce()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*mmio.State)
	}{
		{"version", func(s *mmio.State) { s.Version = 9 }},
		{"device type", func(s *mmio.State) { s.DeviceType = uint32(virtio.TypeNet) }},
		{"status", func(s *mmio.State) { s.Status = virtio.StatusDriverOK }},
		{"features", func(s *mmio.State) { s.DrvFeatures |= 1 << 7 }},
		{"interrupt status", func(s *mmio.State) { s.ISR = 4 }},
		{"queue count", func(s *mmio.State) { s.Queues = s.Queues[:1] }},
		{"queue max", func(s *mmio.State) { s.Queues[1].MaxSize = 256 }},
		{"queue ahead", func(s *mmio.State) { s.Queues[0].NextAvail = s.Queues[0].NextUsed + 17 }},
		{"active before driver ok", func(s *mmio.State) { s.Status = 0xb }},
		{"queue size", func(s *mmio.State) { s.Queues[0].Size = 32 }},
		{"ring outside memory", func(s *mmio.State) { s.Queues[0].UsedRing = memSize }},
		{"misaligned ring", func(s *mmio.State) { s.Queues[0].DescTable++ }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			s.Queues = append([]mmio.QueueState(nil), good.Queues...)
			tc.change(&s)
			dev := newEcho()
			tr := mmio.New(dev, f.drv.Mem, &vt.Interrupt{}, vtLog)
			err := tr.Restore(s)
			if !errors.Is(err, mmio.ErrState) {
				t.Fatalf("error %v, want ErrState", err)
			}
			if tr.Active() || dev.activations != 0 {
				t.Fatal("a refused state activated the device")
			}
		})
	}
}

// FuzzRestore loads arbitrary JSON as transport state: an error or a
// restored transport, never a panic.
func FuzzRestore(f *testing.F) {
	f.Add([]byte(`{"version":1,"device_type":4,"status":15,"active":true,"queues":[{"max_size":16,"size":16,"ready":true,"desc_table":4096,"avail_ring":8192,"used_ring":12288,"next_avail":3,"next_used":3},{"max_size":8}]}`))
	f.Add([]byte(`{"version":1,"device_type":4,"status":3,"queues":[{"max_size":16},{"max_size":8}]}`))
	f.Add([]byte(`{"version":1,"device_type":4,"status":15,"active":true,"queues":[{"max_size":16,"size":0,"ready":true},{"max_size":8,"size":8,"ready":true,"used_ring":1048572}]}`))
	mem := vt.NewMemory(f, memSize)
	f.Fuzz(func(t *testing.T, b []byte) {
		var s mmio.State
		if json.Unmarshal(b, &s) != nil {
			return
		}
		tr := mmio.New(newEcho(), mem, &vt.Interrupt{}, vtLog)
		if err := tr.Restore(s); err != nil && !errors.Is(err, mmio.ErrState) {
			t.Fatalf("unclassified error %v", err)
		}
		tr.Read(mmio.RegStatus, make([]byte, 4))
	})
}
