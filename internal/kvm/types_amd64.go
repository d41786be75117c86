package kvm

// x86 kernel structs (arch/x86/include/uapi/asm/kvm.h). Field order, sizes
// and padding are the kernel's; the tests check them against the C
// compiler.

// Regs is struct kvm_regs: the general-purpose registers.
type Regs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

const sizeofRegs = 144

// Segment is struct kvm_segment: a segment register's hidden state.
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
	_        uint8
}

// DTable is struct kvm_dtable: a descriptor-table register (GDTR, IDTR).
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs is struct kvm_sregs: segment, control and system registers.
type Sregs struct {
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	GDT, IDT               DTable
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	APICBase               uint64
	InterruptBitmap        [4]uint64 // one bit per pending external interrupt vector
}

const sizeofSregs = 312

// FPU is struct kvm_fpu: x87 and SSE state in FXSAVE terms.
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8 // abridged tag word, as FXSAVE stores it
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

const sizeofFPU = 416

// CPUIDEntry is struct kvm_cpuid_entry2: the answer to one CPUID leaf
// (Function) and subleaf (Index).
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32 // CPUIDFlagSignificantIndex, ...
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// CPUID entry flags (KVM_CPUID_FLAG_*).
const (
	CPUIDFlagSignificantIndex = 1 << 0
	CPUIDFlagStatefulFunc     = 1 << 1
	CPUIDFlagStateReadNext    = 1 << 2
)

// cpuid2Header is the fixed part of struct kvm_cpuid2.
type cpuid2Header struct {
	Nent uint32
	_    uint32
}

const sizeofCPUID2Header = 8

// MSREntry is struct kvm_msr_entry: one model-specific register.
type MSREntry struct {
	Index uint32
	_     uint32
	Data  uint64
}

// msrsHeader is the fixed part of struct kvm_msrs.
type msrsHeader struct {
	NMSRs uint32
	_     uint32
}

const sizeofMSRsHeader = 8

// msrListHeader is the fixed part of struct kvm_msr_list.
type msrListHeader struct {
	NMSRs uint32
}

const sizeofMSRListHeader = 4

// LAPICState is struct kvm_lapic_state: the local APIC's 1 KiB register
// page, each 32-bit register at a 16-byte-aligned offset. Read and write it
// with Reg and SetReg.
type LAPICState struct {
	Regs [1024]byte
}

const sizeofLAPICState = 1024

// VCPUEvents is struct kvm_vcpu_events: pending and injected exceptions,
// interrupts, NMIs and SMIs.
type VCPUEvents struct {
	Exception struct {
		Injected     uint8
		Nr           uint8
		HasErrorCode uint8
		Pending      uint8
		ErrorCode    uint32
	}
	Interrupt struct {
		Injected uint8
		Nr       uint8
		Soft     uint8
		Shadow   uint8
	}
	NMI struct {
		Injected uint8
		Pending  uint8
		Masked   uint8
		_        uint8
	}
	SIPIVector uint32
	Flags      uint32 // VCPUEventValid*
	SMI        struct {
		SMM          uint8
		Pending      uint8
		SMMInsideNMI uint8
		LatchedInit  uint8
	}
	TripleFault struct {
		Pending uint8
	}
	_                   [26]uint8
	ExceptionHasPayload uint8
	ExceptionPayload    uint64
}

const sizeofVCPUEvents = 64

// VCPUEvents.Flags bits (KVM_VCPUEVENT_VALID_*).
const (
	VCPUEventValidNMIPending  = 0x01
	VCPUEventValidSIPIVector  = 0x02
	VCPUEventValidShadow      = 0x04
	VCPUEventValidSMM         = 0x08
	VCPUEventValidPayload     = 0x10
	VCPUEventValidTripleFault = 0x20
)

// DebugRegs is struct kvm_debugregs.
type DebugRegs struct {
	DB    [4]uint64
	DR6   uint64
	DR7   uint64
	Flags uint64
	_     [9]uint64
}

const sizeofDebugRegs = 128

// xsaveLegacy is struct kvm_xsave without its flexible tail: the size the
// ioctl numbers encode.
type xsaveLegacy struct {
	Region [1024]uint32
}

const sizeofXSAVE = 4096

// XCR is struct kvm_xcr: one extended control register (XCR0 is index 0).
type XCR struct {
	XCR   uint32
	_     uint32
	Value uint64
}

// XCRS is struct kvm_xcrs.
type XCRS struct {
	NrXCRS uint32
	Flags  uint32
	XCRS   [16]XCR
	_      [16]uint64
}

const sizeofXCRS = 392

// PITChannelState is struct kvm_pit_channel_state.
type PITChannelState struct {
	Count         uint32
	LatchedCount  uint16
	CountLatched  uint8
	StatusLatched uint8
	Status        uint8
	ReadState     uint8
	WriteState    uint8
	WriteLatch    uint8
	RWMode        uint8
	Mode          uint8
	BCD           uint8
	Gate          uint8
	CountLoadTime int64
}

// PITState2 is struct kvm_pit_state2: the in-kernel i8254 PIT.
type PITState2 struct {
	Channels [3]PITChannelState
	Flags    uint32 // PITFlagsHPETLegacy, PITFlagsSpeakerDataOn
	_        [9]uint32
}

const sizeofPITState2 = 112

// PITState2.Flags bits (KVM_PIT_FLAGS_*).
const (
	PITFlagsHPETLegacy    = 0x1
	PITFlagsSpeakerDataOn = 0x2
)

// pitConfig is struct kvm_pit_config.
type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

const sizeofPITConfig = 64

// PITSpeakerDummy (KVM_PIT_SPEAKER_DUMMY) makes CreatePIT2 also emulate a
// dummy PC speaker port 0x61, so guests probing it do not exit.
const PITSpeakerDummy = 1

// ClockData is struct kvm_clock_data: the VM's kvmclock.
type ClockData struct {
	Clock    uint64 // nanoseconds
	Flags    uint32 // ClockTSCStable, ClockRealtime, ClockHostTSC
	_        uint32
	Realtime uint64
	HostTSC  uint64
	_        [4]uint32
}

const sizeofClockData = 48

// ClockData.Flags bits (KVM_CLOCK_*).
const (
	ClockTSCStable = 2
	ClockRealtime  = 1 << 2
	ClockHostTSC   = 1 << 3
)

// PICState is struct kvm_pic_state: one i8259.
type PICState struct {
	LastIRR                uint8
	IRR                    uint8
	IMR                    uint8
	ISR                    uint8
	PriorityAdd            uint8
	IRQBase                uint8
	ReadRegSelect          uint8
	Poll                   uint8
	SpecialMask            uint8
	InitState              uint8
	AutoEOI                uint8
	RotateOnAutoEOI        uint8
	SpecialFullyNestedMode uint8
	Init4                  uint8
	ELCR                   uint8
	ELCRMask               uint8
}

// IOAPICNumPins is KVM_IOAPIC_NUM_PINS.
const IOAPICNumPins = 24

// IOAPICState is struct kvm_ioapic_state. Each RedirTbl entry is the
// 64-bit redirection entry (vector in bits 0-7, mask bit 16, destination
// in bits 56-63).
type IOAPICState struct {
	BaseAddress uint64
	IORegSel    uint32
	ID          uint32
	IRR         uint32
	_           uint32
	RedirTbl    [IOAPICNumPins]uint64
}

// The in-kernel irqchips (KVM_IRQCHIP_*), for IRQChip.ChipID and routing.
const (
	IRQChipPICMaster = 0
	IRQChipPICSlave  = 1
	IRQChipIOAPIC    = 2
)

// IRQChip is struct kvm_irqchip: the state of one in-kernel chip. Chip is
// the 512-byte union; use PIC/SetPIC or IOAPIC/SetIOAPIC.
type IRQChip struct {
	ChipID uint32
	_      uint32
	Chip   [64]uint64
}

const sizeofIRQChip = 520

// PIC returns the union as an i8259's state.
func (c *IRQChip) PIC() PICState { return *overlay[PICState](&c.Chip) }

// SetPIC stores s into the union.
func (c *IRQChip) SetPIC(s PICState) { *overlay[PICState](&c.Chip) = s }

// IOAPIC returns the union as the IOAPIC's state.
func (c *IRQChip) IOAPIC() IOAPICState { return *overlay[IOAPICState](&c.Chip) }

// SetIOAPIC stores s into the union.
func (c *IRQChip) SetIOAPIC(s IOAPICState) { *overlay[IOAPICState](&c.Chip) = s }
