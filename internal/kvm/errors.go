package kvm

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Sentinel errors; wrapped with details.
var (
	// ErrAPIVersion means the device answered KVM_GET_API_VERSION with a
	// version other than APIVersion.
	ErrAPIVersion = errors.New("unsupported KVM API version")
	// ErrClosed means a method was called after Close.
	ErrClosed = errors.New("kvm descriptor closed")
	// ErrBadArgument means an argument was rejected before any ioctl.
	ErrBadArgument = errors.New("invalid argument")
	// ErrWrongExit means a kvm_run accessor was used for an exit of
	// another reason.
	ErrWrongExit = errors.New("accessor does not match the exit reason")
	// ErrOutOfRange means the kernel-reported offset or length of exit
	// data points outside the kvm_run mapping.
	ErrOutOfRange = errors.New("exit data out of the kvm_run mapping")
)

// IoctlError is a failed ioctl: its name and the kernel's errno.
type IoctlError struct {
	Op    string // the ioctl's name, e.g. "KVM_RUN"
	Errno unix.Errno
}

func (e *IoctlError) Error() string { return e.Op + ": " + e.Errno.Error() }

// Unwrap gives the raw errno, for errors.Is(err, unix.EINTR) and the like.
func (e *IoctlError) Unwrap() error { return e.Errno }
