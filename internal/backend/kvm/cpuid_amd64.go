//go:build linux

package kvm

import (
	"math/bits"
	"slices"

	kvmsys "github.com/ember-vmm/ember/internal/kvm"
)

// topology is the guest's CPU topology: one package of Cores cores with
// ThreadsPerCore threads each (2 with SMT), holding Count vCPUs.
type topology struct {
	Count          int
	ThreadsPerCore int
}

func newTopology(count int, smt bool) topology {
	t := topology{Count: count, ThreadsPerCore: 1}
	if smt && count > 1 {
		t.ThreadsPerCore = 2
	}
	return t
}

// cores is the number of cores in the package.
func (t topology) cores() int { return (t.Count + t.ThreadsPerCore - 1) / t.ThreadsPerCore }

// threadBits and coreBits are the APIC id bits for the thread within its
// core and the core within its package (x2APIC topology shifts).
func (t topology) threadBits() uint32 { return ceilLog2(t.ThreadsPerCore) }
func (t topology) packageBits() uint32 {
	return t.threadBits() + ceilLog2(t.cores())
}

func ceilLog2(n int) uint32 {
	if n <= 1 {
		return 0
	}
	return uint32(bits.Len(uint(n - 1)))
}

// CPUID leaves and bits ember normalizes, as Firecracker's table does.
const (
	leafFeatures    = 0x1
	leafCacheParams = 0x4
	leafThermal     = 0x6
	leafExtFeatures = 0x7
	leafPerfMon     = 0xa
	leafTopology    = 0xb
	leafTopologyV2  = 0x1f

	leafExtMax       = 0x8000_0000
	leafExtFeatures1 = 0x8000_0001
	leafExtAddrSize  = 0x8000_0008
	leafExtCacheTopo = 0x8000_001d
	leafExtAPICID    = 0x8000_001e

	ecxPDCM        = 1 << 15
	ecxTSCDeadline = 1 << 24
	ecxHypervisor  = 1 << 31
	edxHTT         = 1 << 28

	thermalEAXTurbo   = 1 << 1
	thermalECXEPB     = 1 << 3
	ext7EBXFDPExcptn  = 1 << 6
	ext7EBXFPUCSDS    = 1 << 13
	ext7ECXWaitPkg    = 1 << 5
	ext7EDXArchCaps   = 1 << 29
	ext1ECXTopologyEx = 1 << 22

	levelTypeSMT  = 1
	levelTypeCore = 2
)

// vendor is the CPU vendor as leaf 0 spells it.
type vendor int

const (
	vendorOther vendor = iota
	vendorIntel
	vendorAMD
)

func cpuVendor(entries []kvmsys.CPUIDEntry) vendor {
	for _, e := range entries {
		if e.Function != 0 {
			continue
		}
		var s [12]byte
		for i, r := range []uint32{e.EBX, e.EDX, e.ECX} {
			s[4*i], s[4*i+1], s[4*i+2], s[4*i+3] = byte(r), byte(r>>8), byte(r>>16), byte(r>>24)
		}
		switch string(s[:]) {
		case "GenuineIntel":
			return vendorIntel
		case "AuthenticAMD", "HygonGenuine":
			return vendorAMD
		}
	}
	return vendorOther
}

// normalizeCPUID returns the CPUID a vCPU with APIC id id sees: KVM's
// supported CPUID with the host's vendor, the topology of t, the hypervisor
// bit, TSC deadline when KVM offers it, and no PMU or power management
// knobs. The input is not modified.
func normalizeCPUID(supported []kvmsys.CPUIDEntry, id int, t topology, tscDeadline bool) []kvmsys.CPUIDEntry {
	out := slices.Clone(supported)
	v := cpuVendor(out)
	maxBasic := uint32(0)
	for _, e := range out {
		if e.Function == 0 {
			maxBasic = e.EAX
		}
	}
	apicID := uint32(id)
	for i := range out {
		e := &out[i]
		switch e.Function {
		case leafFeatures:
			e.EBX = e.EBX&0x0000_00ff | 8<<8 | uint32(min(t.Count, 255))<<16 | (apicID&0xff)<<24
			e.ECX &^= ecxPDCM
			e.ECX |= ecxHypervisor
			if tscDeadline {
				e.ECX |= ecxTSCDeadline
			}
			if t.Count > 1 {
				e.EDX |= edxHTT
			} else {
				e.EDX &^= edxHTT
			}
		case leafCacheParams:
			if v != vendorIntel {
				continue
			}
			level := (e.EAX >> 5) & 7
			sharing := 1
			switch {
			case e.EAX&0x1f == 0: // no more caches
			case level <= 2:
				sharing = t.ThreadsPerCore
			default:
				sharing = t.Count
			}
			coresMinus1 := uint32(min(t.cores(), 64) - 1)
			e.EAX = e.EAX&0x3fff | uint32(min(sharing, 4096)-1)<<14 | coresMinus1<<26
		case leafThermal:
			if v == vendorIntel {
				e.EAX &^= thermalEAXTurbo
				e.ECX &^= thermalECXEPB
			}
		case leafExtFeatures:
			if e.Index != 0 {
				continue
			}
			switch v {
			case vendorIntel:
				e.EBX |= ext7EBXFDPExcptn | ext7EBXFPUCSDS
				e.ECX &^= ext7ECXWaitPkg
			case vendorAMD:
				e.EDX &^= ext7EDXArchCaps
			}
		case leafPerfMon:
			e.EAX, e.EBX, e.ECX, e.EDX = 0, 0, 0, 0
		case leafExtAddrSize:
			if v == vendorAMD {
				e.ECX = e.ECX&^0xf0ff | uint32(t.Count-1)&0xff | (t.packageBits()&0xf)<<12
			}
		case leafExtCacheTopo:
			if v != vendorAMD || e.EAX&0x1f == 0 {
				continue
			}
			sharing := t.ThreadsPerCore
			if (e.EAX>>5)&7 >= 3 {
				sharing = t.Count
			}
			e.EAX = e.EAX&^(0xfff<<14) | uint32(sharing-1)<<14
		case leafExtAPICID:
			if v != vendorAMD {
				continue
			}
			e.EAX = apicID
			e.EBX = e.EBX&^0xffff | uint32(id/t.ThreadsPerCore)&0xff | uint32(t.ThreadsPerCore-1)<<8
			e.ECX = 0 // node 0, one node per package
		}
	}
	if v == vendorAMD {
		if hasLeaf(out, leafExtAPICID) {
			for i := range out {
				if out[i].Function == leafExtFeatures1 {
					out[i].ECX |= ext1ECXTopologyEx
				}
			}
		}
	}
	if maxBasic >= leafTopology {
		out = replaceTopologyLeaf(out, leafTopology, apicID, t)
	}
	if v == vendorIntel && maxBasic >= leafTopologyV2 {
		out = replaceTopologyLeaf(out, leafTopologyV2, apicID, t)
	}
	return out
}

func hasLeaf(entries []kvmsys.CPUIDEntry, fn uint32) bool {
	return slices.ContainsFunc(entries, func(e kvmsys.CPUIDEntry) bool { return e.Function == fn })
}

// replaceTopologyLeaf rewrites the extended topology leaf fn (0xb or 0x1f)
// as subleaves for the SMT and core levels and a terminating invalid level,
// each reporting the vCPU's x2APIC id.
func replaceTopologyLeaf(entries []kvmsys.CPUIDEntry, fn, apicID uint32, t topology) []kvmsys.CPUIDEntry {
	entries = slices.DeleteFunc(entries, func(e kvmsys.CPUIDEntry) bool { return e.Function == fn })
	sub := func(index, shift, count, levelType uint32) kvmsys.CPUIDEntry {
		return kvmsys.CPUIDEntry{
			Function: fn, Index: index, Flags: kvmsys.CPUIDFlagSignificantIndex,
			EAX: shift, EBX: count, ECX: index | levelType<<8, EDX: apicID,
		}
	}
	return append(entries,
		sub(0, t.threadBits(), uint32(t.ThreadsPerCore), levelTypeSMT),
		sub(1, t.packageBits(), uint32(t.Count), levelTypeCore),
		sub(2, 0, 0, 0),
	)
}
