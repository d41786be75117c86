//go:build linux

package kvm

import "fmt"

// SetTSSAddr places the three pages KVM needs for the real-mode TSS (on
// Intel) at addr, a guest-physical address outside RAM and MMIO.
func (vm *VM) SetTSSAddr(addr uint64) error {
	if err := vm.check(); err != nil {
		return err
	}
	_, err := ioctl(vm.fd, "KVM_SET_TSS_ADDR", kvmSetTSSAddr, uintptr(addr))
	return err
}

// SetIdentityMapAddr places the one-page identity-map table (on Intel) at
// addr, a guest-physical address outside RAM and MMIO. It must come before
// the first CreateVCPU.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	if err := vm.check(); err != nil {
		return err
	}
	_, err := ioctlRef(vm.fd, "KVM_SET_IDENTITY_MAP_ADDR", kvmSetIdentityMapAddr, &addr)
	return err
}

// CreatePIT2 creates the in-kernel i8254 PIT (after CreateIRQChip); flags
// may hold PITSpeakerDummy.
func (vm *VM) CreatePIT2(flags uint32) error {
	if err := vm.check(); err != nil {
		return err
	}
	c := pitConfig{Flags: flags}
	_, err := ioctlRef(vm.fd, "KVM_CREATE_PIT2", kvmCreatePIT2, &c)
	return err
}

// GetPIT2 returns the in-kernel PIT's state.
func (vm *VM) GetPIT2() (*PITState2, error) {
	if err := vm.check(); err != nil {
		return nil, err
	}
	var s PITState2
	if _, err := ioctlRef(vm.fd, "KVM_GET_PIT2", kvmGetPIT2, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// SetPIT2 restores the in-kernel PIT's state.
func (vm *VM) SetPIT2(s *PITState2) error {
	if err := vm.check(); err != nil {
		return err
	}
	_, err := ioctlRef(vm.fd, "KVM_SET_PIT2", kvmSetPIT2, s)
	return err
}

// GetIRQChip returns the state of in-kernel chip id (IRQChipPICMaster,
// IRQChipPICSlave or IRQChipIOAPIC).
func (vm *VM) GetIRQChip(id uint32) (*IRQChip, error) {
	if err := vm.check(); err != nil {
		return nil, err
	}
	if id > IRQChipIOAPIC {
		return nil, fmt.Errorf("kvm: irqchip %d: %w", id, ErrBadArgument)
	}
	c := IRQChip{ChipID: id}
	if _, err := ioctlRef(vm.fd, "KVM_GET_IRQCHIP", kvmGetIRQChip, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// SetIRQChip restores the state of the chip c.ChipID.
func (vm *VM) SetIRQChip(c *IRQChip) error {
	if err := vm.check(); err != nil {
		return err
	}
	_, err := ioctlRef(vm.fd, "KVM_SET_IRQCHIP", kvmSetIRQChip, c)
	return err
}

// GetClock returns the VM's kvmclock.
func (vm *VM) GetClock() (*ClockData, error) {
	if err := vm.check(); err != nil {
		return nil, err
	}
	var c ClockData
	if _, err := ioctlRef(vm.fd, "KVM_GET_CLOCK", kvmGetClock, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// SetClock sets the VM's kvmclock.
func (vm *VM) SetClock(c *ClockData) error {
	if err := vm.check(); err != nil {
		return err
	}
	_, err := ioctlRef(vm.fd, "KVM_SET_CLOCK", kvmSetClock, c)
	return err
}

// vcpuArch is the x86 part of a VCPU.
type vcpuArch struct {
	xsaveSize int // bytes KVM_GET/SET_XSAVE(2) transfer
}

// initVCPUArch learns how large the vCPU's XSAVE state is: 4096 bytes, or
// more when KVM_CAP_XSAVE2 says so (dynamic features such as AMX).
func (vm *VM) initVCPUArch(c *VCPU) error {
	c.xsaveSize = sizeofXSAVE
	n, err := vm.CheckExtension(CapXSAVE2)
	if err != nil {
		return err
	}
	if n > sizeofXSAVE {
		c.xsaveSize = n
	}
	return nil
}
