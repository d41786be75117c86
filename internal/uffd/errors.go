package uffd

import (
	"errors"

	"github.com/ember-vmm/ember/internal/syserr"
)

// Sentinels for the VMM side's failures. Their texts are Firecracker's,
// misspellings included, so that a caller wrapping them as Firecracker does
// ("Error creating guest memory from uffd: ...") answers the API with the
// same bytes.
var (
	ErrCreate   = errors.New("Failed to UFFD object")
	ErrRegister = errors.New("Failed to register memory address range with the userfaultfd object")
	ErrConnect  = errors.New("Failed to connect to UDS Unix stream")
	ErrSend     = errors.New("Failed to sends file descriptor")
)

// vmmError is a VMM-side failure: kind is one of the sentinels above and
// err the cause, kept for errors.Is/As and logs.
type vmmError struct {
	kind error
	err  error
	// generic hides the cause from the text: Firecracker's userfaultfd
	// library prints every failed system call as just "System error".
	generic bool
}

func (e *vmmError) Error() string {
	if e.generic {
		return e.kind.Error() + ": System error"
	}
	return e.kind.Error() + ": " + syserr.Display(e.err)
}

func (e *vmmError) Unwrap() []error { return []error{e.kind, e.err} }
