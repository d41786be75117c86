package rng

import (
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// TestSnapshotContinues: the entropy device has no state of its own; a
// new one on the restored transport continues the ring.
func TestSnapshotContinues(t *testing.T) {
	mem := vt.NewMemory(t, memSize)
	d := New(Config{Log: logger.Discard})
	defer d.Close()
	tr := mmio.New(d, mem, &vt.Interrupt{}, logger.Discard)
	drv := &vt.MMIODriver{Regs: tr, Mem: mem, Alloc: vt.NewAllocator(0x1000, memSize)}
	if s, err := drv.Setup(^uint64(0), []uint16{8}); err != nil || s != 0xf {
		t.Fatalf("setup %#x %v", s, err)
	}
	vq := drv.VQs[0]
	for range 10 { // wraps the 8-entry ring
		vq.Add(vt.W(16))
		drv.Kick(0)
		vq.WaitUsed(t, 1, 5*time.Second)
	}
	st, err := tr.Quiesce()
	if err != nil {
		t.Fatal(err)
	}
	if q := st.Queues[0]; q.NextAvail != 10 || q.NextUsed != 10 {
		t.Fatalf("saved position %+v", q)
	}
	d2 := New(Config{Log: logger.Discard})
	defer d2.Close()
	tr2 := mmio.New(d2, mem, &vt.Interrupt{}, logger.Discard)
	if err := tr2.Restore(st); err != nil {
		t.Fatal(err)
	}
	head := vq.Add(vt.W(32))
	(&vt.MMIODriver{Regs: tr2}).Kick(0)
	if u := vq.WaitUsed(t, 1, 5*time.Second); u[0].ID != uint32(head) || u[0].Len != 32 {
		t.Fatalf("used after restore %+v", u)
	}
	if idx := vq.UsedIdx(); idx != 11 {
		t.Errorf("used.idx %d, want 11", idx)
	}
}
