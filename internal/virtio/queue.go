package virtio

import (
	"encoding/binary"
	"fmt"
)

// Descriptor flags (virtio 1.2 §2.7.5).
const (
	DescFlagNext     uint16 = 1
	DescFlagWrite    uint16 = 2
	DescFlagIndirect uint16 = 4
)

// Ring flags.
const (
	availFlagNoInterrupt uint16 = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
)

// MaxIndirectLen bounds the entries of one indirect descriptor table, as
// QEMU does; the specification leaves it to the device.
const MaxIndirectLen = 1024

const descSize = 16

// Queue is one split virtqueue. The exported fields are the driver's
// configuration, written by the transport before activation; the rest is
// the device's view of the rings once active.
type Queue struct {
	MaxSize   uint16
	Size      uint16
	Ready     bool
	DescTable uint64
	AvailRing uint64
	UsedRing  uint64

	mem      Memory
	eventIdx bool
	desc     []byte // the descriptor table, Size*16 bytes
	avail    []byte // flags, idx, ring[Size], used_event
	used     []byte // flags, idx, ring[Size]{id, len}, avail_event

	nextAvail  uint16 // next avail ring slot to take (free-running)
	nextUsed   uint16 // next used ring slot to fill (free-running)
	published  uint16 // used.idx as last published
	signalled  uint16 // used.idx when NeedsSignal last ran
	lastPopped bool
	broken     error
	// dirty records what the device writes, when guest memory tracks it
	// (for diff snapshots: KVM's dirty log sees only the vCPUs' writes).
	dirty DirtyTracker
}

// DirtyTracker is guest memory that records the pages ember writes
// (*guestmem.Memory with dirty tracking on). A queue marks every
// device-writable buffer it hands out and each used element it writes.
type DirtyTracker interface {
	TrackingDirty() bool
	MarkDirty(gpa, n uint64)
}

// NewQueue returns a queue offering maxSize entries, configured as a reset
// device's queue is: size maxSize, not ready, addresses zero.
func NewQueue(maxSize uint16) *Queue {
	return &Queue{MaxSize: maxSize, Size: maxSize}
}

// ResetConfig returns the queue to its state after a device reset.
func (q *Queue) ResetConfig() {
	*q = Queue{MaxSize: q.MaxSize, Size: q.MaxSize}
}

// Activate checks the driver's configuration against guest memory and
// makes the queue usable, starting at ring position 0. eventIdx says
// whether VIRTIO_F_EVENT_IDX was negotiated. Errors wrap ErrQueueConfig.
func (q *Queue) Activate(mem Memory, eventIdx bool) error {
	switch {
	case !q.Ready:
		return fmt.Errorf("%w: queue not ready", ErrQueueConfig)
	case q.Size == 0 || q.Size > q.MaxSize || q.Size&(q.Size-1) != 0:
		return fmt.Errorf("%w: size %d (max %d, must be a power of two)", ErrQueueConfig, q.Size, q.MaxSize)
	case q.DescTable%16 != 0:
		return fmt.Errorf("%w: descriptor table %#x is not 16-byte aligned", ErrQueueConfig, q.DescTable)
	case q.AvailRing%2 != 0:
		return fmt.Errorf("%w: available ring %#x is not 2-byte aligned", ErrQueueConfig, q.AvailRing)
	case q.UsedRing%4 != 0:
		return fmt.Errorf("%w: used ring %#x is not 4-byte aligned", ErrQueueConfig, q.UsedRing)
	}
	n := uint64(q.Size)
	desc, err := mem.Slice(q.DescTable, descSize*n)
	if err != nil {
		return fmt.Errorf("%w: descriptor table: %w", ErrQueueConfig, err)
	}
	avail, err := mem.Slice(q.AvailRing, 6+2*n)
	if err != nil {
		return fmt.Errorf("%w: available ring: %w", ErrQueueConfig, err)
	}
	used, err := mem.Slice(q.UsedRing, 6+8*n)
	if err != nil {
		return fmt.Errorf("%w: used ring: %w", ErrQueueConfig, err)
	}
	q.mem, q.eventIdx = mem, eventIdx
	q.desc, q.avail, q.used = desc, avail, used
	q.dirty = nil
	if d, ok := mem.(DirtyTracker); ok && d.TrackingDirty() {
		q.dirty = d
	}
	q.nextAvail, q.nextUsed, q.published, q.signalled = 0, 0, 0, 0
	q.lastPopped, q.broken = false, nil
	return nil
}

// Position returns where the device is in the rings: the next available
// slot it will take and the next used slot it will fill, both free-running
// as the ring indices are. A vhost-user GET_VRING_BASE or a snapshot
// records it.
func (q *Queue) Position() (nextAvail, nextUsed uint16) { return q.nextAvail, q.nextUsed }

// SetPosition makes a queue just activated continue from a recorded
// position rather than from 0 (vhost-user SET_VRING_BASE after a stop,
// snapshot restore). Call it after Activate and before the device uses
// the queue; used elements before nextUsed count as published.
func (q *Queue) SetPosition(nextAvail, nextUsed uint16) {
	q.nextAvail, q.nextUsed = nextAvail, nextUsed
	q.published, q.signalled = nextUsed, nextUsed
	q.lastPopped = false
}

// Active reports whether Activate succeeded since the last reset.
func (q *Queue) Active() bool { return q.mem != nil }

// Err returns the protocol error that broke the queue, or nil.
func (q *Queue) Err() error { return q.broken }

func (q *Queue) fail(format string, args ...any) error {
	q.broken = fmt.Errorf("%w: "+format, append([]any{ErrBroken}, args...)...)
	return q.broken
}

func (q *Queue) check() error {
	if q.broken != nil {
		return q.broken
	}
	if q.mem == nil {
		return fmt.Errorf("%w: queue is not active", ErrQueueConfig)
	}
	return nil
}

func (q *Queue) availIdx() (uint16, error) {
	v, err := q.mem.Load16(q.AvailRing + 2)
	if err != nil {
		return 0, q.fail("reading avail.idx: %v", err)
	}
	return v, nil
}

// Pending returns how many chains the driver has made available and the
// device has not taken.
func (q *Queue) Pending() (uint16, error) {
	if err := q.check(); err != nil {
		return 0, err
	}
	idx, err := q.availIdx()
	if err != nil {
		return 0, err
	}
	n := idx - q.nextAvail
	if n > q.Size {
		return 0, q.fail("avail.idx %d is %d entries ahead of the device, more than the queue size %d", idx, n, q.Size)
	}
	return n, nil
}

// Pop takes the next available descriptor chain into c (reusing its
// storage). It returns false when the driver has made nothing new
// available. An error wraps ErrBroken (the queue is then unusable) or
// ErrQueueConfig.
func (q *Queue) Pop(c *Chain) (bool, error) {
	q.lastPopped = false
	n, err := q.Pending()
	if err != nil || n == 0 {
		return false, err
	}
	slot := uint64(q.nextAvail % q.Size)
	head := binary.LittleEndian.Uint16(q.avail[4+2*slot:])
	if head >= q.Size {
		return false, q.fail("avail ring slot %d names descriptor %d of a %d-entry table", slot, head, q.Size)
	}
	if err := q.parse(head, c); err != nil {
		return false, err
	}
	q.nextAvail++
	q.lastPopped = true
	return true, nil
}

// Undo gives back the chain the last Pop took, so the next Pop returns it
// again (a throttled device waits for budget this way). It does nothing
// unless the previous queue operation was a successful Pop.
func (q *Queue) Undo() {
	if q.lastPopped {
		q.nextAvail--
		q.lastPopped = false
	}
}

// UndoN gives back the last n popped chains. The caller guarantees it
// popped them and published nothing since.
func (q *Queue) UndoN(n uint16) {
	q.nextAvail -= n
	q.lastPopped = false
}

// Next is Pop that, when the ring is empty, asks the driver for a
// notification on its next publication and then checks once more, so no
// buffer published in between is missed.
func (q *Queue) Next(c *Chain) (bool, error) {
	for {
		ok, err := q.Pop(c)
		if ok || err != nil {
			return ok, err
		}
		more, err := q.ArmNotify()
		if err != nil || !more {
			return false, err
		}
	}
}

// ArmNotify asks the driver to notify the device when it publishes buffers
// beyond those available now. With VIRTIO_F_EVENT_IDX it writes
// avail_event; without, notifications are never suppressed and it does
// nothing. It returns true if the driver published more in the meantime,
// in which case no notification may come for them and the caller should
// look again.
func (q *Queue) ArmNotify() (bool, error) {
	q.lastPopped = false
	if err := q.check(); err != nil || !q.eventIdx {
		return false, err
	}
	idx, err := q.availIdx()
	if err != nil {
		return false, err
	}
	if err := q.mem.Store16(q.UsedRing+4+8*uint64(q.Size), idx); err != nil {
		return false, q.fail("writing avail_event: %v", err)
	}
	// The store above is sequentially consistent with this load, so a driver
	// that published after it will see the new avail_event and notify.
	idx2, err := q.availIdx()
	if err != nil {
		return false, err
	}
	return idx2 != idx, nil
}

// Add writes a used element for the chain headed by head, with n bytes
// written into its buffers, without publishing it.
func (q *Queue) Add(head uint16, n uint32) error {
	q.lastPopped = false
	if err := q.check(); err != nil {
		return err
	}
	if head >= q.Size {
		return fmt.Errorf("%w: used element for descriptor %d of a %d-entry table", ErrQueueConfig, head, q.Size)
	}
	off := 4 + 8*uint64(q.nextUsed%q.Size)
	binary.LittleEndian.PutUint32(q.used[off:], uint32(head))
	binary.LittleEndian.PutUint32(q.used[off+4:], n)
	if q.dirty != nil {
		q.dirty.MarkDirty(q.UsedRing+off, 8)
	}
	q.nextUsed++
	return nil
}

// Publish makes every added used element visible to the driver.
func (q *Queue) Publish() error {
	if err := q.check(); err != nil {
		return err
	}
	if q.published == q.nextUsed {
		return nil
	}
	// flags (ours, always 0: we never ask to suppress notifications) and idx
	// form one aligned word, written atomically after the elements.
	if err := q.mem.Store32(q.UsedRing, uint32(q.nextUsed)<<16); err != nil {
		return q.fail("writing used.idx: %v", err)
	}
	q.published = q.nextUsed
	return nil
}

// Push adds and publishes one used element.
func (q *Queue) Push(head uint16, n uint32) error {
	if err := q.Add(head, n); err != nil {
		return err
	}
	return q.Publish()
}

// NeedsSignal reports whether the driver wants an interrupt for the used
// elements published since the last call: always with new elements unless
// the driver suppressed it (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with
// VIRTIO_F_EVENT_IDX, as the kernel's vring_need_event computes).
func (q *Queue) NeedsSignal() bool {
	if q.check() != nil {
		return false
	}
	newIdx, old := q.published, q.signalled
	q.signalled = newIdx
	if newIdx == old {
		return false
	}
	if !q.eventIdx {
		flags, err := q.mem.Load16(q.AvailRing)
		return err != nil || flags&availFlagNoInterrupt == 0
	}
	ev, err := q.mem.Load16(q.AvailRing + 4 + 2*uint64(q.Size))
	if err != nil {
		return true
	}
	return newIdx-ev-1 < newIdx-old
}

// parse reads the chain headed by head into c, checking every index,
// address and length.
func (q *Queue) parse(head uint16, c *Chain) error {
	c.reset(head)
	table, entries := q.desc, uint64(q.Size)
	idx := uint64(head)
	indirect, seenWrite := false, false
	// Each table allows as many descriptors as it has entries, so a loop
	// ends as a too-long chain.
	for left, first := entries, true; ; first = false {
		if left == 0 {
			return q.fail("descriptor chain from %d is longer than its %d-entry table (a loop?)", head, entries)
		}
		left--
		var d [descSize]byte
		copy(d[:], table[descSize*idx:]) // a stable copy: the guest may rewrite it
		addr := binary.LittleEndian.Uint64(d[0:])
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])

		if flags&DescFlagIndirect != 0 {
			switch {
			case indirect:
				return q.fail("chain %d: nested indirect descriptor", head)
			case !first || flags&DescFlagNext != 0:
				return q.fail("chain %d: indirect descriptor is not alone in its chain", head)
			case length == 0 || length%descSize != 0 || length/descSize > MaxIndirectLen:
				return q.fail("chain %d: indirect table of %d bytes", head, length)
			}
			t, err := q.mem.Slice(addr, uint64(length))
			if err != nil {
				return q.fail("chain %d: indirect table: %v", head, err)
			}
			table, entries, idx, indirect = t, uint64(length/descSize), 0, true
			left = entries
			continue
		}
		if length > 0 {
			buf, err := q.mem.Slice(addr, uint64(length))
			if err != nil {
				return q.fail("chain %d: buffer %#x+%#x: %v", head, addr, length, err)
			}
			if flags&DescFlagWrite != 0 {
				seenWrite = true
				if q.dirty != nil {
					// Whether or not the device fills it: marking on the way
					// out costs one pass and errs on the safe side.
					q.dirty.MarkDirty(addr, uint64(length))
				}
				c.In = append(c.In, buf)
				c.InAddr = append(c.InAddr, addr)
				c.InLen += uint64(length)
			} else {
				if seenWrite {
					return q.fail("chain %d: device-readable buffer after a device-writable one", head)
				}
				c.Out = append(c.Out, buf)
				c.OutAddr = append(c.OutAddr, addr)
				c.OutLen += uint64(length)
			}
		} else if flags&DescFlagWrite != 0 {
			seenWrite = true
		} else if seenWrite {
			return q.fail("chain %d: device-readable buffer after a device-writable one", head)
		}
		if flags&DescFlagNext == 0 {
			return nil
		}
		if uint64(next) >= entries {
			return q.fail("chain %d: next descriptor %d of a %d-entry table", head, next, entries)
		}
		idx = uint64(next)
	}
}
