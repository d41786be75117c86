package virtio_test

import (
	"testing"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/virtio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// TestDirtyTracking checks that a queue on dirty-tracking memory marks the
// buffers it hands the device to write and the used ring, and not the
// buffers the device only reads.
func TestDirtyTracking(t *testing.T) {
	mem, err := guestmem.New([]guestmem.Region{{GPA: 0, Size: memSize}}, guestmem.Options{TrackDirty: true})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	alloc := vt.NewAllocator(0x1000, memSize)
	vq := vt.NewVQ(mem, alloc, 8)
	q := vq.Queue(virtio.MaxQueueSize)
	if err := q.Activate(mem, false); err != nil {
		t.Fatal(err)
	}
	out := vt.Buf{Data: []byte("request"), Addr: 0x40000}
	in := vt.Buf{Write: true, Len: 0x2000, Addr: 0x80800} // spans pages 0x80-0x82
	vq.Add(out, in)
	mem.TakeDirty() // forget the test driver's own writes
	var c virtio.Chain
	if ok, err := q.Pop(&c); !ok || err != nil {
		t.Fatalf("Pop = %v, %v", ok, err)
	}
	if err := q.Push(c.Head, 1); err != nil {
		t.Fatal(err)
	}
	page := func(bm []uint64, p uint64) bool { return bm[p/64]&(1<<(p%64)) != 0 }
	d := mem.TakeDirty()[0]
	for _, p := range []uint64{0x80, 0x81, 0x82, vq.UsedRing / 4096} {
		if !page(d, p) {
			t.Errorf("page %#x not marked dirty", p)
		}
	}
	if page(d, 0x40) || page(d, 0x83) {
		t.Error("pages the device did not write marked dirty")
	}
}
