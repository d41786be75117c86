package mptable

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/loader"
)

// MaxCPUs is the most vCPUs the table describes: xAPIC ids are 8 bits
// and the IOAPIC takes the id after the last CPU's.
const MaxCPUs = 254

// Errors, with Firecracker's texts; a backend reports them as "System
// configuration error: Error writing MP table to memory: <text>".
var (
	ErrTooManyCPUs     = errors.New("Number of CPUs exceeds the maximum supported CPUs")
	ErrNotEnoughMemory = errors.New("There was too little guest memory to store the entire MP table.")
)

// Addr is where Write puts the table: the last KiB of base memory, one of
// the places a guest scans for the floating pointer.
const Addr = loader.SystemMemStart

// Entry sizes and types from the specification.
const (
	floatingSize  = 16
	headerSize    = 44
	processorSize = 20
	otherSize     = 8 // bus, IOAPIC, I/O and local interrupt entries

	typeProcessor = 0
	typeBus       = 1
	typeIOAPIC    = 2
	typeIOIntr    = 3
	typeLocalIntr = 4

	intrINT    = 0
	intrNMI    = 1
	intrExtINT = 3

	apicVersion = 0x14
	numIRQs     = loader.GSILast + 1
)

// Size returns the bytes the tables take for cpus vCPUs.
func Size(cpus int) int {
	return floatingSize + headerSize + processorSize*cpus + otherSize*(2+numIRQs+2)
}

// Build returns the tables for cpus vCPUs as they are to lie at addr.
func Build(addr uint64, cpus int) ([]byte, error) {
	if cpus < 1 || cpus > MaxCPUs {
		return nil, fmt.Errorf("%w: %d vCPUs", ErrTooManyCPUs, cpus)
	}
	le := binary.LittleEndian
	b := make([]byte, Size(cpus))

	// Floating pointer: where the configuration table is.
	fp := b[:floatingSize]
	copy(fp, "_MP_")
	le.PutUint32(fp[4:], uint32(addr+floatingSize))
	fp[8] = 1 // length in 16-byte units
	fp[9] = 4 // specification revision 1.4
	fp[10] = checksum(fp)

	t := b[floatingSize:]
	ioapicID := uint8(cpus + 1)
	off := headerSize
	entries := 0
	put := func(e []byte) {
		copy(t[off:], e)
		off += len(e)
		entries++
	}
	for i := 0; i < cpus; i++ {
		var e [processorSize]byte
		e[0] = typeProcessor
		e[1] = uint8(i) // APIC id
		e[2] = apicVersion
		e[3] = 1 // enabled
		if i == 0 {
			e[3] |= 2 // boot processor
		}
		le.PutUint32(e[4:], 0x600) // CPU signature: family 6
		le.PutUint32(e[8:], 0x201) // feature flags: APIC, FPU
		put(e[:])
	}
	put([]byte{typeBus, 0, 'I', 'S', 'A', ' ', ' ', ' '})
	{
		var e [otherSize]byte
		e[0], e[1], e[2], e[3] = typeIOAPIC, ioapicID, apicVersion, 1 // usable
		le.PutUint32(e[4:], loader.IOAPICAddr)
		put(e[:])
	}
	for irq := 0; irq < numIRQs; irq++ {
		// Polarity and trigger "conform to the bus" (flags 0).
		put([]byte{typeIOIntr, intrINT, 0, 0, 0, uint8(irq), ioapicID, uint8(irq)})
	}
	put([]byte{typeLocalIntr, intrExtINT, 0, 0, 0, 0, 0, 0}) // LINT0 of the BSP
	put([]byte{typeLocalIntr, intrNMI, 0, 0, 0, 0, 0xff, 1}) // LINT1 of every CPU

	copy(t, "PCMP")
	le.PutUint16(t[4:], uint16(off))
	t[6] = 4 // specification revision
	copy(t[8:16], "EMBER   ")
	copy(t[16:28], "MICROVM     ")
	le.PutUint16(t[34:], uint16(entries))
	le.PutUint32(t[36:], loader.LAPICAddr)
	t[7] = checksum(t[:off])
	return b, nil
}

// checksum returns the byte that makes b sum to zero, given that the
// checksum byte in b is still zero.
func checksum(b []byte) uint8 {
	var s uint8
	for _, c := range b {
		s += c
	}
	return -s
}

// Write writes the tables for cpus vCPUs at Addr and returns the first
// address after them, where the next system table may go.
func Write(mem *guestmem.Memory, cpus int) (end uint64, err error) {
	b, err := Build(Addr, cpus)
	if err != nil {
		return 0, err
	}
	end = Addr + uint64(len(b))
	if end > loader.SystemMemEnd {
		return 0, fmt.Errorf("%w: %d bytes from %#x pass %#x", ErrNotEnoughMemory, len(b), Addr, loader.SystemMemEnd)
	}
	if err := mem.WriteAt(b, Addr); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNotEnoughMemory, err)
	}
	return end, nil
}
