package mmdsnet

import (
	"errors"
	"math/rand/v2"
	"time"
)

// maxWindow is the largest window TCP can express (with scaling); the
// sequence comparisons below are relative to it, as in Firecracker.
const maxWindow = 1_073_725_440

// mssDefault is used when the SYN carries no MSS option.
const mssDefault = 536

// seqAfter reports whether a comes after b in sequence space.
func seqAfter(a, b uint32) bool { return a != b && a-b < maxWindow }

// seqAtOrAfter reports whether a is b or comes after it.
func seqAtOrAfter(a, b uint32) bool { return a-b < maxWindow }

// nextStatus says whether something can be sent now, after a deadline
// (a retransmission timeout), or not at all.
type nextStatus struct {
	kind statusKind
	at   time.Duration // for statusTimeout
}

type statusKind uint8

const (
	statusNothing statusKind = iota
	statusAvailable
	statusTimeout
)

// rstConfig describes the RST answering a segment: with the segment's ACK
// number as sequence number, or (when it had no ACK) with sequence 0 and
// ACK set to what we would have acknowledged.
type rstConfig struct {
	num     uint32
	withAck bool
}

func rstFor(s segment) rstConfig {
	if s.has(flagACK) {
		return rstConfig{num: s.ack()}
	}
	return rstConfig{num: s.seq() + uint32(s.payloadLen()), withAck: true}
}

func (r rstConfig) header() (seq, ack uint32, flags uint8) {
	if r.withAck {
		return 0, r.num, flagRST | flagACK
	}
	return r.num, 0, flagRST
}

// Connection state bits (a set of facts rather than one state, as the
// FIN and RST bookkeeping overlaps the handshake's).
type connState uint8

const (
	stSynReceived connState = 1 << iota
	stSynackSent
	stEstablished
	stFinSent
	stFinAcked
	stReset
)

// Unusual conditions seen while receiving a segment.
type recvFlags uint16

const (
	rfInvalidAck recvFlags = 1 << iota
	rfDupAck
	rfBeyondRwnd
	rfUnexpectedSeq
	rfRemoteRwndEdge
	rfDataBeyondFin
	rfResetReceived
	rfInvalidRst
	rfInvalidSegment
	rfConnResetting
	rfInvalidFin
)

var (
	errInvalidSyn      = errors.New("invalid SYN")
	errBufferTooSmall  = errors.New("receive buffer too small")
	errConnReset       = errors.New("connection reset")
	errDataAfterFin    = errors.New("data after FIN")
	errPayloadBufLarge = errors.New("payload buffer too large")
	errPayloadSeq      = errors.New("payload does not hold the sequence to send")
)

// conn is the TCP side of one passively opened connection. It never
// initiates: it answers a SYN, carries one byte stream each way with
// go-back-N retransmission on a single RTO timer, and closes after the
// peer's FIN once nothing is left to send.
type conn struct {
	ackToSend      uint32 // next byte expected from the peer
	highestAck     uint32 // highest ACK received
	firstNotSent   uint32
	localRwndEdge  uint32
	remoteRwndEdge uint32

	rtoStart    time.Duration
	rtoPeriod   time.Duration
	rtoCount    uint16
	rtoCountMax uint16

	finReceived    bool
	finReceivedSeq uint32
	sendFin        bool
	sendFinSeq     uint32
	sendRst        bool
	rst            rstConfig

	mss        uint16
	pendingAck bool
	dupAck     bool
	state      connState
}

func isValidSyn(s segment) bool { return s.flags() == flagSYN && s.payloadLen() == 0 }

func synMSS(s segment) (uint16, error) {
	m, err := s.mss()
	if err != nil {
		return 0, err
	}
	if m == 0 {
		m = mssDefault
	}
	return m, nil
}

// passiveOpen answers a SYN with a connection whose receive window is
// rwnd bytes.
func passiveOpen(s segment, rwnd uint32, rtoPeriod time.Duration, rtoCountMax uint16, isn uint32) (*conn, error) {
	if !isValidSyn(s) {
		return nil, errInvalidSyn
	}
	mss, err := synMSS(s)
	if err != nil {
		return nil, err
	}
	ack := s.seq() + 1
	return &conn{
		ackToSend:      ack,
		highestAck:     isn,
		firstNotSent:   isn + 1,
		localRwndEdge:  ack + rwnd,
		remoteRwndEdge: isn + 1 + uint32(s.window()),
		rtoPeriod:      rtoPeriod,
		rtoCountMax:    rtoCountMax,
		mss:            mss,
		state:          stSynReceived,
	}, nil
}

func randomISN() uint32 { return rand.Uint32() }

func (c *conn) is(f connState) bool { return c.state&f != 0 }

func (c *conn) synackPending() bool { return c.is(stSynReceived) && !c.is(stSynackSent) }
func (c *conn) established() bool   { return c.is(stEstablished) }

// isDone: reset, or both FINs sent and received.
func (c *conn) isDone() bool { return c.is(stReset) || (c.finReceived && c.is(stFinSent)) }

func (c *conn) isSameSyn(s segment) bool {
	if !isValidSyn(s) || c.ackToSend != s.seq()+1 {
		return false
	}
	m, err := synMSS(s)
	return err == nil && m == c.mss
}

func (c *conn) resetFor(s segment) {
	if !c.sendRst {
		c.sendRst, c.rst = true, rstFor(s)
	}
}

// rstConfigForEviction is the RST sent to a connection evicted to make
// room for a new one.
func (c *conn) rstConfigForEviction() rstConfig {
	if c.established() {
		return rstConfig{num: c.firstNotSent}
	}
	return rstConfig{num: c.ackToSend, withAck: true}
}

// reset schedules a RST; the connection is reset once it is sent.
func (c *conn) reset() {
	if !c.sendRst {
		c.sendRst, c.rst = true, c.rstConfigForEviction()
	}
}

// close schedules our FIN after everything sent so far.
func (c *conn) close() {
	if !c.sendFin {
		c.sendFin, c.sendFinSeq = true, c.firstNotSent
	}
}

func (c *conn) rtoExpired(now time.Duration) bool { return now-c.rtoStart >= c.rtoPeriod }

func (c *conn) canSendFirstFin() bool {
	return !c.is(stFinSent) && c.sendFin && c.sendFinSeq == c.highestAck
}

func (c *conn) localRwnd() uint16 {
	return uint16(min(c.localRwndEdge-c.ackToSend, 0xffff))
}

// advanceLocalRwnd opens the receive window by n bytes (the application
// consumed them); a window that was closed gets a window update.
func (c *conn) advanceLocalRwnd(n uint32) {
	cur := c.localRwndEdge - c.ackToSend
	if cur == 0 {
		c.pendingAck = true
	}
	if uint64(n)+uint64(cur) > maxWindow {
		c.localRwndEdge = c.ackToSend + maxWindow
	} else {
		c.localRwndEdge += n
	}
}

// controlStatus covers what is not new data: SYN-ACK, RST, first FIN,
// pending ACK, or the retransmission deadline.
func (c *conn) controlStatus() nextStatus {
	switch {
	case c.synackPending() || c.sendRst || c.canSendFirstFin() || c.pendingAck:
		return nextStatus{kind: statusAvailable}
	case c.highestAck != c.firstNotSent:
		return nextStatus{kind: statusTimeout, at: c.rtoStart + c.rtoPeriod}
	}
	return nextStatus{}
}

func (c *conn) resetting(s segment, f recvFlags) (int, recvFlags, error) {
	c.resetFor(s)
	return 0, rfConnResetting | f, nil
}

// receive processes one incoming segment, copying in-order payload into
// buf. It returns how many bytes it copied and any unusual conditions.
func (c *conn) receive(s segment, buf []byte, now time.Duration) (int, recvFlags, error) {
	if c.sendRst || c.is(stReset) {
		return 0, 0, errConnReset
	}
	fl := s.flags()
	if fl&flagRST != 0 {
		seq := s.seq()
		if seqAtOrAfter(seq, c.ackToSend) && seqAfter(c.localRwndEdge, seq) {
			c.state |= stReset
			return 0, rfResetReceived, nil
		}
		return 0, rfInvalidRst, nil
	}
	plen := s.payloadLen()
	var rf recvFlags

	switch {
	case !c.is(stSynackSent):
		// Our SYN-ACK is not out yet: only a repeated SYN is acceptable.
		if c.isSameSyn(s) {
			return 0, rf, nil
		}
		return c.resetting(s, rfInvalidSegment)
	case !c.established():
		if c.isSameSyn(s) {
			// The peer did not get our SYN-ACK: send it again.
			c.state &^= stSynackSent
			return 0, rf, nil
		}
		if fl&flagSYN != 0 {
			return c.resetting(s, rfInvalidSegment)
		}
	default:
		if fl&flagSYN != 0 {
			return c.resetting(s, rfInvalidSegment)
		}
	}

	if fl&flagACK != 0 {
		ack := s.ack()
		if seqAtOrAfter(ack, c.highestAck) && seqAtOrAfter(c.firstNotSent, ack) {
			c.rtoCount = 0
			if ack == c.highestAck && ack != c.firstNotSent {
				if !c.established() {
					return c.resetting(s, rfInvalidAck)
				}
				c.dupAck = true
				rf |= rfDupAck
			} else {
				c.highestAck = ack
				c.rtoStart = now
				if !c.established() && c.is(stSynackSent) {
					c.state |= stEstablished
				}
				if c.is(stFinSent) && ack == c.firstNotSent {
					c.state |= stFinAcked
				}
			}
			if c.established() {
				edge := ack + uint32(s.window())
				if seqAfter(edge, c.remoteRwndEdge) {
					c.remoteRwndEdge = edge
				} else if edge != c.remoteRwndEdge {
					rf |= rfRemoteRwndEdge
				}
			}
		} else {
			rf |= rfInvalidAck
			if !c.established() {
				return c.resetting(s, rf)
			}
		}
	}

	if !c.established() {
		return 0, rf, nil
	}
	seq := s.seq()
	if plen > len(buf) {
		return 0, 0, errBufferTooSmall
	}
	ackIt := false
	if plen > 0 {
		end := seq + uint32(plen)
		if c.finReceived && !seqAtOrAfter(c.finReceivedSeq, end) {
			return 0, rf | rfDataBeyondFin, nil
		}
		if !seqAtOrAfter(c.localRwndEdge, end) {
			return 0, rf | rfBeyondRwnd, nil
		}
		if seq != c.ackToSend {
			// Out of order: no reassembly, just tell the peer what we expect.
			c.pendingAck = true
			return 0, rf | rfUnexpectedSeq, nil
		}
		c.ackToSend = end
		ackIt = true
	}
	if fl&flagFIN != 0 && !c.finReceived {
		finSeq := seq + uint32(plen)
		if finSeq == c.ackToSend {
			c.finReceived, c.finReceivedSeq = true, finSeq
			c.ackToSend++
			ackIt = true
		} else {
			rf |= rfInvalidFin
		}
	}
	if ackIt {
		c.pendingAck = true
		if plen > 0 {
			return copy(buf, s.payload()), rf, nil
		}
	}
	return 0, rf, nil
}

// writeHeader writes a segment without payload or with payload from src
// (at most max bytes); an ACK in it satisfies a pending ACK.
func (c *conn) write(b []byte, mssReserved uint16, h segmentHeader, src []byte, max int) (int, int, error) {
	if h.flags == flagSYN|flagACK {
		h.mss = c.mss
	}
	h.window = c.localRwnd()
	if c.mss < mssReserved {
		return 0, 0, errMSSRemaining
	}
	n, err := writeSegment(b, h, c.mss-mssReserved, src, max)
	if err != nil {
		return 0, 0, err
	}
	if h.flags&flagACK != 0 {
		c.pendingAck = false
	}
	hlen := tcpMinHeaderLen
	if h.mss != 0 {
		hlen += tcpOptMSSLen
	}
	return n, n - hlen, nil
}

// writeControl writes a RST, a SYN-ACK, or an ACK (with FIN when due).
func (c *conn) writeControl(b []byte, mssReserved uint16) (int, error) {
	h := segmentHeader{seq: c.highestAck, ack: c.ackToSend}
	switch {
	case c.sendRst:
		h.seq, h.ack, h.flags = c.rst.header()
	case !c.established():
		h.flags = flagSYN | flagACK
		h.seq = c.firstNotSent - 1
	default:
		h.flags = flagACK
		if c.sendFin && !c.is(stFinAcked) && seqAtOrAfter(h.seq, c.sendFinSeq) {
			h.flags |= flagFIN
			h.seq = c.sendFinSeq
		}
	}
	n, _, err := c.write(b, mssReserved, h, nil, 0)
	return n, err
}

// writeNext writes the next segment due at now into b and returns its
// length (0: nothing to send). data is the whole unacknowledged send
// stream and dataSeq the sequence number of its first byte; a segment
// starting at seq carries data[seq-dataSeq:], so retransmissions resend
// the right bytes.
func (c *conn) writeNext(b []byte, mssReserved uint16, data []byte, dataSeq uint32, now time.Duration) (int, error) {
	if c.is(stReset) {
		return 0, errConnReset
	}
	if c.sendRst {
		n, err := c.writeControl(b, mssReserved)
		if err != nil {
			return 0, err
		}
		c.state |= stReset
		return n, nil
	}
	if c.synackPending() {
		n, err := c.writeControl(b, mssReserved)
		if err != nil {
			return 0, err
		}
		c.state |= stSynackSent
		c.rtoStart = now
		return n, nil
	}
	if !c.established() {
		if !c.rtoExpired(now) {
			return 0, nil
		}
		c.rtoCount++
		if c.rtoCount >= c.rtoCountMax {
			c.reset()
			return c.writeNext(b, mssReserved, data, dataSeq, now)
		}
		n, err := c.writeControl(b, mssReserved)
		if err != nil {
			return 0, err
		}
		c.rtoStart = now
		return n, nil
	}

	if data != nil {
		if uint64(len(data)) > maxWindow {
			return 0, errPayloadBufLarge
		}
		dataEnd := dataSeq + uint32(len(data))
		retransmit := false
		var seq uint32
		switch {
		case c.highestAck != c.firstNotSent && c.rtoExpired(now):
			c.rtoCount++
			if c.rtoCount >= c.rtoCountMax {
				c.reset()
				return c.writeNext(b, mssReserved, data, dataSeq, now)
			}
			if c.sendFin && c.highestAck == c.sendFinSeq {
				// Only our FIN is unacknowledged: resend it.
				n, err := c.writeControl(b, mssReserved)
				if err != nil {
					return 0, err
				}
				c.rtoStart = now
				return n, nil
			}
			retransmit = true
			seq = c.highestAck
		case c.dupAck:
			seq = c.highestAck
		default:
			seq = c.firstNotSent
		}
		if !seqAtOrAfter(seq, dataSeq) {
			return 0, errPayloadSeq
		}
		end := dataEnd
		if !seqAtOrAfter(c.remoteRwndEdge, dataEnd) {
			end = c.remoteRwndEdge
		}
		if c.sendFin && seqAfter(end, c.sendFinSeq) {
			return 0, errDataAfterFin
		}
		if seqAfter(end, seq) {
			off := seq - dataSeq
			if uint64(off) > uint64(len(data)) {
				return 0, errPayloadSeq
			}
			n, plen, err := c.write(b, mssReserved, segmentHeader{seq: seq, ack: c.ackToSend, flags: flagACK},
				data[off:], int(end-seq))
			if err != nil {
				return 0, err
			}
			c.dupAck = false
			after := seq + uint32(plen)
			if c.sendFin && after == c.sendFinSeq {
				// The last data byte: the FIN rides along.
				b[13] |= flagFIN
				after++
				c.state |= stFinSent
			}
			if retransmit || c.firstNotSent == c.highestAck {
				c.rtoStart = now
			}
			if seqAfter(after, c.firstNotSent) {
				c.firstNotSent = after
			}
			return n, nil
		}
	}

	first := c.canSendFirstFin()
	if c.pendingAck || first {
		n, err := c.writeControl(b, mssReserved)
		if err != nil {
			return 0, err
		}
		if first {
			c.firstNotSent++
			c.state |= stFinSent
		}
		return n, nil
	}
	return 0, nil
}
