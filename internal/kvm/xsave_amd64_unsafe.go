//go:build linux && amd64

package kvm

import "unsafe"

// ioctlBytes issues a request on a caller-sized byte buffer (kvm_xsave with
// its tail). buf must not be empty.
func ioctlBytes(fd int, name string, req uintptr, buf []byte) (int, error) {
	return ioctlPtr(fd, name, req, unsafe.Pointer(&buf[0]))
}
