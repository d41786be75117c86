//go:build linux

package qemu

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

const sockCloexec = unix.SOCK_CLOEXEC

// QEMU must never outlive ember, even when ember is SIGKILLed, so it is
// started with PR_SET_PDEATHSIG. Linux sends that signal when the *thread*
// that forked the child exits, not the process, and Go retires threads
// (one whose goroutine exits while locked to it). So every QEMU is forked
// from one thread that is locked for the life of the process and does
// nothing else.
var (
	spawnOnce sync.Once
	spawnReqs chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func spawner() {
	runtime.LockOSThread()
	// Never unlocked, and this goroutine never returns: the thread lives
	// as long as the process.
	for r := range spawnReqs {
		r.done <- r.cmd.Start()
	}
}

// startChild starts cmd from the spawner thread, with SIGKILL as its
// parent-death signal and in its own process group (so a terminal's
// Ctrl-C reaches ember, which decides, not QEMU directly).
func startChild(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		go spawner()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr.Setpgid = true
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnReqs <- r
	return <-r.done
}
