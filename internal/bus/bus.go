// Package bus dispatches a vCPU's port and memory-mapped I/O to ember's
// device models. A Bus maps non-overlapping address ranges [base, base+size)
// to Devices; one Bus serves port I/O and another MMIO.
//
// Invariants: ranges never overlap and never wrap past the top of the
// address space; an access is delivered only if it lies wholly inside one
// range, with the offset relative to that range's base. Lookups are
// lock-free (a sorted, immutable snapshot searched by binary search), so
// vCPU threads never contend on the bus itself; Insert and Remove publish a
// new snapshot. Devices synchronize their own state: Read and Write may be
// called concurrently from several vCPUs.
package bus

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// Device is a device model reached through a Bus. offset is relative to
// the base the device was inserted at. Read fills all of data (a device
// with nothing to say leaves zeros); Write consumes data. Neither may block
// for long: they run on vCPU threads.
type Device interface {
	Read(offset uint64, data []byte)
	Write(offset uint64, data []byte)
}

// ErrOverlap is returned (wrapped) by Insert for a range that overlaps one
// already mapped.
var ErrOverlap = errors.New("bus range overlaps an existing device")

// ErrInvalidRange is returned (wrapped) by Insert for an empty range or one
// that wraps past the end of the address space.
var ErrInvalidRange = errors.New("invalid bus range")

// ErrNotFound is returned (wrapped) by Remove when no device starts at base.
var ErrNotFound = errors.New("no device at this bus address")

// Range is one mapped device.
type Range struct {
	Base, Size uint64
	Device     Device
}

// last returns the last address of the range (Base+Size-1), which cannot
// overflow for a valid range.
func (r Range) last() uint64 { return r.Base + (r.Size - 1) }

// Bus maps address ranges to devices. The zero value is an empty bus ready
// to use.
type Bus struct {
	mu     sync.Mutex              // serializes writers
	ranges atomic.Pointer[[]Range] // sorted by Base; never mutated once published
}

func (b *Bus) snapshot() []Range {
	if p := b.ranges.Load(); p != nil {
		return *p
	}
	return nil
}

// Insert maps dev at [base, base+size).
func (b *Bus) Insert(dev Device, base, size uint64) error {
	if dev == nil {
		return fmt.Errorf("%w: nil device at %#x", ErrInvalidRange, base)
	}
	if size == 0 || base+(size-1) < base {
		return fmt.Errorf("%w: %#x+%#x", ErrInvalidRange, base, size)
	}
	nr := Range{Base: base, Size: size, Device: dev}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.snapshot()
	i := sort.Search(len(old), func(i int) bool { return old[i].Base > base })
	if i > 0 && old[i-1].last() >= base {
		return fmt.Errorf("%w: %#x+%#x meets %#x+%#x", ErrOverlap, base, size, old[i-1].Base, old[i-1].Size)
	}
	if i < len(old) && nr.last() >= old[i].Base {
		return fmt.Errorf("%w: %#x+%#x meets %#x+%#x", ErrOverlap, base, size, old[i].Base, old[i].Size)
	}
	rs := make([]Range, 0, len(old)+1)
	rs = append(rs, old[:i]...)
	rs = append(rs, nr)
	rs = append(rs, old[i:]...)
	b.ranges.Store(&rs)
	return nil
}

// Remove unmaps the device inserted at base.
func (b *Bus) Remove(base uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.snapshot()
	i := sort.Search(len(old), func(i int) bool { return old[i].Base >= base })
	if i == len(old) || old[i].Base != base {
		return fmt.Errorf("%w: %#x", ErrNotFound, base)
	}
	rs := make([]Range, 0, len(old)-1)
	rs = append(rs, old[:i]...)
	rs = append(rs, old[i+1:]...)
	b.ranges.Store(&rs)
	return nil
}

// Ranges returns the mapped ranges in address order.
func (b *Bus) Ranges() []Range {
	return append([]Range(nil), b.snapshot()...)
}

// Lookup finds the device whose range holds all n bytes at addr and
// returns it with the offset of addr in its range.
func (b *Bus) Lookup(addr, n uint64) (Device, uint64, bool) {
	rs := b.snapshot()
	// The last range starting at or below addr is the only candidate.
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Base > addr }) - 1
	if i < 0 {
		return nil, 0, false
	}
	r := rs[i]
	off := addr - r.Base
	if off >= r.Size || n > r.Size-off {
		return nil, 0, false
	}
	return r.Device, off, true
}

// Read delivers a read of len(data) bytes at addr. It returns false, with
// data untouched, when no device holds the whole access: the caller logs
// and gives the guest zeros, as Firecracker does.
func (b *Bus) Read(addr uint64, data []byte) bool {
	d, off, ok := b.Lookup(addr, uint64(len(data)))
	if !ok {
		return false
	}
	d.Read(off, data)
	return true
}

// Write delivers a write of data at addr. It returns false when no device
// holds the whole access; the write is then dropped.
func (b *Bus) Write(addr uint64, data []byte) bool {
	d, off, ok := b.Lookup(addr, uint64(len(data)))
	if !ok {
		return false
	}
	d.Write(off, data)
	return true
}
