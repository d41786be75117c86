//go:build linux && !amd64

package kvm

// vcpuArch is the arch-specific part of a VCPU: nothing yet here.
type vcpuArch struct{}

// initVCPUArch has nothing to learn on architectures without x86's
// variable XSAVE state.
func (vm *VM) initVCPUArch(c *VCPU) error {
	c.vcpuArch = vcpuArch{}
	return nil
}
