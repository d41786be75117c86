package uffd

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Page sizes a guest-RAM region may have: ordinary pages and 2 MiB hugetlbfs
// pages, the two Firecracker offers (huge_pages "None" and "2M").
const (
	PageSize4K = 4096
	PageSize2M = 2 << 20
)

// MaxMappings bounds the handshake a handler accepts; a VMM has a handful of
// guest-RAM regions (two on x86 around the 32-bit hole).
const MaxMappings = 64

// Mapping is one guest RAM region as the page-fault handler sees it: the
// region's bytes live in the memory file at Offset and belong at
// BaseHostVirtAddr in the VMM.
type Mapping struct {
	BaseHostVirtAddr uint64 `json:"base_host_virt_addr"`
	Size             uint64 `json:"size"`
	Offset           uint64 `json:"offset"`
	PageSize         uint64 `json:"page_size"`
	// PageSizeKiB is a deprecated duplicate of PageSize holding the same
	// value in bytes; Firecracker keeps the misnamed field for old handlers.
	PageSizeKiB uint64 `json:"page_size_kib"`
}

// ErrBadHandshake classifies a handshake a handler refuses: malformed JSON,
// a missing or wrong descriptor, or mappings that do not fit the memory file.
var ErrBadHandshake = errors.New("bad userfaultfd handshake")

// contains reports whether addr lies in m's host range.
func (m *Mapping) contains(addr uint64) bool {
	return addr >= m.BaseHostVirtAddr && addr-m.BaseHostVirtAddr < m.Size
}

// decodeMappings parses a handshake's JSON and checks it against a memory
// file of memSize bytes. Every failure wraps ErrBadHandshake.
func decodeMappings(data []byte, memSize int64) ([]Mapping, error) {
	var ms []Mapping
	if err := json.Unmarshal(data, &ms); err != nil {
		return nil, fmt.Errorf("%w: mappings are not a JSON array of regions: %v", ErrBadHandshake, err)
	}
	if err := validateMappings(ms, memSize); err != nil {
		return nil, err
	}
	return ms, nil
}

// validateMappings checks what a handler relies on: a bounded number of
// regions, known page sizes, page-aligned addresses, sizes and offsets,
// no wrap-around, no overlap in the VMM's address space, and every region's
// bytes inside the memory file.
func validateMappings(ms []Mapping, memSize int64) error {
	if len(ms) == 0 {
		return fmt.Errorf("%w: no mappings", ErrBadHandshake)
	}
	if len(ms) > MaxMappings {
		return fmt.Errorf("%w: %d mappings, at most %d allowed", ErrBadHandshake, len(ms), MaxMappings)
	}
	if memSize < 0 {
		memSize = 0
	}
	for i := range ms {
		m := &ms[i]
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: mapping %d: %s", ErrBadHandshake, i, fmt.Sprintf(format, a...))
		}
		switch m.PageSize {
		case PageSize4K, PageSize2M:
		default:
			return bad("page_size %d is neither %d nor %d", m.PageSize, PageSize4K, PageSize2M)
		}
		// Firecracker always sends both; a future one may drop the
		// deprecated field, which then decodes as 0.
		if m.PageSizeKiB != 0 && m.PageSizeKiB != m.PageSize {
			return bad("page_size_kib %d differs from page_size %d", m.PageSizeKiB, m.PageSize)
		}
		mask := m.PageSize - 1
		if m.Size == 0 {
			return bad("size is 0")
		}
		if m.BaseHostVirtAddr&mask != 0 || m.Size&mask != 0 || m.Offset&mask != 0 {
			return bad("base_host_virt_addr %#x, size %#x and offset %#x must be multiples of page_size %#x",
				m.BaseHostVirtAddr, m.Size, m.Offset, m.PageSize)
		}
		if m.BaseHostVirtAddr+m.Size < m.BaseHostVirtAddr {
			return bad("base_host_virt_addr %#x + size %#x overflows", m.BaseHostVirtAddr, m.Size)
		}
		if m.Offset > uint64(memSize) || m.Size > uint64(memSize)-m.Offset {
			return bad("offset %#x + size %#x exceeds the memory file's %#x bytes", m.Offset, m.Size, memSize)
		}
		for j := range i {
			o := &ms[j]
			if m.BaseHostVirtAddr < o.BaseHostVirtAddr+o.Size && o.BaseHostVirtAddr < m.BaseHostVirtAddr+m.Size {
				return bad("host range overlaps mapping %d", j)
			}
		}
	}
	return nil
}
