package net

import (
	"os"
	"runtime"
	"testing"

	"github.com/ember-vmm/ember/internal/virtio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

func benchRig(b *testing.B, features uint64) (*Device, *vt.VQ, *vt.VQ, *os.File) {
	mem := vt.NewMemory(b, memSize)
	alloc := vt.NewAllocator(0x1000, memSize)
	f, peer := pair(b)
	d, err := New(f, Config{SetOffload: func(uint32) error { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	rx, tx := vt.NewVQ(mem, alloc, 256), vt.NewVQ(mem, alloc, 256)
	qs := []*virtio.Queue{rx.Queue(256), tx.Queue(256)}
	for _, q := range qs {
		if err := q.Activate(mem, true); err != nil {
			b.Fatal(err)
		}
	}
	if err := d.Activate(virtio.Activation{Mem: mem, Queues: qs, Features: features | virtio.Bit(virtio.FeatureRingEventIdx), Transport: vt.NewTransport()}); err != nil {
		b.Fatal(err)
	}
	return d, rx, tx, peer
}

// BenchmarkTx1500 measures guest-to-tap for 1500-byte frames, one at a
// time: notify, writev from guest memory, used ring.
func BenchmarkTx1500(b *testing.B) {
	d, _, tx, peer := benchRig(b, 0)
	f := frame(mac, 1500-14)
	buf := make([]byte, 2048)
	b.SetBytes(int64(len(f)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tx.Add(vt.Buf{Data: f, Addr: 0x400000})
		d.Notify(TxQueue)
		if _, err := peer.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRx1500 measures tap-to-guest for 1500-byte frames into
// mergeable 4 KiB buffers, one at a time.
func BenchmarkRx1500(b *testing.B) {
	d, rx, _, peer := benchRig(b, virtio.Bit(FeatureMrgRxbuf))
	f := frame(mac, 1500-14)
	for range 128 {
		rx.Add(vt.Buf{Write: true, Len: 4096, Addr: 0x500000})
	}
	d.Notify(RxQueue)
	b.SetBytes(int64(len(f)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want := rx.UsedIdx() + 1
		if _, err := peer.Write(f); err != nil {
			b.Fatal(err)
		}
		for rx.UsedIdx() != want {
			runtime.Gosched()
		}
		rx.TakeUsed()
		rx.Add(vt.Buf{Write: true, Len: 4096, Addr: 0x500000})
		d.Notify(RxQueue)
	}
}
