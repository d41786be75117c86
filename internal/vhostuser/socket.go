package vhostuser

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/virtio"
)

// Compile-time checks of the contracts this package fills.
var (
	_ virtio.Memory    = (*Memory)(nil)
	_ virtio.Interrupt = (*callFd)(nil)
	_ virtio.Transport = (*transport)(nil)
)

// SocketPair returns a connected pair: the server's end, to pass to Serve,
// and the front-end's end as a file to hand to QEMU (for example in
// exec.Cmd.ExtraFiles, named by "-chardev socket,id=ID,fd=N"). No path is
// ever bound, so nothing else can connect.
func SocketPair() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("vhost-user: socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "vhost-user")
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("vhost-user: socketpair: %w", err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "vhost-user-front-end"), nil
}
