// Package virtiotest is a test driver for ember's virtio devices: guest
// memory, split virtqueues laid out in it the way a driver would, a fake
// transport and interrupt line that record what devices signal, and a
// virtio-mmio driver that brings a device up through its registers as
// Linux does. It is for tests only.
package virtiotest

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/virtio"
)

// NewMemory maps size bytes of guest RAM at GPA 0 and unmaps it when the
// test ends.
func NewMemory(t testing.TB, size uint64) *guestmem.Memory {
	t.Helper()
	m, err := guestmem.New([]guestmem.Region{{GPA: 0, Size: size}}, guestmem.Options{})
	if err != nil {
		t.Fatalf("guest memory: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// Allocator hands out guest memory from a bump pointer.
type Allocator struct {
	mu   sync.Mutex
	next uint64
	end  uint64
}

// NewAllocator allocates from [start, end).
func NewAllocator(start, end uint64) *Allocator { return &Allocator{next: start, end: end} }

// Alloc returns n bytes aligned to align (a power of two). It panics when
// memory runs out: a test bug.
func (a *Allocator) Alloc(n, align uint64) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := (a.next + align - 1) &^ (align - 1)
	if p+n > a.end {
		panic(fmt.Sprintf("virtiotest: out of guest memory (%#x+%#x > %#x)", p, n, a.end))
	}
	a.next = p + n
	return p
}

// Used is one used-ring element.
type Used struct {
	ID  uint32
	Len uint32
}

// Buf describes one buffer of a chain a test adds: device-readable Data,
// or (Write) a device-writable buffer of Len bytes.
type Buf struct {
	Data  []byte
	Write bool
	Len   uint32
	// Addr, if not zero, places the buffer there instead of allocating.
	Addr uint64
}

// R is a device-readable buffer holding data.
func R(data []byte) Buf { return Buf{Data: data} }

// W is a device-writable buffer of n bytes.
func W(n uint32) Buf { return Buf{Write: true, Len: n} }

// VQ is the driver's side of one split virtqueue.
type VQ struct {
	Mem   *guestmem.Memory
	Alloc *Allocator
	Size  uint16

	Desc, Avail, UsedRing uint64

	nextDesc uint16 // descriptors are used round-robin, never freed
	availIdx uint16
	lastUsed uint16
	// Chains maps a head to the addresses of its buffers, in order.
	Chains map[uint16][]uint64
}

// NewVQ lays out a queue of size entries in guest memory.
func NewVQ(mem *guestmem.Memory, alloc *Allocator, size uint16) *VQ {
	n := uint64(size)
	vq := &VQ{
		Mem: mem, Alloc: alloc, Size: size,
		Desc:     alloc.Alloc(16*n, 16),
		Avail:    alloc.Alloc(6+2*n, 2),
		UsedRing: alloc.Alloc(6+8*n, 4),
		Chains:   map[uint16][]uint64{},
	}
	return vq
}

// Queue returns a virtio.Queue configured for this ring (ready, addresses
// set), as a transport would hand it to a device.
func (vq *VQ) Queue(maxSize uint16) *virtio.Queue {
	q := virtio.NewQueue(maxSize)
	q.Size, q.Ready = vq.Size, true
	q.DescTable, q.AvailRing, q.UsedRing = vq.Desc, vq.Avail, vq.UsedRing
	return q
}

// SetDesc writes descriptor i directly (for malformed chains).
func (vq *VQ) SetDesc(i uint16, addr uint64, length uint32, flags, next uint16) {
	var d [16]byte
	binary.LittleEndian.PutUint64(d[0:], addr)
	binary.LittleEndian.PutUint32(d[8:], length)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], next)
	vq.must(vq.Mem.WriteAt(d[:], vq.Desc+16*uint64(i)))
}

// Publish puts head in the next avail slot and publishes it.
func (vq *VQ) Publish(head uint16) {
	slot := uint64(vq.availIdx % vq.Size)
	vq.must(vq.Mem.Store16(vq.Avail+4+2*slot, head))
	vq.availIdx++
	vq.must(vq.Mem.Store16(vq.Avail+2, vq.availIdx))
}

// SetAvailIdx overwrites avail.idx (for malicious drivers).
func (vq *VQ) SetAvailIdx(idx uint16) {
	vq.availIdx = idx
	vq.must(vq.Mem.Store16(vq.Avail+2, idx))
}

// SetAvailFlags writes avail.flags.
func (vq *VQ) SetAvailFlags(f uint16) { vq.must(vq.Mem.Store16(vq.Avail, f)) }

// SetUsedEvent writes used_event (VIRTIO_F_EVENT_IDX).
func (vq *VQ) SetUsedEvent(v uint16) {
	vq.must(vq.Mem.Store16(vq.Avail+4+2*uint64(vq.Size), v))
}

// AvailEvent reads avail_event (VIRTIO_F_EVENT_IDX).
func (vq *VQ) AvailEvent() uint16 {
	v, err := vq.Mem.Load16(vq.UsedRing + 4 + 8*uint64(vq.Size))
	vq.must(err)
	return v
}

func (vq *VQ) must(err error) {
	if err != nil {
		panic("virtiotest: " + err.Error())
	}
}

// Build writes a chain of bufs into free descriptors and returns its head
// without publishing it.
func (vq *VQ) Build(bufs ...Buf) uint16 {
	if len(bufs) == 0 || len(bufs) > int(vq.Size) {
		panic("virtiotest: bad chain length")
	}
	head := vq.nextDesc
	var addrs []uint64
	for i, b := range bufs {
		idx := vq.nextDesc
		vq.nextDesc = (vq.nextDesc + 1) % vq.Size
		n := b.Len
		if !b.Write {
			n = uint32(len(b.Data))
		}
		addr := b.Addr
		if addr == 0 {
			addr = vq.Alloc.Alloc(uint64(max(n, 1)), 8)
		}
		if !b.Write {
			vq.must(vq.Mem.WriteAt(b.Data, addr))
		}
		var flags uint16
		if b.Write {
			flags |= virtio.DescFlagWrite
		}
		next := uint16(0)
		if i < len(bufs)-1 {
			flags |= virtio.DescFlagNext
			next = vq.nextDesc
		}
		vq.SetDesc(idx, addr, n, flags, next)
		addrs = append(addrs, addr)
	}
	vq.Chains[head] = addrs
	return head
}

// Add builds and publishes a chain, returning its head.
func (vq *VQ) Add(bufs ...Buf) uint16 {
	head := vq.Build(bufs...)
	vq.Publish(head)
	return head
}

// AddIndirect publishes a chain whose buffers sit in an indirect table.
func (vq *VQ) AddIndirect(bufs ...Buf) uint16 {
	table := vq.Alloc.Alloc(16*uint64(len(bufs)), 16)
	var addrs []uint64
	for i, b := range bufs {
		n := b.Len
		if !b.Write {
			n = uint32(len(b.Data))
		}
		addr := vq.Alloc.Alloc(uint64(max(n, 1)), 8)
		if !b.Write {
			vq.must(vq.Mem.WriteAt(b.Data, addr))
		}
		var flags, next uint16
		if b.Write {
			flags |= virtio.DescFlagWrite
		}
		if i < len(bufs)-1 {
			flags |= virtio.DescFlagNext
			next = uint16(i + 1)
		}
		var d [16]byte
		binary.LittleEndian.PutUint64(d[0:], addr)
		binary.LittleEndian.PutUint32(d[8:], n)
		binary.LittleEndian.PutUint16(d[12:], flags)
		binary.LittleEndian.PutUint16(d[14:], next)
		vq.must(vq.Mem.WriteAt(d[:], table+16*uint64(i)))
		addrs = append(addrs, addr)
	}
	head := vq.nextDesc
	vq.nextDesc = (vq.nextDesc + 1) % vq.Size
	vq.SetDesc(head, table, uint32(16*len(bufs)), virtio.DescFlagIndirect, 0)
	vq.Chains[head] = addrs
	vq.Publish(head)
	return head
}

// UsedIdx reads used.idx.
func (vq *VQ) UsedIdx() uint16 {
	v, err := vq.Mem.Load16(vq.UsedRing + 2)
	vq.must(err)
	return v
}

// TakeUsed returns the used elements published since the last call.
func (vq *VQ) TakeUsed() []Used {
	var out []Used
	for idx := vq.UsedIdx(); vq.lastUsed != idx; vq.lastUsed++ {
		var e [8]byte
		vq.must(vq.Mem.ReadAt(e[:], vq.UsedRing+4+8*uint64(vq.lastUsed%vq.Size)))
		out = append(out, Used{binary.LittleEndian.Uint32(e[0:]), binary.LittleEndian.Uint32(e[4:])})
	}
	return out
}

// WaitUsed polls until n used elements have arrived in total since the
// last TakeUsed and returns them, or fails the test after timeout.
func (vq *VQ) WaitUsed(t testing.TB, n int, timeout time.Duration) []Used {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if got := vq.UsedIdx() - vq.lastUsed; int(got) >= n || time.Now().After(deadline) {
			out := vq.TakeUsed()
			if len(out) < n {
				t.Fatalf("got %d used elements, want %d", len(out), n)
			}
			return out
		}
		time.Sleep(time.Millisecond)
	}
}

// Read returns n bytes of guest memory at addr.
func (vq *VQ) Read(addr uint64, n int) []byte {
	b := make([]byte, n)
	vq.must(vq.Mem.ReadAt(b, addr))
	return b
}

// Interrupt is a fake interrupt line counting triggers.
type Interrupt struct {
	mu    sync.Mutex
	count int
	ch    chan struct{}
	Err   error // returned by Signal if set
}

// Signal implements virtio.Interrupt.
func (i *Interrupt) Signal() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.count++
	if i.ch == nil {
		i.ch = make(chan struct{}, 1)
	}
	select {
	case i.ch <- struct{}{}:
	default:
	}
	return i.Err
}

// Count returns how many times the line was triggered.
func (i *Interrupt) Count() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.count
}

// Transport is a fake virtio.Transport recording what a device signals.
type Transport struct {
	mu      sync.Mutex
	used    map[int]int
	configs int
	errs    []error
	changed chan struct{}
}

// NewTransport returns an empty recorder.
func NewTransport() *Transport {
	return &Transport{used: map[int]int{}, changed: make(chan struct{}, 1)}
}

func (f *Transport) poke() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// SignalUsed implements virtio.Transport.
func (f *Transport) SignalUsed(q int) error {
	f.mu.Lock()
	f.used[q]++
	f.mu.Unlock()
	f.poke()
	return nil
}

// ChangeConfig implements virtio.Transport.
func (f *Transport) ChangeConfig(update func()) error {
	update()
	f.mu.Lock()
	f.configs++
	f.mu.Unlock()
	f.poke()
	return nil
}

// NeedsReset implements virtio.Transport.
func (f *Transport) NeedsReset(err error) {
	f.mu.Lock()
	f.errs = append(f.errs, err)
	f.mu.Unlock()
	f.poke()
}

// UsedSignals returns how often queue q was signalled.
func (f *Transport) UsedSignals(q int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.used[q]
}

// ConfigChanges returns how many config changes were signalled.
func (f *Transport) ConfigChanges() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.configs
}

// Errors returns the errors passed to NeedsReset.
func (f *Transport) Errors() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...)
}

// Wait polls cond until it holds or timeout passes, failing the test then.
func Wait(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
