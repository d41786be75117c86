//go:build linux && !amd64

package kvm

// describe would summarize the vCPU's registers for a fatal exit's debug
// log; only x86 has its register layout here yet.
func (c *vcpu) describe() string { return "registers not shown on this architecture" }
