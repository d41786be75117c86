package blk

import (
	"runtime"
	"testing"

	"github.com/ember-vmm/ember/internal/virtio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// BenchmarkRead4K measures one 4 KiB read request end to end: publish,
// notify, the worker's preadv from the page cache, status, used ring.
func BenchmarkRead4K(b *testing.B) {
	path := b.TempDir() + "/disk.img"
	if err := writeZeros(path, 64<<20); err != nil {
		b.Fatal(err)
	}
	mem := vt.NewMemory(b, memSize)
	d, err := Open(path, Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	vq := vt.NewVQ(mem, vt.NewAllocator(0x1000, memSize), 256)
	q := vq.Queue(virtio.MaxQueueSize)
	if err := q.Activate(mem, false); err != nil {
		b.Fatal(err)
	}
	if err := d.Activate(virtio.Activation{Mem: mem, Queues: []*virtio.Queue{q}, Transport: vt.NewTransport()}); err != nil {
		b.Fatal(err)
	}
	hdrs := make([][]byte, 256)
	for i := range hdrs {
		hdrs[i] = header(TypeIn, uint64(i*8))
	}
	b.SetBytes(4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want := vq.UsedIdx() + 1
		vq.Add(vt.Buf{Data: hdrs[i%256], Addr: 0x100000 + uint64(i%256)*16}, vt.Buf{Write: true, Len: 4096, Addr: 0x200000}, vt.Buf{Write: true, Len: 1, Addr: 0x300000})
		d.Notify(0)
		for vq.UsedIdx() != want {
			runtime.Gosched()
		}
		vq.TakeUsed()
	}
}
