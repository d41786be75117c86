// Package kvmstate saves and restores the state KVM keeps for a VM and its
// vCPUs — registers, special registers, FPU/XSAVE, XCRs, debug registers,
// MSRs, the local APIC, pending events, CPUID, TSC frequency, the in-kernel
// PICs, IOAPIC and PIT, and kvmclock — and encodes it in ember's own
// versioned format. Guest memory and device models are not its business.
//
// Invariants:
//   - Save and restore follow the ioctl order Firecracker uses, because KVM's
//     GET and SET ioctls have side effects on one another (see SaveVCPU and
//     RestoreVCPU).
//   - State is saved only from a stopped vCPU whose last exit has been
//     completed (CompletePendingExit); all vCPUs of a VM are stopped before
//     any is saved, since KVM_GET/SET_VCPU_EVENTS are unsafe while others run.
//   - The encoding carries FormatVersion; Unmarshal refuses any other version
//     and any malformed or oversized field with an error wrapping ErrFormat or
//     ErrVersion, never a panic.
package kvmstate
