package kvm

import "unsafe"

// flexOffset is where the entries of a kernel struct made of a header H and
// a flexible array of E begin: the header's size rounded up to E's
// alignment, as the C compiler lays it out.
func flexOffset[H, E any]() uintptr {
	var h H
	var e E
	a := unsafe.Alignof(e)
	return (unsafe.Sizeof(h) + a - 1) &^ (a - 1)
}

// packFlex lays hdr and entries out contiguously, as C lays out a struct
// ending in a flexible array, in an 8-byte aligned buffer. view aliases the
// entries inside buf.
func packFlex[H, E any](hdr *H, entries []E) (buf []uint64, view []E) {
	var e E
	off := flexOffset[H, E]()
	total := off + uintptr(len(entries))*unsafe.Sizeof(e)
	buf = make([]uint64, max((total+7)/8, 1))
	base := unsafe.Pointer(&buf[0])
	*(*H)(base) = *hdr
	if len(entries) > 0 {
		view = unsafe.Slice((*E)(unsafe.Add(base, off)), len(entries))
		copy(view, entries)
	}
	return buf, view
}

// overlay views the start of a union's storage u as the member type T.
// T must fit in U and need no more alignment than U has; both hold no Go
// pointers. Violations are programming errors caught by the tests.
func overlay[T, U any](u *U) *T {
	var t T
	var x U
	if unsafe.Sizeof(t) > unsafe.Sizeof(x) || unsafe.Alignof(t) > unsafe.Alignof(x) {
		panic("kvm: union member larger or more aligned than its storage")
	}
	return (*T)(unsafe.Pointer(u))
}

// sliceAddr is the address of s's first element, for kernel structs that
// carry a user pointer as a 64-bit integer. The caller keeps s alive
// (runtime.KeepAlive) until the ioctl returns; the Go heap does not move.
func sliceAddr[E any](s []E) uint64 {
	return uint64(uintptr(unsafe.Pointer(&s[0])))
}
