package guestmem

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// HostAddress returns the host virtual address of gpa, for registering
// regions with KVM (KVM_SET_USER_MEMORY_REGION) or a vhost-user backend.
func (m *Memory) HostAddress(gpa uint64) (uintptr, error) {
	b, err := m.Slice(gpa, 1)
	if err != nil {
		return 0, err
	}
	return uintptr(unsafe.Pointer(&b[0])), nil
}

// word returns the aligned 32-bit word holding gpa.
func (m *Memory) word(gpa uint64) (*uint32, error) {
	b, err := m.Slice(gpa&^3, 4)
	if err != nil {
		return nil, err
	}
	return (*uint32)(unsafe.Pointer(&b[0])), nil
}

// Load32 atomically reads the aligned 32-bit value at gpa.
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

// Store32 atomically writes the aligned 32-bit value at gpa.
func (m *Memory) Store32(gpa uint64, v uint32) error {
	if gpa&3 != 0 {
		return fmt.Errorf("%w: %#x", ErrMisaligned, gpa)
	}
	w, err := m.word(gpa)
	if err != nil {
		return err
	}
	atomic.StoreUint32(w, v)
	m.MarkDirty(gpa, 4)
	return nil
}

// Load16 atomically reads the aligned 16-bit value at gpa (through the
// 32-bit word holding it; Go has no 16-bit atomics). x86 is little-endian.
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

// Store16 atomically writes the aligned 16-bit value at gpa, leaving the
// other half of its 32-bit word as it is.
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
			m.MarkDirty(gpa, 2)
			return nil
		}
	}
}
