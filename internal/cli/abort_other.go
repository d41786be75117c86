//go:build !linux

package cli

// abortProcess is a no-op where ember cannot restore SIGABRT's default
// action; Terminate then exits with ExitAborted.
func abortProcess() {}
