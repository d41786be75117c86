package seccomp

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// install hands prog to seccomp(2) with TSYNC. The kernel copies the
// program before returning, so prog need only live through the call.
func install(prog []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): %w", errno)
	}
	if r != 0 {
		// With TSYNC a positive result names a thread that could not be
		// synchronized; nothing was installed.
		return fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): thread %d cannot be synchronized", r)
	}
	return nil
}
