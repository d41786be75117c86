//go:build linux

package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// VCPU is a virtual CPU's file descriptor and its mapped kvm_run page.
// Run and the register accessors belong to one OS thread (the caller's
// runtime.LockOSThread'ed goroutine); RunData().SetImmediateExit may be
// called from anywhere.
type VCPU struct {
	fd      int
	id      int
	mapping []byte
	run     *RunData
	vcpuArch
}

// ID returns the id the vCPU was created with.
func (c *VCPU) ID() int { return c.id }

// Fd returns the descriptor, or -1 once closed.
func (c *VCPU) Fd() int { return c.fd }

// RunData returns the vCPU's kvm_run view; nil once closed.
func (c *VCPU) RunData() *RunData { return c.run }

// Close unmaps kvm_run and closes the descriptor. It must not race with Run.
func (c *VCPU) Close() error {
	var errs []error
	if c.mapping != nil {
		if err := unix.Munmap(c.mapping); err != nil {
			errs = append(errs, fmt.Errorf("kvm: munmap kvm_run: %w", err))
		}
		c.mapping, c.run = nil, nil
	}
	errs = append(errs, closeFD(&c.fd))
	return errors.Join(errs...)
}

func (c *VCPU) check() error {
	if c.fd < 0 {
		return ErrClosed
	}
	return nil
}

// Run enters the guest once (one KVM_RUN) and returns when it exits; the
// reason and data are in RunData. An interrupted run returns an error
// wrapping unix.EINTR: after a signal the exit reason is KVM_EXIT_INTR;
// with immediate_exit set the guest is not entered and the exit reason is
// left as it was. The caller decides whether to run again; Run never
// retries by itself.
func (c *VCPU) Run() error {
	if c.fd < 0 {
		return ErrClosed
	}
	// unix.Syscall, not RawSyscall: KVM_RUN blocks for as long as the
	// guest runs, and the scheduler must be told so other goroutines run.
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd), kvmRun, 0)
	if e != 0 {
		return &IoctlError{Op: "KVM_RUN", Errno: e}
	}
	return nil
}

// EnableCap enables capability c on this vCPU with up to four arguments.
func (c *VCPU) EnableCap(cp Cap, flags uint32, args ...uint64) error {
	if err := c.check(); err != nil {
		return err
	}
	return enableCapOn(c.fd, cp, flags, args)
}

// GetMPState returns the vCPU's multiprocessing state.
func (c *VCPU) GetMPState() (MPState, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	var s mpState
	_, err := ioctlRef(c.fd, "KVM_GET_MP_STATE", kvmGetMPState, &s)
	return MPState(s.State), err
}

// SetMPState sets the vCPU's multiprocessing state.
func (c *VCPU) SetMPState(st MPState) error {
	if err := c.check(); err != nil {
		return err
	}
	s := mpState{State: uint32(st)}
	_, err := ioctlRef(c.fd, "KVM_SET_MP_STATE", kvmSetMPState, &s)
	return err
}

// SetSignalMask sets the signals blocked while the vCPU is in KVM_RUN (bit
// n-1 of mask blocks signal n); outside KVM_RUN the thread's own mask holds.
func (c *VCPU) SetSignalMask(mask uint64) error {
	if err := c.check(); err != nil {
		return err
	}
	var set [8]byte
	binary.NativeEndian.PutUint64(set[:], mask)
	h := signalMaskHeader{Len: uint32(len(set))}
	_, err := ioctlFlex(c.fd, "KVM_SET_SIGNAL_MASK", kvmSetSignalMask, &h, set[:])
	return err
}

// ClearSignalMask removes a mask set by SetSignalMask.
func (c *VCPU) ClearSignalMask() error {
	if err := c.check(); err != nil {
		return err
	}
	_, err := ioctl(c.fd, "KVM_SET_SIGNAL_MASK", kvmSetSignalMask, 0)
	return err
}
