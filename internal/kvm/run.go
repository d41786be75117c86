package kvm

// run is struct kvm_run, the page KVM_RUN shares with userspace: a header,
// the 256-byte exit-data union, and the (unused here) sync-regs area.
type run struct {
	RequestInterruptWindow     uint8
	ImmediateExit              uint8
	_                          [6]uint8
	ExitReason                 uint32
	ReadyForInterruptInjection uint8
	IfFlag                     uint8
	Flags                      uint16
	CR8                        uint64
	APICBase                   uint64
	Exit                       [32]uint64 // the exit union, 256 bytes
	KVMValidRegs               uint64
	KVMDirtyRegs               uint64
	SyncRegs                   [256]uint64 // 2048 bytes
}

const sizeofRun = 2352

// Members of the exit union, each laid out as its kernel counterpart.

type exitUnknown struct {
	HardwareExitReason uint64
}

type exitFailEntry struct {
	HardwareEntryFailureReason uint64
	CPU                        uint32
	_                          uint32
}

type exitException struct {
	Exception uint32
	ErrorCode uint32
}

type exitIO struct {
	Direction  uint8
	Size       uint8
	Port       uint16
	Count      uint32
	DataOffset uint64 // from the start of kvm_run
}

type exitMMIO struct {
	PhysAddr uint64
	Data     [8]uint8
	Len      uint32
	IsWrite  uint8
	_        [3]uint8
}

type exitSystemEvent struct {
	Type  uint32
	NData uint32
	Data  [16]uint64 // Data[0] is the older "flags"
}

type exitInternal struct {
	Suberror uint32
	NData    uint32
	Data     [16]uint64
}

// IOExit is a KVM_EXIT_IO: a port access of Count items of Size bytes.
type IOExit struct {
	Out   bool // else an IN, whose values the VMM writes into Data
	Size  uint8
	Port  uint16
	Count uint32
	// Data is Size*Count bytes inside the kvm_run mapping, valid until the
	// next Run or Close.
	Data []byte
}

// MMIOExit is a KVM_EXIT_MMIO: an access the guest made to unbacked
// guest-physical memory.
type MMIOExit struct {
	Addr    uint64
	IsWrite bool // else a read, whose value the VMM writes into Data
	// Data is the access's bytes inside the kvm_run mapping (at most 8),
	// valid until the next Run or Close.
	Data []byte
}

// SystemEvent is a KVM_EXIT_SYSTEM_EVENT.
type SystemEvent struct {
	Type SystemEventType
	// Flags is the first data word (the "flags" of kernels before
	// KVM_CAP_SYSTEM_EVENT_DATA).
	Flags uint64
	// Data holds the NData words the kernel reported (at most 16).
	Data []uint64
}

// FailEntry is a KVM_EXIT_FAIL_ENTRY: the hardware refused to enter the
// guest.
type FailEntry struct {
	HardwareEntryFailureReason uint64
	CPU                        uint32
}

// InternalError is a KVM_EXIT_INTERNAL_ERROR.
type InternalError struct {
	Suberror uint32 // InternalErrorEmulation, ...
	Data     []uint64
}
