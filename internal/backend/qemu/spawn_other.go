//go:build !linux

package qemu

import (
	"os/exec"
	"syscall"
)

// sockCloexec is 0 where socketpair has no SOCK_CLOEXEC; callers set the
// flag afterwards.
const sockCloexec = 0

// startChild starts cmd in its own process group. Outside Linux there is
// no parent-death signal; Machine.Close still kills QEMU.
func startChild(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	return cmd.Start()
}
