//go:build linux

package kvm

import "fmt"

// describe summarizes the vCPU's registers for a fatal exit's debug log.
// It runs on the vCPU's own thread, outside KVM_RUN.
func (c *vcpu) describe() string {
	r, err := c.cpu.GetRegs()
	if err != nil {
		return err.Error()
	}
	s, err := c.cpu.GetSregs()
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("rip %#x rsp %#x rflags %#x cr0 %#x cr2 %#x cr3 %#x cr4 %#x efer %#x cs %#x/%#x",
		r.RIP, r.RSP, r.RFLAGS, s.CR0, s.CR2, s.CR3, s.CR4, s.EFER, s.CS.Selector, s.CS.Base)
}
