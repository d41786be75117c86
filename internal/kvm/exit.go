package kvm

import "strconv"

// ExitReason is kvm_run.exit_reason: why KVM_RUN returned.
type ExitReason uint32

// Exit reasons (KVM_EXIT_*).
const (
	ExitUnknown        ExitReason = 0
	ExitException      ExitReason = 1
	ExitIO             ExitReason = 2
	ExitHypercall      ExitReason = 3
	ExitDebug          ExitReason = 4
	ExitHLT            ExitReason = 5
	ExitMMIO           ExitReason = 6
	ExitIRQWindowOpen  ExitReason = 7
	ExitShutdown       ExitReason = 8
	ExitFailEntry      ExitReason = 9
	ExitIntr           ExitReason = 10
	ExitSetTPR         ExitReason = 11
	ExitTPRAccess      ExitReason = 12
	ExitS390SIEIC      ExitReason = 13
	ExitS390Reset      ExitReason = 14
	ExitDCR            ExitReason = 15
	ExitNMI            ExitReason = 16
	ExitInternalError  ExitReason = 17
	ExitOSI            ExitReason = 18
	ExitPAPRHcall      ExitReason = 19
	ExitS390UControl   ExitReason = 20
	ExitWatchdog       ExitReason = 21
	ExitS390TSCH       ExitReason = 22
	ExitEPR            ExitReason = 23
	ExitSystemEvent    ExitReason = 24
	ExitS390STSI       ExitReason = 25
	ExitIOAPICEOI      ExitReason = 26
	ExitHyperV         ExitReason = 27
	ExitARMNISV        ExitReason = 28
	ExitX86RDMSR       ExitReason = 29
	ExitX86WRMSR       ExitReason = 30
	ExitDirtyRingFull  ExitReason = 31
	ExitAPResetHold    ExitReason = 32
	ExitX86BusLock     ExitReason = 33
	ExitXen            ExitReason = 34
	ExitRISCVSBI       ExitReason = 35
	ExitRISCVCSR       ExitReason = 36
	ExitNotify         ExitReason = 37
	exitReasonsDefined            = 38
)

var exitNames = [exitReasonsDefined]string{
	"KVM_EXIT_UNKNOWN", "KVM_EXIT_EXCEPTION", "KVM_EXIT_IO", "KVM_EXIT_HYPERCALL",
	"KVM_EXIT_DEBUG", "KVM_EXIT_HLT", "KVM_EXIT_MMIO", "KVM_EXIT_IRQ_WINDOW_OPEN",
	"KVM_EXIT_SHUTDOWN", "KVM_EXIT_FAIL_ENTRY", "KVM_EXIT_INTR", "KVM_EXIT_SET_TPR",
	"KVM_EXIT_TPR_ACCESS", "KVM_EXIT_S390_SIEIC", "KVM_EXIT_S390_RESET", "KVM_EXIT_DCR",
	"KVM_EXIT_NMI", "KVM_EXIT_INTERNAL_ERROR", "KVM_EXIT_OSI", "KVM_EXIT_PAPR_HCALL",
	"KVM_EXIT_S390_UCONTROL", "KVM_EXIT_WATCHDOG", "KVM_EXIT_S390_TSCH", "KVM_EXIT_EPR",
	"KVM_EXIT_SYSTEM_EVENT", "KVM_EXIT_S390_STSI", "KVM_EXIT_IOAPIC_EOI", "KVM_EXIT_HYPERV",
	"KVM_EXIT_ARM_NISV", "KVM_EXIT_X86_RDMSR", "KVM_EXIT_X86_WRMSR", "KVM_EXIT_DIRTY_RING_FULL",
	"KVM_EXIT_AP_RESET_HOLD", "KVM_EXIT_X86_BUS_LOCK", "KVM_EXIT_XEN", "KVM_EXIT_RISCV_SBI",
	"KVM_EXIT_RISCV_CSR", "KVM_EXIT_NOTIFY",
}

// String returns the kernel's name, e.g. "KVM_EXIT_IO", or the number for
// reasons newer than this package.
func (r ExitReason) String() string {
	if r < exitReasonsDefined {
		return exitNames[r]
	}
	return "KVM_EXIT_" + strconv.FormatUint(uint64(r), 10)
}

// SystemEventType is kvm_run.system_event.type.
type SystemEventType uint32

// System event types (KVM_SYSTEM_EVENT_*).
const (
	SystemEventShutdown SystemEventType = 1
	SystemEventReset    SystemEventType = 2
	SystemEventCrash    SystemEventType = 3
	SystemEventWakeup   SystemEventType = 4
	SystemEventSuspend  SystemEventType = 5
	SystemEventSEVTerm  SystemEventType = 6
)

var systemEventNames = [...]string{
	SystemEventShutdown: "SHUTDOWN",
	SystemEventReset:    "RESET",
	SystemEventCrash:    "CRASH",
	SystemEventWakeup:   "WAKEUP",
	SystemEventSuspend:  "SUSPEND",
	SystemEventSEVTerm:  "SEV_TERM",
}

// String returns the kernel's name without its prefix, e.g. "RESET".
func (t SystemEventType) String() string {
	if int(t) < len(systemEventNames) && systemEventNames[t] != "" {
		return systemEventNames[t]
	}
	return "SYSTEM_EVENT_" + strconv.FormatUint(uint64(t), 10)
}

// Internal error suberrors (KVM_INTERNAL_ERROR_*), in
// kvm_run.internal.suberror.
const (
	InternalErrorEmulation            = 1
	InternalErrorSimulEx              = 2
	InternalErrorDeliveryEv           = 3
	InternalErrorUnexpectedExitReason = 4
)

// IO directions in kvm_run.io.direction.
const (
	IODirectionIn  = 0
	IODirectionOut = 1
)

// Memory-region flags for UserMemoryRegion.Flags.
const (
	MemLogDirtyPages = 1 << 0
	MemReadonly      = 1 << 1
)

// MPState is a vCPU's multiprocessing state (KVM_MP_STATE_*).
type MPState uint32

// The MP states.
const (
	MPStateRunnable      MPState = 0
	MPStateUninitialized MPState = 1
	MPStateInitReceived  MPState = 2
	MPStateHalted        MPState = 3
	MPStateSIPIReceived  MPState = 4
	MPStateStopped       MPState = 5
	MPStateCheckStop     MPState = 6
	MPStateOperating     MPState = 7
	MPStateLoad          MPState = 8
	MPStateAPResetHold   MPState = 9
	MPStateSuspended     MPState = 10
)
