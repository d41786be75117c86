package blk

import (
	"bytes"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// TestSnapshotContinues stops a drive for a snapshot and restores its
// transport onto a new device on the same image: the block device has no
// state of its own, and the new one continues the ring, event index
// included, where the old one stopped.
func TestSnapshotContinues(t *testing.T) {
	path, data := image(t, 64*512)
	mem := vt.NewMemory(t, memSize)
	d, err := Open(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tr := mmio.New(d, mem, &vt.Interrupt{}, logger.Discard)
	drv := &vt.MMIODriver{Regs: tr, Mem: mem, Alloc: vt.NewAllocator(0x1000, memSize)}
	if s, err := drv.Setup(^uint64(0), []uint16{16}); err != nil || s != 0xf {
		t.Fatalf("setup %#x %v", s, err)
	}
	vq := drv.VQs[0]
	for i := range 5 {
		vq.Add(vt.R(header(TypeIn, uint64(i))), vt.W(512), vt.W(1))
	}
	drv.Kick(0)
	vq.WaitUsed(t, 5, 5*time.Second)
	st, err := tr.Quiesce()
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	// The driver queues a request while the VM is stopped.
	head := vq.Add(vt.R(header(TypeIn, 9)), vt.W(512), vt.W(1))

	d2, err := Open(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	irq := &vt.Interrupt{}
	tr2 := mmio.New(d2, mem, irq, logger.Discard)
	if err := tr2.Restore(st); err != nil {
		t.Fatal(err)
	}
	u := vq.WaitUsed(t, 1, 5*time.Second)
	if u[0].ID != uint32(head) || u[0].Len != 513 {
		t.Fatalf("used after restore %+v", u)
	}
	if got := vq.Read(vq.Chains[head][1], 512); !bytes.Equal(got, data[9*512:10*512]) {
		t.Fatal("the restored drive read the wrong sector")
	}
	if idx := vq.UsedIdx(); idx != 6 {
		t.Errorf("used.idx %d, want 6", idx)
	}
	if ev := vq.AvailEvent(); ev != 6 {
		t.Errorf("avail_event %d after restore, want 6", ev)
	}
}
