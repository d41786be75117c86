// Package mmdsnet is ember's MMDS network endpoint: the piece of a
// virtio-net device model that answers the guest's metadata requests
// without any host networking, as Firecracker's does.
//
// A Stack is an Interceptor for one interface. It takes, from the frames
// the guest sends, every ARP frame whose target address is the MMDS
// address and every IPv4 packet to that address (whatever its protocol or
// port, so nothing meant for MMDS reaches the tap); everything else
// passes. It answers ARP requests from the MMDS MAC 06:01:23:45:67:01 and
// runs a minimal passive TCP endpoint on port 80 carrying HTTP/1.x: up to
// 30 connections (a new one evicts one idle for 10 s, or is refused with
// a RST), up to 100 queued RSTs, MSS from the SYN (536 without the
// option), a 2500-byte receive buffer that bounds a request, one request
// answered at a time, retransmission on a 300 ms timeout, a reset after
// 15 of them. Guest checksums are not verified (the guest may leave them
// to offloads); everything sent carries correct checksums.
//
// Requests are answered from the metadata store as Firecracker's MMDS
// does: GET renders the value at the path (a JSON pointer) as JSON or in
// the IMDS text format; PUT /latest/api/token issues V2 session tokens;
// V2 requires a valid token on GET, V1 only counts missing and invalid
// ones.
//
// The stack is a pure frame-in, frame-out state machine: Intercept feeds
// it, Receive drains it, and nothing runs on its own. Timeouts are acted
// on when Receive is next called; Deadline tells a caller when that should
// be. Both methods may be called concurrently.
//
// ember carries its own minimal stack rather than a general one (such as
// gVisor's netstack) because MMDS needs only ARP, IPv4 and one passive
// TCP endpoint with tiny HTTP messages, and must match Firecracker's
// "dumbo" stack in its limits and answers.
package mmdsnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/metrics"
	"github.com/ember-vmm/ember/internal/strictjson"
)

// MAC is the MMDS endpoint's Ethernet address.
var MAC = [6]byte{0x06, 0x01, 0x23, 0x45, 0x67, 0x01}

// DefaultIPv4 is the MMDS address unless configured otherwise.
var DefaultIPv4 = netip.AddrFrom4([4]byte{169, 254, 169, 254})

// Port is the TCP port MMDS listens on.
const Port = 80

// Version is the MMDS protocol version.
type Version uint8

const (
	// V1 answers GETs without a token (deprecated; the default).
	V1 Version = iota
	// V2 requires a session token on every GET.
	V2
)

func (v Version) String() string {
	if v == V2 {
		return "V2"
	}
	return "V1"
}

// ParseVersion maps "V1" and "V2" (the API's spelling) to a Version.
func ParseVersion(s string) (Version, error) {
	switch s {
	case "V1":
		return V1, nil
	case "V2":
		return V2, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrInvalidConfig, s)
}

// ErrInvalidConfig classifies a Config New refuses.
var ErrInvalidConfig = errors.New("invalid MMDS network configuration")

// Store is what the stack reads: the current metadata (a JSON null
// before any PUT). *mmds.Store satisfies it.
type Store interface {
	Value() strictjson.Value
}

// Config configures a Stack.
type Config struct {
	// IPv4 is the MMDS address; the zero Addr means DefaultIPv4.
	IPv4 netip.Addr
	// Version selects V1 or V2 token rules.
	Version Version
	// IMDSCompat renders every GET in the IMDS format, whatever Accept says.
	IMDSCompat bool
	// Store holds the metadata. Required.
	Store Store
	// Tokens issues and checks V2 tokens. Interfaces serving the same
	// store should share one; nil makes a private one for InstanceID.
	Tokens     *Tokens
	InstanceID string
	// Clock drives TCP timers (and a private Tokens); nil is Monotonic.
	Clock Clock
	// Metrics receives Firecracker's "mmds" counters; nil keeps them
	// private (see Metrics).
	Metrics *metrics.MMDSMetrics
	Log     logger.Log
}

// Stack is the MMDS endpoint of one network interface. It implements the
// virtio-net device's Interceptor.
type Stack struct {
	mu        sync.Mutex
	ip        [4]byte
	remoteMAC [6]byte // where answers go: the last sender seen
	arpPend   bool
	arpDest   [4]byte
	h         *handler
	r         responder
	clock     Clock
	m         *metrics.MMDSMetrics
}

// New returns a Stack.
func New(cfg Config) (*Stack, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: no store", ErrInvalidConfig)
	}
	ip := cfg.IPv4
	if !ip.IsValid() {
		ip = DefaultIPv4
	}
	if !ip.Is4() {
		return nil, fmt.Errorf("%w: %s is not an IPv4 address", ErrInvalidConfig, ip)
	}
	if cfg.Version != V1 && cfg.Version != V2 {
		return nil, fmt.Errorf("%w: version %d", ErrInvalidConfig, cfg.Version)
	}
	if cfg.Clock == nil {
		cfg.Clock = Monotonic
	}
	if cfg.Metrics == nil {
		cfg.Metrics = new(metrics.MMDSMetrics)
	}
	if cfg.Tokens == nil {
		t, err := NewTokens(cfg.InstanceID, cfg.Clock, cfg.Log)
		if err != nil {
			return nil, err
		}
		cfg.Tokens = t
	}
	s := &Stack{
		ip:        ip.As4(),
		remoteMAC: MAC,
		clock:     cfg.Clock,
		m:         cfg.Metrics,
		r: responder{store: cfg.Store, tokens: cfg.Tokens, v2: cfg.Version == V2,
			imdsCompat: cfg.IMDSCompat, m: cfg.Metrics},
	}
	s.h = newHandler(s.ip, Port, randomISN)
	return s, nil
}

// IPv4 returns the MMDS address.
func (s *Stack) IPv4() netip.Addr { return netip.AddrFrom4(s.ip) }

// Metrics returns the counters the stack updates.
func (s *Stack) Metrics() *metrics.MMDSMetrics { return s.m }

// isMMDSFrame is Firecracker's cheap test: an ARP frame whose target
// protocol address, or an IPv4 packet whose destination, is the MMDS
// address. Nothing else is looked at.
func (s *Stack) isMMDSFrame(f []byte) bool {
	if len(f) < ethHeaderLen {
		return false
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case etherTypeARP:
		return len(f) >= ethHeaderLen+arpFrameLen && [4]byte(f[ethHeaderLen+24:ethHeaderLen+28]) == s.ip
	case etherTypeIPv4:
		return len(f) >= ethHeaderLen+ipv4MinHeaderLen && [4]byte(f[ethHeaderLen+16:ethHeaderLen+20]) == s.ip
	}
	return false
}

// Intercept implements the device's Interceptor: it consumes every frame
// for the MMDS address, answering what deserves an answer and dropping
// the rest (malformed frames included).
func (s *Stack) Intercept(f []byte) bool {
	if !s.isMMDSFrame(f) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m.RxAccepted.Inc()
	payload := f[ethHeaderLen:]
	if binary.BigEndian.Uint16(f[12:]) == etherTypeARP {
		if req, err := parseARPRequest(payload); err == nil {
			s.remoteMAC = req.sha
			s.arpPend, s.arpDest = true, req.spa
		}
		return true
	}
	p, err := parseIPv4(payload)
	if err != nil {
		return true
	}
	if p.protocol() != protoTCP {
		s.m.RxAcceptedUnusual.Inc()
		return true
	}
	s.remoteMAC = [6]byte(f[6:12])
	ev, err := s.h.receive(p, s.clock(), s.r.respond, s.m)
	if err != nil {
		s.m.RxAcceptedErr.Inc()
		return true
	}
	s.m.RxCount.Inc()
	switch ev {
	case evNewConn:
		s.m.ConnectionsCreated.Inc()
	case evNewConnReplacing:
		s.m.ConnectionsCreated.Inc()
		s.m.ConnectionsDestroyed.Inc()
	case evEndpointDone:
		s.m.ConnectionsDestroyed.Inc()
	}
	return true
}

// Receive implements the device's Interceptor: it writes the next frame
// for the guest into buf (an ARP reply first, then TCP segments) and
// returns its length, or 0.
func (s *Stack) Receive(buf []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.arpPend {
		if len(buf) < ethHeaderLen+arpFrameLen {
			s.m.TxErrors.Inc()
			return 0
		}
		writeEth(buf, s.remoteMAC, MAC, etherTypeARP)
		writeARPReply(buf[ethHeaderLen:], MAC, s.ip, s.remoteMAC, s.arpDest)
		s.arpPend = false
		return s.sent(ethHeaderLen + arpFrameLen)
	}
	now := s.clock()
	st := s.h.status()
	if st.kind == statusNothing || (st.kind == statusTimeout && now < st.at) {
		return 0
	}
	if len(buf) < ethHeaderLen {
		s.m.TxErrors.Inc()
		return 0
	}
	writeEth(buf, s.remoteMAC, MAC, etherTypeIPv4)
	n, done, err := s.h.writeNext(buf[ethHeaderLen:], now, s.m)
	if done {
		s.m.ConnectionsDestroyed.Inc()
	}
	if err != nil {
		s.m.TxErrors.Inc()
		return 0
	}
	if n == 0 {
		return 0
	}
	return s.sent(ethHeaderLen + n)
}

func (s *Stack) sent(n int) int {
	s.m.TxCount.Inc()
	s.m.TxFrames.Inc()
	s.m.TxBytes.Add(uint64(n))
	return n
}

// Deadline reports when the stack next has something to send without
// new input: now (ok, at <= Clock()) when frames are waiting, at a
// retransmission deadline, or never (ok false). A device that wants
// timely retransmissions wakes its RX path at that time.
func (s *Stack) Deadline() (at time.Duration, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.arpPend {
		return 0, true
	}
	switch st := s.h.deadline(); st.kind {
	case statusAvailable:
		return 0, true
	case statusTimeout:
		return st.at, true
	}
	return 0, false
}
