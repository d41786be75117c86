// Package snapshot is ember's snapshot file format: the container a backend's
// VM state is written into by PUT /snapshot/create and read back by PUT
// /snapshot/load, and the plain guest-memory file written beside it.
//
// # State file
//
// The state file keeps Firecracker's outer shape, so that tools reading the
// shape see what they expect:
//
//	magic    u64 LE   0x0710_1984_8664_0000 (x86_64), 0x0710_1984_AAAA_0000 (aarch64)
//	version  u64 LE length + ASCII semver ("11.0.0")
//	payload  u32 LE length + JSON header, then the section bytes in header order
//	crc      u64 LE   CRC-64/Jones (reflected, init 0, no final xor) of all bytes before it
//
// The magic and the length-prefixed version are laid out as Firecracker's
// bincode-era releases (snapshot versions 1 to 8) wrote their header, and the
// CRC is the one every Firecracker release uses, so a file's version reads
// the same way everywhere. The payload is ember's own and self-describing:
// a JSON [Header] (format version, ember version, backend, arch, creation
// time, guest memory layout, the list of sections) followed by sections of
// bytes, each encoded by the component that owns it (as JSON or raw).
//
// # Version
//
// The container version is [Version], the snapshot data format version ember
// reports with --snapshot-version, so `--describe-snapshot` of ember's file
// prints what `--snapshot-version` prints, as Firecracker's own test of the
// two flags expects. This cannot make a Firecracker release take ember's file
// for its own: releases with snapshot versions 1 to 8 read the same header,
// see major 11 and refuse with "Invalid data version" before touching the
// payload; releases 9 to 11 decode the whole file as bitcode, which ember's
// payload is not, and refuse there. ember's payload layout has its own
// version, [Format], in the header.
//
// Load applies Firecracker's rule to both: same major, minor not newer than
// this ember's (any patch). A file written by another backend is refused
// with [ErrBackend]: the state of one backend means nothing to another.
//
// # Invariants
//
// Write never leaves a file at its path that looks complete but is not: it
// writes a temporary file in the same directory, syncs it, renames it over
// the path and syncs the directory. Every file Read accepts has passed the
// magic, CRC, version and structure checks; sections are bounded by the
// file, which is bounded by [MaxSize].
package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Version is the container version ember writes and the newest it reads
// (same major, minor ≤ this). It equals the version --snapshot-version prints.
const Version = "11.0.0"

// Format is the version of ember's payload layout (the header and sections).
var Format = LayoutVersion{Major: 1, Minor: 0}

// MaxSize bounds a state file, so a hostile or mistaken file cannot make a
// load allocate without limit. Device state is kilobytes per device; guest
// memory lives in the memory file, not here.
const MaxSize = 64 << 20

// Magic values by architecture, as Firecracker's.
const (
	MagicX86_64  uint64 = 0x0710_1984_8664_0000
	MagicAarch64 uint64 = 0x0710_1984_AAAA_0000
)

// Encodings of a section.
const (
	EncodingJSON = "json"
	EncodingRaw  = "raw"
)

// Errors, classified. The texts of the first five are Firecracker's
// SnapshotError texts, so an API error built from them reads as Firecracker's.
var (
	// ErrTooShort: the file cannot even hold a CRC.
	ErrTooShort = errors.New("File too short to contain CRC")
	// ErrTooLarge: the file is larger than MaxSize.
	ErrTooLarge = errors.New("Snapshot size exceeds limit")
	// ErrBadMagic: not a state file of this architecture.
	ErrBadMagic = errors.New("Magic value does not match arch")
	// ErrCRC: the file was changed or cut after it was written.
	ErrCRC = errors.New("CRC64 validation failed")
	// ErrVersion: written by an incompatible version of the format.
	ErrVersion = errors.New("Invalid data version")
	// ErrBackend: written by another backend.
	ErrBackend = errors.New("snapshot written by another backend")
	// ErrCorrupt: the checksum holds but the structure does not; only a
	// faulty writer or a crafted file gets here.
	ErrCorrupt = errors.New("malformed snapshot")
	// ErrInvalid: a File or memory layout handed to a writer is unusable.
	ErrInvalid = errors.New("invalid snapshot contents")
	// ErrNoSection: a section asked for is not in the file.
	ErrNoSection = errors.New("no such snapshot section")
)

// MagicError reports a magic value that is not this architecture's.
type MagicError struct{ Magic uint64 }

func (e *MagicError) Error() string   { return fmt.Sprintf("%v: %d", ErrBadMagic, e.Magic) }
func (e *MagicError) Is(t error) bool { return t == ErrBadMagic }

// VersionError reports an incompatible container or layout version.
type VersionError struct {
	What     string // "data" for the container version, "layout" for Format
	Got      string
	Accepted string // what this ember reads
}

func (e *VersionError) Error() string {
	if e.What == "layout" {
		return fmt.Sprintf("%v: ember snapshot layout %s (this ember reads %s)", ErrVersion, e.Got, e.Accepted)
	}
	return fmt.Sprintf("%v: %s", ErrVersion, e.Got)
}

func (e *VersionError) Is(t error) bool { return t == ErrVersion }

// BackendError reports a file written by another backend.
type BackendError struct{ File, Want string }

func (e *BackendError) Error() string {
	return fmt.Sprintf("snapshot was written by the %s backend, but this ember runs the %s backend", e.File, e.Want)
}
func (e *BackendError) Is(t error) bool { return t == ErrBackend }

// IOError is a failure reading the file after it was opened; its text is
// Firecracker's "IO Error: ...".
type IOError struct{ Err error }

func (e *IOError) Error() string { return "IO Error: " + e.Err.Error() }
func (e *IOError) Unwrap() error { return e.Err }

// OpenError is a failure opening the file.
type OpenError struct{ Err error }

func (e *OpenError) Error() string { return "open snapshot file: " + e.Err.Error() }
func (e *OpenError) Unwrap() error { return e.Err }

// LayoutVersion is a major.minor version of ember's payload layout.
type LayoutVersion struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
}

func (v LayoutVersion) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Region is a range of guest RAM. The memory file holds the regions back to
// back in guest-address order, so a region's file offset is the sum of the
// sizes of the regions below it.
type Region struct {
	GPA  uint64 `json:"gpa"`
	Size uint64 `json:"size"`
}

// Header describes a snapshot. Write fills Version, Format and Arch itself,
// and Created when it is zero; Read fills all of them from the file.
type Header struct {
	Version      string        // container version, e.g. "11.0.0"
	Format       LayoutVersion // payload layout version
	EmberVersion string        // version of the ember that wrote the file
	Backend      string        // "kvm", "qemu"
	Arch         string        // "x86_64", "aarch64"
	Created      time.Time
	MemSize      uint64   // bytes of guest RAM, the memory file's length
	Regions      []Region // guest RAM layout, ascending, page aligned
}

// Section is one named piece of state, encoded by its owner.
type Section struct {
	Name     string
	Encoding string // EncodingJSON or EncodingRaw
	Data     []byte
}

// File is a decoded state file: its header and its sections, in order.
type File struct {
	Header
	Sections []Section
}

// AddJSON appends section name holding v encoded as JSON.
func (f *File) AddJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: section %q: %w", ErrInvalid, name, err)
	}
	return f.add(Section{Name: name, Encoding: EncodingJSON, Data: b})
}

// AddRaw appends section name holding b as is (b is not copied).
func (f *File) AddRaw(name string, b []byte) error {
	return f.add(Section{Name: name, Encoding: EncodingRaw, Data: b})
}

func (f *File) add(s Section) error {
	if err := checkSectionName(s.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if _, ok := f.Section(s.Name); ok {
		return fmt.Errorf("%w: duplicate section %q", ErrInvalid, s.Name)
	}
	f.Sections = append(f.Sections, s)
	return nil
}

// Section returns the section called name.
func (f *File) Section(name string) (*Section, bool) {
	for i := range f.Sections {
		if f.Sections[i].Name == name {
			return &f.Sections[i], true
		}
	}
	return nil, false
}

// JSON decodes section name, which must be a JSON section, into v. Unknown
// fields are ignored, so a newer minor version may add fields.
func (f *File) JSON(name string, v any) error {
	s, ok := f.Section(name)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoSection, name)
	}
	if s.Encoding != EncodingJSON {
		return fmt.Errorf("%w: section %q is %s, not json", ErrCorrupt, name, s.Encoding)
	}
	if err := json.Unmarshal(s.Data, v); err != nil {
		return fmt.Errorf("%w: section %q: %w", ErrCorrupt, name, err)
	}
	return nil
}

// Raw returns the bytes of section name, which must be a raw section.
func (f *File) Raw(name string) ([]byte, error) {
	s, ok := f.Section(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoSection, name)
	}
	if s.Encoding != EncodingRaw {
		return nil, fmt.Errorf("%w: section %q is %s, not raw", ErrCorrupt, name, s.Encoding)
	}
	return s.Data, nil
}

// HostArch is the arch name of the running ember, as Firecracker spells it.
func HostArch() string {
	if runtime.GOARCH == "arm64" {
		return "aarch64"
	}
	return "x86_64"
}

// HostMagic is the magic value of the running ember's architecture.
func HostMagic() uint64 {
	if runtime.GOARCH == "arm64" {
		return MagicAarch64
	}
	return MagicX86_64
}
