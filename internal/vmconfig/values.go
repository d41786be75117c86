package vmconfig

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/strictjson"
)

// PathBuf is a file path in a request body (Rust's PathBuf: serde calls it
// a "path string").
type PathBuf = strictjson.Path

// MACAddr is a guest MAC address. It accepts six two-digit hex groups
// separated by ':' and prints in lowercase, as Firecracker does.
type MACAddr [6]byte

var errBadMAC = errors.New("The provided MAC address is invalid.")

// ParseMAC parses a MAC address with Firecracker's rules.
func ParseMAC(s string) (MACAddr, error) {
	var m MACAddr
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return m, errBadMAC
	}
	for i, p := range parts {
		// Rust's u8::from_str_radix accepts a leading '+'.
		if len(p) != 2 || p[0] == '-' {
			return m, errBadMAC
		}
		v, err := strconv.ParseUint(strings.TrimPrefix(p, "+"), 16, 8)
		if err != nil {
			return m, errBadMAC
		}
		m[i] = byte(v)
	}
	return m, nil
}

// UnmarshalSerdeString implements strictjson.StringUnmarshaler.
func (m *MACAddr) UnmarshalSerdeString(s string) error {
	v, err := ParseMAC(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalSerde implements strictjson.Marshaler.
func (m MACAddr) MarshalSerde() (any, error) { return m.String(), nil }

func (m MACAddr) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// LevelFilter is a log level in a request body: any case of off, trace,
// debug, info, warn, warning or error.
type LevelFilter logger.Level

// UnmarshalSerdeString implements strictjson.StringUnmarshaler.
func (l *LevelFilter) UnmarshalSerdeString(s string) error {
	v, err := logger.ParseLevel(s)
	if err != nil {
		return errors.New("Invalid LevelFilter")
	}
	*l = LevelFilter(v)
	return nil
}

// MarshalSerde implements strictjson.Marshaler.
func (l LevelFilter) MarshalSerde() (any, error) { return logger.Level(l).APIName(), nil }

// Level returns the logger level.
func (l LevelFilter) Level() logger.Level { return logger.Level(l) }

// IPv4Addr is an IPv4 address in dotted-quad form (Rust's Ipv4Addr).
type IPv4Addr netip.Addr

// SerdeExpecting implements strictjson.StrVisitor.
func (*IPv4Addr) SerdeExpecting() string { return "IPv4 address" }

// VisitSerdeStr implements strictjson.StrVisitor.
func (a *IPv4Addr) VisitSerdeStr(s string) error {
	v, err := parseIPv4(s)
	if err != nil {
		return err
	}
	*a = IPv4Addr(v)
	return nil
}

// parseIPv4 accepts what Rust's Ipv4Addr::from_str accepts: four decimal
// octets without leading zeros.
func parseIPv4(s string) (netip.Addr, error) {
	bad := errors.New("invalid IPv4 address syntax")
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return netip.Addr{}, bad
	}
	var b [4]byte
	for i, p := range parts {
		if p == "" || len(p) > 3 || (len(p) > 1 && p[0] == '0') {
			return netip.Addr{}, bad
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return netip.Addr{}, bad
			}
		}
		v, err := strconv.Atoi(p)
		if err != nil || v > 255 {
			return netip.Addr{}, bad
		}
		b[i] = byte(v)
	}
	return netip.AddrFrom4(b), nil
}

// Addr returns the address.
func (a IPv4Addr) Addr() netip.Addr { return netip.Addr(a) }

// MarshalSerde implements strictjson.Marshaler.
func (a IPv4Addr) MarshalSerde() (any, error) { return netip.Addr(a).String(), nil }

// UpdateFromPut turns a PUT /machine-config body into an update: every field
// set (omitted optional fields reset to their defaults) except cpu_template,
// which is left alone when omitted, as Firecracker does.
func UpdateFromPut(c MachineConfig) MachineConfigUpdate {
	vcpus, mem, smt, dirty, huge := c.VCPUCount, c.MemSizeMiB, c.SMT, c.TrackDirtyPages, c.HugePages
	if huge == "" {
		huge = HugePagesNone
	}
	return MachineConfigUpdate{
		VCPUCount:       &vcpus,
		MemSizeMiB:      &mem,
		SMT:             &smt,
		CPUTemplate:     c.CPUTemplate,
		TrackDirtyPages: &dirty,
		HugePages:       &huge,
	}
}
