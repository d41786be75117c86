package microhttp

import (
	"errors"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Path errors of Listen, worded as Rust's standard library words them
// (Firecracker prints them after "IO error: ").
var (
	ErrPathNUL     = errors.New("paths must not contain interior null bytes")
	ErrPathTooLong = errors.New("path must be shorter than SUN_LEN")
)

// sunPathLen is the size of sockaddr_un.sun_path; a path needs room for its
// terminating NUL.
const sunPathLen = 108

// Listen binds a Unix stream socket at path and listens on it, the way
// Firecracker's API socket is created: nothing is unlinked first (an
// existing path, even a stale socket, fails with EADDRINUSE, which
// errors.Is can test), the file mode is what the umask leaves of 0777 (no
// chmod), and closing the listener leaves the file in place. The path is
// taken literally: unlike Go's net package, a leading '@' does not mean an
// abstract address. The empty path binds an unnamed (autobound) address.
func Listen(path string) (*net.UnixListener, error) {
	if strings.IndexByte(path, 0) >= 0 {
		return nil, ErrPathNUL
	}
	if len(path) >= sunPathLen {
		return nil, ErrPathTooLong
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := bindPath(fd, path); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	// -1 asks for the kernel's maximum (net.core.somaxconn), as Rust does.
	if err := unix.Listen(fd, -1); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("listen", err)
	}
	f := os.NewFile(uintptr(fd), path)
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, errors.New("microhttp: not a Unix listener")
	}
	// FileListener never unlinks on Close; say so anyway, for clarity.
	ul.SetUnlinkOnClose(false)
	return ul, nil
}
