// Package guestmem is a VM's RAM: regions of host memory mapped outside the
// Go heap, each placed at a guest-physical address, with bounds-checked
// access by guest address.
//
// Invariants: every access is checked against the regions; an address or
// length the guest controls can never reach memory outside them (errors
// wrap ErrOutOfRange). Regions never overlap and are sorted by address.
// Each region is its own mapping of exactly its size, so tools that find
// guest RAM by mapping size (as Firecracker's tests do) see it. The 16- and
// 32-bit Load/Store methods are atomic, for virtqueue indices shared with
// vCPUs on other threads.
package guestmem

import (
	"errors"
	"fmt"
	"os"
	"sort"
)

// ErrOutOfRange is returned (wrapped) for an access outside guest RAM.
var ErrOutOfRange = errors.New("guest address out of range")

// ErrFileSize is returned (wrapped) by New for a backing file shorter
// than guest RAM.
var ErrFileSize = errors.New("memory file too short")

// ErrMisaligned is returned (wrapped) for an atomic access that is not
// naturally aligned.
var ErrMisaligned = errors.New("misaligned guest address")

// Region is a range of guest-physical addresses backed by RAM.
type Region struct {
	GPA  uint64
	Size uint64
}

// End returns the first address after the region.
func (r Region) End() uint64 { return r.GPA + r.Size }

// Backing chooses how regions are mapped.
type Backing int

// The backings.
const (
	// Anonymous is private anonymous memory (the default, as Firecracker).
	Anonymous Backing = iota
	// Shared is a memfd, so another process (a vhost-user backend) can map it.
	Shared
)

// HugePages chooses the page size of guest RAM.
type HugePages int

// The page configurations.
const (
	HugePagesNone        HugePages = iota
	HugePagesTransparent           // madvise(MADV_HUGEPAGE)
	HugePages2M                    // hugetlbfs pages (MAP_HUGETLB)
)

// Options tune New.
type Options struct {
	Backing   Backing
	HugePages HugePages
	// File, if set, backs RAM with a private mapping of it instead of
	// anonymous memory (Backing must be Anonymous): the regions lie back to
	// back in the file in address order, as in a snapshot's memory file.
	// The guest's writes stay its own (copy-on-write), so the file never
	// changes and several VMs may map it at once. The file must be at least
	// as long as the regions together; New does not keep it open.
	File *os.File
	// TrackDirty records the pages ember writes into guest RAM (see
	// MarkDirty), for diff snapshots.
	TrackDirty bool
}

// mapped is one region and its host mapping.
type mapped struct {
	Region
	mem   []byte   // the mapping, len == Size
	fd    int      // memfd for Shared backing, else -1
	dirty []uint64 // pages ember wrote, with Options.TrackDirty
}

// Memory is a VM's RAM.
type Memory struct {
	regions    []mapped
	trackDirty bool
}

// New maps the given regions. On error nothing stays mapped.
func New(layout []Region, o Options) (*Memory, error) {
	rs := append([]Region(nil), layout...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].GPA < rs[j].GPA })
	for i, r := range rs {
		if r.Size == 0 || r.End() < r.GPA {
			return nil, fmt.Errorf("guestmem: invalid region %#x+%#x", r.GPA, r.Size)
		}
		if i > 0 && r.GPA < rs[i-1].End() {
			return nil, fmt.Errorf("guestmem: regions overlap at %#x", r.GPA)
		}
	}
	var offset uint64
	if o.File != nil {
		if o.Backing != Anonymous || o.HugePages == HugePages2M {
			return nil, errors.New("guestmem: a file-backed mapping is private and cannot use hugetlbfs pages")
		}
		var total uint64
		for _, r := range rs {
			if r.GPA%PageSize != 0 || r.Size%PageSize != 0 {
				return nil, fmt.Errorf("guestmem: region %#x+%#x is not page aligned", r.GPA, r.Size)
			}
			total += r.Size
		}
		fi, err := o.File.Stat()
		if err != nil {
			return nil, fmt.Errorf("guestmem: %w", err)
		}
		if !fi.Mode().IsRegular() || uint64(fi.Size()) < total {
			return nil, fmt.Errorf("guestmem: %s holds %d bytes, guest RAM needs %d: %w", o.File.Name(), fi.Size(), total, ErrFileSize)
		}
	}
	m := &Memory{trackDirty: o.TrackDirty}
	for _, r := range rs {
		mp, err := mapRegion(r, o, offset)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("guestmem: mapping %d MiB at %#x: %w", r.Size>>20, r.GPA, err)
		}
		if o.TrackDirty {
			mp.dirty = make([]uint64, dirtyWords(r.Size))
		}
		m.regions = append(m.regions, mp)
		offset += r.Size
	}
	return m, nil
}

// Close unmaps every region. The Memory must not be used afterwards.
func (m *Memory) Close() error {
	var first error
	for _, r := range m.regions {
		if err := unmapRegion(r); err != nil && first == nil {
			first = err
		}
	}
	m.regions = nil
	return first
}

// Regions returns the layout.
func (m *Memory) Regions() []Region {
	out := make([]Region, len(m.regions))
	for i, r := range m.regions {
		out[i] = r.Region
	}
	return out
}

// Size returns the total RAM size.
func (m *Memory) Size() uint64 {
	var n uint64
	for _, r := range m.regions {
		n += r.Size
	}
	return n
}

// find returns the region holding gpa.
func (m *Memory) find(gpa uint64) (*mapped, bool) {
	i := sort.Search(len(m.regions), func(i int) bool { return m.regions[i].End() > gpa })
	if i < len(m.regions) && m.regions[i].GPA <= gpa {
		return &m.regions[i], true
	}
	return nil, false
}

// Slice returns n bytes of guest RAM at gpa, which must lie within one
// region. The slice aliases guest memory: the guest may change it at any
// time, so callers copy what they validate.
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

// ReadAt copies guest RAM at gpa into p; the range may span regions but
// must be RAM throughout.
func (m *Memory) ReadAt(p []byte, gpa uint64) error {
	return m.span(gpa, uint64(len(p)), func(b []byte, done uint64) { copy(p[done:], b) })
}

// WriteAt copies p into guest RAM at gpa; the range may span regions but
// must be RAM throughout. Nothing is written if any part is out of range.
func (m *Memory) WriteAt(p []byte, gpa uint64) error {
	if err := m.span(gpa, uint64(len(p)), func(b []byte, done uint64) { copy(b, p[done:]) }); err != nil {
		return err
	}
	m.MarkDirty(gpa, uint64(len(p)))
	return nil
}

func (m *Memory) span(gpa, n uint64, f func(b []byte, done uint64)) error {
	if gpa+n < gpa {
		return fmt.Errorf("%w: %#x+%#x", ErrOutOfRange, gpa, n)
	}
	// Check first, so a partial write never happens.
	type piece struct {
		b    []byte
		done uint64
	}
	var pieces []piece
	for done := uint64(0); done < n; {
		r, ok := m.find(gpa + done)
		if !ok {
			return fmt.Errorf("%w: %#x+%#x", ErrOutOfRange, gpa, n)
		}
		off := gpa + done - r.GPA
		k := min(r.Size-off, n-done)
		pieces = append(pieces, piece{r.mem[off : off+k], done})
		done += k
	}
	for _, p := range pieces {
		f(p.b, p.done)
	}
	return nil
}

// Fd returns the memfd and offset behind gpa for Shared backing (for
// vhost-user), or -1.
func (m *Memory) Fd(gpa uint64) (fd int, offset uint64) {
	r, ok := m.find(gpa)
	if !ok {
		return -1, 0
	}
	return r.fd, gpa - r.GPA
}
