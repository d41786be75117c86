package snapshot

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// crcTable is CRC-64 with the Jones polynomial (0xad93d23594c935a9) in
// reflected form, the variant of the crc64 crate Firecracker checks its
// state files with.
var crcTable = func() *[256]uint64 {
	const poly = 0x95ac9329ac4bc9b5
	var t [256]uint64
	for i := range t {
		c := uint64(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ poly
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return &t
}()

// crc64 continues crc over p, starting from 0 for a new checksum; unlike
// hash/crc64 there is no inversion before or after, as in Firecracker.
func crc64(crc uint64, p []byte) uint64 {
	for _, b := range p {
		crc = crcTable[byte(crc)^b] ^ crc>>8
	}
	return crc
}

// Limits on header fields, which keep every length check simple.
const (
	maxVersionLen = 64
	maxNameLen    = 256
)

// wireHeader is the JSON form of Header in the payload.
type wireHeader struct {
	Format       LayoutVersion `json:"format"`
	EmberVersion string        `json:"ember_version"`
	Backend      string        `json:"backend"`
	Arch         string        `json:"arch"`
	Created      time.Time     `json:"created"`
	MemSize      uint64        `json:"mem_size"`
	Regions      []Region      `json:"regions"`
	Sections     []wireSection `json:"sections"`
}

type wireSection struct {
	Name     string `json:"name"`
	Encoding string `json:"encoding"`
	Size     uint64 `json:"size"`
}

// Encode returns f in the state-file format, filling the header fields Write
// documents as its own into a copy (f is not changed).
func Encode(f *File) ([]byte, error) {
	h := f.Header
	h.Version, h.Format, h.Arch = Version, Format, HostArch()
	if h.Created.IsZero() {
		h.Created = time.Now()
	}
	h.Created = h.Created.UTC()
	if err := checkHeader(&h, f.Sections); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	w := wireHeader{
		Format: h.Format, EmberVersion: h.EmberVersion, Backend: h.Backend, Arch: h.Arch,
		Created: h.Created, MemSize: h.MemSize, Regions: h.Regions,
		Sections: make([]wireSection, len(f.Sections)),
	}
	if w.Regions == nil {
		w.Regions = []Region{}
	}
	size := 8 + 8 + len(h.Version) + 4 + 8
	for i, s := range f.Sections {
		w.Sections[i] = wireSection{Name: s.Name, Encoding: s.Encoding, Size: uint64(len(s.Data))}
		size += len(s.Data)
	}
	hj, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	size += len(hj)
	if size > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes of state exceed %d", ErrInvalid, size, MaxSize)
	}
	b := make([]byte, 0, size)
	b = binary.LittleEndian.AppendUint64(b, HostMagic())
	b = binary.LittleEndian.AppendUint64(b, uint64(len(h.Version)))
	b = append(b, h.Version...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(hj)))
	b = append(b, hj...)
	for _, s := range f.Sections {
		b = append(b, s.Data...)
	}
	return binary.LittleEndian.AppendUint64(b, crc64(0, b)), nil
}

// Read reads and checks the state file at path: magic, CRC, version and
// structure. It does not check the backend; Load does.
func Read(path string) (*File, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Decode(b)
}

// Load is Read that also refuses a file written by a backend other than
// backend.
func Load(path, backend string) (*File, error) {
	f, err := Read(path)
	if err != nil {
		return nil, err
	}
	if f.Backend != backend {
		return nil, &BackendError{File: f.Backend, Want: backend}
	}
	return f, nil
}

// Describe returns the container version of the state file at path as
// Firecracker's --describe-snapshot prints it: "v11.0.0". It checks magic
// and CRC, but not compatibility: describing an old or future file works.
func Describe(path string) (string, error) {
	b, err := readFile(path)
	if err != nil {
		return "", err
	}
	v, _, err := container(b)
	if err != nil {
		return "", err
	}
	return "v" + v, nil
}

func readFile(path string) ([]byte, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, &OpenError{Err: err}
	}
	defer fd.Close()
	b, err := io.ReadAll(io.LimitReader(fd, MaxSize+1))
	if err != nil {
		return nil, &IOError{Err: err}
	}
	return b, nil
}

// container checks the outer shape of b and returns the version string and
// the payload.
func container(b []byte) (version string, payload []byte, err error) {
	if len(b) > MaxSize {
		return "", nil, fmt.Errorf("%w of %d bytes", ErrTooLarge, MaxSize)
	}
	if len(b) < 8 {
		return "", nil, &IOError{Err: ErrTooShort}
	}
	data := b[:len(b)-8]
	if len(data) < 8 {
		return "", nil, &MagicError{}
	}
	if m := binary.LittleEndian.Uint64(data); m != HostMagic() {
		return "", nil, &MagicError{Magic: m}
	}
	// A CRC over the data followed by its own checksum is zero.
	if crc64(0, b) != 0 {
		return "", nil, ErrCRC
	}
	rest := data[8:]
	if len(rest) < 8 {
		return "", nil, fmt.Errorf("%w: no version", ErrCorrupt)
	}
	n := binary.LittleEndian.Uint64(rest)
	rest = rest[8:]
	if n > maxVersionLen || n > uint64(len(rest)) {
		return "", nil, fmt.Errorf("%w: version length %d", ErrCorrupt, n)
	}
	version = string(rest[:n])
	if _, _, err := parseSemver(version); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return version, rest[n:], nil
}

// Decode checks and decodes a whole state file held in b. The sections of
// the result alias b.
func Decode(b []byte) (*File, error) {
	version, p, err := container(b)
	if err != nil {
		return nil, err
	}
	if err := compatible(version); err != nil {
		return nil, err
	}
	if len(p) < 4 {
		return nil, fmt.Errorf("%w: no header", ErrCorrupt)
	}
	hl := binary.LittleEndian.Uint32(p)
	p = p[4:]
	if uint64(hl) > uint64(len(p)) {
		return nil, fmt.Errorf("%w: header length %d exceeds the file", ErrCorrupt, hl)
	}
	var w wireHeader
	if err := json.Unmarshal(p[:hl], &w); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrCorrupt, err)
	}
	p = p[hl:]
	// The layout version is checked before anything else in the header: a
	// newer layout may mean the rest differently.
	if w.Format.Major != Format.Major || w.Format.Minor > Format.Minor {
		return nil, &VersionError{What: "layout", Got: w.Format.String(), Accepted: fmt.Sprintf("%d.0 to %s", Format.Major, Format)}
	}
	f := &File{Header: Header{
		Version: version, Format: w.Format, EmberVersion: w.EmberVersion, Backend: w.Backend,
		Arch: w.Arch, Created: w.Created, MemSize: w.MemSize, Regions: w.Regions,
	}}
	f.Sections = make([]Section, 0, len(w.Sections))
	for _, s := range w.Sections {
		if s.Size > uint64(len(p)) {
			return nil, fmt.Errorf("%w: section %q of %d bytes exceeds the file", ErrCorrupt, s.Name, s.Size)
		}
		f.Sections = append(f.Sections, Section{Name: s.Name, Encoding: s.Encoding, Data: p[:s.Size:s.Size]})
		p = p[s.Size:]
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last section", ErrCorrupt, len(p))
	}
	if err := checkHeader(&f.Header, f.Sections); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if f.Created.IsZero() {
		return nil, fmt.Errorf("%w: no creation time", ErrCorrupt)
	}
	if f.Arch != HostArch() {
		return nil, fmt.Errorf("%w: arch %q under magic of %s", ErrCorrupt, f.Arch, HostArch())
	}
	return f, nil
}

// compatible applies Firecracker's rule: same major, minor not newer.
func compatible(version string) error {
	major, minor, err := parseSemver(version)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	ourMajor, ourMinor, _ := parseSemver(Version)
	if major != ourMajor || minor > ourMinor {
		return &VersionError{What: "data", Got: version, Accepted: Version}
	}
	return nil
}

// parseSemver parses MAJOR.MINOR.PATCH with optional -pre and +build parts,
// numbers without leading zeros, as the semver crate accepts.
func parseSemver(s string) (major, minor uint64, err error) {
	core := s
	if i := strings.IndexAny(core, "-+"); i >= 0 {
		if !validSuffix(core[i:]) {
			return 0, 0, fmt.Errorf("bad version %q", s)
		}
		core = core[:i]
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return 0, 0, fmt.Errorf("bad version %q", s)
	}
	var n [3]uint64
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') {
			return 0, 0, fmt.Errorf("bad version %q", s)
		}
		v, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bad version %q", s)
		}
		n[i] = v
	}
	return n[0], n[1], nil
}

// validSuffix accepts "-pre", "+build" and "-pre+build" with dot-separated
// non-empty identifiers of [0-9A-Za-z-].
func validSuffix(s string) bool {
	pre, build, hasBuild := strings.Cut(s, "+")
	if pre != "" {
		if pre[0] != '-' || !validIdents(pre[1:]) {
			return false
		}
	}
	return !hasBuild || validIdents(build)
}

func validIdents(s string) bool {
	for id := range strings.SplitSeq(s, ".") {
		if id == "" {
			return false
		}
		for _, c := range []byte(id) {
			if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return false
			}
		}
	}
	return true
}

// checkHeader checks what a writer must get right and a reader must not
// trust: names, layout and sizes.
func checkHeader(h *Header, sections []Section) error {
	if h.Backend == "" || len(h.Backend) > maxNameLen {
		return errors.New("backend name missing or too long")
	}
	if h.Arch == "" || len(h.Arch) > maxNameLen {
		return errors.New("arch missing or too long")
	}
	if len(h.EmberVersion) > maxNameLen {
		return errors.New("ember version too long")
	}
	if err := checkRegions(h.Regions); err != nil {
		return err
	}
	var total uint64
	for _, r := range h.Regions {
		total += r.Size
	}
	if total != h.MemSize {
		return fmt.Errorf("mem_size %d is not the %d bytes of the regions", h.MemSize, total)
	}
	seen := make(map[string]bool, len(sections))
	for _, s := range sections {
		if err := checkSectionName(s.Name); err != nil {
			return err
		}
		if seen[s.Name] {
			return fmt.Errorf("duplicate section %q", s.Name)
		}
		seen[s.Name] = true
		switch s.Encoding {
		case EncodingRaw:
		case EncodingJSON:
			if !json.Valid(s.Data) {
				return fmt.Errorf("section %q is not valid JSON", s.Name)
			}
		default:
			return fmt.Errorf("section %q has unknown encoding %q", s.Name, s.Encoding)
		}
	}
	return nil
}

func checkSectionName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("section name %q empty or too long", name)
	}
	return nil
}

// checkRegions requires page-aligned, non-empty regions in ascending,
// non-overlapping order: the memory file's layout depends on it.
func checkRegions(rs []Region) error {
	var end, total uint64
	for i, r := range rs {
		if r.Size == 0 || r.GPA%PageSize != 0 || r.Size%PageSize != 0 {
			return fmt.Errorf("region %d (%#x+%#x) empty or not page aligned", i, r.GPA, r.Size)
		}
		if r.GPA+r.Size < r.GPA || total+r.Size < total {
			return fmt.Errorf("region %d (%#x+%#x) overflows", i, r.GPA, r.Size)
		}
		if i > 0 && r.GPA < end {
			return fmt.Errorf("region %d (%#x) overlaps or precedes the one before", i, r.GPA)
		}
		end = r.GPA + r.Size
		total += r.Size
	}
	return nil
}
