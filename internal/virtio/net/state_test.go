package net

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// TestStateRoundTrip snapshots a running device and restores it on another
// tap (as a load with network_overrides does): the MAC survives and both
// rings continue where they stopped.
func TestStateRoundTrip(t *testing.T) {
	mem := vt.NewMemory(t, memSize)
	f, peer := pair(t)
	noOffload := func(uint32) error { return nil }
	d, err := New(f, Config{MAC: mac, SetOffload: noOffload})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tr := mmio.New(d, mem, &vt.Interrupt{}, logger.Discard)
	drv := &vt.MMIODriver{Regs: tr, Mem: mem, Alloc: vt.NewAllocator(0x1000, memSize)}
	if s, err := drv.Setup(^uint64(0), []uint16{16, 16}); err != nil || s != 0xf {
		t.Fatalf("setup %#x %v", s, err)
	}
	rx, tx := drv.VQs[RxQueue], drv.VQs[TxQueue]
	for range 6 {
		rx.Add(vt.W(4096))
	}
	drv.Kick(RxQueue)
	for i := range 3 {
		peer.Write(frame(mac, 100+i))
		rx.WaitUsed(t, 1, 5*time.Second)
		tx.Add(vt.R(frame(mac, 200+i)))
		drv.Kick(TxQueue)
		recvFrame(t, peer)
		tx.WaitUsed(t, 1, 5*time.Second)
	}

	saved := d.SaveState()
	ts, err := tr.Quiesce()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(saved)
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.MAC != mac.String() {
		t.Fatalf("saved MAC %q, want %q", st.MAC, mac)
	}

	f2, peer2 := pair(t)
	d2, err := New(f2, Config{SetOffload: noOffload}) // no MAC configured: the state brings it
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if err := d2.RestoreState(st); err != nil {
		t.Fatal(err)
	}
	tr2 := mmio.New(d2, mem, &vt.Interrupt{}, logger.Discard)
	if err := tr2.Restore(ts); err != nil {
		t.Fatal(err)
	}
	drv2 := &vt.MMIODriver{Regs: tr2, Mem: mem}
	if got := drv2.ReadConfig(0, 6); !bytes.Equal(got, mac) {
		t.Fatalf("restored MAC %x, want %x", got, mac)
	}
	// RX continues into the three buffers still posted, from the new tap.
	for i := range 3 {
		peer2.Write(frame(mac, 300+i))
		if u := rx.WaitUsed(t, 1, 5*time.Second); u[0].Len != uint32(len(frame(mac, 300+i))) {
			t.Fatalf("frame %d after restore: used %+v", i, u)
		}
	}
	if idx := rx.UsedIdx(); idx != 6 {
		t.Errorf("rx used.idx %d, want 6", idx)
	}
	tx.Add(vt.R(frame(mac, 400)))
	drv2.Kick(TxQueue)
	if got := recvFrame(t, peer2); len(got) != len(frame(mac, 400)) {
		t.Fatalf("new tap got %d bytes", len(got))
	}
	tx.WaitUsed(t, 1, 5*time.Second)
	if idx := tx.UsedIdx(); idx != 4 {
		t.Errorf("tx used.idx %d, want 4", idx)
	}
}

func TestStateRefused(t *testing.T) {
	f, _ := pair(t)
	d, err := New(f, Config{SetOffload: func(uint32) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, st := range []State{{Version: 2, MAC: "06:00:00:00:00:01"}, {Version: StateVersion, MAC: "nonsense"}, {Version: StateVersion, MAC: "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"}} {
		if err := d.RestoreState(st); !errors.Is(err, ErrState) {
			t.Errorf("%+v: error %v, want ErrState", st, err)
		}
	}
}
