//go:build linux

package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl issues a request whose argument is a plain value (or none). It
// returns the ioctl's non-negative result, which some requests use.
func ioctl(fd int, name string, req, arg uintptr) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if e != 0 {
		return 0, &IoctlError{Op: name, Errno: e}
	}
	return int(r), nil
}

// ioctlPtr issues a request whose argument points at memory the kernel
// reads or writes. The conversion to uintptr happens in the Syscall
// argument list, which keeps p alive and in place for the call.
func ioctlPtr(fd int, name string, req uintptr, p unsafe.Pointer) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(p))
	if e != 0 {
		return 0, &IoctlError{Op: name, Errno: e}
	}
	return int(r), nil
}

// ioctlRef issues a request on a fixed-size kernel struct. T must hold no
// Go pointers.
func ioctlRef[T any](fd int, name string, req uintptr, p *T) (int, error) {
	return ioctlPtr(fd, name, req, unsafe.Pointer(p))
}

// ioctlFlex issues a request on a kernel struct made of a header followed by
// a flexible array (kvm_cpuid2, kvm_msrs, kvm_irq_routing, ...): it packs
// hdr and entries into one buffer, makes the call, and copies both back so
// the kernel's answers are seen. H and E must hold no Go pointers.
func ioctlFlex[H, E any](fd int, name string, req uintptr, hdr *H, entries []E) (int, error) {
	buf, view := packFlex(hdr, entries)
	r, err := ioctlPtr(fd, name, req, unsafe.Pointer(&buf[0]))
	*hdr = *(*H)(unsafe.Pointer(&buf[0]))
	copy(entries, view)
	return r, err
}
