package kvmstate

import "errors"

// Sentinel errors; wrapped with details.
var (
	// ErrVersion means encoded state has a format version or architecture
	// this build does not read.
	ErrVersion = errors.New("kvmstate: unsupported state format version")
	// ErrFormat means encoded state is malformed.
	ErrFormat = errors.New("kvmstate: malformed state")
	// ErrIncompatible means saved state cannot be loaded into this vCPU or
	// VM as it is (an XSAVE area larger than the host's, kvmclock realtime
	// asked for but not saved, ...).
	ErrIncompatible = errors.New("kvmstate: state incompatible with this host")
	// ErrMSR means KVM refused to read or write one of the MSRs; the error
	// names it.
	ErrMSR = errors.New("kvmstate: MSR not accessible")
	// ErrExitPending means the vCPU's last exit still needs the VMM's
	// attention (a string I/O continuing), so its state is not yet
	// consistent: handle the exit, then complete it again.
	ErrExitPending = errors.New("kvmstate: vCPU exit still pending")
)
