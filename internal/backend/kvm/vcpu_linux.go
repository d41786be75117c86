//go:build linux

package kvm

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/ember-vmm/ember/internal/hypervisor"
	kvmsys "github.com/ember-vmm/ember/internal/kvm"
	"github.com/ember-vmm/ember/internal/logger"
	"golang.org/x/sys/unix"
)

// kickSignal interrupts KVM_RUN on a vCPU thread. SIGURG is the signal the
// Go runtime already uses to preempt threads, so its handler is installed
// and an extra one is harmless to everything else in the process.
const kickSignal = unix.SIGURG

// vcpu is one virtual CPU and the thread that runs it.
type vcpu struct {
	id  int
	cpu *kvmsys.VCPU
	run *kvmsys.RunData
	log logger.Log
	// tid is the vCPU thread's id once it runs, for kicks.
	tid atomic.Int32
	// calls are functions to run on the vCPU's thread while it is parked
	// (saving its state for a snapshot).
	calls chan func()
}

// createVCPU creates vCPU id with nothing loaded into it.
func (m *machine) createVCPU(id int) (*vcpu, error) {
	cpu, err := m.vm.CreateVCPU(id)
	if err != nil {
		return nil, fmt.Errorf("cannot create vCPU %d: %w", id, err)
	}
	return &vcpu{id: id, cpu: cpu, run: cpu.RunData(), log: m.log.Thread(fmt.Sprintf("fc_vcpu %d", id)), calls: make(chan func())}, nil
}

// newVCPU creates vCPU id set up for the loaded kernel.
func (m *machine) newVCPU(id int) (*vcpu, error) {
	c, err := m.createVCPU(id)
	if err != nil {
		return nil, err
	}
	if err := m.archConfigureVCPU(c); err != nil {
		c.cpu.Close()
		return nil, fmt.Errorf("cannot configure vCPU %d: %w", id, err)
	}
	return c, nil
}

func (c *vcpu) close() error { return c.cpu.Close() }

// kick makes the vCPU leave KVM_RUN (or not enter it) soon, from any
// goroutine: immediate_exit covers a vCPU about to enter the guest, the
// signal one already inside.
func (c *vcpu) kick() {
	c.run.SetImmediateExit(true)
	if tid := c.tid.Load(); tid != 0 {
		unix.Tgkill(unix.Getpid(), int(tid), kickSignal)
	}
}

// runVCPU is the vCPU's thread. It never unlocks the OS thread: the thread
// carries the vCPU's name and dies with the goroutine.
func (m *machine) runVCPU(c *vcpu, ready chan<- struct{}) {
	runtime.LockOSThread()
	c.tid.Store(int32(unix.Gettid()))
	setThreadName(fmt.Sprintf("fc_vcpu %d", c.id))
	defer func() {
		m.mu.Lock()
		m.live--
		m.notifyLocked()
		m.mu.Unlock()
	}()
	ready <- struct{}{}
	for m.gate(c) {
		err := c.cpu.Run()
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			// A kick or an unrelated signal: clear the request before
			// looking at the state again, so a kick that lands in between
			// is seen by the gate.
			c.run.SetImmediateExit(false)
			continue
		case err != nil:
			c.log.Errorf("Failure during vcpu run: %v", err)
			m.finish(hypervisor.ExitError, fmt.Errorf("vCPU %d: %w", c.id, err))
			return
		}
		if stop, err := m.handleExit(c); stop {
			if err != nil {
				c.log.Errorf("%v", err)
				m.finish(hypervisor.ExitError, fmt.Errorf("vCPU %d: %w", c.id, err))
			} else {
				m.finish(hypervisor.ExitReset, nil)
			}
			return
		}
	}
}

// gate parks the calling vCPU while the machine is paused, running what
// is sent on c.calls meanwhile, and reports whether it should run (false
// once the machine is stopping).
func (m *machine) gate(c *vcpu) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.paused && !m.stopping {
		m.parked++
		m.notifyLocked()
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case f := <-c.calls:
			f()
		}
		m.mu.Lock()
		m.parked--
	}
	return !m.stopping
}

// onThread runs f on c's thread if the vCPU runs (it must be parked), or
// here if it never started; KVM takes a vCPU's ioctls from any thread, but
// a running vCPU's state is read where it runs.
func (m *machine) onThread(ctx context.Context, c *vcpu, f func() error) error {
	if c.tid.Load() == 0 {
		return f()
	}
	done := make(chan error, 1)
	select {
	case c.calls <- func() { done <- f() }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// handleExit serves one exit. stop says the vCPU must end: with err nil
// the guest asked for a reset or shutdown, otherwise the exit is fatal.
func (m *machine) handleExit(c *vcpu) (stop bool, err error) {
	reason := c.run.ExitReason()
	switch reason {
	case kvmsys.ExitIO:
		io, err := c.run.IO()
		if err != nil {
			return true, err
		}
		size := int(io.Size)
		for i := 0; i+size <= len(io.Data); i += size {
			item := io.Data[i : i+size]
			if io.Out {
				m.pio.Write(uint64(io.Port), item)
			} else {
				clear(item)
				m.pio.Read(uint64(io.Port), item)
			}
		}
		return false, nil
	case kvmsys.ExitMMIO:
		mm, err := c.run.MMIO()
		if err != nil {
			return true, err
		}
		if mm.IsWrite {
			if !m.mmio.Write(mm.Addr, mm.Data) {
				c.log.Debugf("Unhandled MMIO write of %d bytes at %#x", len(mm.Data), mm.Addr)
			}
		} else {
			clear(mm.Data)
			if !m.mmio.Read(mm.Addr, mm.Data) {
				c.log.Debugf("Unhandled MMIO read of %d bytes at %#x", len(mm.Data), mm.Addr)
			}
		}
		return false, nil
	case kvmsys.ExitIntr:
		return false, nil
	case kvmsys.ExitSystemEvent:
		ev, err := c.run.SystemEvent()
		if err != nil {
			return true, err
		}
		c.log.Infof("Received KVM_SYSTEM_EVENT: type: %d", uint32(ev.Type))
		return true, nil
	case kvmsys.ExitInternalError:
		ie, err := c.run.InternalError()
		if err != nil {
			return true, err
		}
		return true, fmt.Errorf("Unexpected exit reason on vcpu run: InternalError (suberror %d, data %#x)", ie.Suberror, ie.Data)
	case kvmsys.ExitFailEntry:
		fe, err := c.run.FailEntry()
		if err != nil {
			return true, err
		}
		return true, fmt.Errorf("Unexpected exit reason on vcpu run: FailEntry (hardware reason %#x, cpu %d)", fe.HardwareEntryFailureReason, fe.CPU)
	}
	// HLT (the in-kernel LAPIC handles it unless the guest halts with
	// interrupts off for good) and SHUTDOWN (a triple fault) are fatal on
	// x86, as in Firecracker.
	c.log.Errorf("vCPU state at %s: %s", reason, c.describe())
	return true, fmt.Errorf("Unexpected exit reason on vcpu run: %s", reason)
}
