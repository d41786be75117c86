package microhttp

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// bindPath binds fd to path with a hand-built sockaddr_un, because
// unix.Bind would turn a leading '@' into an abstract address. The length
// covers the path and its NUL; an empty path gives just the family, which
// makes the kernel autobind, as Rust's bind does.
func bindPath(fd int, path string) error {
	var sa unix.RawSockaddrUnix
	sa.Family = unix.AF_UNIX
	for i := 0; i < len(path); i++ {
		sa.Path[i] = int8(path[i])
	}
	size := unsafe.Offsetof(sa.Path)
	if len(path) > 0 {
		size += uintptr(len(path)) + 1
	}
	_, _, errno := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&sa)), size)
	if errno != 0 {
		return errno
	}
	return nil
}
