package kvm

import (
	"fmt"
	"unsafe"
)

// RunData is a vCPU's mapped kvm_run page. The vCPU's own thread reads and
// writes it around Run; only SetImmediateExit may be called from other
// goroutines.
type RunData struct {
	r   *run
	buf []byte // the whole mapping, for bounds checks of exit data
}

// newRunData views buf, a mapping of the vCPU fd, as kvm_run.
func newRunData(buf []byte) (*RunData, error) {
	if len(buf) < sizeofRun {
		return nil, fmt.Errorf("kvm: kvm_run mapping of %d bytes, need %d: %w", len(buf), sizeofRun, ErrOutOfRange)
	}
	if uintptr(unsafe.Pointer(&buf[0]))%unsafe.Alignof(run{}) != 0 {
		return nil, fmt.Errorf("kvm: kvm_run mapping misaligned: %w", ErrBadArgument)
	}
	return &RunData{r: (*run)(unsafe.Pointer(&buf[0])), buf: buf}, nil
}

// ExitReason is why the last Run returned.
func (d *RunData) ExitReason() ExitReason { return ExitReason(d.r.ExitReason) }

// ImmediateExit reports the immediate_exit byte.
func (d *RunData) ImmediateExit() bool { return d.r.ImmediateExit != 0 }

// SetImmediateExit sets immediate_exit: while set, KVM_RUN returns EINTR at
// once instead of entering the guest. A VMM stopping a vCPU sets it and
// then signals the vCPU's thread, so the request is seen whether the thread
// is inside KVM_RUN (the signal kicks it out) or about to enter it (the
// byte stops it). Safe from any goroutine: one byte store, read by the
// kernel at entry (the signalling syscall orders it).
func (d *RunData) SetImmediateExit(on bool) {
	var v uint8
	if on {
		v = 1
	}
	d.r.ImmediateExit = v
}

// RequestInterruptWindow reports request_interrupt_window.
func (d *RunData) RequestInterruptWindow() bool { return d.r.RequestInterruptWindow != 0 }

// SetRequestInterruptWindow asks KVM to exit with KVM_EXIT_IRQ_WINDOW_OPEN
// as soon as the guest can take an interrupt (for a userspace irqchip).
func (d *RunData) SetRequestInterruptWindow(on bool) {
	d.r.RequestInterruptWindow = 0
	if on {
		d.r.RequestInterruptWindow = 1
	}
}

// ReadyForInterruptInjection reports ready_for_interrupt_injection.
func (d *RunData) ReadyForInterruptInjection() bool { return d.r.ReadyForInterruptInjection != 0 }

// IfFlag reports the guest's RFLAGS.IF at exit.
func (d *RunData) IfFlag() bool { return d.r.IfFlag != 0 }

// Flags is kvm_run.flags (KVM_RUN_X86_SMM, ...).
func (d *RunData) Flags() uint16 { return d.r.Flags }

// CR8 is kvm_run.cr8.
func (d *RunData) CR8() uint64 { return d.r.CR8 }

// APICBase is kvm_run.apic_base.
func (d *RunData) APICBase() uint64 { return d.r.APICBase }

func (d *RunData) want(r ExitReason) error {
	if got := d.ExitReason(); got != r {
		return fmt.Errorf("kvm: %v data asked of a %v: %w", r, got, ErrWrongExit)
	}
	return nil
}

// IO returns the KVM_EXIT_IO data. Data aliases the mapping at the
// kernel-given offset, checked to lie inside it.
func (d *RunData) IO() (IOExit, error) {
	if err := d.want(ExitIO); err != nil {
		return IOExit{}, err
	}
	io := overlay[exitIO](&d.r.Exit)
	switch io.Size {
	case 1, 2, 4:
	default:
		return IOExit{}, fmt.Errorf("kvm: io exit of %d-byte items: %w", io.Size, ErrOutOfRange)
	}
	n := uint64(io.Size) * uint64(io.Count)
	if io.DataOffset < sizeofRun || io.DataOffset > uint64(len(d.buf)) || n > uint64(len(d.buf))-io.DataOffset {
		return IOExit{}, fmt.Errorf("kvm: io exit data [%#x, +%d) outside the %d-byte mapping: %w",
			io.DataOffset, n, len(d.buf), ErrOutOfRange)
	}
	return IOExit{
		Out:   io.Direction == IODirectionOut,
		Size:  io.Size,
		Port:  io.Port,
		Count: io.Count,
		Data:  d.buf[io.DataOffset : io.DataOffset+n : io.DataOffset+n],
	}, nil
}

// MMIO returns the KVM_EXIT_MMIO data. Data aliases the 8-byte data field,
// cut to the kernel-given length, checked to be at most 8.
func (d *RunData) MMIO() (MMIOExit, error) {
	if err := d.want(ExitMMIO); err != nil {
		return MMIOExit{}, err
	}
	m := overlay[exitMMIO](&d.r.Exit)
	if m.Len > uint32(len(m.Data)) {
		return MMIOExit{}, fmt.Errorf("kvm: mmio exit of %d bytes: %w", m.Len, ErrOutOfRange)
	}
	return MMIOExit{Addr: m.PhysAddr, IsWrite: m.IsWrite != 0, Data: m.Data[:m.Len:m.Len]}, nil
}

// SystemEvent returns the KVM_EXIT_SYSTEM_EVENT data (copied).
func (d *RunData) SystemEvent() (SystemEvent, error) {
	if err := d.want(ExitSystemEvent); err != nil {
		return SystemEvent{}, err
	}
	e := overlay[exitSystemEvent](&d.r.Exit)
	n := min(int(e.NData), len(e.Data))
	return SystemEvent{
		Type:  SystemEventType(e.Type),
		Flags: e.Data[0],
		Data:  append([]uint64(nil), e.Data[:n]...),
	}, nil
}

// FailEntry returns the KVM_EXIT_FAIL_ENTRY data.
func (d *RunData) FailEntry() (FailEntry, error) {
	if err := d.want(ExitFailEntry); err != nil {
		return FailEntry{}, err
	}
	f := overlay[exitFailEntry](&d.r.Exit)
	return FailEntry{HardwareEntryFailureReason: f.HardwareEntryFailureReason, CPU: f.CPU}, nil
}

// InternalError returns the KVM_EXIT_INTERNAL_ERROR data (copied).
func (d *RunData) InternalError() (InternalError, error) {
	if err := d.want(ExitInternalError); err != nil {
		return InternalError{}, err
	}
	e := overlay[exitInternal](&d.r.Exit)
	n := min(int(e.NData), len(e.Data))
	return InternalError{Suberror: e.Suberror, Data: append([]uint64(nil), e.Data[:n]...)}, nil
}

// Exception returns the KVM_EXIT_EXCEPTION vector and error code.
func (d *RunData) Exception() (vector, errorCode uint32, err error) {
	if err := d.want(ExitException); err != nil {
		return 0, 0, err
	}
	e := overlay[exitException](&d.r.Exit)
	return e.Exception, e.ErrorCode, nil
}

// HardwareExitReason returns the KVM_EXIT_UNKNOWN hardware reason.
func (d *RunData) HardwareExitReason() (uint64, error) {
	if err := d.want(ExitUnknown); err != nil {
		return 0, err
	}
	return overlay[exitUnknown](&d.r.Exit).HardwareExitReason, nil
}
