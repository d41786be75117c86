//go:build linux

package snapshot

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// zeroRange makes a range of the file read as zeros: a hole if the
// filesystem can punch one, written zeros if not.
func zeroRange(fd *os.File, off, n int64) error {
	err := unix.Fallocate(int(fd.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	return writeZeros(fd, off, n)
}
