//go:build linux

package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// EventFD is a Linux eventfd, the doorbell IRQFD and IOEventFD connect to
// guest interrupts and guest writes. It is close-on-exec and non-blocking.
type EventFD struct {
	fd int
}

// NewEventFD creates an eventfd with counter 0.
func NewEventFD() (*EventFD, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("kvm: eventfd: %w", err)
	}
	return &EventFD{fd: fd}, nil
}

// Fd returns the descriptor, or -1 once closed.
func (e *EventFD) Fd() int { return e.fd }

// Close closes the eventfd.
func (e *EventFD) Close() error { return closeFD(&e.fd) }

// Signal adds 1 to the counter, waking a reader (or, behind an IRQFD,
// injecting the interrupt).
func (e *EventFD) Signal() error { return e.Add(1) }

// Add adds n to the counter.
func (e *EventFD) Add(n uint64) error {
	if e.fd < 0 {
		return ErrClosed
	}
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], n)
	if _, err := unix.Write(e.fd, b[:]); err != nil {
		return fmt.Errorf("kvm: eventfd write: %w", err)
	}
	return nil
}

// Read returns and clears the counter. With nothing pending it returns 0
// and no error (the descriptor never blocks).
func (e *EventFD) Read() (uint64, error) {
	if e.fd < 0 {
		return 0, ErrClosed
	}
	var b [8]byte
	n, err := unix.Read(e.fd, b[:])
	if errors.Is(err, unix.EAGAIN) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("kvm: eventfd read: %w", err)
	}
	if n != len(b) {
		return 0, fmt.Errorf("kvm: eventfd read of %d bytes: %w", n, ErrOutOfRange)
	}
	return binary.NativeEndian.Uint64(b[:]), nil
}
