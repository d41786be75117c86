package kvmstate

import (
	"fmt"

	"github.com/ember-vmm/ember/internal/kvm"
)

// VMState is the VM-wide state KVM holds on x86-64: the in-kernel
// interrupt controllers, the PIT and kvmclock.
type VMState struct {
	PICMaster kvm.PICState
	PICSlave  kvm.PICState
	IOAPIC    kvm.IOAPICState
	PIT       kvm.PITState2
	// Clock is KVM_GET_CLOCK as read, with its flags: ClockRealtime and
	// Realtime when the host offers them, which RestoreVMOptions.ClockRealtime
	// needs.
	Clock kvm.ClockData
}

// SaveVM reads the VM's state, in Firecracker's order: PIT, clock, PICs,
// IOAPIC. The vCPUs must be stopped.
func SaveVM(vm *kvm.VM) (*VMState, error) {
	s := &VMState{}
	pit, err := vm.GetPIT2()
	if err != nil {
		return nil, fmt.Errorf("kvmstate: save PIT: %w", err)
	}
	s.PIT = *pit
	clk, err := vm.GetClock()
	if err != nil {
		return nil, fmt.Errorf("kvmstate: save kvmclock: %w", err)
	}
	s.Clock = *clk
	chips := []struct {
		id   uint32
		name string
		save func(*kvm.IRQChip)
	}{
		{kvm.IRQChipPICMaster, "PIC master", func(c *kvm.IRQChip) { s.PICMaster = c.PIC() }},
		{kvm.IRQChipPICSlave, "PIC slave", func(c *kvm.IRQChip) { s.PICSlave = c.PIC() }},
		{kvm.IRQChipIOAPIC, "IOAPIC", func(c *kvm.IRQChip) { s.IOAPIC = c.IOAPIC() }},
	}
	for _, ch := range chips {
		c, err := vm.GetIRQChip(ch.id)
		if err != nil {
			return nil, fmt.Errorf("kvmstate: save %s: %w", ch.name, err)
		}
		ch.save(c)
	}
	return s, nil
}

// RestoreVMOptions are the choices a snapshot load makes about VM state.
type RestoreVMOptions struct {
	// ClockRealtime advances kvmclock by the wall-clock time since the
	// snapshot (KVM_CLOCK_REALTIME), as the load API's clock_realtime asks;
	// otherwise the clock resumes where it stopped.
	ClockRealtime bool
}

// RestoreVM loads s into vm, which has its irqchip and PIT created and its
// vCPUs already restored, in Firecracker's order: PIT, clock, PICs, IOAPIC.
func RestoreVM(vm *kvm.VM, s *VMState, opts RestoreVMOptions) error {
	if s == nil {
		return fmt.Errorf("kvmstate: restore VM: nil state: %w", ErrFormat)
	}
	pit := s.PIT
	if err := vm.SetPIT2(&pit); err != nil {
		return fmt.Errorf("kvmstate: restore PIT: %w", err)
	}
	clk := s.Clock
	clk.Flags = 0
	if opts.ClockRealtime {
		if s.Clock.Flags&kvm.ClockRealtime == 0 {
			return fmt.Errorf("kvmstate: restore kvmclock: realtime asked for but the snapshot has no realtime clock: %w", ErrIncompatible)
		}
		clk.Flags = kvm.ClockRealtime
	}
	if err := vm.SetClock(&clk); err != nil {
		return fmt.Errorf("kvmstate: restore kvmclock: %w", err)
	}
	chips := []struct {
		name string
		c    kvm.IRQChip
	}{
		{"PIC master", kvm.IRQChip{ChipID: kvm.IRQChipPICMaster}},
		{"PIC slave", kvm.IRQChip{ChipID: kvm.IRQChipPICSlave}},
		{"IOAPIC", kvm.IRQChip{ChipID: kvm.IRQChipIOAPIC}},
	}
	chips[0].c.SetPIC(s.PICMaster)
	chips[1].c.SetPIC(s.PICSlave)
	chips[2].c.SetIOAPIC(s.IOAPIC)
	for i := range chips {
		if err := vm.SetIRQChip(&chips[i].c); err != nil {
			return fmt.Errorf("kvmstate: restore %s: %w", chips[i].name, err)
		}
	}
	return nil
}
