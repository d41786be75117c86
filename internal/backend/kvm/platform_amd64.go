//go:build linux

package kvm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ember-vmm/ember/internal/acpi"
	"github.com/ember-vmm/ember/internal/bootargs"
	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/hypervisor"
	kvmsys "github.com/ember-vmm/ember/internal/kvm"
	"github.com/ember-vmm/ember/internal/legacy"
	"github.com/ember-vmm/ember/internal/loader"
	"github.com/ember-vmm/ember/internal/mptable"
)

// archState is the x86 part of a machine.
type archState struct {
	// cpuid is KVM_GET_SUPPORTED_CPUID, normalized per vCPU.
	cpuid       []kvmsys.CPUIDEntry
	tscDeadline bool
	boot        *loader.Boot
}

// archCheckHost requires vmx or svm among the CPU's flags.
func archCheckHost() error {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return unavailable("cannot read /proc/cpuinfo: " + err.Error())
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "flags") {
			continue
		}
		_, flags, _ := strings.Cut(line, ":")
		for _, f := range strings.Fields(flags) {
			if f == "vmx" || f == "svm" {
				return nil
			}
		}
		break
	}
	return unavailable("the CPU shows neither vmx nor svm, so /dev/kvm cannot run a Linux guest")
}

func archMemoryLayout(size uint64) ([]guestmem.Region, error) {
	return loader.MemoryRegions(size)
}

// archSetupVM gives the VM what x86 needs before any vCPU exists: the
// TSS and identity-map pages VMX uses for real mode, the in-kernel PIC,
// IOAPIC and LAPICs, and the PIT.
func (m *machine) archSetupVM() error {
	steps := []struct {
		what string
		do   func() error
	}{
		{"set the TSS address", func() error { return m.vm.SetTSSAddr(loader.TSSAddr) }},
		{"set the identity map address", func() error { return m.vm.SetIdentityMapAddr(loader.IdentityMapAddr) }},
		{"create the in-kernel irqchip", m.vm.CreateIRQChip},
		{"create the in-kernel PIT", func() error { return m.vm.CreatePIT2(kvmsys.PITSpeakerDummy) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("cannot %s: %w", s.what, err)
		}
	}
	var err error
	if m.arch.cpuid, err = m.sys.GetSupportedCPUID(); err != nil {
		return fmt.Errorf("cannot read the supported CPUID: %w", err)
	}
	n, err := m.sys.CheckExtension(kvmsys.CapTSCDeadlineTimer)
	m.arch.tscDeadline = err == nil && n > 0
	return nil
}

// archLegacyDevices puts the console UART and the i8042 on the port bus,
// and the boot timer on the MMIO bus when asked for.
func (m *machine) archLegacyDevices() error {
	irq, err := m.irqLine(legacy.SerialIRQ)
	if err != nil {
		return err
	}
	m.serial = legacy.NewSerial(m.env.Console, irq)
	if err := m.pio.Insert(m.serial, legacy.SerialBase, legacy.SerialSize); err != nil {
		return err
	}
	if irq, err = m.irqLine(legacy.I8042IRQ); err != nil {
		return err
	}
	m.i8042 = legacy.NewI8042(func() { m.finish(hypervisor.ExitReset, nil) }, irq)
	if err := m.pio.Insert(m.i8042, legacy.I8042Base, legacy.I8042Size); err != nil {
		return err
	}
	if m.spec.BootTimer {
		if err := m.mmio.Insert(bootTimer{m}, loader.BootTimerAddr, loader.MMIODeviceSize); err != nil {
			return err
		}
	}
	return nil
}

// errNoGSI is Firecracker's refusal of a device beyond the last interrupt.
var errNoGSI = errors.New("Could not allocate GSI: The requested resource is not available.")

// archVirtioSlot is the i-th virtio-mmio window: 4 KiB each from
// MMIODeviceStart, GSIs from GSIFirst.
func archVirtioSlot(i int) (virtioSlot, error) {
	gsi := loader.GSIFirst + i
	if gsi > loader.GSILast {
		return virtioSlot{}, fmt.Errorf("Failed to allocate device resources: %w", errNoGSI)
	}
	return virtioSlot{Addr: loader.MMIODeviceStart + uint64(i)*loader.MMIODeviceSize, GSI: uint32(gsi)}, nil
}

// archLoad writes the kernel, initrd, command line, MP table and ACPI
// tables into guest RAM.
func (m *machine) archLoad() error {
	cl, err := bootargs.Parse(m.spec.Boot.Cmdline, bootargs.MaxSize)
	if err != nil {
		return fmt.Errorf("Invalid kernel command line: %w", err)
	}
	var devs []acpi.VirtioDevice
	for _, s := range m.virtioSlots {
		if err := cl.Insert(fmt.Sprintf("virtio_mmio.device=4K@%#x:%d", s.Addr, s.GSI)); err != nil {
			return fmt.Errorf("Invalid kernel command line: %w", err)
		}
		devs = append(devs, acpi.VirtioDevice{Addr: s.Addr, Size: loader.MMIODeviceSize, GSI: s.GSI})
	}
	cmdline, err := cl.String()
	if err != nil {
		return fmt.Errorf("Invalid kernel command line: %w", err)
	}

	kernel, err := os.Open(m.spec.Boot.KernelPath)
	if err != nil {
		return errors.New("System configuration error: Cannot copy kernel file fd")
	}
	defer kernel.Close()
	cfg := loader.Config{Cmdline: cmdline}
	if cfg.Kernel, err = imageOf(kernel); err != nil {
		return errors.New("System configuration error: Cannot copy kernel file fd")
	}
	if p := m.spec.Boot.InitrdPath; p != "" {
		initrd, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("Cannot load initrd due to an invalid image: %w", err)
		}
		defer initrd.Close()
		if cfg.Initrd, err = imageOf(initrd); err != nil {
			return fmt.Errorf("Cannot load initrd due to an invalid image: %w", err)
		}
	}
	if m.arch.boot, err = loader.Load(m.mem, cfg); err != nil {
		return err
	}
	end, err := mptable.Write(m.mem, int(m.spec.VCPUs))
	if err != nil {
		return fmt.Errorf("System configuration error: Error writing MP table to memory: %w", err)
	}
	if _, err := acpi.Write(m.mem, end, acpi.Config{VCPUs: int(m.spec.VCPUs), Virtio: devs}); err != nil {
		return fmt.Errorf("System configuration error: cannot write the ACPI tables: %w", err)
	}
	return nil
}

func imageOf(f *os.File) (loader.Image, error) {
	st, err := f.Stat()
	if err != nil {
		return loader.Image{}, err
	}
	return loader.Image{R: f, Size: st.Size()}, nil
}

// Model-specific registers set at boot, as Firecracker's boot protocol
// has them: the syscall and sysenter MSRs and the TSC zeroed, fast
// strings on, MTRRs enabled with write-back as the default type.
const (
	msrSysenterCS   = 0x174
	msrSysenterESP  = 0x175
	msrSysenterEIP  = 0x176
	msrSTAR         = 0xc000_0081
	msrLSTAR        = 0xc000_0082
	msrCSTAR        = 0xc000_0083
	msrSyscallMask  = 0xc000_0084
	msrKernelGSBase = 0xc000_0102
	msrTSC          = 0x10
	msrMiscEnable   = 0x1a0
	msrMTRRDefType  = 0x2ff

	miscEnableFastString = 1 << 0
	mtrrEnable           = 1 << 11
	mtrrTypeWB           = 6
)

func bootMSRs() []kvmsys.MSREntry {
	return []kvmsys.MSREntry{
		{Index: msrSysenterCS}, {Index: msrSysenterESP}, {Index: msrSysenterEIP},
		{Index: msrSTAR}, {Index: msrCSTAR}, {Index: msrKernelGSBase},
		{Index: msrSyscallMask}, {Index: msrLSTAR}, {Index: msrTSC},
		{Index: msrMiscEnable, Data: miscEnableFastString},
		{Index: msrMTRRDefType, Data: mtrrEnable | mtrrTypeWB},
	}
}

// archConfigureVCPU sets a new vCPU's CPUID, MSRs, registers, FPU and
// local APIC for the loaded kernel. Every vCPU gets the entry state; the
// application processors then wait for their start-up IPI in the kernel's
// LAPIC, which resets them.
func (m *machine) archConfigureVCPU(c *vcpu) error {
	topo := newTopology(int(m.spec.VCPUs), m.spec.SMT)
	if err := c.cpu.SetCPUID2(normalizeCPUID(m.arch.cpuid, c.id, topo, m.arch.tscDeadline)); err != nil {
		return err
	}
	msrs := bootMSRs()
	n, err := c.cpu.SetMSRs(msrs)
	if err != nil {
		return err
	}
	if n != len(msrs) {
		return fmt.Errorf("KVM set %d of the %d boot MSRs (MSR %#x refused)", n, len(msrs), msrs[n].Index)
	}
	b := m.arch.boot
	if err := c.cpu.SetRegs(&kvmsys.Regs{
		RIP: b.Regs.RIP, RSP: b.Regs.RSP, RBP: b.Regs.RBP,
		RSI: b.Regs.RSI, RBX: b.Regs.RBX, RFLAGS: b.Regs.RFLAGS,
	}); err != nil {
		return err
	}
	sregs, err := c.cpu.GetSregs()
	if err != nil {
		return err
	}
	applySregs(sregs, &b.Sregs)
	if err := c.cpu.SetSregs(sregs); err != nil {
		return err
	}
	if err := c.cpu.SetFPU(&kvmsys.FPU{FCW: b.FPU.FCW, MXCSR: b.FPU.MXCSR}); err != nil {
		return err
	}
	return setLINTs(c.cpu)
}

// applySregs lays the loader's boot state over the vCPU's reset state.
func applySregs(s *kvmsys.Sregs, b *loader.Sregs) {
	seg := func(d *kvmsys.Segment, l loader.Segment) {
		d.Base, d.Limit, d.Selector = l.Base, l.Limit, l.Selector
		d.Type, d.Present, d.DPL, d.DB, d.S, d.L, d.G, d.AVL, d.Unusable =
			l.Type, l.Present, l.DPL, l.DB, l.S, l.L, l.G, l.AVL, l.Unusable
	}
	seg(&s.CS, b.CS)
	seg(&s.DS, b.DS)
	seg(&s.ES, b.ES)
	seg(&s.FS, b.FS)
	seg(&s.GS, b.GS)
	seg(&s.SS, b.SS)
	seg(&s.TR, b.TR)
	s.GDT = kvmsys.DTable{Base: b.GDT.Base, Limit: b.GDT.Limit}
	s.IDT = kvmsys.DTable{Base: b.IDT.Base, Limit: b.IDT.Limit}
	s.CR0, s.CR3, s.CR4, s.EFER = b.CR0, b.CR3, b.CR4, b.EFER
}

// setLINTs wires the local APIC's LINT0 to the PIC (ExtINT) and LINT1 to
// NMI, as on a PC.
func setLINTs(c *kvmsys.VCPU) error {
	l, err := c.GetLAPIC()
	if err != nil {
		return err
	}
	if err := l.SetDeliveryMode(kvmsys.LAPICRegLVTLINT0, kvmsys.LAPICDeliveryExtINT); err != nil {
		return err
	}
	if err := l.SetDeliveryMode(kvmsys.LAPICRegLVTLINT1, kvmsys.LAPICDeliveryNMI); err != nil {
		return err
	}
	return c.SetLAPIC(l)
}
