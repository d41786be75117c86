package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/ember-vmm/ember/internal/cli"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/metrics"
)

// fatalSignal is a signal that ends the process: with Firecracker's exit code
// (code), or, for SIGTERM and SIGINT, which Firecracker leaves to their
// default action, by dying of the signal itself (sig) after cleaning up.
type fatalSignal struct {
	code int
	sig  syscall.Signal
}

type signalWatch struct {
	ch    chan os.Signal
	fatal chan fatalSignal
}

// watchSignals handles the signals Firecracker handles, with its log lines,
// metrics and exit codes; SIGPIPE is counted and survived.
func watchSignals(log logger.Log, m *metrics.Metrics) *signalWatch {
	w := &signalWatch{ch: make(chan os.Signal, 8), fatal: make(chan fatalSignal, 1)}
	signal.Notify(w.ch, syscall.SIGBUS, syscall.SIGSEGV, syscall.SIGXFSZ, syscall.SIGXCPU,
		syscall.SIGHUP, syscall.SIGILL, syscall.SIGSYS, syscall.SIGPIPE, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range w.ch {
			sig := s.(syscall.Signal)
			var code int
			switch sig {
			case syscall.SIGPIPE:
				m.Signals.SIGPIPE.Inc()
				log.Errorf("Received signal %d", int(sig))
				continue
			case syscall.SIGTERM, syscall.SIGINT:
				w.fatal <- fatalSignal{sig: sig}
				return
			case syscall.SIGBUS:
				m.Signals.SIGBUS.Set(1)
				code = cli.ExitSIGBUS
			case syscall.SIGSEGV:
				m.Signals.SIGSEGV.Set(1)
				code = cli.ExitSIGSEGV
			case syscall.SIGXFSZ:
				m.Signals.SIGXFSZ.Set(1)
				code = cli.ExitSIGXFSZ
			case syscall.SIGXCPU:
				m.Signals.SIGXCPU.Set(1)
				code = cli.ExitSIGXCPU
			case syscall.SIGHUP:
				m.Signals.SIGHUP.Set(1)
				code = cli.ExitSIGHUP
			case syscall.SIGILL:
				m.Signals.SIGILL.Set(1)
				code = cli.ExitSIGILL
			case syscall.SIGSYS:
				m.Seccomp.NumFaults.Set(1)
				code = cli.ExitBadSyscall
			}
			// A signal sent by another process has si_code SI_USER (0).
			log.Errorf("Shutting down VM after intercepting signal %d, code 0.", int(sig))
			w.fatal <- fatalSignal{code: code}
			return
		}
	}()
	return w
}
