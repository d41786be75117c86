package kvmstate

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/ember-vmm/ember/internal/kvm"
)

func TestShouldSave(t *testing.T) {
	for _, tc := range []struct {
		index uint32
		want  bool
	}{
		{msrTSC, true},
		{0x1b, true},       // APIC base
		{msrMCGCtl, false}, // listed by KVM, left out as Firecracker does
		{0x179, true},      // MCG_CAP
		{0x200, true},      // first MTRR
		{0x2ff, true},      // MTRRdefType, end of the block
		{0x300, false},
		{0x47f, true}, // last MCE bank MSR
		{0x480, false},
		{msrTSCDeadline, true},
		{0x800, true}, {0xbff, true}, {0xc00, false}, // x2APIC
		{0xda0, true}, // XSS
		{0xc0000080, true}, {0xc0000103, true}, {0xc0000104, false},
		{0x4b564d00, true}, {0x4b564dff, true}, {0x4b564e00, false},
		{0x40000000, false}, // Hyper-V
		{0x10000000, false},
		{0xffffffff, false},
	} {
		if got := ShouldSave(tc.index); got != tc.want {
			t.Errorf("ShouldSave(%#x) = %v, want %v", tc.index, got, tc.want)
		}
	}
}

func TestCPUIDMSRs(t *testing.T) {
	leaf1 := func(edx uint32) kvm.CPUIDEntry { return kvm.CPUIDEntry{Function: 1, EDX: edx} }
	mtrr := append(seq(0x200, 0x210), fixedMTRRs...)
	for _, tc := range []struct {
		name  string
		cpuid []kvm.CPUIDEntry
		want  []uint32
	}{
		{"none", nil, nil},
		{"no features", []kvm.CPUIDEntry{leaf1(0)}, nil},
		{"MTRR", []kvm.CPUIDEntry{leaf1(cpuid1EDXMTRR)}, mtrr},
		{"MCE", []kvm.CPUIDEntry{leaf1(cpuid1EDXMCE)}, seq(0x400, 0x480)},
		{"MPX", []kvm.CPUIDEntry{{Function: 7, EBX: cpuid7EBXMPX}}, []uint32{msrBNDCFGS}},
		{"MPX in a subleaf does not count", []kvm.CPUIDEntry{{Function: 7, Index: 1, EBX: cpuid7EBXMPX}}, nil},
		{"all", []kvm.CPUIDEntry{leaf1(cpuid1EDXMTRR | cpuid1EDXMCE), {Function: 7, EBX: cpuid7EBXMPX}},
			append(append([]uint32{msrBNDCFGS}, mtrr...), seq(0x400, 0x480)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CPUIDMSRs(tc.cpuid); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#x, want %#x", got, tc.want)
			}
		})
	}
}

func seq(from, to uint32) []uint32 {
	var out []uint32
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestMergeMSRs(t *testing.T) {
	got := MergeMSRs([]uint32{3, 1, 3}, nil, []uint32{2, 1, 4})
	if want := []uint32{3, 1, 2, 4}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestTSCDeadlineFixAndOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []kvm.MSREntry
		want []kvm.MSREntry
	}{
		{"zero deadline takes the TSC, and goes last",
			[]kvm.MSREntry{{Index: msrTSCDeadline}, {Index: msrTSC, Data: 500}, {Index: 0x174, Data: 8}},
			[]kvm.MSREntry{{Index: msrTSC, Data: 500}, {Index: 0x174, Data: 8}, {Index: msrTSCDeadline, Data: 500}}},
		{"armed deadline kept",
			[]kvm.MSREntry{{Index: msrTSCDeadline, Data: 900}, {Index: msrTSC, Data: 500}},
			[]kvm.MSREntry{{Index: msrTSC, Data: 500}, {Index: msrTSCDeadline, Data: 900}}},
		{"no TSC saved: deadline left alone",
			[]kvm.MSREntry{{Index: msrTSCDeadline}, {Index: 0x174, Data: 8}},
			[]kvm.MSREntry{{Index: 0x174, Data: 8}, {Index: msrTSCDeadline}}},
		{"no deadline", []kvm.MSREntry{{Index: msrTSC, Data: 1}}, []kvm.MSREntry{{Index: msrTSC, Data: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]kvm.MSREntry{}, tc.in...)
			fixZeroTSCDeadline(in)
			if got := deferMSRs(in); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestTSCDiffers(t *testing.T) {
	for _, tc := range []struct {
		cur, want uint32
		differs   bool
	}{
		{2_000_000, 2_000_000, false},
		{2_000_500, 2_000_000, false}, // exactly 250 ppm
		{2_000_501, 2_000_000, true},
		{1_999_499, 2_000_000, true},
		{3_000_000, 2_000_000, true},
	} {
		if got := tscDiffers(tc.cur, tc.want); got != tc.differs {
			t.Errorf("tscDiffers(%d, %d) = %v, want %v", tc.cur, tc.want, got, tc.differs)
		}
	}
}

func TestFitXSAVE(t *testing.T) {
	small := bytes.Repeat([]byte{1}, 4096)
	bigZeroTail := append(append([]byte{}, small...), make([]byte, 4096)...)
	bigUsed := append(append([]byte{}, small...), bytes.Repeat([]byte{2}, 4096)...)
	for _, tc := range []struct {
		name  string
		saved []byte
		size  int
		want  []byte
		err   error
	}{
		{"same size", small, 4096, small, nil},
		{"zero-extended", small, 8192, bigZeroTail, nil},
		{"unused tail cut", bigZeroTail, 4096, small, nil},
		{"used tail refused", bigUsed, 4096, nil, ErrIncompatible},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fitXSAVE(tc.saved, tc.size)
			if !errors.Is(err, tc.err) || !bytes.Equal(got, tc.want) {
				t.Fatalf("got %d bytes, %v; want %d bytes, %v", len(got), err, len(tc.want), tc.err)
			}
		})
	}
}
