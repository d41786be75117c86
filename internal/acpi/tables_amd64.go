package acpi

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/loader"
)

// Errors returned (wrapped) by Build and Write.
var (
	// ErrConfig means the machine cannot be described: no vCPUs or too
	// many, or a device the tables cannot express.
	ErrConfig = errors.New("acpi: invalid machine description")
	// ErrNoSpace means the tables do not fit between their start and the
	// RSDP, or guest RAM does not hold them.
	ErrNoSpace = errors.New("acpi: tables do not fit in the system area")
)

// MaxVCPUs is the most vCPUs the MADT describes with xAPIC entries (8-bit
// APIC ids, one taken by the IOAPIC's MP-table id).
const MaxVCPUs = 254

// VirtioDevice is a virtio-mmio transport: its register window and GSI.
type VirtioDevice struct {
	Addr, Size uint64
	GSI        uint32
}

// Config describes the machine.
type Config struct {
	VCPUs int
	// Virtio lists the virtio-mmio devices in attach order; the guest
	// enumerates them in this order (the root disk first).
	Virtio []VirtioDevice
}

// Tables are the built tables with the addresses they go to.
type Tables struct {
	RSDP, XSDT, FADT, MADT, DSDT Table
	// End is the first address after the tables placed from the start
	// address (the RSDP lies apart, at loader.RSDPAddr).
	End uint64
}

// All returns the tables in address order, the RSDP last.
func (t *Tables) All() []Table { return []Table{t.DSDT, t.FADT, t.MADT, t.XSDT, t.RSDP} }

// tableAlign aligns each table placed in the system area.
const tableAlign = 8

// Build lays the tables out from start (the first free byte of the system
// area, after the MP table) and builds them.
func Build(start uint64, cfg Config) (*Tables, error) {
	if cfg.VCPUs < 1 || cfg.VCPUs > MaxVCPUs {
		return nil, fmt.Errorf("%w: %d vCPUs (1 to %d)", ErrConfig, cfg.VCPUs, MaxVCPUs)
	}
	aml, err := DSDTBody(cfg.Virtio)
	if err != nil {
		return nil, err
	}
	t := &Tables{}
	next := start
	place := func(tb *Table, sig string, data []byte) {
		next = (next + tableAlign - 1) &^ (tableAlign - 1)
		*tb = Table{Signature: sig, Addr: next, Data: data}
		next += uint64(len(data))
	}
	place(&t.DSDT, "DSDT", finish(newSDT("DSDT", 2, "EMBRDSDT", aml)))
	place(&t.FADT, "FACP", fadt(t.DSDT.Addr))
	place(&t.MADT, "APIC", madt(cfg.VCPUs))
	place(&t.XSDT, "XSDT", xsdt(t.FADT.Addr, t.MADT.Addr))
	t.End = next
	t.RSDP = Table{Signature: "RSD PTR ", Addr: loader.RSDPAddr, Data: rsdp(t.XSDT.Addr)}
	return t, nil
}

// Write builds the tables from start and writes them into mem; it
// returns the first address after those placed from start.
func Write(mem *guestmem.Memory, start uint64, cfg Config) (end uint64, err error) {
	t, err := Build(start, cfg)
	if err != nil {
		return 0, err
	}
	if start < loader.SystemMemStart || t.End > loader.SystemMemEnd {
		return 0, fmt.Errorf("%w: %#x..%#x is outside %#x..%#x", ErrNoSpace, start, t.End, loader.SystemMemStart, loader.SystemMemEnd)
	}
	// Check every range first, so that nothing is written unless all fit.
	all := t.All()
	for _, tb := range all {
		if _, err := mem.Slice(tb.Addr, uint64(len(tb.Data))); err != nil {
			return 0, fmt.Errorf("%w: %s at %#x: %w", ErrNoSpace, tb.Signature, tb.Addr, err)
		}
	}
	for _, tb := range all {
		if err := mem.WriteAt(tb.Data, tb.Addr); err != nil {
			return 0, fmt.Errorf("%w: %s at %#x: %w", ErrNoSpace, tb.Signature, tb.Addr, err)
		}
	}
	return t.End, nil
}

// FADT fields.
const (
	fadtSize            = 276
	fadtFlagPwrButton   = 1 << 4  // the power button is a device, not a fixed feature
	fadtFlagSlpButton   = 1 << 5  // likewise the sleep button
	fadtFlagHWReduced   = 1 << 20 // no legacy ACPI hardware (PM timer, SCI, GPEs)
	iapcBootVGAMissing  = 1 << 2
	fadtMinorRevision   = 5
	hypervisorVendorID  = "EMBERVMM"
	fadtOffIAPCBootArch = 109
	fadtOffFlags        = 112
	fadtOffMinor        = 131
	fadtOffXDSDT        = 140
	fadtOffHypervisorID = 268
)

// fadt returns the fixed ACPI description table (ACPI 6.5, revision 6)
// of a hardware-reduced machine whose DSDT is at dsdt.
func fadt(dsdt uint64) []byte {
	body := make([]byte, fadtSize-headerSize)
	le := binary.LittleEndian
	off := func(o int) []byte { return body[o-headerSize:] }
	le.PutUint16(off(fadtOffIAPCBootArch), iapcBootVGAMissing)
	le.PutUint32(off(fadtOffFlags), fadtFlagHWReduced|fadtFlagPwrButton|fadtFlagSlpButton)
	off(fadtOffMinor)[0] = fadtMinorRevision
	// Only the 64-bit pointer: the spec wants the 32-bit one zero then.
	le.PutUint64(off(fadtOffXDSDT), dsdt)
	copy(off(fadtOffHypervisorID), hypervisorVendorID)
	return finish(newSDT("FACP", 6, "EMBRFACP", body))
}

// madt returns the multiple APIC description table: the IOAPIC (id 0,
// GSIs from 0) then one enabled local APIC per vCPU, APIC id = processor
// UID = vCPU index. No interrupt source overrides: KVM routes ISA IRQ n
// to IOAPIC pin n.
func madt(vcpus int) []byte {
	le := binary.LittleEndian
	body := le.AppendUint32(nil, loader.LAPICAddr)
	body = le.AppendUint32(body, 0) // flags: no dual 8259 setup to mask
	body = append(body, 1, 12, 0, 0)
	body = le.AppendUint32(body, loader.IOAPICAddr)
	body = le.AppendUint32(body, 0)
	for i := 0; i < vcpus; i++ {
		body = append(body, 0, 8, byte(i), byte(i))
		body = le.AppendUint32(body, 1) // enabled
	}
	return finish(newSDT("APIC", 6, "EMBRAPIC", body))
}

// Legacy devices on x86.
const (
	com1Port  = 0x3f8
	com1Ports = 8
	i8042Data = 0x60
	i8042Cmd  = 0x64
)

// DSDTBody returns the AML of the DSDT: the virtio-mmio devices in the
// order given, then COM1 and the i8042.
func DSDTBody(virtio []VirtioDevice) ([]byte, error) {
	var terms []Term
	for i, d := range virtio {
		if d.Size == 0 || d.Addr+d.Size > 1<<32 || d.Addr+d.Size < d.Addr {
			return nil, fmt.Errorf("%w: virtio device %d at %#x+%#x is not a 32-bit MMIO range", ErrConfig, i, d.Addr, d.Size)
		}
		if d.GSI > loader.GSILast {
			return nil, fmt.Errorf("%w: virtio device %d has GSI %d, beyond the IOAPIC's pins", ErrConfig, i, d.GSI)
		}
		if i > 999 {
			return nil, fmt.Errorf("%w: more than 1000 virtio devices", ErrConfig)
		}
		terms = append(terms, Device{Path: fmt.Sprintf(`_SB_.V%03d`, i), Body: []Term{
			Name{"_HID", String("LNRO0005")},
			Name{"_UID", Integer(i)},
			Name{"_CCA", Integer(1)}, // DMA is cache-coherent
			Name{"_CRS", ResourceTemplate{
				Memory32Fixed{Base: uint32(d.Addr), Size: uint32(d.Size), ReadWrite: true},
				Interrupt{GSI: d.GSI, Consumer: true, Edge: true},
			}},
		}})
	}
	terms = append(terms,
		Device{Path: `_SB_.COM1`, Body: []Term{
			Name{"_HID", EISAID("PNP0501")},
			Name{"_UID", Integer(0)},
			Name{"_DDN", String("COM1")},
			Name{"_CRS", ResourceTemplate{
				Interrupt{GSI: loader.SerialGSI, Consumer: true, Edge: true},
				IO{Min: com1Port, Max: com1Port, Align: 1, Len: com1Ports},
			}},
		}},
		Device{Path: `_SB_.PS2_`, Body: []Term{
			Name{"_HID", EISAID("PNP0303")},
			Method{Path: "_STA", Body: []Term{Return{Integer(0x0f)}}}, // present, enabled, shown, working
			Name{"_CRS", ResourceTemplate{
				IO{Min: i8042Data, Max: i8042Data, Align: 1, Len: 1},
				IO{Min: i8042Cmd, Max: i8042Cmd, Align: 1, Len: 1},
				Interrupt{GSI: loader.I8042GSI, Consumer: true, Edge: true},
			}},
		}},
	)
	return Encode(terms...)
}
