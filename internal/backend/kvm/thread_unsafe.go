//go:build linux

package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// setThreadName names the calling OS thread (its comm, at most 15 bytes),
// as Firecracker names its vCPU threads.
func setThreadName(name string) {
	var b [16]byte
	copy(b[:15], name)
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0, 0, 0)
}
