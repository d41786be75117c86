package virtio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/ember-vmm/ember/internal/guestmem"
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

// FuzzChainOracle drains a queue whose size, descriptor table, avail ring,
// avail index and the rest of guest memory (where indirect tables and
// buffers may point) are arbitrary, over RAM in three regions, two of them
// adjacent and one behind a hole. Before every Pop an independent reference
// walk of the same memory predicts the outcome: the chain's buffers
// (address and length, in order, readable then writable), or a broken
// queue (head or next index out of the table, a loop, a buffer or table
// outside one RAM region, a nested or chained indirect descriptor, an
// oversized indirect table, a readable buffer after a writable one). The
// queue must agree, and every buffer it returns must alias guest RAM at the
// address it reports.
func FuzzChainOracle(f *testing.F) {
	le := binary.LittleEndian
	desc := func(addr uint64, n uint32, flags, next uint16) []byte {
		b := make([]byte, 16)
		le.PutUint64(b, addr)
		le.PutUint32(b[8:], n)
		le.PutUint16(b[12:], flags)
		le.PutUint16(b[14:], next)
		return b
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	const W, N, I = virtio.DescFlagWrite, virtio.DescFlagNext, virtio.DescFlagIndirect
	f.Add(uint8(3), cat(desc(0x5000, 10, N, 1), desc(0x6000, 20, W, 0)), []byte{0, 0}, uint16(1), []byte(nil))
	f.Add(uint8(3), cat(desc(0x4000, 32, I, 0)), []byte{0, 0}, uint16(1), cat(desc(0x7000, 4, N, 1), desc(0x7ff8, 8, W, 0)))
	f.Add(uint8(3), cat(desc(0x4000, 32, I, 0)), []byte{0, 0}, uint16(1), cat(desc(0x7000, 4, N, 1), desc(0x7ffc, 8, W, 0)))
	f.Add(uint8(2), cat(desc(0x5000, 1, N, 1), desc(0x5000, 1, N, 0)), []byte{0, 0, 1, 0}, uint16(2), []byte(nil))
	f.Add(uint8(8), cat(desc(0x20ff0, 0x20, W, 0)), []byte{0, 0}, uint16(0xffff), []byte(nil))
	f.Add(uint8(0), cat(desc(0x5000, 0, W|N, 1)), []byte{0, 0}, uint16(1), []byte(nil))
	f.Fuzz(func(t *testing.T, sizeSel uint8, table, ring []byte, idx uint16, rest []byte) {
		m, err := guestmem.New([]guestmem.Region{{GPA: 0, Size: 0x8000}, {GPA: 0x8000, Size: 0x8000}, {GPA: 0x20000, Size: 0x1000}}, guestmem.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		size := uint16(1) << (sizeSel % 9) // 1 .. 256
		const descAt, availAt, usedAt, restAt = 0x1000, 0x2000, 0x3000, 0x4000
		m.WriteAt(table[:min(len(table), 16*int(size))], descAt)
		m.WriteAt(ring[:min(len(ring), 2*int(size))], availAt+4)
		m.WriteAt(rest[:min(len(rest), 0xc000)], restAt)
		m.Store16(availAt+2, idx)

		q := virtio.NewQueue(virtio.MaxQueueSize)
		q.Size, q.Ready, q.DescTable, q.AvailRing, q.UsedRing = size, true, descAt, availAt, usedAt
		if err := q.Activate(m, sizeSel&0x80 != 0); err != nil {
			t.Fatal(err)
		}
		var c virtio.Chain
		for pops := 0; ; pops++ {
			want, wantErr := refPop(m, q, size, uint16(pops))
			ok, err := q.Pop(&c)
			switch {
			case wantErr != "":
				if err == nil || !errors.Is(err, virtio.ErrBroken) {
					t.Fatalf("pop %d: queue gave (%v, %v), reference: %s", pops, ok, err, wantErr)
				}
				return
			case err != nil:
				t.Fatalf("pop %d: queue broke (%v) on a chain the reference accepts: %+v", pops, err, want)
			case want == nil:
				if ok {
					t.Fatalf("pop %d: queue returned chain %d, reference sees nothing pending", pops, c.Head)
				}
				return
			case !ok:
				t.Fatalf("pop %d: queue returned nothing, reference expects %+v", pops, *want)
			}
			if pops >= int(size) {
				t.Fatalf("%d chains from a %d-entry queue", pops+1, size)
			}
			got := refChain{head: c.Head, out: pieces(t, m, c.Out, c.OutAddr), in: pieces(t, m, c.In, c.InAddr)}
			if !reflect.DeepEqual(got, *want) || c.OutLen != total(want.out) || c.InLen != total(want.in) {
				t.Fatalf("pop %d: queue %+v (lengths %d/%d), reference %+v", pops, got, c.OutLen, c.InLen, *want)
			}
			for _, b := range c.In {
				clear(b) // the device writes; later chains must be read afresh
			}
			if err := q.Push(c.Head, uint32(c.InLen)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// refChain is a chain as the reference walk sees it.
type refChain struct {
	head    uint16
	out, in [][2]uint64 // address, length
}

func total(bufs [][2]uint64) uint64 {
	var n uint64
	for _, b := range bufs {
		n += b[1]
	}
	return n
}

// pieces checks that each buffer aliases guest RAM at its address and
// returns the (address, length) list.
func pieces(t *testing.T, m *guestmem.Memory, bufs [][]byte, addrs []uint64) [][2]uint64 {
	t.Helper()
	if len(bufs) != len(addrs) {
		t.Fatalf("%d buffers, %d addresses", len(bufs), len(addrs))
	}
	var out [][2]uint64
	for i, b := range bufs {
		if len(b) > 0 {
			old := b[len(b)-1]
			b[len(b)-1] = old ^ 0xa5
			var got [1]byte
			err := m.ReadAt(got[:], addrs[i]+uint64(len(b))-1)
			b[len(b)-1] = old
			if err != nil || got[0] != old^0xa5 {
				t.Fatalf("buffer %d does not alias guest RAM at %#x+%#x (%v)", i, addrs[i], len(b), err)
			}
		}
		out = append(out, [2]uint64{addrs[i], uint64(len(b))})
	}
	return out
}

// inRAM reports whether [addr, addr+n) lies within one region.
func inRAM(m *guestmem.Memory, addr, n uint64) bool {
	for _, r := range m.Regions() {
		if addr >= r.GPA && addr < r.End() && n <= r.End()-addr {
			return true
		}
	}
	return false
}

// refPop predicts the next Pop from the rules of the split virtqueue
// (virtio 1.2 §2.7) and ember's limits, reading guest memory directly. It
// returns the chain, nil when nothing is pending, or why the queue breaks.
func refPop(m *guestmem.Memory, q *virtio.Queue, size, taken uint16) (*refChain, string) {
	le := binary.LittleEndian
	read := func(addr, n uint64) []byte {
		b := make([]byte, n)
		if err := m.ReadAt(b, addr); err != nil {
			panic(err) // the rings are in RAM by construction
		}
		return b
	}
	avail := le.Uint16(read(q.AvailRing+2, 2))
	pending := avail - taken
	switch {
	case pending > size:
		return nil, "avail.idx too far ahead"
	case pending == 0:
		return nil, ""
	}
	head := le.Uint16(read(q.AvailRing+4+2*uint64(taken%size), 2))
	if head >= size {
		return nil, "head out of the table"
	}
	ch := &refChain{head: head}
	tableAt, entries := q.DescTable, uint64(size)
	i, budget := uint64(head), uint64(size)
	inIndirect, writable := false, false
	for n := 0; ; n++ {
		if budget == 0 {
			return nil, "chain longer than its table"
		}
		budget--
		d := read(tableAt+16*i, 16)
		addr, length, flags, next := le.Uint64(d), uint64(le.Uint32(d[8:])), le.Uint16(d[12:]), le.Uint16(d[14:])
		if flags&virtio.DescFlagIndirect != 0 {
			switch {
			case inIndirect:
				return nil, "indirect table inside an indirect table"
			case n > 0 || flags&virtio.DescFlagNext != 0:
				return nil, "indirect descriptor chained"
			case length == 0 || length%16 != 0 || length/16 > virtio.MaxIndirectLen:
				return nil, "bad indirect table length"
			case !inRAM(m, addr, length):
				return nil, "indirect table outside RAM"
			}
			tableAt, entries, i, budget, inIndirect = addr, length/16, 0, length/16, true
			continue
		}
		if length > 0 && !inRAM(m, addr, length) {
			return nil, "buffer outside RAM"
		}
		if flags&virtio.DescFlagWrite != 0 {
			writable = true
			if length > 0 {
				ch.in = append(ch.in, [2]uint64{addr, length})
			}
		} else {
			if writable {
				return nil, "readable buffer after a writable one"
			}
			if length > 0 {
				ch.out = append(ch.out, [2]uint64{addr, length})
			}
		}
		if flags&virtio.DescFlagNext == 0 {
			return ch, ""
		}
		if uint64(next) >= entries {
			return nil, "next out of the table"
		}
		i = uint64(next)
	}
}
