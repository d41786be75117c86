//go:build linux

package kvm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// The E2BIG retries start here and stop doubling past the limit, far
// above any kernel's table (KVM_MAX_CPUID_ENTRIES is 256).
const (
	cpuidStartEntries = 128
	cpuidMaxEntries   = 1 << 14
	msrListMaxEntries = 1 << 16
)

// GetSupportedCPUID returns KVM_GET_SUPPORTED_CPUID: the CPUID leaves KVM
// can present to a guest, before any normalization.
func (s *System) GetSupportedCPUID() ([]CPUIDEntry, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return getCPUID(s.fd, "KVM_GET_SUPPORTED_CPUID", kvmGetSupportedCPUID)
}

// getCPUID runs a kvm_cpuid2 query, growing the buffer while the kernel
// answers E2BIG (too few entries offered).
func getCPUID(fd int, name string, req uintptr) ([]CPUIDEntry, error) {
	for n := cpuidStartEntries; ; n *= 2 {
		h := cpuid2Header{Nent: uint32(n)}
		entries := make([]CPUIDEntry, n)
		_, err := ioctlFlex(fd, name, req, &h, entries)
		if errors.Is(err, unix.E2BIG) && n < cpuidMaxEntries {
			continue
		}
		if err != nil {
			return nil, err
		}
		if int(h.Nent) > n {
			return nil, fmt.Errorf("kvm: %s reported %d entries of %d: %w", name, h.Nent, n, ErrOutOfRange)
		}
		return entries[:h.Nent:h.Nent], nil
	}
}

// GetMSRIndexList returns KVM_GET_MSR_INDEX_LIST: the MSRs a VMM saves and
// restores for a vCPU.
func (s *System) GetMSRIndexList() ([]uint32, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return s.msrList("KVM_GET_MSR_INDEX_LIST", kvmGetMSRIndexList)
}

// GetMSRFeatureIndexList returns KVM_GET_MSR_FEATURE_INDEX_LIST: the
// feature MSRs whose values System.GetMSRs reports.
func (s *System) GetMSRFeatureIndexList() ([]uint32, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return s.msrList("KVM_GET_MSR_FEATURE_INDEX_LIST", kvmGetMSRFeatureIndexList)
}

// msrList asks for a kvm_msr_list. On E2BIG the kernel has written the
// count it needs into the header, so the second try fits unless the list
// grew in between.
func (s *System) msrList(name string, req uintptr) ([]uint32, error) {
	n := 256
	for try := 0; ; try++ {
		h := msrListHeader{NMSRs: uint32(n)}
		idx := make([]uint32, n)
		_, err := ioctlFlex(s.fd, name, req, &h, idx)
		if errors.Is(err, unix.E2BIG) && try < 4 && int(h.NMSRs) > n && h.NMSRs <= msrListMaxEntries {
			n = int(h.NMSRs)
			continue
		}
		if err != nil {
			return nil, err
		}
		if int(h.NMSRs) > n {
			return nil, fmt.Errorf("kvm: %s reported %d entries of %d: %w", name, h.NMSRs, n, ErrOutOfRange)
		}
		return idx[:h.NMSRs:h.NMSRs], nil
	}
}

// GetMSRs reads feature MSRs (those of GetMSRFeatureIndexList) into
// entries' Data, by Index. It returns how many were read, in order; fewer
// than len(entries) means entries[n] failed.
func (s *System) GetMSRs(entries []MSREntry) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	return msrs(s.fd, "KVM_GET_MSRS", kvmGetMSRs, entries)
}

func msrs(fd int, name string, req uintptr, entries []MSREntry) (int, error) {
	if len(entries) == 0 {
		return 0, nil
	}
	h := msrsHeader{NMSRs: uint32(len(entries))}
	return ioctlFlex(fd, name, req, &h, entries)
}
