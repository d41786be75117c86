//go:build linux

package kvm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// getRef fetches one fixed-size struct from the vCPU.
func getRef[T any](c *VCPU, name string, req uintptr) (*T, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	var v T
	if _, err := ioctlRef(c.fd, name, req, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// setRef stores one fixed-size struct into the vCPU.
func setRef[T any](c *VCPU, name string, req uintptr, v *T) error {
	if err := c.check(); err != nil {
		return err
	}
	if v == nil {
		return fmt.Errorf("kvm: %s with nil state: %w", name, ErrBadArgument)
	}
	_, err := ioctlRef(c.fd, name, req, v)
	return err
}

// GetRegs returns the general-purpose registers.
func (c *VCPU) GetRegs() (*Regs, error) { return getRef[Regs](c, "KVM_GET_REGS", kvmGetRegs) }

// SetRegs sets the general-purpose registers.
func (c *VCPU) SetRegs(r *Regs) error { return setRef(c, "KVM_SET_REGS", kvmSetRegs, r) }

// GetSregs returns the segment and system registers.
func (c *VCPU) GetSregs() (*Sregs, error) { return getRef[Sregs](c, "KVM_GET_SREGS", kvmGetSregs) }

// SetSregs sets the segment and system registers.
func (c *VCPU) SetSregs(s *Sregs) error { return setRef(c, "KVM_SET_SREGS", kvmSetSregs, s) }

// GetFPU returns the x87/SSE state.
func (c *VCPU) GetFPU() (*FPU, error) { return getRef[FPU](c, "KVM_GET_FPU", kvmGetFPU) }

// SetFPU sets the x87/SSE state.
func (c *VCPU) SetFPU(f *FPU) error { return setRef(c, "KVM_SET_FPU", kvmSetFPU, f) }

// GetLAPIC returns the local APIC's register page (needs CreateIRQChip).
func (c *VCPU) GetLAPIC() (*LAPICState, error) {
	return getRef[LAPICState](c, "KVM_GET_LAPIC", kvmGetLAPIC)
}

// SetLAPIC sets the local APIC's register page.
func (c *VCPU) SetLAPIC(l *LAPICState) error { return setRef(c, "KVM_SET_LAPIC", kvmSetLAPIC, l) }

// GetVCPUEvents returns pending and injected events.
func (c *VCPU) GetVCPUEvents() (*VCPUEvents, error) {
	return getRef[VCPUEvents](c, "KVM_GET_VCPU_EVENTS", kvmGetVCPUEvents)
}

// SetVCPUEvents sets pending and injected events (fields chosen by Flags).
func (c *VCPU) SetVCPUEvents(e *VCPUEvents) error {
	return setRef(c, "KVM_SET_VCPU_EVENTS", kvmSetVCPUEvents, e)
}

// GetDebugRegs returns the debug registers.
func (c *VCPU) GetDebugRegs() (*DebugRegs, error) {
	return getRef[DebugRegs](c, "KVM_GET_DEBUGREGS", kvmGetDebugRegs)
}

// SetDebugRegs sets the debug registers.
func (c *VCPU) SetDebugRegs(d *DebugRegs) error {
	return setRef(c, "KVM_SET_DEBUGREGS", kvmSetDebugRegs, d)
}

// GetXCRS returns the extended control registers.
func (c *VCPU) GetXCRS() (*XCRS, error) { return getRef[XCRS](c, "KVM_GET_XCRS", kvmGetXCRS) }

// SetXCRS sets the extended control registers.
func (c *VCPU) SetXCRS(x *XCRS) error { return setRef(c, "KVM_SET_XCRS", kvmSetXCRS, x) }

// XSAVESize is the length of the XSAVE state GetXSAVE returns and SetXSAVE
// takes: 4096 bytes, or KVM_CAP_XSAVE2's larger size.
func (c *VCPU) XSAVESize() int { return c.xsaveSize }

// GetXSAVE returns the vCPU's XSAVE area (struct kvm_xsave), XSAVESize
// bytes, through KVM_GET_XSAVE2 when that is larger than 4096.
func (c *VCPU) GetXSAVE() ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	name, req := "KVM_GET_XSAVE", uintptr(kvmGetXSAVE)
	if c.xsaveSize > sizeofXSAVE {
		name, req = "KVM_GET_XSAVE2", kvmGetXSAVE2
	}
	buf := make([]byte, c.xsaveSize)
	if _, err := ioctlBytes(c.fd, name, req, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// SetXSAVE restores an XSAVE area from GetXSAVE. The kernel reads
// XSAVESize bytes, so data must be at least that long.
func (c *VCPU) SetXSAVE(data []byte) error {
	if err := c.check(); err != nil {
		return err
	}
	if len(data) < c.xsaveSize {
		return fmt.Errorf("kvm: XSAVE state of %d bytes, the vCPU's is %d: %w", len(data), c.xsaveSize, ErrBadArgument)
	}
	_, err := ioctlBytes(c.fd, "KVM_SET_XSAVE", kvmSetXSAVE, data)
	return err
}

// SetCPUID2 sets the CPUID the guest sees (before the first Run).
func (c *VCPU) SetCPUID2(entries []CPUIDEntry) error {
	if err := c.check(); err != nil {
		return err
	}
	h := cpuid2Header{Nent: uint32(len(entries))}
	_, err := ioctlFlex(c.fd, "KVM_SET_CPUID2", kvmSetCPUID2, &h, entries)
	return err
}

// GetCPUID2 returns the CPUID set with SetCPUID2.
func (c *VCPU) GetCPUID2() ([]CPUIDEntry, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return getVCPUCPUID(c.fd)
}

// getVCPUCPUID reads KVM_GET_CPUID2. Some kernels (6.1 among them) write
// the entry count back only on E2BIG, leaving the caller's count on
// success, so when the answer is as large as the buffer the true count is
// found as the smallest buffer the kernel accepts (E2BIG exactly when the
// buffer is smaller than the vCPU's table): a binary search of a few
// ioctls, for a call made once per snapshot.
func getVCPUCPUID(fd int) ([]CPUIDEntry, error) {
	const name = "KVM_GET_CPUID2"
	call := func(n int) ([]CPUIDEntry, int, error) {
		h := cpuid2Header{Nent: uint32(n)}
		e := make([]CPUIDEntry, n)
		_, err := ioctlFlex(fd, name, kvmGetCPUID2, &h, e)
		return e, int(h.Nent), err
	}
	lo, hi := -1, cpuidStartEntries // E2BIG at lo (or nothing tried), success at hi
	var best []CPUIDEntry
	for {
		e, nent, err := call(hi)
		if errors.Is(err, unix.E2BIG) && hi < cpuidMaxEntries {
			lo, hi = hi, hi*2
			continue
		}
		if err != nil {
			return nil, err
		}
		if nent < hi {
			return e[:nent:nent], nil // the kernel said how many
		}
		best = e
		break
	}
	for lo+1 < hi {
		mid := lo + (hi-lo)/2
		e, _, err := call(mid)
		switch {
		case errors.Is(err, unix.E2BIG):
			lo = mid
		case err != nil:
			return nil, err
		default:
			hi, best = mid, e
		}
	}
	return best[:hi:hi], nil
}

// GetMSRs reads the MSRs named by entries' Index into their Data. It
// returns how many were read, in order; fewer than len(entries) means
// entries[n] is not supported.
func (c *VCPU) GetMSRs(entries []MSREntry) (int, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	return msrs(c.fd, "KVM_GET_MSRS", kvmGetMSRs, entries)
}

// SetMSRs writes entries. It returns how many were written, in order;
// fewer than len(entries) means entries[n] was refused.
func (c *VCPU) SetMSRs(entries []MSREntry) (int, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	return msrs(c.fd, "KVM_SET_MSRS", kvmSetMSRs, entries)
}

// KVMClockCtrl tells the guest's kvmclock that the vCPU was paused, so its
// soft-lockup watchdog does not fire on resume. The kernel answers EINVAL
// when the guest has not enabled kvmclock.
func (c *VCPU) KVMClockCtrl() error {
	if err := c.check(); err != nil {
		return err
	}
	_, err := ioctl(c.fd, "KVM_KVMCLOCK_CTRL", kvmKVMClockCtrl, 0)
	return err
}

// SetTSCKHz sets the guest's TSC frequency.
func (c *VCPU) SetTSCKHz(khz uint32) error {
	if err := c.check(); err != nil {
		return err
	}
	if khz == 0 {
		return fmt.Errorf("kvm: TSC frequency 0: %w", ErrBadArgument)
	}
	_, err := ioctl(c.fd, "KVM_SET_TSC_KHZ", kvmSetTSCKHz, uintptr(khz))
	return err
}

// GetTSCKHz returns the guest's TSC frequency.
func (c *VCPU) GetTSCKHz() (uint32, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	n, err := ioctl(c.fd, "KVM_GET_TSC_KHZ", kvmGetTSCKHz, 0)
	return uint32(n), err
}

// NMI injects a non-maskable interrupt (for a userspace local APIC).
func (c *VCPU) NMI() error {
	if err := c.check(); err != nil {
		return err
	}
	_, err := ioctl(c.fd, "KVM_NMI", kvmNMI, 0)
	return err
}
