//go:build linux

package kvm

import (
	"context"
	"errors"
	"fmt"

	"github.com/ember-vmm/ember/internal/kvmstate"
)

// maxPendingExits bounds how many exits a vCPU may still need handled
// before its state is consistent (the chunks of a string I/O).
const maxPendingExits = 64

// archSaveCPU saves every vCPU on its own thread, then the VM, as package
// kvmstate encodes them. All vCPUs are parked.
func (m *machine) archSaveCPU(ctx context.Context) ([]byte, error) {
	if m.msrs == nil {
		base, err := kvmstate.MSRsToSave(m.sys)
		if err != nil {
			return nil, err
		}
		m.msrs = base
	}
	st := &kvmstate.State{VCPUs: make([]*kvmstate.VCPUState, len(m.vcpus))}
	for i, c := range m.vcpus {
		err := m.onThread(ctx, c, func() error {
			// An exit handled just before the pause may not be finished in
			// KVM yet (the register side of an IN, the RIP after an OUT).
			for n := 0; ; n++ {
				err := kvmstate.CompletePendingExit(c.cpu)
				if err == nil {
					break
				}
				if !errors.Is(err, kvmstate.ErrExitPending) || n == maxPendingExits {
					return err
				}
				if stop, herr := m.handleExit(c); stop {
					return fmt.Errorf("vCPU %d ended while its state was saved: %v", c.id, herr)
				}
			}
			cpuid, err := c.cpu.GetCPUID2()
			if err != nil {
				return fmt.Errorf("vCPU %d CPUID: %w", c.id, err)
			}
			s, err := kvmstate.SaveVCPU(c.cpu, kvmstate.MergeMSRs(m.msrs, kvmstate.CPUIDMSRs(cpuid)))
			if err != nil {
				return err
			}
			st.VCPUs[i] = s
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("cannot save vCPU %d: %w", c.id, err)
		}
	}
	vm, err := kvmstate.SaveVM(m.vm)
	if err != nil {
		return nil, fmt.Errorf("cannot save the VM state: %w", err)
	}
	st.VM = vm
	return kvmstate.Marshal(st)
}

// archRestoreCPU loads saved vCPU and VM state into the new machine's
// vCPUs (created, never run) and VM, in Firecracker's order.
func (m *machine) archRestoreCPU(b []byte) error {
	st, err := kvmstate.Unmarshal(b)
	if err != nil {
		return fmt.Errorf("%w: %w", errState, err)
	}
	if len(st.VCPUs) != len(m.vcpus) {
		return fmt.Errorf("%w: state for %d vCPUs, the machine has %d", errState, len(st.VCPUs), len(m.vcpus))
	}
	for i, c := range m.vcpus {
		if err := kvmstate.RestoreVCPU(c.cpu, st.VCPUs[i]); err != nil {
			return err
		}
	}
	if err := kvmstate.RestoreVM(m.vm, st.VM, kvmstate.RestoreVMOptions{ClockRealtime: m.restore.clockRealtime}); err != nil {
		return err
	}
	return nil
}
