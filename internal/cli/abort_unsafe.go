//go:build linux

package cli

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// abortProcess kills the process with SIGABRT under the default action, as
// Rust's abort does. The Go runtime handles SIGABRT itself (traceback, exit
// status 2), so the default action is restored with a raw rt_sigaction
// first; if the signal somehow does not kill us, it returns.
func abortProcess() { DieBySignal(unix.SIGABRT) }

// DieBySignal ends the process by sig under its default action, so the
// parent sees a death by that signal, as it would for Firecracker (which
// does not catch SIGTERM or SIGINT). It returns only if that fails.
func DieBySignal(sig unix.Signal) {
	// struct sigaction { handler; flags; restorer; mask }: all zero is
	// SIG_DFL with no flags and nothing masked, on every Linux architecture.
	var act [4]uint64
	_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig),
		uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
	if errno != 0 {
		return
	}
	runtime.LockOSThread()
	var set unix.Sigset_t
	set.Val[0] = 1 << (uint(sig) - 1)
	_ = unix.PthreadSigmask(unix.SIG_UNBLOCK, &set, nil)
	_ = unix.Tgkill(unix.Getpid(), unix.Gettid(), sig)
}
