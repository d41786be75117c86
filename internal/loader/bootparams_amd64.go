package loader

import (
	"encoding/binary"

	"github.com/ember-vmm/ember/internal/guestmem"
)

// Zero page (struct boot_params) offsets outside the setup header.
const (
	zpACPIRSDPAddr = 0x070
	zpE820Entries  = 0x1e8
	zpE820Table    = 0x2d0
	zpE820Max      = 128
	zeroPageSize   = 0x1000
)

// writeZeroPage writes the boot_params of the 64-bit boot protocol: the
// bzImage's setup header (or a blank one for an ELF kernel) with the
// loader's fields filled in, the RSDP address and the e820 map.
func writeZeroPage(mem *guestmem.Memory, e820 []E820Entry, setup []byte, cmdlineSize int, initrdAddr, initrdSize uint64) error {
	var zp [zeroPageSize]byte
	le := binary.LittleEndian
	copy(zp[setupStart:], setup)
	if setup == nil {
		// An ELF kernel has no header; give it the minimum alignment.
		le.PutUint32(zp[hdrKernelAlign:], 0x0100_0000)
	}
	zp[hdrTypeOfLoader] = 0xff // "other" boot loader
	le.PutUint16(zp[hdrBootFlag:], 0xaa55)
	le.PutUint32(zp[hdrMagic:], 0x5372_6448) // "HdrS"
	le.PutUint32(zp[hdrCmdLinePtr:], CmdlineAddr)
	le.PutUint32(zp[hdrCmdlineSize:], uint32(cmdlineSize))
	if initrdSize != 0 {
		le.PutUint32(zp[hdrRamdiskImage:], uint32(initrdAddr))
		le.PutUint32(zp[hdrRamdiskSize:], uint32(initrdSize))
	}
	le.PutUint64(zp[zpACPIRSDPAddr:], RSDPAddr)
	if len(e820) > zpE820Max {
		return &Error{Kind: ErrMemoryTooSmall, Msg: msgSystemConfig + "Invalid e820 setup params."}
	}
	zp[zpE820Entries] = uint8(len(e820))
	for i, e := range e820 {
		b := zp[zpE820Table+i*20:]
		le.PutUint64(b[0:], e.Addr)
		le.PutUint64(b[8:], e.Size)
		le.PutUint32(b[16:], e.Type)
	}
	return mem.WriteAt(zp[:], ZeroPageAddr)
}

// PVH start info (struct hvm_start_info, version 1) layout.
const (
	pvhMagic         = 0x336e_c578
	startInfoSize    = 0x38
	modlistEntrySize = 32
	memmapEntrySize  = 24
)

// writeStartInfo writes the PVH hvm_start_info with the memory map and,
// when there is an initrd, a module list holding it.
func writeStartInfo(mem *guestmem.Memory, e820 []E820Entry, initrdAddr, initrdSize uint64) error {
	le := binary.LittleEndian
	var si [startInfoSize]byte
	le.PutUint32(si[0x00:], pvhMagic)
	le.PutUint32(si[0x04:], 1) // version
	le.PutUint64(si[0x18:], CmdlineAddr)
	// Firecracker leaves rsdp_paddr 0 (the guest then scans the BIOS
	// area); pointing at the RSDP saves the scan.
	le.PutUint64(si[0x20:], RSDPAddr)
	le.PutUint64(si[0x28:], MemmapAddr)
	le.PutUint32(si[0x30:], uint32(len(e820)))
	if initrdSize != 0 {
		le.PutUint32(si[0x0c:], 1) // nr_modules
		le.PutUint64(si[0x10:], ModlistAddr)
		var m [modlistEntrySize]byte
		le.PutUint64(m[0:], initrdAddr)
		le.PutUint64(m[8:], initrdSize)
		if err := mem.WriteAt(m[:], ModlistAddr); err != nil {
			return err
		}
	}
	if err := mem.WriteAt(si[:], PVHInfoAddr); err != nil {
		return err
	}
	mm := make([]byte, len(e820)*memmapEntrySize)
	for i, e := range e820 {
		le.PutUint64(mm[i*memmapEntrySize:], e.Addr)
		le.PutUint64(mm[i*memmapEntrySize+8:], e.Size)
		le.PutUint32(mm[i*memmapEntrySize+16:], e.Type)
	}
	return mem.WriteAt(mm, MemmapAddr)
}
