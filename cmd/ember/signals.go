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

// fatalSignals are the signals Firecracker handles by exiting with a code
// of its own, after setting the signal's metric.
func fatalSignals(m *metrics.Metrics) map[syscall.Signal]struct {
	metric *metrics.Gauge
	code   int
} {
	type entry = struct {
		metric *metrics.Gauge
		code   int
	}
	return map[syscall.Signal]entry{
		syscall.SIGBUS:  {&m.Signals.SIGBUS, cli.ExitSIGBUS},
		syscall.SIGSEGV: {&m.Signals.SIGSEGV, cli.ExitSIGSEGV},
		syscall.SIGXFSZ: {&m.Signals.SIGXFSZ, cli.ExitSIGXFSZ},
		syscall.SIGXCPU: {&m.Signals.SIGXCPU, cli.ExitSIGXCPU},
		syscall.SIGHUP:  {&m.Signals.SIGHUP, cli.ExitSIGHUP},
		syscall.SIGILL:  {&m.Signals.SIGILL, cli.ExitSIGILL},
		syscall.SIGSYS:  {&m.Seccomp.NumFaults, cli.ExitBadSyscall},
	}
}

// watchSignals handles the signals Firecracker handles, with its log lines,
// metrics and exit codes; SIGPIPE is counted and survived.
func watchSignals(log logger.Log, m *metrics.Metrics) *signalWatch {
	w := &signalWatch{ch: make(chan os.Signal, 8), fatal: make(chan fatalSignal, 1)}
	fatal := fatalSignals(m)
	sigs := []os.Signal{syscall.SIGPIPE, syscall.SIGTERM, syscall.SIGINT}
	for s := range fatal {
		sigs = append(sigs, s)
	}
	signal.Notify(w.ch, sigs...)
	go func() {
		for s := range w.ch {
			sig := s.(syscall.Signal)
			switch sig {
			case syscall.SIGPIPE:
				m.Signals.SIGPIPE.Inc()
				log.Errorf("Received signal %d", int(sig))
				continue
			case syscall.SIGTERM, syscall.SIGINT:
				w.fatal <- fatalSignal{sig: sig}
				return
			}
			f := fatal[sig]
			f.metric.Set(1)
			// A signal sent by another process has si_code SI_USER (0).
			log.Errorf("Shutting down VM after intercepting signal %d, code 0.", int(sig))
			w.fatal <- fatalSignal{code: f.code}
			return
		}
	}()
	return w
}
