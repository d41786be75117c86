//go:build linux

package kvm

import (
	"testing"

	kvmsys "github.com/ember-vmm/ember/internal/kvm"
)

// vendorLeaf builds leaf 0 for a vendor string and a maximum basic leaf.
func vendorLeaf(v string, maxBasic uint32) kvmsys.CPUIDEntry {
	reg := func(s string) uint32 {
		return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
	}
	return kvmsys.CPUIDEntry{Function: 0, EAX: maxBasic, EBX: reg(v[0:4]), EDX: reg(v[4:8]), ECX: reg(v[8:12])}
}

func find(t *testing.T, es []kvmsys.CPUIDEntry, fn, index uint32) kvmsys.CPUIDEntry {
	t.Helper()
	for _, e := range es {
		if e.Function == fn && e.Index == index {
			return e
		}
	}
	t.Fatalf("no CPUID leaf %#x.%d", fn, index)
	return kvmsys.CPUIDEntry{}
}

func TestNormalizeCPUID(t *testing.T) {
	base := func(vendor string) []kvmsys.CPUIDEntry {
		return []kvmsys.CPUIDEntry{
			vendorLeaf(vendor, 0xd),
			{Function: 1, EAX: 0x806f8, EBX: 0xffff_ff42, ECX: ecxPDCM | 1, EDX: 1},
			{Function: 4, Index: 0, EAX: 0x121 | 0x3f<<26 | 0xfff<<14}, // L1 data
			{Function: 4, Index: 1, EAX: 0x163 | 0x3f<<26 | 0xfff<<14}, // L3 unified
			{Function: 6, EAX: thermalEAXTurbo | 4, ECX: thermalECXEPB | 1},
			{Function: 7, Index: 0, ECX: ext7ECXWaitPkg, EDX: ext7EDXArchCaps},
			{Function: 0xa, EAX: 0x07300805, EBX: 1, ECX: 2, EDX: 3},
			{Function: 0xb, Index: 0, EAX: 9, EBX: 9, ECX: 9, EDX: 9},
			{Function: leafExtMax, EAX: leafExtAPICID},
			{Function: leafExtFeatures1},
			{Function: leafExtAddrSize, ECX: 0xffff},
			{Function: leafExtCacheTopo, Index: 2, EAX: 0x143 | 0xfff<<14}, // L2
			{Function: leafExtCacheTopo, Index: 3, EAX: 0x163 | 0xfff<<14}, // L3
			{Function: leafExtAPICID, EAX: 99, EBX: 0xffff_ffff, ECX: 0xffff_ffff},
		}
	}
	for _, tc := range []struct {
		name   string
		vendor string
		id     int
		topo   topology
		check  func(t *testing.T, out []kvmsys.CPUIDEntry)
	}{
		{"intel single", "GenuineIntel", 0, newTopology(1, false), func(t *testing.T, out []kvmsys.CPUIDEntry) {
			l1 := find(t, out, 1, 0)
			if l1.EBX != 0x0001_0842 || l1.ECX&ecxPDCM != 0 || l1.ECX&ecxHypervisor == 0 || l1.ECX&ecxTSCDeadline == 0 || l1.EDX&edxHTT != 0 {
				t.Errorf("leaf 1 = %+v", l1)
			}
			if c := find(t, out, 4, 0); c.EAX != 0x121 {
				t.Errorf("leaf 4.0 EAX %#x, want 0x121 (no sharing, one core)", c.EAX)
			}
			if l6 := find(t, out, 6, 0); l6.EAX != 4 || l6.ECX != 1 {
				t.Errorf("leaf 6 = %+v: turbo or EPB left on", l6)
			}
			if l7 := find(t, out, 7, 0); l7.ECX&ext7ECXWaitPkg != 0 || l7.EBX&(ext7EBXFDPExcptn|ext7EBXFPUCSDS) != ext7EBXFDPExcptn|ext7EBXFPUCSDS {
				t.Errorf("leaf 7 = %+v", l7)
			}
			if pm := find(t, out, 0xa, 0); pm.EAX|pm.EBX|pm.ECX|pm.EDX != 0 {
				t.Errorf("leaf 0xa = %+v, want no PMU", pm)
			}
			if ext := find(t, out, leafExtAPICID, 0); ext.EAX != 99 {
				t.Errorf("AMD leaf changed on Intel: %+v", ext)
			}
		}},
		{"intel 4 cpus smt, cpu 3", "GenuineIntel", 3, newTopology(4, true), func(t *testing.T, out []kvmsys.CPUIDEntry) {
			l1 := find(t, out, 1, 0)
			if l1.EBX>>24 != 3 || (l1.EBX>>16)&0xff != 4 || l1.EDX&edxHTT == 0 {
				t.Errorf("leaf 1 EBX %#x EDX %#x", l1.EBX, l1.EDX)
			}
			want := []kvmsys.CPUIDEntry{
				{Function: 0xb, Index: 0, Flags: kvmsys.CPUIDFlagSignificantIndex, EAX: 1, EBX: 2, ECX: 0x100, EDX: 3},
				{Function: 0xb, Index: 1, Flags: kvmsys.CPUIDFlagSignificantIndex, EAX: 2, EBX: 4, ECX: 0x201, EDX: 3},
				{Function: 0xb, Index: 2, Flags: kvmsys.CPUIDFlagSignificantIndex, EAX: 0, EBX: 0, ECX: 2, EDX: 3},
			}
			for _, w := range want {
				if got := find(t, out, w.Function, w.Index); got != w {
					t.Errorf("leaf 0xb.%d = %+v, want %+v", w.Index, got, w)
				}
			}
			if c := find(t, out, 4, 0); c.EAX != 0x121|1<<14|1<<26 {
				t.Errorf("leaf 4.0 EAX %#x: L1 shared by 2 threads, 2 cores", c.EAX)
			}
			if c := find(t, out, 4, 1); c.EAX != 0x163|3<<14|1<<26 {
				t.Errorf("leaf 4.1 EAX %#x: L3 shared by 4 threads, 2 cores", c.EAX)
			}
		}},
		{"amd 3 cpus, cpu 2", "AuthenticAMD", 2, newTopology(3, false), func(t *testing.T, out []kvmsys.CPUIDEntry) {
			if l7 := find(t, out, 7, 0); l7.EDX&ext7EDXArchCaps != 0 || l7.ECX != ext7ECXWaitPkg {
				t.Errorf("leaf 7 = %+v: ARCH_CAPABILITIES must go, nothing else change", l7)
			}
			if e := find(t, out, leafExtFeatures1, 0); e.ECX&ext1ECXTopologyEx == 0 {
				t.Errorf("TOPOEXT not set: %+v", e)
			}
			if e := find(t, out, leafExtAddrSize, 0); e.ECX != 0x2f02 {
				t.Errorf("leaf 0x80000008 ECX %#x, want 0x2f02 (NC 2, ApicIdSize 2, rest kept)", e.ECX)
			}
			if e := find(t, out, leafExtAPICID, 0); e.EAX != 2 || e.EBX != 0xffff_0002 || e.ECX != 0 {
				t.Errorf("leaf 0x8000001e = %+v", e)
			}
			if e := find(t, out, leafExtCacheTopo, 2); e.EAX != 0x143 {
				t.Errorf("L2 sharing: %#x", e.EAX)
			}
			if e := find(t, out, leafExtCacheTopo, 3); e.EAX != 0x163|2<<14 {
				t.Errorf("L3 sharing: %#x", e.EAX)
			}
			if c := find(t, out, 4, 0); c.EAX != 0x121|0x3f<<26|0xfff<<14 {
				t.Errorf("Intel leaf 4 changed on AMD: %#x", c.EAX)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base(tc.vendor)
			before := append([]kvmsys.CPUIDEntry(nil), in...)
			out := normalizeCPUID(in, tc.id, tc.topo, true)
			for i := range in {
				if in[i] != before[i] {
					t.Fatalf("input entry %d modified", i)
				}
			}
			tc.check(t, out)
		})
	}
}

func TestTopology(t *testing.T) {
	for _, tc := range []struct {
		count              int
		smt                bool
		tpc, cores         int
		threadBits, pkgBit uint32
	}{
		{1, false, 1, 1, 0, 0},
		{1, true, 1, 1, 0, 0},
		{2, true, 2, 1, 1, 1},
		{3, true, 2, 2, 1, 2},
		{5, false, 1, 5, 0, 3},
		{32, true, 2, 16, 1, 5},
	} {
		tp := newTopology(tc.count, tc.smt)
		if tp.ThreadsPerCore != tc.tpc || tp.cores() != tc.cores || tp.threadBits() != tc.threadBits || tp.packageBits() != tc.pkgBit {
			t.Errorf("%d cpus smt=%v: %d threads/core, %d cores, bits %d/%d", tc.count, tc.smt,
				tp.ThreadsPerCore, tp.cores(), tp.threadBits(), tp.packageBits())
		}
	}
}
