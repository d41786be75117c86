//go:build linux && amd64

package kvm

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unsafe"
)

// The ABI facts (sizes, offsets, constants, ioctl numbers) are checked
// against testdata/abi_amd64.golden, which holds the values the C compiler
// printed for the same expressions against linux/kvm.h. -update regenerates
// it (needs gcc and linux-libc-dev).
var update = flag.Bool("update", false, "regenerate testdata/abi_amd64.golden from the C headers")

const abiGolden = "testdata/abi_amd64.golden"

type abiFact struct {
	expr string // a C expression, printed as an unsigned 64-bit value
	got  uint64 // the Go side's value
}

// structSpec ties a Go struct to its C counterpart. Fields are matched by
// converting Go names to snake case, with rename for the exceptions.
type structSpec struct {
	c      string // C type, e.g. "struct kvm_regs"
	v      any    // a zero value of the Go type
	rename map[string]string
	skip   map[string]bool // Go fields without a named C counterpart (anonymous unions)
}

// snake turns a Go field name into the kernel's: GuestPhysAddr ->
// guest_phys_addr, APICBase -> apic_base, CR0 -> cr0.
func snake(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) {
			prev := r[i-1]
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// fieldFacts lists the offset of every named field of t (recursing into
// unnamed struct types, as C's inline structs), as offsetof(c, path).
func fieldFacts(spec structSpec, t reflect.Type, prefix string, base uintptr) []abiFact {
	var out []abiFact
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Name == "_" || spec.skip[f.Name] {
			continue
		}
		name, ok := spec.rename[f.Name]
		if !ok {
			name = snake(f.Name)
		}
		path := prefix + name
		out = append(out, abiFact{fmt.Sprintf("offsetof(%s, %s)", spec.c, path), uint64(base + f.Offset)})
		if f.Type.Kind() == reflect.Struct && f.Type.Name() == "" {
			out = append(out, fieldFacts(spec, f.Type, path+".", base+f.Offset)...)
		}
	}
	return out
}

func structFacts(specs []structSpec) []abiFact {
	var out []abiFact
	for _, s := range specs {
		t := reflect.TypeOf(s.v)
		out = append(out, abiFact{fmt.Sprintf("sizeof(%s)", s.c), uint64(t.Size())})
		out = append(out, fieldFacts(s, t, "", 0)...)
	}
	return out
}

// unionFacts checks a kvm_run exit-union member: its size and each field's
// offset within kvm_run.
func unionFacts(member string, v any, rename map[string]string) []abiFact {
	t := reflect.TypeOf(v)
	base := unsafe.Offsetof(run{}.Exit)
	out := []abiFact{{fmt.Sprintf("sizeof(((struct kvm_run *)0)->%s)", member), uint64(t.Size())}}
	return append(out, fieldFacts(structSpec{c: "struct kvm_run", rename: rename}, t, member+".", base)...)
}

func abiFacts() []abiFact {
	specs := []structSpec{
		{c: "struct kvm_userspace_memory_region", v: UserMemoryRegion{}},
		{c: "struct kvm_dirty_log", v: dirtyLog{}, rename: map[string]string{"Bitmap": "dirty_bitmap"}},
		{c: "struct kvm_irq_level", v: irqLevel{}},
		{c: "struct kvm_irqfd", v: irqfd{}, rename: map[string]string{"ResampleFD": "resamplefd"}},
		{c: "struct kvm_ioeventfd", v: ioeventfd{}, rename: map[string]string{"DataMatch": "datamatch"}},
		{c: "struct kvm_irq_routing", v: irqRoutingHeader{}},
		{c: "struct kvm_irq_routing_entry", v: IRQRoutingEntry{}},
		{c: "struct kvm_msi", v: MSI{}, rename: map[string]string{"DevID": "devid"}},
		{c: "struct kvm_mp_state", v: mpState{}, rename: map[string]string{"State": "mp_state"}},
		{c: "struct kvm_enable_cap", v: enableCap{}},
		{c: "struct kvm_signal_mask", v: signalMaskHeader{}},
		{c: "struct kvm_run", v: run{}, rename: map[string]string{"SyncRegs": "s"}, skip: map[string]bool{"Exit": true}},
		{c: "struct kvm_regs", v: Regs{}},
		{c: "struct kvm_segment", v: Segment{}},
		{c: "struct kvm_dtable", v: DTable{}},
		{c: "struct kvm_sregs", v: Sregs{}},
		{c: "struct kvm_fpu", v: FPU{}},
		{c: "struct kvm_cpuid_entry2", v: CPUIDEntry{}},
		{c: "struct kvm_cpuid2", v: cpuid2Header{}},
		{c: "struct kvm_msr_entry", v: MSREntry{}},
		{c: "struct kvm_msrs", v: msrsHeader{}, rename: map[string]string{"NMSRs": "nmsrs"}},
		{c: "struct kvm_msr_list", v: msrListHeader{}, rename: map[string]string{"NMSRs": "nmsrs"}},
		{c: "struct kvm_lapic_state", v: LAPICState{}},
		{c: "struct kvm_vcpu_events", v: VCPUEvents{}},
		{c: "struct kvm_debugregs", v: DebugRegs{}},
		{c: "struct kvm_xsave", v: xsaveLegacy{}},
		{c: "struct kvm_xcr", v: XCR{}},
		{c: "struct kvm_xcrs", v: XCRS{}, rename: map[string]string{"NrXCRS": "nr_xcrs"}},
		{c: "struct kvm_pit_channel_state", v: PITChannelState{}},
		{c: "struct kvm_pit_state2", v: PITState2{}},
		{c: "struct kvm_pit_config", v: pitConfig{}},
		{c: "struct kvm_clock_data", v: ClockData{}},
		{c: "struct kvm_pic_state", v: PICState{}},
		{c: "struct kvm_ioapic_state", v: IOAPICState{}, rename: map[string]string{"IORegSel": "ioregsel", "RedirTbl": "redirtbl"}},
		{c: "struct kvm_irqchip", v: IRQChip{}},
	}
	facts := structFacts(specs)
	ndata := map[string]string{"NData": "ndata"}
	facts = append(facts, unionFacts("hw", exitUnknown{}, nil)...)
	facts = append(facts, unionFacts("fail_entry", exitFailEntry{}, nil)...)
	facts = append(facts, unionFacts("ex", exitException{}, nil)...)
	facts = append(facts, unionFacts("io", exitIO{}, nil)...)
	facts = append(facts, unionFacts("mmio", exitMMIO{}, nil)...)
	facts = append(facts, unionFacts("system_event", exitSystemEvent{}, ndata)...)
	facts = append(facts, unionFacts("internal", exitInternal{}, ndata)...)
	facts = append(facts,
		abiFact{"sizeof(((struct kvm_run *)0)->s)", uint64(unsafe.Sizeof(run{}.SyncRegs))},
		abiFact{"sizeof(((struct kvm_irq_routing_entry *)0)->u)", uint64(unsafe.Sizeof(IRQRoutingEntry{}.U))},
		abiFact{"sizeof(((struct kvm_irqchip *)0)->chip)", uint64(unsafe.Sizeof(IRQChip{}.Chip))},
		// Union members of kvm_irq_routing_entry and kvm_irqchip that the
		// constructors and accessors overlay.
		abiFact{"offsetof(struct kvm_irq_routing_entry, u.irqchip.irqchip)", uint64(unsafe.Offsetof(IRQRoutingEntry{}.U)) + 0},
		abiFact{"offsetof(struct kvm_irq_routing_entry, u.irqchip.pin)", uint64(unsafe.Offsetof(IRQRoutingEntry{}.U)) + 4},
		abiFact{"offsetof(struct kvm_irq_routing_entry, u.msi.address_lo)", uint64(unsafe.Offsetof(IRQRoutingEntry{}.U)) + 0},
		abiFact{"offsetof(struct kvm_irq_routing_entry, u.msi.address_hi)", uint64(unsafe.Offsetof(IRQRoutingEntry{}.U)) + 4},
		abiFact{"offsetof(struct kvm_irq_routing_entry, u.msi.data)", uint64(unsafe.Offsetof(IRQRoutingEntry{}.U)) + 8},
		abiFact{"offsetof(struct kvm_irq_routing_entry, u.msi.devid)", uint64(unsafe.Offsetof(IRQRoutingEntry{}.U)) + 12},
		abiFact{"offsetof(struct kvm_irqchip, chip.pic)", uint64(unsafe.Offsetof(IRQChip{}.Chip))},
		abiFact{"offsetof(struct kvm_irqchip, chip.ioapic)", uint64(unsafe.Offsetof(IRQChip{}.Chip))},
		// Where flexible arrays begin.
		abiFact{"offsetof(struct kvm_cpuid2, entries)", uint64(flexOffset[cpuid2Header, CPUIDEntry]())},
		abiFact{"offsetof(struct kvm_msrs, entries)", uint64(flexOffset[msrsHeader, MSREntry]())},
		abiFact{"offsetof(struct kvm_msr_list, indices)", uint64(flexOffset[msrListHeader, uint32]())},
		abiFact{"offsetof(struct kvm_irq_routing, entries)", uint64(flexOffset[irqRoutingHeader, IRQRoutingEntry]())},
		abiFact{"offsetof(struct kvm_signal_mask, sigset)", uint64(flexOffset[signalMaskHeader, byte]())},
		// The sizes the ioctl numbers are built from.
		abiFact{"sizeof(__u64)", sizeU64},
	)
	return append(facts, constFacts()...)
}

func constFacts() []abiFact {
	var out []abiFact
	add := func(name string, v uint64) { out = append(out, abiFact{name, v}) }
	for i := ExitReason(0); i < exitReasonsDefined; i++ {
		add(i.String(), uint64(i))
	}
	for i, n := range systemEventNames {
		if n != "" {
			add("KVM_SYSTEM_EVENT_"+n, uint64(i))
		}
	}
	for _, c := range []struct {
		name string
		v    uint64
	}{
		{"KVM_INTERNAL_ERROR_EMULATION", InternalErrorEmulation},
		{"KVM_INTERNAL_ERROR_SIMUL_EX", InternalErrorSimulEx},
		{"KVM_INTERNAL_ERROR_DELIVERY_EV", InternalErrorDeliveryEv},
		{"KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON", InternalErrorUnexpectedExitReason},
		{"KVM_EXIT_IO_IN", IODirectionIn},
		{"KVM_EXIT_IO_OUT", IODirectionOut},
		{"KVM_MEM_LOG_DIRTY_PAGES", MemLogDirtyPages},
		{"KVM_MEM_READONLY", MemReadonly},
		{"KVM_MP_STATE_RUNNABLE", uint64(MPStateRunnable)},
		{"KVM_MP_STATE_UNINITIALIZED", uint64(MPStateUninitialized)},
		{"KVM_MP_STATE_INIT_RECEIVED", uint64(MPStateInitReceived)},
		{"KVM_MP_STATE_HALTED", uint64(MPStateHalted)},
		{"KVM_MP_STATE_SIPI_RECEIVED", uint64(MPStateSIPIReceived)},
		{"KVM_MP_STATE_STOPPED", uint64(MPStateStopped)},
		{"KVM_MP_STATE_CHECK_STOP", uint64(MPStateCheckStop)},
		{"KVM_MP_STATE_OPERATING", uint64(MPStateOperating)},
		{"KVM_MP_STATE_LOAD", uint64(MPStateLoad)},
		{"KVM_MP_STATE_AP_RESET_HOLD", uint64(MPStateAPResetHold)},
		{"KVM_MP_STATE_SUSPENDED", uint64(MPStateSuspended)},
		{"KVM_IRQFD_FLAG_DEASSIGN", irqfdFlagDeassign},
		{"KVM_IRQFD_FLAG_RESAMPLE", irqfdFlagResample},
		{"KVM_IOEVENTFD_FLAG_DATAMATCH", ioeventfdFlagDataMatch},
		{"KVM_IOEVENTFD_FLAG_PIO", ioeventfdFlagPIO},
		{"KVM_IOEVENTFD_FLAG_DEASSIGN", ioeventfdFlagDeassign},
		{"KVM_IRQ_ROUTING_IRQCHIP", IRQRoutingTypeIRQChip},
		{"KVM_IRQ_ROUTING_MSI", IRQRoutingTypeMSI},
		{"KVM_MSI_VALID_DEVID", MSIValidDevID},
		{"KVM_IRQCHIP_PIC_MASTER", IRQChipPICMaster},
		{"KVM_IRQCHIP_PIC_SLAVE", IRQChipPICSlave},
		{"KVM_IRQCHIP_IOAPIC", IRQChipIOAPIC},
		{"KVM_IOAPIC_NUM_PINS", IOAPICNumPins},
		{"KVM_CPUID_FLAG_SIGNIFCANT_INDEX", CPUIDFlagSignificantIndex},
		{"KVM_CPUID_FLAG_STATEFUL_FUNC", CPUIDFlagStatefulFunc},
		{"KVM_CPUID_FLAG_STATE_READ_NEXT", CPUIDFlagStateReadNext},
		{"KVM_VCPUEVENT_VALID_NMI_PENDING", VCPUEventValidNMIPending},
		{"KVM_VCPUEVENT_VALID_SIPI_VECTOR", VCPUEventValidSIPIVector},
		{"KVM_VCPUEVENT_VALID_SHADOW", VCPUEventValidShadow},
		{"KVM_VCPUEVENT_VALID_SMM", VCPUEventValidSMM},
		{"KVM_VCPUEVENT_VALID_PAYLOAD", VCPUEventValidPayload},
		{"KVM_VCPUEVENT_VALID_TRIPLE_FAULT", VCPUEventValidTripleFault},
		{"KVM_PIT_FLAGS_HPET_LEGACY", PITFlagsHPETLegacy},
		{"KVM_PIT_FLAGS_SPEAKER_DATA_ON", PITFlagsSpeakerDataOn},
		{"KVM_PIT_SPEAKER_DUMMY", PITSpeakerDummy},
		{"KVM_CLOCK_TSC_STABLE", ClockTSCStable},
		{"KVM_CLOCK_REALTIME", ClockRealtime},
		{"KVM_CLOCK_HOST_TSC", ClockHostTSC},
		{"KVM_APIC_REG_SIZE", uint64(len(LAPICState{}.Regs))},
		{"KVM_PIO_PAGE_OFFSET * 4096", 4096},
	} {
		add(c.name, c.v)
	}
	for _, c := range capNames {
		add(c.name, uint64(c.cap))
	}
	for _, c := range ioctlNames {
		add(c.name, uint64(c.req))
	}
	return out
}

var capNames = []struct {
	name string
	cap  Cap
}{
	{"KVM_CAP_IRQCHIP", CapIRQChip}, {"KVM_CAP_HLT", CapHLT}, {"KVM_CAP_USER_MEMORY", CapUserMemory},
	{"KVM_CAP_SET_TSS_ADDR", CapSetTSSAddr}, {"KVM_CAP_EXT_CPUID", CapExtCPUID},
	{"KVM_CAP_CLOCKSOURCE", CapClocksource}, {"KVM_CAP_NR_VCPUS", CapNrVCPUs},
	{"KVM_CAP_NR_MEMSLOTS", CapNrMemslots}, {"KVM_CAP_PIT", CapPIT}, {"KVM_CAP_NOP_IO_DELAY", CapNopIODelay},
	{"KVM_CAP_MP_STATE", CapMPState}, {"KVM_CAP_COALESCED_MMIO", CapCoalescedMMIO},
	{"KVM_CAP_SYNC_MMU", CapSyncMMU}, {"KVM_CAP_USER_NMI", CapUserNMI},
	{"KVM_CAP_SET_GUEST_DEBUG", CapSetGuestDebug}, {"KVM_CAP_REINJECT_CONTROL", CapReinjectControl},
	{"KVM_CAP_IRQ_ROUTING", CapIRQRouting}, {"KVM_CAP_IRQ_INJECT_STATUS", CapIRQInjectStatus},
	{"KVM_CAP_MCE", CapMCE}, {"KVM_CAP_IRQFD", CapIRQFD}, {"KVM_CAP_PIT2", CapPIT2},
	{"KVM_CAP_SET_BOOT_CPU_ID", CapSetBootCPUID}, {"KVM_CAP_PIT_STATE2", CapPITState2},
	{"KVM_CAP_IOEVENTFD", CapIOEventFD}, {"KVM_CAP_SET_IDENTITY_MAP_ADDR", CapSetIdentityMapAddr},
	{"KVM_CAP_ADJUST_CLOCK", CapAdjustClock}, {"KVM_CAP_INTERNAL_ERROR_DATA", CapInternalErrorData},
	{"KVM_CAP_VCPU_EVENTS", CapVCPUEvents}, {"KVM_CAP_DEBUGREGS", CapDebugRegs},
	{"KVM_CAP_ENABLE_CAP", CapEnableCap}, {"KVM_CAP_XSAVE", CapXSAVE}, {"KVM_CAP_XCRS", CapXCRS},
	{"KVM_CAP_ASYNC_PF", CapAsyncPF}, {"KVM_CAP_TSC_CONTROL", CapTSCControl},
	{"KVM_CAP_GET_TSC_KHZ", CapGetTSCKHz}, {"KVM_CAP_MAX_VCPUS", CapMaxVCPUs}, {"KVM_CAP_ONE_REG", CapOneReg},
	{"KVM_CAP_TSC_DEADLINE_TIMER", CapTSCDeadlineTimer}, {"KVM_CAP_SYNC_REGS", CapSyncRegs},
	{"KVM_CAP_KVMCLOCK_CTRL", CapKVMClockCtrl}, {"KVM_CAP_SIGNAL_MSI", CapSignalMSI},
	{"KVM_CAP_READONLY_MEM", CapReadonlyMem}, {"KVM_CAP_IRQFD_RESAMPLE", CapIRQFDResample},
	{"KVM_CAP_DEVICE_CTRL", CapDeviceCtrl}, {"KVM_CAP_EXT_EMUL_CPUID", CapExtEmulCPUID},
	{"KVM_CAP_ENABLE_CAP_VM", CapEnableCapVM}, {"KVM_CAP_IOEVENTFD_NO_LENGTH", CapIOEventFDNoLength},
	{"KVM_CAP_CHECK_EXTENSION_VM", CapCheckExtensionVM}, {"KVM_CAP_DISABLE_QUIRKS", CapDisableQuirks},
	{"KVM_CAP_X86_SMM", CapX86SMM}, {"KVM_CAP_SPLIT_IRQCHIP", CapSplitIRQChip},
	{"KVM_CAP_IOEVENTFD_ANY_LENGTH", CapIOEventFDAnyLength}, {"KVM_CAP_MAX_VCPU_ID", CapMaxVCPUID},
	{"KVM_CAP_X2APIC_API", CapX2APICAPI}, {"KVM_CAP_MSI_DEVID", CapMSIDevID},
	{"KVM_CAP_IMMEDIATE_EXIT", CapImmediateExit}, {"KVM_CAP_X86_DISABLE_EXITS", CapX86DisableExits},
	{"KVM_CAP_GET_MSR_FEATURES", CapGetMSRFeatures}, {"KVM_CAP_NESTED_STATE", CapNestedState},
	{"KVM_CAP_COALESCED_PIO", CapCoalescedPIO}, {"KVM_CAP_EXCEPTION_PAYLOAD", CapExceptionPayload},
	{"KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", CapManualDirtyLogProtect2}, {"KVM_CAP_HALT_POLL", CapHaltPoll},
	{"KVM_CAP_X86_USER_SPACE_MSR", CapX86UserSpaceMSR}, {"KVM_CAP_X86_MSR_FILTER", CapX86MSRFilter},
	{"KVM_CAP_DIRTY_LOG_RING", CapDirtyLogRing}, {"KVM_CAP_SREGS2", CapSregs2},
	{"KVM_CAP_EXIT_ON_EMULATION_FAILURE", CapExitOnEmulationFailure}, {"KVM_CAP_XSAVE2", CapXSAVE2},
	{"KVM_CAP_SYSTEM_EVENT_DATA", CapSystemEventData},
	{"KVM_CAP_X86_TRIPLE_FAULT_EVENT", CapX86TripleFaultEvent},
}

var ioctlNames = []struct {
	name string
	req  uintptr
}{
	{"KVM_GET_API_VERSION", kvmGetAPIVersion}, {"KVM_CREATE_VM", kvmCreateVM},
	{"KVM_CHECK_EXTENSION", kvmCheckExtension}, {"KVM_GET_VCPU_MMAP_SIZE", kvmGetVCPUMmapSize},
	{"KVM_CREATE_VCPU", kvmCreateVCPU}, {"KVM_GET_DIRTY_LOG", kvmGetDirtyLog},
	{"KVM_SET_USER_MEMORY_REGION", kvmSetUserMemoryRegion}, {"KVM_CREATE_IRQCHIP", kvmCreateIRQChip},
	{"KVM_IRQ_LINE", kvmIRQLine}, {"KVM_SET_GSI_ROUTING", kvmSetGSIRouting}, {"KVM_IRQFD", kvmIRQFD},
	{"KVM_IOEVENTFD", kvmIOEventFD}, {"KVM_RUN", kvmRun}, {"KVM_SET_SIGNAL_MASK", kvmSetSignalMask},
	{"KVM_GET_MP_STATE", kvmGetMPState}, {"KVM_SET_MP_STATE", kvmSetMPState},
	{"KVM_ENABLE_CAP", kvmEnableCap}, {"KVM_SIGNAL_MSI", kvmSignalMSI},
	{"KVM_GET_MSR_INDEX_LIST", kvmGetMSRIndexList}, {"KVM_GET_SUPPORTED_CPUID", kvmGetSupportedCPUID},
	{"KVM_GET_MSR_FEATURE_INDEX_LIST", kvmGetMSRFeatureIndexList}, {"KVM_SET_TSS_ADDR", kvmSetTSSAddr},
	{"KVM_SET_IDENTITY_MAP_ADDR", kvmSetIdentityMapAddr}, {"KVM_GET_IRQCHIP", kvmGetIRQChip},
	{"KVM_SET_IRQCHIP", kvmSetIRQChip}, {"KVM_CREATE_PIT2", kvmCreatePIT2},
	{"KVM_SET_CLOCK", kvmSetClock}, {"KVM_GET_CLOCK", kvmGetClock},
	{"KVM_GET_REGS", kvmGetRegs}, {"KVM_SET_REGS", kvmSetRegs},
	{"KVM_GET_SREGS", kvmGetSregs}, {"KVM_SET_SREGS", kvmSetSregs},
	{"KVM_GET_MSRS", kvmGetMSRs}, {"KVM_SET_MSRS", kvmSetMSRs},
	{"KVM_GET_FPU", kvmGetFPU}, {"KVM_SET_FPU", kvmSetFPU},
	{"KVM_GET_LAPIC", kvmGetLAPIC}, {"KVM_SET_LAPIC", kvmSetLAPIC},
	{"KVM_SET_CPUID2", kvmSetCPUID2}, {"KVM_GET_CPUID2", kvmGetCPUID2}, {"KVM_NMI", kvmNMI},
	{"KVM_GET_PIT2", kvmGetPIT2}, {"KVM_SET_PIT2", kvmSetPIT2},
	{"KVM_GET_VCPU_EVENTS", kvmGetVCPUEvents}, {"KVM_SET_VCPU_EVENTS", kvmSetVCPUEvents},
	{"KVM_GET_DEBUGREGS", kvmGetDebugRegs}, {"KVM_SET_DEBUGREGS", kvmSetDebugRegs},
	{"KVM_SET_TSC_KHZ", kvmSetTSCKHz}, {"KVM_GET_TSC_KHZ", kvmGetTSCKHz},
	{"KVM_GET_XSAVE", kvmGetXSAVE}, {"KVM_SET_XSAVE", kvmSetXSAVE}, {"KVM_GET_XSAVE2", kvmGetXSAVE2},
	{"KVM_GET_XCRS", kvmGetXCRS}, {"KVM_SET_XCRS", kvmSetXCRS}, {"KVM_KVMCLOCK_CTRL", kvmKVMClockCtrl},
}

// cProbe compiles and runs a C program printing every fact's expression as
// the kernel headers define it: "expr<TAB>value" per line.
func cProbe(t *testing.T, facts []abiFact) map[string]uint64 {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("SKIPPED: gcc not installed; cannot compare against the C headers")
	}
	if _, err := os.Stat("/usr/include/linux/kvm.h"); err != nil {
		t.Skip("SKIPPED: /usr/include/linux/kvm.h missing (apt-get install linux-libc-dev)")
	}
	var src bytes.Buffer
	src.WriteString("#include <stdio.h>\n#include <stddef.h>\n#include <linux/kvm.h>\nint main(void) {\n")
	for _, f := range facts {
		fmt.Fprintf(&src, "\tprintf(\"%%s\\t%%llu\\n\", %q, (unsigned long long)(%s));\n", f.expr, f.expr)
	}
	src.WriteString("\treturn 0;\n}\n")
	dir := t.TempDir()
	cfile, bin := filepath.Join(dir, "probe.c"), filepath.Join(dir, "probe")
	if err := os.WriteFile(cfile, src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-o", bin, cfile).CombinedOutput(); err != nil {
		t.Fatalf("compiling the ABI probe: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("running the ABI probe: %v", err)
	}
	m, err := parseFacts(out)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func parseFacts(b []byte) (map[string]uint64, error) {
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		expr, val, ok := strings.Cut(line, "\t")
		if !ok {
			return nil, fmt.Errorf("line %d: no tab: %q", n, line)
		}
		v, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		m[expr] = v
	}
	return m, sc.Err()
}

func compareFacts(t *testing.T, facts []abiFact, want map[string]uint64, source string) {
	t.Helper()
	seen := map[string]bool{}
	for _, f := range facts {
		if seen[f.expr] {
			t.Errorf("fact %s listed twice", f.expr)
		}
		seen[f.expr] = true
		w, ok := want[f.expr]
		switch {
		case !ok:
			t.Errorf("%s: missing from %s", f.expr, source)
		case w != f.got:
			t.Errorf("%s = %d in Go, %d (%#x) in %s", f.expr, f.got, w, w, source)
		}
	}
	for expr := range want {
		if !seen[expr] {
			t.Errorf("%s: in %s but not checked on the Go side", expr, source)
		}
	}
}

func TestABIGolden(t *testing.T) {
	facts := abiFacts()
	if *update {
		m := cProbe(t, facts)
		var b bytes.Buffer
		b.WriteString("# struct sizes, field offsets, constants and ioctl numbers as gcc computes\n")
		b.WriteString("# them from linux/kvm.h (x86-64); regenerate with: go test -run TestABIGolden -update\n")
		for _, f := range facts {
			fmt.Fprintf(&b, "%s\t%d\n", f.expr, m[f.expr])
		}
		if err := os.WriteFile(abiGolden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(abiGolden)
	if err != nil {
		t.Fatal(err)
	}
	want, err := parseFacts(b)
	if err != nil {
		t.Fatalf("%s: %v", abiGolden, err)
	}
	if len(want) < 300 {
		t.Fatalf("%s holds only %d facts", abiGolden, len(want))
	}
	compareFacts(t, facts, want, abiGolden)
}

// TestABIHeaders compares against the installed headers directly, so a
// stale golden file cannot hide a mismatch on machines that have them.
func TestABIHeaders(t *testing.T) {
	facts := abiFacts()
	compareFacts(t, facts, cProbe(t, facts), "the C headers")
}

// TestIoctlSizeFields checks that each ioctl number's size field is the
// Go struct's size, independently of the constants it was built from.
func TestIoctlSizeFields(t *testing.T) {
	for _, c := range []struct {
		req  uintptr
		size uintptr
	}{
		{kvmGetRegs, unsafe.Sizeof(Regs{})}, {kvmGetSregs, unsafe.Sizeof(Sregs{})},
		{kvmGetFPU, unsafe.Sizeof(FPU{})}, {kvmGetLAPIC, unsafe.Sizeof(LAPICState{})},
		{kvmGetVCPUEvents, unsafe.Sizeof(VCPUEvents{})}, {kvmGetDebugRegs, unsafe.Sizeof(DebugRegs{})},
		{kvmGetXCRS, unsafe.Sizeof(XCRS{})}, {kvmGetXSAVE, unsafe.Sizeof(xsaveLegacy{})},
		{kvmGetPIT2, unsafe.Sizeof(PITState2{})}, {kvmCreatePIT2, unsafe.Sizeof(pitConfig{})},
		{kvmGetClock, unsafe.Sizeof(ClockData{})}, {kvmGetIRQChip, unsafe.Sizeof(IRQChip{})},
		{kvmGetSupportedCPUID, unsafe.Sizeof(cpuid2Header{})}, {kvmGetMSRs, unsafe.Sizeof(msrsHeader{})},
		{kvmGetMSRIndexList, unsafe.Sizeof(msrListHeader{})},
		{kvmSetUserMemoryRegion, unsafe.Sizeof(UserMemoryRegion{})}, {kvmGetDirtyLog, unsafe.Sizeof(dirtyLog{})},
		{kvmIRQLine, unsafe.Sizeof(irqLevel{})}, {kvmIRQFD, unsafe.Sizeof(irqfd{})},
		{kvmIOEventFD, unsafe.Sizeof(ioeventfd{})}, {kvmSetGSIRouting, unsafe.Sizeof(irqRoutingHeader{})},
		{kvmSignalMSI, unsafe.Sizeof(MSI{})}, {kvmGetMPState, unsafe.Sizeof(mpState{})},
		{kvmEnableCap, unsafe.Sizeof(enableCap{})}, {kvmSetSignalMask, unsafe.Sizeof(signalMaskHeader{})},
	} {
		if got := c.req >> iocSizeShift & (1<<14 - 1); got != c.size {
			t.Errorf("ioctl %#x encodes size %d, Go struct has %d", c.req, got, c.size)
		}
	}
	if unsafe.Sizeof(run{}) != sizeofRun {
		t.Errorf("sizeof run = %d, want %d", unsafe.Sizeof(run{}), sizeofRun)
	}
}
