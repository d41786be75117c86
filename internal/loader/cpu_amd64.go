package loader

import (
	"encoding/binary"

	"github.com/ember-vmm/ember/internal/guestmem"
)

// Regs is the initial general-purpose register state of a vCPU; every
// register not named here starts at zero.
type Regs struct {
	RIP, RSP, RBP, RSI, RBX, RFLAGS uint64
}

// Segment is a segment register as the CPU caches it (the fields of
// KVM's kvm_segment). Limit is the byte-granular limit, already scaled by
// the G flag.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
}

// DescriptorTable is a GDTR or IDTR value.
type DescriptorTable struct {
	Base  uint64
	Limit uint16
}

// Sregs is the initial system register state of a vCPU. A backend sets
// these fields over the vCPU's reset state (leaving LDT, APIC base and
// the rest as they are); CR0, CR3, CR4 and EFER are complete values.
type Sregs struct {
	CS, DS, ES, FS, GS, SS, TR Segment
	GDT, IDT                   DescriptorTable
	CR0, CR3, CR4, EFER        uint64
}

// FPU is the initial x87/SSE control state (the rest starts at zero).
type FPU struct {
	FCW   uint16
	MXCSR uint32
}

// InitialFPU is the FPU state every vCPU starts with: the x87 and SSE
// reset defaults, all exceptions masked.
var InitialFPU = FPU{FCW: 0x37f, MXCSR: 0x1f80}

// Control register bits.
const (
	cr0PE   = 1 << 0
	cr0ET   = 1 << 4
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10
	rflags1 = 1 << 1 // the always-one bit
)

// gdtEntry encodes a segment descriptor from the flags word (access byte
// in bits 0..7, flags nibble in bits 12..15), base and 20-bit limit.
func gdtEntry(flags uint16, base, limit uint32) uint64 {
	return uint64(base&0xff00_0000)<<32 |
		uint64(flags&0xf0ff)<<40 |
		uint64(limit&0x000f_0000)<<32 |
		uint64(base&0x00ff_ffff)<<16 |
		uint64(limit&0xffff)
}

// segmentFromGDT decodes descriptor e at index i into the cached form.
func segmentFromGDT(e uint64, i uint16) Segment {
	bit := func(n uint) uint8 { return uint8(e >> n & 1) }
	limit := uint32(e&0xffff | e>>32&0xf_0000)
	if bit(55) == 1 { // G: 4 KiB units
		limit = limit<<12 | 0xfff
	}
	s := Segment{
		Base:     e>>16&0xff_ffff | e>>32&0xff00_0000,
		Limit:    limit,
		Selector: i * 8,
		Type:     uint8(e >> 40 & 0xf),
		S:        bit(44),
		DPL:      uint8(e >> 45 & 3),
		Present:  bit(47),
		AVL:      bit(52),
		L:        bit(53),
		DB:       bit(54),
		G:        bit(55),
	}
	if s.Present == 0 {
		s.Unusable = 1
	}
	return s
}

// bootGDT returns the four boot descriptors (null, code, data, TSS):
// flat 32-bit protected mode for PVH, 64-bit code for the Linux boot.
func bootGDT(p Protocol) [4]uint64 {
	if p == PVH {
		return [4]uint64{0, gdtEntry(0xc09b, 0, 0xffff_ffff), gdtEntry(0xc093, 0, 0xffff_ffff), gdtEntry(0x008b, 0, 0x67)}
	}
	return [4]uint64{0, gdtEntry(0xa09b, 0, 0xfffff), gdtEntry(0xc093, 0, 0xfffff), gdtEntry(0x808b, 0, 0xfffff)}
}

// initialState returns the vCPU registers for entering at entry with
// protocol p.
func initialState(p Protocol, entry uint64) (Regs, Sregs) {
	gdt := bootGDT(p)
	code, data, tss := segmentFromGDT(gdt[1], 1), segmentFromGDT(gdt[2], 2), segmentFromGDT(gdt[3], 3)
	s := Sregs{
		CS: code, DS: data, ES: data, FS: data, GS: data, SS: data, TR: tss,
		GDT: DescriptorTable{Base: GDTAddr, Limit: uint16(len(gdt)*8 - 1)},
		IDT: DescriptorTable{Base: IDTAddr, Limit: 8 - 1},
	}
	r := Regs{RIP: entry, RFLAGS: rflags1}
	if p == PVH {
		// 32-bit protected mode, paging off; RBX points at the start info.
		s.CR0 = cr0PE | cr0ET
		r.RBX = PVHInfoAddr
		return r, s
	}
	// Long mode on the identity page tables; RSI points at the zero page.
	s.CR0 = cr0PE | cr0ET | cr0PG
	s.CR3 = PML4Addr
	s.CR4 = cr4PAE
	s.EFER = eferLME | eferLMA
	r.RSP, r.RBP, r.RSI = BootStackAddr, BootStackAddr, ZeroPageAddr
	return r, s
}

// writeDescriptorTables writes the boot GDT and an empty IDT.
func writeDescriptorTables(mem *guestmem.Memory, p Protocol) error {
	var b [4*8 + 8]byte // the IDT follows the GDT at 0x520
	for i, e := range bootGDT(p) {
		binary.LittleEndian.PutUint64(b[i*8:], e)
	}
	return mem.WriteAt(b[:], GDTAddr)
}

// writePageTables writes the identity map of the first GiB: one PML4 and
// one PDPT entry, and 512 2 MiB pages.
func writePageTables(mem *guestmem.Memory) error {
	const present, writable, huge = 1, 2, 0x80
	b := make([]byte, PDAddr+PageSize-PML4Addr)
	le := binary.LittleEndian
	le.PutUint64(b[0:], PDPTAddr|present|writable)
	le.PutUint64(b[PDPTAddr-PML4Addr:], PDAddr|present|writable)
	for i := uint64(0); i < 512; i++ {
		le.PutUint64(b[PDAddr-PML4Addr+i*8:], i<<21|present|writable|huge)
	}
	return mem.WriteAt(b, PML4Addr)
}
