package loader

import (
	"fmt"

	"github.com/ember-vmm/ember/internal/guestmem"
)

// The x86-64 guest physical layout, Firecracker's.
const (
	// GDTAddr and IDTAddr hold the boot GDT (4 entries) and an empty IDT.
	GDTAddr = 0x500
	IDTAddr = 0x520
	// PVHInfoAddr holds the hvm_start_info; ModlistAddr its module list.
	PVHInfoAddr = 0x6000
	ModlistAddr = 0x6040
	// ZeroPageAddr holds the Linux boot_params; MemmapAddr the PVH memory
	// map. They share a page: a boot uses one protocol or the other.
	ZeroPageAddr = 0x7000
	MemmapAddr   = 0x7000
	// BootStackAddr is the initial stack pointer of the 64-bit boot.
	BootStackAddr = 0x8ff0
	// PML4Addr, PDPTAddr and PDAddr hold the identity page tables that map
	// the first GiB with 2 MiB pages.
	PML4Addr = 0x9000
	PDPTAddr = 0xa000
	PDAddr   = 0xb000
	// CmdlineAddr holds the kernel command line, at most CmdlineMax bytes
	// with its NUL.
	CmdlineAddr = 0x20000
	CmdlineMax  = 2048
	// SystemMemStart..SystemMemEnd is reserved for the MP table and the
	// ACPI tables (from the start of the EBDA up to the RSDP).
	SystemMemStart = 0x9fc00
	SystemMemEnd   = RSDPAddr
	// RSDPAddr is where the ACPI root pointer lives, in the BIOS area a
	// guest scans.
	RSDPAddr = 0xe0000
	// HimemStart is the first address a kernel may be loaded at.
	HimemStart = 0x10_0000

	// MMIO32Start..4 GiB is the 32-bit MMIO gap: no RAM there.
	MMIO32Start = 0xc000_0000
	MMIO32Size  = 1 << 30
	// BootTimerAddr is the boot-timer device, first in the gap.
	BootTimerAddr = MMIO32Start
	// MMIODeviceStart is the first virtio-mmio device; each takes
	// MMIODeviceSize bytes.
	MMIODeviceStart = MMIO32Start + MMIODeviceSize
	MMIODeviceSize  = 0x1000
	// PCIMMConfigStart is the PCIe ECAM window Firecracker reserves in the
	// e820 map, the last 256 MiB below the IOAPIC.
	PCIMMConfigStart = IOAPICAddr - PCIMMConfigSize
	PCIMMConfigSize  = 256 << 20
	// IOAPICAddr and LAPICAddr are the interrupt controllers' MMIO bases.
	IOAPICAddr = 0xfec0_0000
	LAPICAddr  = 0xfee0_0000
	// TSSAddr is where KVM puts the real-mode TSS (3 pages), and
	// IdentityMapAddr the page below it for KVM's EPT identity map.
	TSSAddr         = 0xfffb_d000
	IdentityMapAddr = 0xfffb_c000

	// MMIO64Start..+MMIO64Size is the 64-bit MMIO gap (256..512 GiB).
	MMIO64Start = 256 << 30
	MMIO64Size  = 256 << 30

	// GSIFirst..GSILast are the legacy GSIs for devices; the ones below
	// are the ISA devices'.
	GSIFirst = 5
	GSILast  = 23
	// SerialGSI and I8042GSI are COM1's and the keyboard's interrupts.
	SerialGSI = 4
	I8042GSI  = 1
)

// MemoryRegions returns the guest RAM regions for memSize bytes of RAM:
// from 0 up to the 32-bit MMIO gap, then from 4 GiB up to the 64-bit
// gap, then beyond it. Their sizes add up to memSize.
func MemoryRegions(memSize uint64) ([]guestmem.Region, error) {
	if memSize == 0 {
		return nil, &Error{Kind: ErrMemoryTooSmall, Msg: "Invalid Memory Configuration: guest memory size is 0"}
	}
	// The regions end below 2^64; past that the size cannot be honoured.
	if memSize > (^uint64(0)>>1)-MMIO32Size-MMIO64Size {
		return nil, &Error{Kind: ErrMemoryTooSmall,
			Msg: fmt.Sprintf("Invalid Memory Configuration: guest memory size %#x is too large", memSize)}
	}
	var out []guestmem.Region
	start, left := uint64(0), memSize
	for _, gap := range [...]struct{ start, size uint64 }{{MMIO32Start, MMIO32Size}, {MMIO64Start, MMIO64Size}} {
		if start+left <= gap.start {
			break
		}
		if start < gap.start {
			out = append(out, guestmem.Region{GPA: start, Size: gap.start - start})
			left -= gap.start - start
		}
		start = max(start, gap.start+gap.size)
	}
	if left > 0 {
		out = append(out, guestmem.Region{GPA: start, Size: left})
	}
	return out, nil
}

// E820 entry types.
const (
	E820RAM      = 1
	E820Reserved = 2
)

// E820Entry is one range of the guest's physical memory map.
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// E820 returns the memory map Firecracker gives a guest with these RAM
// regions: low RAM below the EBDA, the reserved system area holding the
// MP and ACPI tables, the PCIe ECAM window, then each region from 1 MiB
// on as RAM (the first MiB is the BIOS area and the boot structures).
func E820(regions []guestmem.Region) ([]E820Entry, error) {
	if len(regions) == 0 || regions[0].GPA != 0 || regions[0].End() <= HimemStart {
		return nil, &Error{Kind: ErrMemoryTooSmall,
			Msg: msgSystemConfig + "Invalid e820 setup params. (guest RAM must start at 0 and extend past 1 MiB)"}
	}
	out := []E820Entry{
		{0, SystemMemStart, E820RAM},
		{SystemMemStart, SystemMemEnd - SystemMemStart, E820Reserved},
		{PCIMMConfigStart, PCIMMConfigSize, E820Reserved},
	}
	for _, r := range regions {
		start := max(r.GPA, HimemStart)
		out = append(out, E820Entry{start, r.End() - start, E820RAM})
	}
	return out, nil
}
