package virtio_test

import (
	"testing"

	"github.com/ember-vmm/ember/internal/virtio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// BenchmarkPopPush measures the device side of one three-buffer request:
// Pop (ring checks, descriptor parsing) and Push (used element, index).
func BenchmarkPopPush(b *testing.B) {
	mem := vt.NewMemory(b, 1<<20)
	vq := vt.NewVQ(mem, vt.NewAllocator(0x1000, 1<<20), 256)
	q := vq.Queue(256)
	if err := q.Activate(mem, true); err != nil {
		b.Fatal(err)
	}
	// 85 three-descriptor chains fill the table, and the ring holds them
	// repeatedly; the benchmark recycles them by moving avail.idx, as a
	// driver re-posting the same buffers would.
	heads := make([]uint16, 85)
	for i := range heads {
		heads[i] = vq.Build(vt.Buf{Data: make([]byte, 16), Addr: 0x80000}, vt.Buf{Write: true, Len: 4096, Addr: 0x81000}, vt.Buf{Write: true, Len: 1, Addr: 0x90000})
	}
	for i := range 256 {
		vq.Publish(heads[i%len(heads)])
	}
	var c virtio.Chain
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ok, err := q.Pop(&c)
		if !ok || err != nil {
			b.Fatal(ok, err)
		}
		if err := q.Push(c.Head, 4097); err != nil {
			b.Fatal(err)
		}
		q.NeedsSignal()
		vq.SetAvailIdx(vq.UsedIdx() + 1) // keep exactly one chain available
	}
}
