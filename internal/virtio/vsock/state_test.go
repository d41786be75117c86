package vsock

import (
	"encoding/binary"
	"errors"
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

// TestStatePorts: a device restored from a snapshot hands out host ports
// after the last one the snapshotted device handed out, so a new
// connection never reaches a guest socket left from before the snapshot.
func TestStatePorts(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d, false)
	l := g.listen(52)
	for range 2 {
		if _, _, _, err := hostConnect(t, path, 52); err != nil {
			t.Fatal(err)
		}
		g.accept(l)
	}
	st := d.SaveState()
	if st.LocalPortLast != LocalPortFirst+1 {
		t.Fatalf("saved local_port_last %#x, want %#x", st.LocalPortLast, LocalPortFirst+1)
	}

	d2, path2 := newDevice(t)
	if err := d2.RestoreState(st); err != nil {
		t.Fatal(err)
	}
	g2 := newGuest(t, d2, false)
	l2 := g2.listen(52)
	_, _, hp, err := hostConnect(t, path2, 52)
	if err != nil || hp != LocalPortFirst+2 {
		t.Fatalf("first host port after the restore %#x (%v), want %#x", hp, err, LocalPortFirst+2)
	}
	g2.accept(l2)

	for _, bad := range []uint32{0, 1, 1 << 31, 1<<31 | 1<<30} {
		if err := (&Device{}).RestoreState(State{LocalPortLast: bad}); !errors.Is(err, ErrState) {
			t.Errorf("RestoreState(%#x) = %v, want ErrState", bad, err)
		}
	}
}
