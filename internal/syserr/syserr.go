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
