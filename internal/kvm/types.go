package kvm

// Kernel structs shared by every architecture. Field order, sizes and
// padding are the kernel's; the sizeof constants feed the ioctl numbers and
// are checked against unsafe.Sizeof by the tests.

// UserMemoryRegion is struct kvm_userspace_memory_region: guest-physical
// [GuestPhysAddr, GuestPhysAddr+MemorySize) backed by host memory at
// UserspaceAddr (which must not be Go heap memory).
type UserMemoryRegion struct {
	Slot          uint32
	Flags         uint32 // MemLogDirtyPages, MemReadonly
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

const sizeofUserMemoryRegion = 32

// dirtyLog is struct kvm_dirty_log; Bitmap holds the address of the
// caller's bitmap (a pointer in C, in a union padded to 64 bits).
type dirtyLog struct {
	Slot   uint32
	_      uint32
	Bitmap uint64
}

const sizeofDirtyLog = 16

// irqLevel is struct kvm_irq_level (irq/status union, then level).
type irqLevel struct {
	IRQ   uint32
	Level uint32
}

const sizeofIRQLevel = 8

// irqfd is struct kvm_irqfd.
type irqfd struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

const sizeofIRQFD = 32

// irqfd flags.
const (
	irqfdFlagDeassign = 1 << 0
	irqfdFlagResample = 1 << 1
)

// ioeventfd is struct kvm_ioeventfd.
type ioeventfd struct {
	DataMatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

const sizeofIOEventFD = 64

// ioeventfd flags.
const (
	ioeventfdFlagDataMatch = 1 << 0
	ioeventfdFlagPIO       = 1 << 1
	ioeventfdFlagDeassign  = 1 << 2
)

// irqRoutingHeader is the fixed part of struct kvm_irq_routing; the
// entries follow it.
type irqRoutingHeader struct {
	Nr    uint32
	Flags uint32
}

const sizeofIRQRoutingHeader = 8

// IRQRoutingEntry is struct kvm_irq_routing_entry. Build it with
// IRQRoutingIRQChip or IRQRoutingMSI.
type IRQRoutingEntry struct {
	GSI   uint32
	Type  uint32 // IRQRoutingTypeIRQChip, IRQRoutingTypeMSI, ...
	Flags uint32
	_     uint32
	U     [8]uint32 // the union: irqchip {irqchip, pin} or msi {address_lo, address_hi, data, devid}
}

// Routing entry types (KVM_IRQ_ROUTING_*).
const (
	IRQRoutingTypeIRQChip = 1
	IRQRoutingTypeMSI     = 2
)

// IRQRoutingIRQChip routes gsi to pin of an in-kernel interrupt controller
// (IRQChipPICMaster, IRQChipPICSlave or IRQChipIOAPIC on x86).
func IRQRoutingIRQChip(gsi, chip, pin uint32) IRQRoutingEntry {
	e := IRQRoutingEntry{GSI: gsi, Type: IRQRoutingTypeIRQChip}
	e.U[0], e.U[1] = chip, pin
	return e
}

// IRQRoutingMSI routes gsi to an MSI message. flags may carry MSIValidDevID,
// in which case devID is used.
func IRQRoutingMSI(gsi uint32, address uint64, data, flags, devID uint32) IRQRoutingEntry {
	e := IRQRoutingEntry{GSI: gsi, Type: IRQRoutingTypeMSI, Flags: flags}
	e.U[0], e.U[1], e.U[2], e.U[3] = uint32(address), uint32(address>>32), data, devID
	return e
}

// MSI is struct kvm_msi, for SignalMSI.
type MSI struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32 // MSIValidDevID
	DevID     uint32
	_         [12]uint8
}

const sizeofMSI = 32

// MSIValidDevID (KVM_MSI_VALID_DEVID) says DevID is meaningful.
const MSIValidDevID = 1 << 0

// mpState is struct kvm_mp_state.
type mpState struct {
	State uint32
}

const sizeofMPState = 4

// enableCap is struct kvm_enable_cap.
type enableCap struct {
	Cap   uint32
	Flags uint32
	Args  [4]uint64
	_     [64]uint8
}

const sizeofEnableCap = 104

// signalMaskHeader is the fixed part of struct kvm_signal_mask; the
// sigset bytes follow.
type signalMaskHeader struct {
	Len uint32
}

const sizeofSignalMaskHeader = 4

// IOEvent describes an ioeventfd: a guest write of Len bytes to Addr (a port
// when PIO, else a guest-physical MMIO address) that signals an eventfd
// instead of exiting to userspace.
type IOEvent struct {
	Addr uint64
	// Len is 1, 2, 4 or 8; 0 matches any length (KVM_CAP_IOEVENTFD_ANY_LENGTH).
	Len uint32
	PIO bool
	// DataMatch, when set, makes only writes of Data signal.
	DataMatch bool
	Data      uint64
}

func (e IOEvent) raw(fd int, flags uint32) ioeventfd {
	r := ioeventfd{Addr: e.Addr, Len: e.Len, FD: int32(fd), Flags: flags}
	if e.PIO {
		r.Flags |= ioeventfdFlagPIO
	}
	if e.DataMatch {
		r.Flags |= ioeventfdFlagDataMatch
		r.DataMatch = e.Data
	}
	return r
}
