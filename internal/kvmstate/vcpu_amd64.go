package kvmstate

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/ember-vmm/ember/internal/kvm"
	"golang.org/x/sys/unix"
)

// maxMSRsPerIoctl is KVM's limit on entries in one KVM_GET/SET_MSRS.
const maxMSRsPerIoctl = 255

// TSC frequencies within this many parts per million of each other are
// treated as equal (boot-time calibration differs), as Firecracker and
// QEMU do.
const tscTolerancePPM = 250

// VCPUState is everything KVM holds for one x86-64 vCPU, as Firecracker
// snapshots it. The x87/SSE registers live in XSAVE (KVM_GET_FPU would be
// a lossy subset).
type VCPUState struct {
	CPUID []kvm.CPUIDEntry
	// MSRs in restore order: TSC_DEADLINE, which depends on TSC and the
	// LAPIC, comes last.
	MSRs      []kvm.MSREntry
	DebugRegs kvm.DebugRegs
	LAPIC     kvm.LAPICState
	MPState   kvm.MPState
	Regs      kvm.Regs
	Sregs     kvm.Sregs
	Events    kvm.VCPUEvents
	XCRS      kvm.XCRS
	XSAVE     []byte
	// TSCKHz is the guest TSC frequency, 0 when KVM could not tell (the
	// snapshot then restores only on a host of the same frequency).
	TSCKHz uint32
}

// CompletePendingExit finishes the vCPU's last exit inside KVM (the
// register side of a port or MMIO read, the RIP advance of an OUT) by
// entering KVM_RUN with immediate_exit set, which returns without running
// the guest once that is done. Until then the saved RIP would point at the
// instruction again and a restored guest would repeat it. Call it on the
// vCPU's thread after the VMM has handled the exit and before SaveVCPU.
// ErrExitPending means KVM came back with another exit to handle first
// (the next chunk of a string I/O); handle it and call again.
func CompletePendingExit(c *kvm.VCPU) error {
	d := c.RunData()
	if d == nil {
		return fmt.Errorf("kvmstate: complete pending exit: %w", kvm.ErrClosed)
	}
	d.SetImmediateExit(true)
	err := c.Run()
	d.SetImmediateExit(false)
	switch {
	case errors.Is(err, unix.EINTR):
		return nil
	case err != nil:
		return fmt.Errorf("kvmstate: complete pending exit: %w", err)
	default:
		return fmt.Errorf("kvmstate: %v after immediate exit: %w", d.ExitReason(), ErrExitPending)
	}
}

// SaveVCPU reads the vCPU's state; msrs lists the MSRs to save (see
// MSRsToSave, CPUIDMSRs, MergeMSRs). The vCPU must be stopped with its last
// exit completed (CompletePendingExit), and the other vCPUs of the VM
// stopped too.
//
// The order is Firecracker's: MP state first, because reading it makes KVM
// accept pending INIT/SIPI events, which changes the vCPU and the LAPIC;
// then registers, XSAVE, XCRs, debug registers, the LAPIC, the TSC
// frequency, CPUID and MSRs; events last, since the other reads can still
// change what is pending.
func SaveVCPU(c *kvm.VCPU, msrs []uint32) (*VCPUState, error) {
	s := &VCPUState{}
	var err error
	wrap := func(what string, err error) error {
		return fmt.Errorf("kvmstate: save vCPU %d %s: %w", c.ID(), what, err)
	}
	if s.MPState, err = c.GetMPState(); err != nil {
		return nil, wrap("MP state", err)
	}
	regs, err := c.GetRegs()
	if err != nil {
		return nil, wrap("registers", err)
	}
	s.Regs = *regs
	sregs, err := c.GetSregs()
	if err != nil {
		return nil, wrap("special registers", err)
	}
	s.Sregs = *sregs
	if s.XSAVE, err = c.GetXSAVE(); err != nil {
		return nil, wrap("XSAVE", err)
	}
	xcrs, err := c.GetXCRS()
	if err != nil {
		return nil, wrap("XCRs", err)
	}
	s.XCRS = *xcrs
	dr, err := c.GetDebugRegs()
	if err != nil {
		return nil, wrap("debug registers", err)
	}
	s.DebugRegs = *dr
	lapic, err := c.GetLAPIC()
	if err != nil {
		return nil, wrap("LAPIC", err)
	}
	s.LAPIC = *lapic
	// An unknown frequency is not fatal: the snapshot then loads only where
	// the TSC runs at the host's own rate.
	if khz, err := c.GetTSCKHz(); err == nil {
		s.TSCKHz = khz
	}
	cpuid, err := c.GetCPUID2()
	if err != nil {
		return nil, wrap("CPUID", err)
	}
	s.CPUID = dropEmptyCPUID(cpuid)
	if s.MSRs, err = getMSRs(c, msrs); err != nil {
		return nil, wrap("MSRs", err)
	}
	ev, err := c.GetVCPUEvents()
	if err != nil {
		return nil, wrap("events", err)
	}
	s.Events = *ev
	return s, nil
}

// dropEmptyCPUID removes all-zero entries, which some kernels append
// after the real ones.
func dropEmptyCPUID(in []kvm.CPUIDEntry) []kvm.CPUIDEntry {
	out := in[:0]
	for _, e := range in {
		if e.Function == 0 && e.Index == 0 && e.Flags == 0 && e.EAX == 0 {
			continue
		}
		out = append(out, e)
	}
	return out
}

// getMSRs reads indices in chunks KVM accepts, fixes a zero TSC_DEADLINE
// and moves it last.
func getMSRs(c *kvm.VCPU, indices []uint32) ([]kvm.MSREntry, error) {
	out := make([]kvm.MSREntry, len(indices))
	for i, idx := range indices {
		out[i].Index = idx
	}
	for start := 0; start < len(out); start += maxMSRsPerIoctl {
		chunk := out[start:min(start+maxMSRsPerIoctl, len(out))]
		n, err := c.GetMSRs(chunk)
		if err != nil {
			return nil, err
		}
		if n < len(chunk) {
			return nil, fmt.Errorf("MSR %#x: %w", chunk[n].Index, ErrMSR)
		}
	}
	fixZeroTSCDeadline(out)
	return deferMSRs(out), nil
}

// fixZeroTSCDeadline replaces a zero TSC_DEADLINE with the TSC. KVM can
// report 0 for a deadline whose interrupt it has not yet delivered; restored
// as 0 the timer would stay disarmed and that vCPU would never get another
// timer tick. Restored as "now" it fires at once, as it was about to.
func fixZeroTSCDeadline(msrs []kvm.MSREntry) {
	var tsc uint64
	found := false
	for _, m := range msrs {
		if m.Index == msrTSC && (!found || m.Data > tsc) {
			tsc, found = m.Data, true
		}
	}
	if !found {
		return
	}
	for i := range msrs {
		if msrs[i].Index == msrTSCDeadline && msrs[i].Data == 0 {
			msrs[i].Data = tsc
		}
	}
}

// deferMSRs returns msrs with TSC_DEADLINE moved to the end, keeping the
// others' order: KVM arms the deadline timer relative to the TSC as it is
// when the deadline is written, so the TSC must already be restored.
func deferMSRs(msrs []kvm.MSREntry) []kvm.MSREntry {
	out := make([]kvm.MSREntry, 0, len(msrs))
	var late []kvm.MSREntry
	for _, m := range msrs {
		if m.Index == msrTSCDeadline {
			late = append(late, m)
		} else {
			out = append(out, m)
		}
	}
	return append(out, late...)
}

// TSCScalingRequired reports whether the vCPU's TSC frequency differs from
// khz by more than the tolerance, so RestoreVCPU must set it.
func TSCScalingRequired(c *kvm.VCPU, khz uint32) (bool, error) {
	cur, err := c.GetTSCKHz()
	if err != nil {
		return false, fmt.Errorf("kvmstate: TSC frequency of vCPU %d: %w", c.ID(), err)
	}
	return tscDiffers(cur, khz), nil
}

func tscDiffers(cur, want uint32) bool {
	diff := int64(cur) - int64(want)
	if diff < 0 {
		diff = -diff
	}
	return diff*1_000_000 > int64(want)*tscTolerancePPM
}

// RestoreVCPU loads s into c, a vCPU created in a VM set up like the saved
// one (in-kernel irqchip created before the vCPU) that has not run. Restore
// every vCPU, then the VM (RestoreVM), then the devices, as Firecracker does.
//
// The order is Firecracker's, for KVM's sake: the TSC frequency first (MSR
// TSC values are in its units); CPUID before anything else, since it
// decides which registers and features the other SETs accept; registers
// before events, because KVM_SET_REGS drops a pending exception that
// KVM_SET_VCPU_EVENTS then restores; special registers before the LAPIC,
// since they carry the APIC base; the LAPIC before MSRs, because the TSC
// deadline MSR is only kept when the LAPIC is in deadline mode; events
// last. Finally KVM_KVMCLOCK_CTRL tells a kvmclock guest it was paused, so
// its watchdogs do not fire; a guest without kvmclock refuses, which is not
// an error.
func RestoreVCPU(c *kvm.VCPU, s *VCPUState) error {
	if s == nil {
		return fmt.Errorf("kvmstate: restore vCPU: nil state: %w", ErrFormat)
	}
	wrap := func(what string, err error) error {
		return fmt.Errorf("kvmstate: restore vCPU %d %s: %w", c.ID(), what, err)
	}
	xsave, err := fitXSAVE(s.XSAVE, c.XSAVESize())
	if err != nil {
		return wrap("XSAVE", err)
	}
	if s.TSCKHz != 0 {
		scale, err := TSCScalingRequired(c, s.TSCKHz)
		if err != nil {
			return wrap("TSC", err)
		}
		if scale {
			if err := c.SetTSCKHz(s.TSCKHz); err != nil {
				return wrap(fmt.Sprintf("TSC frequency %d kHz", s.TSCKHz), err)
			}
		}
	}
	if err := c.SetCPUID2(s.CPUID); err != nil {
		return wrap("CPUID", err)
	}
	if err := c.SetMPState(s.MPState); err != nil {
		return wrap("MP state", err)
	}
	regs := s.Regs
	if err := c.SetRegs(&regs); err != nil {
		return wrap("registers", err)
	}
	sregs := s.Sregs
	if err := c.SetSregs(&sregs); err != nil {
		return wrap("special registers", err)
	}
	if err := c.SetXSAVE(xsave); err != nil {
		return wrap("XSAVE", err)
	}
	xcrs := s.XCRS
	if err := c.SetXCRS(&xcrs); err != nil {
		return wrap("XCRs", err)
	}
	dr := s.DebugRegs
	if err := c.SetDebugRegs(&dr); err != nil {
		return wrap("debug registers", err)
	}
	lapic := s.LAPIC
	if err := c.SetLAPIC(&lapic); err != nil {
		return wrap("LAPIC", err)
	}
	if err := setMSRs(c, deferMSRs(s.MSRs)); err != nil {
		return wrap("MSRs", err)
	}
	ev := s.Events
	if err := c.SetVCPUEvents(&ev); err != nil {
		return wrap("events", err)
	}
	_ = NotifyPaused(c)
	return nil
}

func setMSRs(c *kvm.VCPU, msrs []kvm.MSREntry) error {
	for start := 0; start < len(msrs); start += maxMSRsPerIoctl {
		chunk := msrs[start:min(start+maxMSRsPerIoctl, len(msrs))]
		n, err := c.SetMSRs(chunk)
		if err != nil {
			return err
		}
		if n < len(chunk) {
			return fmt.Errorf("MSR %#x = %#x refused: %w", chunk[n].Index, chunk[n].Data, ErrMSR)
		}
	}
	return nil
}

// fitXSAVE sizes a saved XSAVE area for a vCPU whose area is size bytes:
// a shorter one is zero-extended (the extra components are absent from its
// header, so zeros are their init state); a longer one loads only if what
// would be cut is all zeros.
func fitXSAVE(saved []byte, size int) ([]byte, error) {
	switch {
	case len(saved) == size:
		return saved, nil
	case len(saved) < size:
		out := make([]byte, size)
		copy(out, saved)
		return out, nil
	case len(bytes.Trim(saved[size:], "\x00")) == 0:
		return saved[:size], nil
	default:
		return nil, fmt.Errorf("saved area of %d bytes holds state beyond this host's %d: %w", len(saved), size, ErrIncompatible)
	}
}

// NotifyPaused issues KVM_KVMCLOCK_CTRL, telling a kvmclock guest its vCPU
// was stopped so the time it lost is not mistaken for a soft lockup. The
// VMM calls it for each vCPU when it pauses, as Firecracker does (which
// only warns on failure). A guest that has not enabled kvmclock makes KVM
// answer EINVAL; NotifyPaused reports that as nil.
func NotifyPaused(c *kvm.VCPU) error {
	if err := c.KVMClockCtrl(); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("kvmstate: KVM_KVMCLOCK_CTRL on vCPU %d: %w", c.ID(), err)
	}
	return nil
}
