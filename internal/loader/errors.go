package loader

import "errors"

// The kinds of refusal; every *Error wraps exactly one of them.
var (
	// ErrKernelImage means the kernel image is not a bootable ELF or
	// bzImage, or is truncated.
	ErrKernelImage = errors.New("loader: invalid kernel image")
	// ErrMemoryTooSmall means guest RAM cannot hold the kernel or the
	// boot structures.
	ErrMemoryTooSmall = errors.New("loader: guest memory too small")
	// ErrInitrdTooBig means the initrd does not fit in low RAM above the
	// kernel.
	ErrInitrdTooBig = errors.New("loader: initrd does not fit")
	// ErrInitrdRead means the initrd could not be read in full.
	ErrInitrdRead = errors.New("loader: initrd unreadable")
	// ErrCmdline means the kernel command line cannot be passed.
	ErrCmdline = errors.New("loader: invalid kernel command line")
)

// Error is a boot input the loader refuses. Its text is Firecracker's
// fault message for the case as it follows "Start microvm error: "; Kind
// classifies it and Err, when set, is the underlying cause.
type Error struct {
	Kind error
	Msg  string
	Err  error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}
