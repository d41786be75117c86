package vhostuser

import (
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

// ErrOutOfRange is returned (wrapped) for a guest address outside the
// front-end's memory table.
var ErrOutOfRange = errors.New("vhost-user: guest address out of range")

// ErrMisaligned is returned (wrapped) for an atomic access that is not
// naturally aligned.
var ErrMisaligned = errors.New("vhost-user: misaligned guest address")

// region is one mapped entry of the memory table. mem covers exactly the
// region; mapping is the whole mmap (which starts mmap_offset earlier).
type region struct {
	memRegion
	mem     []byte
	mapping []byte
}

// Memory is guest RAM as the front-end shared it: its memfd regions mapped
// into ember, outside the Go heap. It implements virtio.Memory by
// guest-physical address and translates the front-end's own virtual
// addresses (which SET_VRING_ADDR uses) to guest-physical ones.
type Memory struct {
	regions []region // sorted by GPA, non-overlapping
}

// mapMemory maps each region from its fd. The fds stay the caller's.
func mapMemory(rs []memRegion, fds []int) (*Memory, error) {
	sorted := append([]memRegion(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].GPA < sorted[j].GPA })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].GPA < sorted[i-1].GPA+sorted[i-1].Size {
			return nil, fmt.Errorf("%w: memory regions overlap at %#x", ErrProtocol, sorted[i].GPA)
		}
	}
	m := &Memory{}
	for i, r := range rs {
		length := r.MmapOffset + r.Size
		if length < r.Size || length > 1<<47 {
			m.unmap()
			return nil, fmt.Errorf("%w: region %#x+%#x at offset %#x cannot be mapped", ErrProtocol, r.GPA, r.Size, r.MmapOffset)
		}
		b, err := unix.Mmap(fds[i], 0, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_NORESERVE)
		if err != nil {
			m.unmap()
			return nil, fmt.Errorf("vhost-user: mapping region %#x+%#x: %w", r.GPA, r.Size, err)
		}
		m.regions = append(m.regions, region{memRegion: r, mem: b[r.MmapOffset:length:length], mapping: b})
	}
	sort.Slice(m.regions, func(i, j int) bool { return m.regions[i].GPA < m.regions[j].GPA })
	return m, nil
}

func (m *Memory) unmap() {
	for _, r := range m.regions {
		unix.Munmap(r.mapping)
	}
	m.regions = nil
}

// Close unmaps guest memory; nothing may use it afterwards.
func (m *Memory) Close() error {
	m.unmap()
	return nil
}

// ToGPA translates a front-end virtual address to a guest-physical one.
func (m *Memory) ToGPA(ua uint64) (uint64, error) {
	for _, r := range m.regions {
		if ua >= r.UserAddr && ua-r.UserAddr < r.Size {
			return r.GPA + (ua - r.UserAddr), nil
		}
	}
	return 0, fmt.Errorf("%w: front-end address %#x is in no region", ErrOutOfRange, ua)
}

func (m *Memory) find(gpa uint64) (*region, bool) {
	i := sort.Search(len(m.regions), func(i int) bool { return m.regions[i].GPA+m.regions[i].Size > gpa })
	if i < len(m.regions) && m.regions[i].GPA <= gpa {
		return &m.regions[i], true
	}
	return nil, false
}

// Slice implements virtio.Memory.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	r, ok := m.find(gpa)
	if !ok {
		return nil, fmt.Errorf("%w: %#x", ErrOutOfRange, gpa)
	}
	off := gpa - r.GPA
	if n > r.Size-off {
		return nil, fmt.Errorf("%w: %#x+%#x", ErrOutOfRange, gpa, n)
	}
	return r.mem[off : off+n : off+n], nil
}

// ReadAt implements virtio.Memory; the range may span regions.
func (m *Memory) ReadAt(p []byte, gpa uint64) error {
	return m.span(gpa, uint64(len(p)), func(b []byte, done uint64) { copy(p[done:], b) })
}

// WriteAt implements virtio.Memory; nothing is written unless all of the
// range is RAM.
func (m *Memory) WriteAt(p []byte, gpa uint64) error {
	return m.span(gpa, uint64(len(p)), func(b []byte, done uint64) { copy(b, p[done:]) })
}

func (m *Memory) span(gpa, n uint64, f func(b []byte, done uint64)) error {
	if gpa+n < gpa {
		return fmt.Errorf("%w: %#x+%#x", ErrOutOfRange, gpa, n)
	}
	// Check the whole range first so a write is never partial.
	for done := uint64(0); done < n; {
		r, ok := m.find(gpa + done)
		if !ok {
			return fmt.Errorf("%w: %#x+%#x", ErrOutOfRange, gpa, n)
		}
		done += min(r.GPA+r.Size-(gpa+done), n-done)
	}
	for done := uint64(0); done < n; {
		r, _ := m.find(gpa + done)
		off := gpa + done - r.GPA
		k := min(r.Size-off, n-done)
		f(r.mem[off:off+k], done)
		done += k
	}
	return nil
}
