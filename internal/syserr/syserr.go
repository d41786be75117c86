// Package syserr renders operating-system errors the way Firecracker's
// clients see them: Rust's io::Error Display, "<strerror text> (os error N)",
// with the texts of the musl C library Firecracker is linked against
// ("No such file or directory (os error 2)", "Out of memory (os error 12)").
// Go's own texts are lowercase and carry the operation and path, which would
// change the bytes of an API answer.
package syserr

import (
	"errors"
	"syscall"
)

// Display returns err as Rust's io::Error would print it. An error that
// wraps an errno prints as "<Strerror> (os error N)"; any other error prints
// its own text.
func Display(err error) string {
	if err == nil {
		return ""
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return Errno(errno)
	}
	return err.Error()
}

// Errno returns the Rust io::Error Display of an errno.
func Errno(e syscall.Errno) string {
	return Strerror(e) + " (os error " + itoa(int(e)) + ")"
}

// Strerror returns the C library's text for e.
func Strerror(e syscall.Errno) string {
	if s, ok := muslText[int(e)]; ok {
		return s
	}
	return "No error information"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// Debug returns err as Rust's io::Error Debug form prints it, for the
// "Error: ..." line Firecracker writes on stderr:
// `Os { code: 2, kind: NotFound, message: "No such file or directory" }`.
// An error without an errno prints as a quoted custom error.
func Debug(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return `Custom { kind: Other, error: "` + err.Error() + `" }`
	}
	return "Os { code: " + itoa(int(errno)) + ", kind: " + Kind(errno) + `, message: "` + Strerror(errno) + `" }`
}

// Kind returns the name of Rust's io::ErrorKind for an errno, as Rust's
// standard library maps them on Linux.
func Kind(e syscall.Errno) string {
	switch e {
	case syscall.E2BIG:
		return "ArgumentListTooLong"
	case syscall.EADDRINUSE:
		return "AddrInUse"
	case syscall.EADDRNOTAVAIL:
		return "AddrNotAvailable"
	case syscall.EBUSY:
		return "ResourceBusy"
	case syscall.ECONNABORTED:
		return "ConnectionAborted"
	case syscall.ECONNREFUSED:
		return "ConnectionRefused"
	case syscall.ECONNRESET:
		return "ConnectionReset"
	case syscall.EDEADLK:
		return "Deadlock"
	case syscall.EDQUOT:
		return "QuotaExceeded"
	case syscall.EEXIST:
		return "AlreadyExists"
	case syscall.EFBIG:
		return "FileTooLarge"
	case syscall.EHOSTUNREACH:
		return "HostUnreachable"
	case syscall.EINTR:
		return "Interrupted"
	case syscall.EINVAL:
		return "InvalidInput"
	case syscall.EISDIR:
		return "IsADirectory"
	case syscall.ELOOP:
		return "FilesystemLoop"
	case syscall.ENOENT:
		return "NotFound"
	case syscall.ENOMEM:
		return "OutOfMemory"
	case syscall.ENOSPC:
		return "StorageFull"
	case syscall.ENOSYS:
		return "Unsupported"
	case syscall.EMLINK:
		return "TooManyLinks"
	case syscall.ENAMETOOLONG:
		return "InvalidFilename"
	case syscall.ENETDOWN:
		return "NetworkDown"
	case syscall.ENETUNREACH:
		return "NetworkUnreachable"
	case syscall.ENOTCONN:
		return "NotConnected"
	case syscall.ENOTDIR:
		return "NotADirectory"
	case syscall.ENOTEMPTY:
		return "DirectoryNotEmpty"
	case syscall.EPIPE:
		return "BrokenPipe"
	case syscall.EROFS:
		return "ReadOnlyFilesystem"
	case syscall.ESPIPE:
		return "NotSeekable"
	case syscall.ESTALE:
		return "StaleNetworkFileHandle"
	case syscall.ETIMEDOUT:
		return "TimedOut"
	case syscall.ETXTBSY:
		return "ExecutableFileBusy"
	case syscall.EXDEV:
		return "CrossesDevices"
	case syscall.EINPROGRESS:
		return "InProgress"
	case syscall.EACCES, syscall.EPERM:
		return "PermissionDenied"
	case syscall.EAGAIN:
		return "WouldBlock"
	}
	return "Uncategorized"
}
