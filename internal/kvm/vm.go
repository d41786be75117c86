//go:build linux

package kvm

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine's file descriptor.
type VM struct {
	fd      int
	runSize int // KVM_GET_VCPU_MMAP_SIZE, for each vCPU's kvm_run mapping
}

// Fd returns the descriptor, or -1 once closed.
func (vm *VM) Fd() int { return vm.fd }

// Close closes the VM's descriptor. The kernel frees the VM once its vCPU
// descriptors are closed too.
func (vm *VM) Close() error { return closeFD(&vm.fd) }

func (vm *VM) check() error {
	if vm.fd < 0 {
		return ErrClosed
	}
	return nil
}

// CheckExtension asks the VM (KVM_CAP_CHECK_EXTENSION_VM) about c; some
// answers, like KVM_CAP_XSAVE2's size, are per VM.
func (vm *VM) CheckExtension(c Cap) (int, error) {
	if err := vm.check(); err != nil {
		return 0, err
	}
	return ioctl(vm.fd, "KVM_CHECK_EXTENSION", kvmCheckExtension, uintptr(c))
}

// EnableCap enables capability c on the VM with up to four arguments.
func (vm *VM) EnableCap(c Cap, flags uint32, args ...uint64) error {
	if err := vm.check(); err != nil {
		return err
	}
	return enableCapOn(vm.fd, c, flags, args)
}

func enableCapOn(fd int, c Cap, flags uint32, args []uint64) error {
	ec := enableCap{Cap: uint32(c), Flags: flags}
	if len(args) > len(ec.Args) {
		return fmt.Errorf("kvm: KVM_ENABLE_CAP with %d arguments (at most %d): %w", len(args), len(ec.Args), ErrBadArgument)
	}
	copy(ec.Args[:], args)
	_, err := ioctlRef(fd, "KVM_ENABLE_CAP", kvmEnableCap, &ec)
	return err
}

// SetUserMemoryRegion creates, changes or (with MemorySize 0) deletes a
// memory slot. The host memory must stay mapped while the slot exists.
func (vm *VM) SetUserMemoryRegion(r UserMemoryRegion) error {
	if err := vm.check(); err != nil {
		return err
	}
	_, err := ioctlRef(vm.fd, "KVM_SET_USER_MEMORY_REGION", kvmSetUserMemoryRegion, &r)
	return err
}

// GetDirtyLog fills bitmap with the slot's dirty pages since the last call
// (one bit per page, bit i of word i/64 for page i) and resets them. The
// slot must have MemLogDirtyPages; bitmap must hold a bit for each of its
// pages (the kernel writes that many bits).
func (vm *VM) GetDirtyLog(slot uint32, pages uint64, bitmap []uint64) error {
	if err := vm.check(); err != nil {
		return err
	}
	if need := (pages + 63) / 64; uint64(len(bitmap)) < need || len(bitmap) == 0 {
		return fmt.Errorf("kvm: dirty bitmap of %d words for %d pages: %w", len(bitmap), pages, ErrBadArgument)
	}
	dl := dirtyLog{Slot: slot, Bitmap: sliceAddr(bitmap)}
	_, err := ioctlRef(vm.fd, "KVM_GET_DIRTY_LOG", kvmGetDirtyLog, &dl)
	runtime.KeepAlive(bitmap)
	return err
}

// CreateIRQChip creates the in-kernel interrupt controllers (on x86 the
// two PICs, the IOAPIC, and a local APIC per vCPU created afterwards).
func (vm *VM) CreateIRQChip() error {
	if err := vm.check(); err != nil {
		return err
	}
	_, err := ioctl(vm.fd, "KVM_CREATE_IRQCHIP", kvmCreateIRQChip, 0)
	return err
}

// IRQLine sets the level of an in-kernel irqchip input (a GSI on x86).
func (vm *VM) IRQLine(irq uint32, high bool) error {
	if err := vm.check(); err != nil {
		return err
	}
	l := irqLevel{IRQ: irq}
	if high {
		l.Level = 1
	}
	_, err := ioctlRef(vm.fd, "KVM_IRQ_LINE", kvmIRQLine, &l)
	return err
}

// IRQFD makes a write to eventfd efd inject interrupt gsi.
func (vm *VM) IRQFD(efd int, gsi uint32) error {
	return vm.irqfd(irqfd{FD: uint32(efd), GSI: gsi})
}

// IRQFDWithResample is IRQFD for a level-triggered line: the line stays
// raised until the guest acknowledges it, and then resampleFD is signalled
// so the device can re-assert it if still pending.
func (vm *VM) IRQFDWithResample(efd, resampleFD int, gsi uint32) error {
	return vm.irqfd(irqfd{FD: uint32(efd), GSI: gsi, Flags: irqfdFlagResample, ResampleFD: uint32(resampleFD)})
}

// DeassignIRQFD undoes IRQFD for the pair (efd, gsi).
func (vm *VM) DeassignIRQFD(efd int, gsi uint32) error {
	return vm.irqfd(irqfd{FD: uint32(efd), GSI: gsi, Flags: irqfdFlagDeassign})
}

func (vm *VM) irqfd(f irqfd) error {
	if err := vm.check(); err != nil {
		return err
	}
	if int32(f.FD) < 0 {
		return fmt.Errorf("kvm: irqfd with descriptor %d: %w", int32(f.FD), ErrBadArgument)
	}
	_, err := ioctlRef(vm.fd, "KVM_IRQFD", kvmIRQFD, &f)
	return err
}

// IOEventFD makes guest writes matching e signal eventfd efd instead of
// exiting to userspace.
func (vm *VM) IOEventFD(efd int, e IOEvent) error { return vm.ioeventfd(efd, e, 0) }

// DeassignIOEventFD undoes IOEventFD; e must be the registered one.
func (vm *VM) DeassignIOEventFD(efd int, e IOEvent) error {
	return vm.ioeventfd(efd, e, ioeventfdFlagDeassign)
}

func (vm *VM) ioeventfd(efd int, e IOEvent, flags uint32) error {
	if err := vm.check(); err != nil {
		return err
	}
	if efd < 0 {
		return fmt.Errorf("kvm: ioeventfd with descriptor %d: %w", efd, ErrBadArgument)
	}
	r := e.raw(efd, flags)
	_, err := ioctlRef(vm.fd, "KVM_IOEVENTFD", kvmIOEventFD, &r)
	return err
}

// SetGSIRouting replaces the VM's whole GSI routing table.
func (vm *VM) SetGSIRouting(entries []IRQRoutingEntry) error {
	if err := vm.check(); err != nil {
		return err
	}
	h := irqRoutingHeader{Nr: uint32(len(entries))}
	_, err := ioctlFlex(vm.fd, "KVM_SET_GSI_ROUTING", kvmSetGSIRouting, &h, entries)
	return err
}

// SignalMSI injects an MSI. It returns how many vCPUs took it (0 when the
// guest blocked it).
func (vm *VM) SignalMSI(m MSI) (int, error) {
	if err := vm.check(); err != nil {
		return 0, err
	}
	return ioctlRef(vm.fd, "KVM_SIGNAL_MSI", kvmSignalMSI, &m)
}

// CreateVCPU creates vCPU id and maps its kvm_run page. On x86 id is the
// vCPU's initial APIC id.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	if err := vm.check(); err != nil {
		return nil, err
	}
	if id < 0 {
		return nil, fmt.Errorf("kvm: vCPU id %d: %w", id, ErrBadArgument)
	}
	fd, err := ioctl(vm.fd, "KVM_CREATE_VCPU", kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, err
	}
	c := &VCPU{fd: fd, id: id}
	if err := c.mapRun(vm.runSize); err != nil {
		c.Close()
		return nil, err
	}
	if err := vm.initVCPUArch(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// mapRun maps the vCPU's kvm_run area, shared and outside the Go heap.
func (c *VCPU) mapRun(size int) error {
	if size < sizeofRun {
		return fmt.Errorf("kvm: vCPU mmap size %d, kvm_run needs %d: %w", size, sizeofRun, ErrOutOfRange)
	}
	b, err := unix.Mmap(c.fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("kvm: mmap kvm_run: %w", err)
	}
	d, err := newRunData(b)
	if err != nil {
		unix.Munmap(b)
		return err
	}
	c.mapping, c.run = b, d
	return nil
}
