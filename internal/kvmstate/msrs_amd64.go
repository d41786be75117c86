package kvmstate

import (
	"fmt"

	"github.com/ember-vmm/ember/internal/kvm"
)

// MSR numbers this package treats specially.
const (
	msrTSC         = 0x10
	msrTSCDeadline = 0x6e0
	msrMCGCtl      = 0x17b
)

// msrRange is [base, base+n).
type msrRange struct{ base, n uint32 }

func (r msrRange) contains(i uint32) bool { return i >= r.base && i-r.base < r.n }

// savedMSRRanges are the MSRs worth carrying across a snapshot, as
// Firecracker chooses them: architectural state a guest or KVM changes, the
// x2APIC range, the KVM paravirtual range. KVM_GET_MSR_INDEX_LIST is
// filtered through it, so an MSR appears only if KVM also offers it.
var savedMSRRanges = []msrRange{
	{0x0, 1},            // P5_MC_ADDR
	{0x1, 1},            // P5_MC_TYPE
	{msrTSC, 1},         // TSC
	{0x17, 1},           // PLATFORM_ID
	{0x1b, 1},           // APICBASE
	{0x2a, 1},           // EBL_CR_POWERON
	{0x2c, 1},           // EBC_FREQUENCY_ID
	{0x34, 1},           // SMI_COUNT
	{0x3a, 1},           // FEAT_CTL
	{0x3b, 1},           // TSC_ADJUST
	{0x48, 1},           // SPEC_CTRL
	{0x49, 1},           // PRED_CMD
	{0x79, 1},           // UCODE_WRITE
	{0x8b, 1},           // UCODE_REV
	{0x9e, 1},           // SMBASE
	{0xcd, 1},           // FSB_FREQ
	{0xce, 1},           // PLATFORM_INFO
	{0xe2, 1},           // PKG_CST_CONFIG_CONTROL
	{0xe7, 1},           // MPERF
	{0xe8, 1},           // APERF
	{0xfe, 1},           // MTRRcap
	{0x11e, 1},          // BBL_CR_CTL3
	{0x174, 1},          // SYSENTER_CS
	{0x175, 1},          // SYSENTER_ESP
	{0x176, 1},          // SYSENTER_EIP
	{0x179, 1},          // MCG_CAP
	{0x17a, 1},          // MCG_STATUS
	{msrMCGCtl, 1},      // MCG_CTL (excluded below, as Firecracker does)
	{0x198, 1},          // PERF_STATUS
	{0x1a0, 1},          // MISC_ENABLE
	{0x1a4, 1},          // MISC_FEATURE_CONTROL
	{0x1aa, 1},          // MISC_PWR_MGMT
	{0x1ad, 1},          // TURBO_RATIO_LIMIT
	{0x1ae, 1},          // TURBO_RATIO_LIMIT1
	{0x1d9, 1},          // DEBUGCTL
	{0x1db, 1},          // LASTBRANCHFROMIP
	{0x1dc, 1},          // LASTBRANCHTOIP
	{0x1dd, 1},          // LASTINTFROMIP
	{0x1de, 1},          // LASTINTTOIP
	{0x1fc, 1},          // POWER_CTL
	{0x200, 0x100},      // MTRR physical base/mask pairs and the rest of the MTRR block
	{0x3fc, 3},          // CORE_C3/C6/C7_RESIDENCY
	{0x400, 0x80},       // MCE banks (MC0_CTL ...)
	{0x606, 1},          // RAPL_POWER_UNIT
	{0x60a, 3},          // PKGC3/6/7_IRTL
	{0x610, 1},          // PKG_POWER_LIMIT
	{0x611, 1},          // PKG_ENERGY_STATUS
	{0x613, 1},          // PKG_PERF_STATUS
	{0x614, 1},          // PKG_POWER_INFO
	{0x618, 1},          // DRAM_POWER_LIMIT
	{0x619, 1},          // DRAM_ENERGY_STATUS
	{0x61b, 1},          // DRAM_PERF_STATUS
	{0x61c, 1},          // DRAM_POWER_INFO
	{0x648, 1},          // CONFIG_TDP_NOMINAL
	{0x649, 1},          // CONFIG_TDP_LEVEL_1
	{0x64a, 1},          // CONFIG_TDP_LEVEL_2
	{0x64b, 1},          // CONFIG_TDP_CONTROL
	{0x64c, 1},          // TURBO_ACTIVATION_RATIO
	{msrTSCDeadline, 1}, // TSC_DEADLINE
	{0x800, 0x400},      // x2APIC registers
	{0xc0000080, 1},     // EFER
	{0xc0000081, 1},     // STAR
	{0xc0000082, 1},     // LSTAR
	{0xc0000083, 1},     // CSTAR
	{0xc0000084, 1},     // SYSCALL_MASK
	{0xc0000100, 1},     // FS_BASE
	{0xc0000101, 1},     // GS_BASE
	{0xc0000102, 1},     // KERNEL_GS_BASE
	{0xc0000103, 1},     // TSC_AUX
	{0x140, 1},          // MISC_FEATURES_ENABLES
	{0xc0010015, 1},     // K7_HWCR
	{0x122, 1},          // TSX_CTRL
	// XSS enables supervisor XSAVE components; without it a guest's
	// XRSTORS of CET or PT state faults after restore.
	{0xda0, 1},
	{0x4b564d00, 0x100}, // KVM paravirtual MSRs (kvmclock, async PF, steal time, PV EOI, ...)
}

// ShouldSave reports whether MSR index belongs in a snapshot: it lies in
// the ranges Firecracker serializes and is not MCG_CTL (which KVM lists but
// a guest cannot usefully change).
func ShouldSave(index uint32) bool {
	if index == msrMCGCtl {
		return false
	}
	for _, r := range savedMSRRanges {
		if r.contains(index) {
			return true
		}
	}
	return false
}

// MSRsToSave returns KVM_GET_MSR_INDEX_LIST filtered by ShouldSave, in
// KVM's order: the MSRs every vCPU's snapshot carries. A vCPU's full list
// adds CPUIDMSRs of its CPUID and any MSRs a CPU template set (see
// MergeMSRs).
func MSRsToSave(sys *kvm.System) ([]uint32, error) {
	list, err := sys.GetMSRIndexList()
	if err != nil {
		return nil, fmt.Errorf("kvmstate: MSR index list: %w", err)
	}
	out := make([]uint32, 0, len(list))
	for _, i := range list {
		if ShouldSave(i) {
			out = append(out, i)
		}
	}
	return out, nil
}

// CPUID feature bits that imply MSRs KVM_GET_MSR_INDEX_LIST does not name.
const (
	cpuid1EDXMCE   = 1 << 7
	cpuid1EDXMTRR  = 1 << 12
	cpuid7EBXMPX   = 1 << 14
	msrBNDCFGS     = 0xd90
	msrMTRRDefType = 0x2ff
	msrPAT         = 0x277
)

// fixedMTRRs are the fixed-range MTRRs, then PAT and the default type.
var fixedMTRRs = []uint32{0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f, msrPAT, msrMTRRDefType}

// CPUIDMSRs returns the MSRs a guest with this CPUID has and
// KVM_GET_MSR_INDEX_LIST leaves out, as Firecracker adds them: BNDCFGS
// with MPX; the variable and fixed MTRRs, PAT and MTRRdefType with MTRR;
// the 32 machine-check banks KVM emulates by default with MCE.
func CPUIDMSRs(cpuid []kvm.CPUIDEntry) []uint32 {
	has := func(fn uint32, reg func(kvm.CPUIDEntry) uint32, bit uint32) bool {
		for _, e := range cpuid {
			if e.Function == fn && e.Index == 0 && reg(e)&bit != 0 {
				return true
			}
		}
		return false
	}
	ebx := func(e kvm.CPUIDEntry) uint32 { return e.EBX }
	edx := func(e kvm.CPUIDEntry) uint32 { return e.EDX }
	var out []uint32
	if has(7, ebx, cpuid7EBXMPX) {
		out = append(out, msrBNDCFGS)
	}
	if has(1, edx, cpuid1EDXMTRR) {
		for i := uint32(0x200); i < 0x210; i++ {
			out = append(out, i)
		}
		out = append(out, fixedMTRRs...)
	}
	if has(1, edx, cpuid1EDXMCE) {
		for i := uint32(0x400); i < 0x480; i++ {
			out = append(out, i)
		}
	}
	return out
}

// MergeMSRs concatenates MSR lists, dropping repeats and keeping the first
// occurrence's position, so each MSR is read and written once.
func MergeMSRs(lists ...[]uint32) []uint32 {
	seen := make(map[uint32]bool)
	var out []uint32
	for _, l := range lists {
		for _, i := range l {
			if !seen[i] {
				seen[i] = true
				out = append(out, i)
			}
		}
	}
	return out
}
