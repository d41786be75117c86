//go:build linux

package guestmem

import (
	"golang.org/x/sys/unix"
)

func mapRegion(r Region, o Options, fileOff uint64) (mapped, error) {
	mp := mapped{Region: r, fd: -1}
	flags := unix.MAP_NORESERVE
	fd := -1
	switch {
	case o.File != nil:
		// A private mapping of the file: copy-on-write, the file's fd is
		// not kept (the mapping holds the file).
		mem, err := unix.Mmap(int(o.File.Fd()), int64(fileOff), int(r.Size), unix.PROT_READ|unix.PROT_WRITE, flags|unix.MAP_PRIVATE)
		if err != nil {
			return mp, err
		}
		if o.HugePages == HugePagesTransparent {
			unix.Madvise(mem, unix.MADV_HUGEPAGE)
		}
		mp.mem = mem
		return mp, nil
	}
	switch o.Backing {
	case Shared:
		mfdFlags := unix.MFD_CLOEXEC
		if o.HugePages == HugePages2M {
			mfdFlags |= unix.MFD_HUGETLB | unix.MFD_HUGE_2MB
		}
		var err error
		if fd, err = unix.MemfdCreate("guest-ram", mfdFlags); err != nil {
			return mp, err
		}
		if err := unix.Ftruncate(fd, int64(r.Size)); err != nil {
			unix.Close(fd)
			return mp, err
		}
		flags |= unix.MAP_SHARED
	default:
		flags |= unix.MAP_PRIVATE | unix.MAP_ANONYMOUS
		if o.HugePages == HugePages2M {
			flags |= unix.MAP_HUGETLB | 21<<unix.MAP_HUGE_SHIFT
		}
	}
	if o.HugePages == HugePages2M {
		// Reserve the huge pages now: without a reservation a short pool
		// shows only when the guest touches the memory, as a fault.
		flags &^= unix.MAP_NORESERVE
	}
	mem, err := unix.Mmap(fd, 0, int(r.Size), unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return mp, err
	}
	if o.HugePages == HugePagesTransparent {
		unix.Madvise(mem, unix.MADV_HUGEPAGE)
	}
	mp.mem, mp.fd = mem, fd
	return mp, nil
}

func unmapRegion(r mapped) error {
	err := unix.Munmap(r.mem)
	if r.fd >= 0 {
		unix.Close(r.fd)
	}
	return err
}
