package mmdsnet

import (
	"time"

	"github.com/ember-vmm/ember/internal/metrics"
)

// Limits and timers, as Firecracker has them. Firecracker counts its
// timers in TSC cycles (40e9 and 1.2e9), which its sources equate with
// about 10 s and 300 ms on a 4 GHz CPU; ember uses those durations.
const (
	// MaxConnections is how many connections the endpoint keeps at once.
	MaxConnections = 30
	// MaxPendingResets bounds the queue of RSTs answering stray segments.
	MaxPendingResets = 100
	// MaxRequestSize is the receive buffer's size: a request that does not
	// end within it resets the connection.
	MaxRequestSize = rcvBufSize

	rcvBufSize        = 2500
	evictionThreshold = 10 * time.Second
	rtoPeriod         = 300 * time.Millisecond
	rtoCountMax       = 15
	rstWindow         = 10000
)

// endpoint is one HTTP-over-TCP connection: it gathers a request in a
// fixed buffer, answers it, and sends the answer before reading the next.
type endpoint struct {
	rcv     [rcvBufSize]byte
	rcvLen  int
	resp    []byte // the answer being sent
	respSeq uint32 // sequence number of resp[0]
	c       *conn
	lastRx  time.Duration
	stopped bool // reset: ignore what arrives
}

func newEndpoint(s segment, now time.Duration, isn uint32) (*endpoint, error) {
	c, err := passiveOpen(s, rcvBufSize, rtoPeriod, rtoCountMax, isn)
	if err != nil {
		return nil, err
	}
	return &endpoint{c: c, respSeq: c.firstNotSent, lastRx: now}, nil
}

// requestEnd finds the end of the first request in b (a blank line: "\n\n"
// or "\n\r\n"), the way Firecracker's endpoint does; 0 when none.
func requestEnd(b []byte) int {
	if len(b) <= 2 {
		return 0
	}
	for i := 0; i < len(b)-1; i++ {
		if b[i] != '\n' {
			continue
		}
		if b[i+1] == '\n' {
			return i + 2
		}
		if i+3 <= len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return 0
}

func (e *endpoint) receive(s segment, now time.Duration, respond func([]byte) []byte, m *metrics.MMDSMetrics) {
	if e.stopped {
		return
	}
	e.lastRx = now
	n, rf, err := e.c.receive(s, e.rcv[e.rcvLen:], now)
	if err != nil {
		m.RxAcceptedErr.Inc()
		return
	}
	if rf != 0 {
		m.RxAcceptedUnusual.Inc()
		if rf&rfConnResetting != 0 {
			e.stopped = true
			return
		}
	}
	e.rcvLen += n

	if len(e.resp) > 0 && e.c.highestAck == e.respSeq+uint32(len(e.resp)) {
		// The whole answer is acknowledged.
		e.respSeq = e.c.highestAck
		e.resp = e.resp[:0]
	}
	if len(e.resp) == 0 {
		if end := requestEnd(e.rcv[:e.rcvLen]); end > 0 {
			e.resp = append(e.resp[:0], respond(e.rcv[:end])...)
			copy(e.rcv[:], e.rcv[end:e.rcvLen])
			e.rcvLen -= end
			e.c.advanceLocalRwnd(uint32(end))
		}
		if e.rcvLen == len(e.rcv) {
			// Full without a complete request: over the size limit.
			e.c.reset()
			e.stopped = true
			return
		}
	}
	if e.c.finReceived && len(e.resp) == 0 {
		e.c.close()
	}
}

func (e *endpoint) writeNext(b []byte, now time.Duration, m *metrics.MMDSMetrics) int {
	var data []byte
	if len(e.resp) > 0 {
		data = e.resp
	}
	n, err := e.c.writeNext(b, 0, data, e.respSeq, now)
	if err != nil {
		m.TxErrors.Inc()
		return 0
	}
	return n
}

// deadline is status made exact for timers: new data counts only if some
// is unsent and inside the peer's window (status, like Firecracker's,
// stays "available" while any answer is unacknowledged and the window is
// open, which only costs a Receive call that returns nothing).
func (e *endpoint) deadline() nextStatus {
	if len(e.resp) > 0 {
		end := e.respSeq + uint32(len(e.resp))
		if !seqAtOrAfter(e.c.remoteRwndEdge, end) {
			end = e.c.remoteRwndEdge
		}
		if seqAfter(end, e.c.firstNotSent) {
			return nextStatus{kind: statusAvailable}
		}
	}
	if e.c.dupAck {
		return nextStatus{kind: statusAvailable}
	}
	return e.c.controlStatus()
}

func (e *endpoint) evictable(now time.Duration) bool { return now-e.lastRx > evictionThreshold }

func (e *endpoint) status() nextStatus {
	newData := len(e.resp) > 0 && seqAfter(e.c.remoteRwndEdge, e.c.firstNotSent)
	if newData || e.c.dupAck {
		return nextStatus{kind: statusAvailable}
	}
	return e.c.controlStatus()
}

// tuple identifies a connection: the local address and port are fixed.
type tuple struct {
	addr [4]byte
	port uint16
}

type pendingRst struct {
	t   tuple
	cfg rstConfig
}

// handler is the TCP listener on one address and port: it steers
// segments to their connection, opens connections for SYNs (evicting an
// idle one when full), queues RSTs for strays, and picks the next segment
// to send. Connections are kept in arrival order so that eviction and
// sending order are deterministic.
type handler struct {
	ip    [4]byte
	port  uint16
	conns map[tuple]*endpoint
	order []tuple // connections, oldest first
	// active holds connections that can send now, in the order they
	// became so.
	active      []tuple
	timeout     tuple
	timeoutAt   time.Duration
	haveTimeout bool
	rsts        []pendingRst
	isn         func() uint32
}

func newHandler(ip [4]byte, port uint16, isn func() uint32) *handler {
	return &handler{ip: ip, port: port, conns: make(map[tuple]*endpoint), isn: isn}
}

// Receive outcomes worth counting.
type recvEvent uint8

const (
	evNothing recvEvent = iota
	evNewConn
	evNewConnReplacing
	evNewConnDropped
	evFailedNewConn
	evEndpointDone
	evUnexpected
)

func (h *handler) receive(p ipv4, now time.Duration, respond func([]byte) []byte, m *metrics.MMDSMetrics) (recvEvent, error) {
	s, err := parseSegment(p.payload())
	if err != nil {
		return 0, err
	}
	if s.dstPort() != h.port {
		return 0, errInvalidPort
	}
	t := tuple{p.src(), s.srcPort()}
	if e, ok := h.conns[t]; ok {
		e.receive(s, now, respond, m)
		if e.c.isDone() {
			h.remove(t)
			return evEndpointDone, nil
		}
		if !h.noteStatus(t, e.status()) {
			h.deactivate(t)
		}
		return evNothing, nil
	}
	if s.flags() != flagSYN {
		if !s.has(flagRST) {
			h.enqueueRst(t, rstFor(s))
		}
		return evUnexpected, nil
	}
	e, err := newEndpoint(s, now, h.isn())
	if err != nil {
		return evFailedNewConn, nil
	}
	if len(h.conns) < MaxConnections {
		h.add(t, e)
		return evNewConn, nil
	}
	for _, old := range h.order {
		if h.conns[old].evictable(now) {
			h.enqueueRst(old, h.conns[old].c.rstConfigForEviction())
			h.remove(old)
			h.add(t, e)
			return evNewConnReplacing, nil
		}
	}
	h.enqueueRst(t, rstFor(s))
	return evNewConnDropped, nil
}

func (h *handler) enqueueRst(t tuple, cfg rstConfig) {
	if len(h.rsts) < MaxPendingResets {
		h.rsts = append(h.rsts, pendingRst{t, cfg})
	}
}

func (h *handler) add(t tuple, e *endpoint) {
	h.noteStatus(t, e.status())
	h.conns[t] = e
	h.order = append(h.order, t)
}

func (h *handler) remove(t tuple) {
	h.deactivate(t)
	delete(h.conns, t)
	for i, o := range h.order {
		if o == t {
			h.order = append(h.order[:i], h.order[i+1:]...)
			break
		}
	}
	if h.haveTimeout && h.timeout == t {
		h.findTimeout()
	}
}

func (h *handler) deactivate(t tuple) {
	for i, a := range h.active {
		if a == t {
			h.active = append(h.active[:i], h.active[i+1:]...)
			return
		}
	}
}

func (h *handler) findTimeout() {
	h.haveTimeout = false
	for _, t := range h.order {
		st := h.conns[t].status()
		if st.kind == statusTimeout && (!h.haveTimeout || st.at < h.timeoutAt) {
			h.timeout, h.timeoutAt, h.haveTimeout = t, st.at, true
		}
	}
}

// noteStatus records a connection's status; it returns true when the
// connection can send now (it is then in h.active).
func (h *handler) noteStatus(t tuple, st nextStatus) bool {
	if h.haveTimeout && h.timeout == t {
		h.findTimeout()
	}
	switch st.kind {
	case statusAvailable:
		for _, a := range h.active {
			if a == t {
				return true
			}
		}
		h.active = append(h.active, t)
		return true
	case statusTimeout:
		if !h.haveTimeout || h.timeoutAt > st.at {
			h.timeout, h.timeoutAt, h.haveTimeout = t, st.at, true
		}
	}
	return false
}

// status says whether writeNext has something now, or after a deadline.
func (h *handler) status() nextStatus {
	if len(h.active) > 0 || len(h.rsts) > 0 {
		return nextStatus{kind: statusAvailable}
	}
	if h.haveTimeout {
		return nextStatus{kind: statusTimeout, at: h.timeoutAt}
	}
	return nextStatus{}
}

// deadline is the earliest time something can be sent (see
// endpoint.deadline).
func (h *handler) deadline() nextStatus {
	if len(h.rsts) > 0 {
		return nextStatus{kind: statusAvailable}
	}
	var d nextStatus
	for _, t := range h.order {
		switch st := h.conns[t].deadline(); st.kind {
		case statusAvailable:
			return st
		case statusTimeout:
			if d.kind == statusNothing || st.at < d.at {
				d = st
			}
		}
	}
	return d
}

// writeNext writes the next IPv4 packet into b: a queued RST (newest
// first), else a segment from the first connection that has one. It
// returns the packet's length (0: none) and whether a connection finished.
func (h *handler) writeNext(b []byte, now time.Duration, m *metrics.MMDSMetrics) (int, bool, error) {
	if len(b) < ipv4MinHeaderLen {
		return 0, false, errSliceTooShort
	}
	seg := b[ipv4MinHeaderLen:]
	if k := len(h.rsts); k > 0 {
		r := h.rsts[k-1]
		h.rsts = h.rsts[:k-1]
		seq, ack, flags := r.cfg.header()
		n, err := writeSegment(seg, segmentHeader{seq: seq, ack: ack, flags: flags, window: rstWindow}, 0, nil, 0)
		if err != nil {
			return 0, false, err
		}
		finalizeSegment(seg[:n], h.port, r.t.port, h.ip, r.t.addr)
		writeIPv4(b, h.ip, r.t.addr, n)
		return ipv4MinHeaderLen + n, false, nil
	}
	candidates := h.active
	if h.haveTimeout {
		candidates = append(candidates[:len(candidates):len(candidates)], h.timeout)
	}
	for _, t := range candidates {
		e := h.conns[t]
		n := e.writeNext(seg, now, m)
		if n == 0 {
			continue
		}
		finalizeSegment(seg[:n], h.port, t.port, h.ip, t.addr)
		writeIPv4(b, h.ip, t.addr, n)
		done := e.c.isDone()
		if done {
			h.remove(t)
		} else if !h.noteStatus(t, e.status()) {
			h.deactivate(t)
		}
		return ipv4MinHeaderLen + n, done, nil
	}
	return 0, false, nil
}
