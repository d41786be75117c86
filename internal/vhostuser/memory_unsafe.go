package vhostuser

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// word returns the aligned 32-bit word holding gpa. The mappings are
// outside the Go heap, so the pointer is stable while mapped.
func (m *Memory) word(gpa uint64) (*uint32, error) {
	b, err := m.Slice(gpa&^3, 4)
	if err != nil {
		return nil, err
	}
	return (*uint32)(unsafe.Pointer(&b[0])), nil
}

// Load32 implements virtio.Memory.
func (m *Memory) Load32(gpa uint64) (uint32, error) {
	if gpa&3 != 0 {
		return 0, fmt.Errorf("%w: %#x", ErrMisaligned, gpa)
	}
	w, err := m.word(gpa)
	if err != nil {
		return 0, err
	}
	return atomic.LoadUint32(w), nil
}

// Store32 implements virtio.Memory.
func (m *Memory) Store32(gpa uint64, v uint32) error {
	if gpa&3 != 0 {
		return fmt.Errorf("%w: %#x", ErrMisaligned, gpa)
	}
	w, err := m.word(gpa)
	if err != nil {
		return err
	}
	atomic.StoreUint32(w, v)
	return nil
}

// Load16 implements virtio.Memory through the 32-bit word holding gpa (Go
// has no 16-bit atomics); x86 and arm64 are little-endian.
func (m *Memory) Load16(gpa uint64) (uint16, error) {
	if gpa&1 != 0 {
		return 0, fmt.Errorf("%w: %#x", ErrMisaligned, gpa)
	}
	w, err := m.word(gpa)
	if err != nil {
		return 0, err
	}
	return uint16(atomic.LoadUint32(w) >> (8 * (gpa & 2))), nil
}

// Store16 implements virtio.Memory, leaving the other half of the word as
// it is.
func (m *Memory) Store16(gpa uint64, v uint16) error {
	if gpa&1 != 0 {
		return fmt.Errorf("%w: %#x", ErrMisaligned, gpa)
	}
	w, err := m.word(gpa)
	if err != nil {
		return err
	}
	shift := 8 * (gpa & 2)
	mask := uint32(0xffff) << shift
	for {
		old := atomic.LoadUint32(w)
		if atomic.CompareAndSwapUint32(w, old, old&^mask|uint32(v)<<shift) {
			return nil
		}
	}
}
