package vsock

import (
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// TestSnapshotTransportReset restores a stopped device's transport onto a
// new device (on another socket, as vsock_override gives) and sends the
// guest the TRANSPORT_RESET event the kvm backend sends after a snapshot:
// it lands in the event buffer the guest posted before the snapshot.
func TestSnapshotTransportReset(t *testing.T) {
	mem := vt.NewMemory(t, 8<<20)
	d, _ := newDevice(t)
	tr := mmio.New(d, mem, &vt.Interrupt{}, logger.Discard)
	drv := &vt.MMIODriver{Regs: tr, Mem: mem, Alloc: vt.NewAllocator(0x1000, 8<<20)}
	if s, err := drv.Setup(^uint64(0), []uint16{16, 16, 16}); err != nil || s != 0xf {
		t.Fatalf("setup %#x %v", s, err)
	}
	for range 4 {
		drv.VQs[RxQueue].Add(vt.W(4096))
	}
	ev := drv.VQs[EvQueue]
	head := ev.Add(vt.W(4))
	ev.Mem.WriteAt([]byte{0xff, 0xff, 0xff, 0xff}, ev.Chains[head][0])
	drv.Kick(EvQueue)
	st, err := tr.Quiesce()
	if err != nil {
		t.Fatal(err)
	}
	d.Close()

	d2, err := New(Config{GuestCID: testCID, UDSPath: filepath.Join(t.TempDir(), "override.sock")})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	tr2 := mmio.New(d2, mem, &vt.Interrupt{}, logger.Discard)
	if err := tr2.Restore(st); err != nil {
		t.Fatal(err)
	}
	if err := d2.TransportReset(); err != nil {
		t.Fatal(err)
	}
	u := ev.WaitUsed(t, 1, 5*time.Second)
	if u[0].ID != uint32(head) {
		t.Fatalf("event used %+v, want head %d", u, head)
	}
	if got := binary.LittleEndian.Uint32(ev.Read(ev.Chains[head][0], 4)); got != EventTransportReset {
		t.Errorf("event %#x, want TRANSPORT_RESET (%d)", got, EventTransportReset)
	}
	if cid := binary.LittleEndian.Uint64((&vt.MMIODriver{Regs: tr2}).ReadConfig(0, 8)); cid != testCID {
		t.Errorf("guest_cid %d after restore", cid)
	}
}
