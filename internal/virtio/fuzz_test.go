package virtio_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ember-vmm/ember/internal/virtio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// FuzzChain fills a queue's descriptor table and avail ring with arbitrary
// bytes and drains it like a device. Whatever the bytes, nothing panics,
// every chain has consistent lengths, work is bounded (at most the queue
// size of chains per publication) and errors are ErrBroken.
func FuzzChain(f *testing.F) {
	const size = 8
	seed := func(descs [][4]uint64, heads []uint16, idx uint16, eventIdx bool) {
		table := make([]byte, 16*size)
		for i, d := range descs {
			binary.LittleEndian.PutUint64(table[16*i:], d[0])
			binary.LittleEndian.PutUint32(table[16*i+8:], uint32(d[1]))
			binary.LittleEndian.PutUint16(table[16*i+12:], uint16(d[2]))
			binary.LittleEndian.PutUint16(table[16*i+14:], uint16(d[3]))
		}
		ring := make([]byte, 2*size)
		for i, h := range heads {
			binary.LittleEndian.PutUint16(ring[2*i:], h)
		}
		f.Add(table, ring, idx, eventIdx, []byte(nil))
	}
	seed([][4]uint64{{0x8000, 16, 1, 1}, {0x9000, 1, 2, 0}}, []uint16{0}, 1, false)
	seed([][4]uint64{{0x8000, 32, 4, 0}}, []uint16{0, 0, 0}, 3, true)
	seed([][4]uint64{{0x8000, 16, 1, 0}}, []uint16{0}, 0xffff, true)
	seed([][4]uint64{{0xfff0, 0x100, 2, 0}}, []uint16{7}, 2, false)
	f.Fuzz(func(t *testing.T, table, ring []byte, idx uint16, eventIdx bool, indirect []byte) {
		const mem = 64 << 10
		m := vt.NewMemory(t, mem)
		vq := vt.NewVQ(m, vt.NewAllocator(0x1000, mem), size)
		if len(table) > 16*size {
			table = table[:16*size]
		}
		if len(ring) > 2*size {
			ring = ring[:2*size]
		}
		if len(indirect) > 0x1000 {
			indirect = indirect[:0x1000]
		}
		m.WriteAt(table, vq.Desc)
		m.WriteAt(ring, vq.Avail+4)
		m.WriteAt(indirect, 0x8000) // where seeds point indirect tables
		vq.SetAvailIdx(idx)
		q := vq.Queue(virtio.MaxQueueSize)
		if err := q.Activate(m, eventIdx); err != nil {
			t.Fatal(err)
		}
		var c virtio.Chain
		pops := 0
		for {
			ok, err := q.Next(&c)
			if err != nil {
				if !errors.Is(err, virtio.ErrBroken) {
					t.Fatalf("error %v does not wrap ErrBroken", err)
				}
				break
			}
			if !ok {
				break
			}
			pops++
			if pops > size {
				t.Fatalf("%d chains from one publication of a %d-entry queue", pops, size)
			}
			if virtio.Len(c.Out) != c.OutLen || virtio.Len(c.In) != c.InLen {
				t.Fatalf("chain lengths inconsistent: %+v", c)
			}
			if len(c.Out)+len(c.In) > virtio.MaxIndirectLen {
				t.Fatalf("chain of %d buffers", len(c.Out)+len(c.In))
			}
			// Touch every byte the device may access.
			for _, b := range c.In {
				clear(b)
			}
			if err := q.Push(c.Head, uint32(c.InLen)); err != nil {
				t.Fatal(err)
			}
			q.NeedsSignal()
		}
	})
}
