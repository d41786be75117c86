//go:build linux

package tap

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Open attaches to the tap interface name (creating a non-persistent one if
// it does not exist) and returns its file, ready for a virtio-net device.
// Opening an interface another process holds fails with EBUSY.
func Open(name string) (*os.File, error) {
	// A NUL would silently cut the name short.
	if len(name) > maxNameLen || strings.IndexByte(name, 0) >= 0 {
		return nil, &Error{Op: OpInvalidName, Name: name, Err: ErrInvalidName}
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, &Error{Op: OpInvalidName, Name: name, Err: ErrInvalidName}
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{Op: OpOpenTun, Name: name, Err: err}
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, &Error{Op: OpSetIff, Name: name, Err: err}
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrSize); err != nil {
		return nil, &Error{Op: OpSetVnetHdrSize, Name: name, Err: err}
	}
	if err := setOffload(fd, 0); err != nil {
		return nil, &Error{Op: OpSetOffload, Name: name, Err: err}
	}
	ok = true
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+ifr.Name()), nil
}

// SetOffload tells the kernel which offloads (Offload* flags) the reader of
// f accepts, as negotiated with the guest's virtio-net driver.
func SetOffload(f *os.File, flags uint32) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return &Error{Op: OpSetOffload, Name: f.Name(), Err: err}
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) { ioErr = setOffload(int(fd), flags) }); err != nil {
		ioErr = err
	}
	if ioErr != nil {
		return &Error{Op: OpSetOffload, Name: f.Name(), Err: ioErr}
	}
	return nil
}

func setOffload(fd int, flags uint32) error {
	return unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(flags))
}

// Name returns the interface name f is attached to.
func Name(f *os.File) (string, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return "", err
	}
	var name string
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		var ifr *unix.Ifreq
		ifr, ioErr = unix.NewIfreq("")
		if ioErr == nil {
			ioErr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr)
			name = ifr.Name()
		}
	})
	if err != nil {
		return "", err
	}
	return name, ioErr
}
