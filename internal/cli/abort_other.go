//go:build !linux

package cli

import "syscall"

// abortProcess is a no-op where ember cannot restore SIGABRT's default
// action; Terminate then exits with ExitAborted.
func abortProcess() {}

// DieBySignal is a no-op here; callers exit with their own code afterwards.
func DieBySignal(sig syscall.Signal) {}
