package vsock

import (
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Connection tuning, as Firecracker's.
const (
	// ConnBufSize is the buffer each connection advertises to the guest
	// (buf_alloc): guest data the host peer has not read yet waits in it.
	ConnBufSize = 64 * 1024
	// creditUpdateThreshold: when the guest may believe we have less free
	// buffer than this, we tell it our fwd_cnt.
	creditUpdateThreshold = 4 * 1024
	// ConnRequestTimeout and ConnShutdownTimeout arm a connection's kill
	// timer after a host-initiated REQUEST and after a shutdown.
	ConnRequestTimeout  = 2 * time.Second
	ConnShutdownTimeout = 2 * time.Second
)

type connState int

const (
	stLocalInit connState = iota // host-initiated, REQUEST not yet answered
	stPeerInit                   // guest-initiated, RESPONSE not yet sent
	stEstablished
	stLocalClosed // the host end hung up
	stPeerClosed  // the guest sent SHUTDOWN (see peerRecvOff, peerSendOff)
	stKilled      // an RST is due
)

// Pending RX indications: what a connection has to tell the guest.
const (
	pendRequest uint8 = 1 << iota
	pendResponse
	pendRst
	pendRW
	pendCreditUpdate
)

type connKey struct {
	local uint32 // host-side port
	peer  uint32 // guest-side port
}

// conn is one vsock connection and its host stream. Its state belongs to
// the device's worker; the two waiter goroutines only wait for the stream
// to become readable or writable when the worker asks them to, and report
// back through the muxer's event queue.
type conn struct {
	key      connKey
	localCID uint64
	peerCID  uint64
	state    connState
	// For stPeerClosed: what the guest promised.
	peerRecvOff, peerSendOff bool

	uc *net.UnixConn
	rc syscall.RawConn

	tx               txBuf
	fwdCnt           uint32 // bytes written to the host stream
	peerBufAlloc     uint32
	peerFwdCnt       uint32
	rxCnt            uint32 // bytes sent to the guest
	lastFwdCntToPeer uint32
	pending          uint8
	expiry           time.Time // zero: no kill timer

	inArmed, outArmed bool
	wantIn, wantOut   chan struct{}
	quit              chan struct{}
	closed            bool
}

func newConn(uc *net.UnixConn, key connKey, peerCID uint64, state connState) (*conn, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	c := &conn{
		key: key, localCID: HostCID, peerCID: peerCID, state: state,
		uc: uc, rc: rc,
		wantIn: make(chan struct{}, 1), wantOut: make(chan struct{}, 1), quit: make(chan struct{}),
	}
	if state == stLocalInit {
		c.pending = pendRequest
	} else {
		c.pending = pendResponse
	}
	return c, nil
}

func (c *conn) hasPendingRx() bool { return c.pending != 0 }

func (c *conn) willExpire(now time.Time) bool { return !c.expiry.IsZero() && c.expiry.After(now) }
func (c *conn) hasExpired(now time.Time) bool { return !c.expiry.IsZero() && !c.expiry.After(now) }

// kill schedules an RST; data still buffered for the host is dropped.
func (c *conn) kill() {
	c.state = stKilled
	c.pending |= pendRst
	c.tx.clear()
}

func (c *conn) peerAvailCredit() uint32 { return c.peerBufAlloc - (c.rxCnt - c.peerFwdCnt) }

func (c *conn) needCreditUpdateFromPeer() bool { return c.peerAvailCredit() == 0 }

func (c *conn) peerNeedsCreditUpdate() bool {
	seenFree := uint32(ConnBufSize) - (c.fwdCnt - c.lastFwdCntToPeer)
	return seenFree < creditUpdateThreshold
}

// wantsIn and wantsOut are the events the connection needs (Firecracker's
// polled event set).
func (c *conn) wantsOut() bool { return !c.tx.empty() }

func (c *conn) wantsIn() bool {
	switch {
	case c.state == stKilled || c.state == stLocalClosed || (c.state == stPeerClosed && c.peerRecvOff):
		return false
	case c.needCreditUpdateFromPeer():
		return false
	case c.pending&pendRW != 0:
		// Readable data waits for a guest RX buffer; the worker re-arms once
		// it has drained the stream.
		return false
	}
	return true
}

func (c *conn) initHeader(h *Header) {
	*h = Header{
		SrcCID: c.localCID, DstCID: c.peerCID,
		SrcPort: c.key.local, DstPort: c.key.peer,
		Type: TypeStream, BufAlloc: ConnBufSize, FwdCnt: c.fwdCnt,
	}
}

// recvPkt fills p with the next packet for the guest; it returns false when
// there is nothing to say.
func (c *conn) recvPkt(d *Device, p *rxPacket) bool {
	c.initHeader(&p.hdr)
	d.m.rxPacketsCount.Add(1)
	if c.pending&pendRst != 0 {
		c.pending &^= pendRst
		p.hdr.Op = OpRst
		return true
	}
	if c.pending&pendResponse != 0 {
		c.pending &^= pendResponse
		c.state = stEstablished
		p.hdr.Op = OpResponse
		return true
	}
	if c.pending&pendRequest != 0 {
		c.pending &^= pendRequest
		c.expiry = time.Now().Add(ConnRequestTimeout)
		p.hdr.Op = OpRequest
		return true
	}
	if c.pending&pendRW != 0 {
		c.pending &^= pendRW
		if !(c.state == stEstablished || (c.state == stPeerClosed && !c.peerRecvOff)) {
			p.hdr.Op = OpRst
			return true
		}
		if c.needCreditUpdateFromPeer() {
			c.lastFwdCntToPeer = c.fwdCnt
			p.hdr.Op = OpCreditRequest
			return true
		}
		maxLen := min(p.bufSize, c.peerAvailCredit())
		n, err := c.readInto(p, maxLen)
		switch {
		case err == nil && n == 0:
			// The host end hung up: ask the guest to shut down both ways.
			c.state = stLocalClosed
			c.expiry = time.Now().Add(ConnShutdownTimeout)
			p.hdr.Op = OpShutdown
			p.hdr.Flags = ShutdownRcv | ShutdownSend
			c.rxCnt += p.hdr.Len
			c.lastFwdCntToPeer = c.fwdCnt
			return true
		case err == nil:
			p.hdr.Op = OpRW
			p.hdr.Len = n
			d.m.rxBytesCount.Add(uint64(n))
			c.pending |= pendRW // there may be more
			c.rxCnt += n
			c.lastFwdCntToPeer = c.fwdCnt
			return true
		case errors.Is(err, unix.EAGAIN):
			// Drained: wait for the stream again.
		default:
			d.m.rxReadFails.Add(1)
			d.cfg.Log.Errorf("vsock: error reading from backing stream: lp=%d, pp=%d, err=%v", c.key.local, c.key.peer, err)
			p.hdr.Op = OpRst
			c.lastFwdCntToPeer = c.fwdCnt
			return true
		}
	}
	// A credit update only goes out when there is nothing else to say.
	if c.pending&pendCreditUpdate != 0 {
		c.pending &^= pendCreditUpdate
		if c.pending == 0 {
			p.hdr.Op = OpCreditUpdate
			c.lastFwdCntToPeer = c.fwdCnt
			return true
		}
	}
	return false
}

// readInto reads up to n bytes from the host stream straight into the
// packet's payload, without waiting.
func (c *conn) readInto(p *rxPacket, n uint32) (uint32, error) {
	iov := p.payload(n, nil)
	var got int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			if len(iov) == 0 {
				// Firecracker reads zero bytes here and takes it for EOF.
				got, rerr = 0, nil
				return true
			}
			got, rerr = unix.Readv(int(fd), iov)
			if rerr != unix.EINTR {
				return true
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	return uint32(got), nil
}

// sendPkt takes a packet from the guest for this connection.
func (c *conn) sendPkt(d *Device, p *txPacket) {
	c.peerBufAlloc = p.hdr.BufAlloc
	c.peerFwdCnt = p.hdr.FwdCnt
	d.m.txPacketsCount.Add(1)
	op := p.hdr.Op
	switch {
	case op == OpRW && (c.state == stEstablished || (c.state == stPeerClosed && !c.peerSendOff)):
		if p.bufSize == 0 {
			d.cfg.Log.Infof("vsock: dropping empty data packet from guest (lp=%d, pp=%d", c.key.local, c.key.peer)
			return
		}
		if err := c.sendBytes(d, p); err != nil {
			d.cfg.Log.Warnf("vsock: error writing to local stream (lp=%d, pp=%d): %v", c.key.local, c.key.peer, err)
			c.kill()
			return
		}
		if c.peerNeedsCreditUpdate() {
			c.pending |= pendCreditUpdate
		}
	case op == OpResponse && c.state == stLocalInit:
		c.expiry = time.Time{}
		c.state = stEstablished
	case op == OpShutdown && c.state == stEstablished:
		c.state = stPeerClosed
		c.peerRecvOff = p.hdr.Flags&ShutdownRcv != 0
		c.peerSendOff = p.hdr.Flags&ShutdownSend != 0
		if c.peerRecvOff && c.peerSendOff {
			if c.tx.empty() {
				c.pending |= pendRst
			} else {
				c.expiry = time.Now().Add(ConnShutdownTimeout)
			}
		}
	case op == OpShutdown && c.state == stPeerClosed:
		c.peerRecvOff = c.peerRecvOff || p.hdr.Flags&ShutdownRcv != 0
		c.peerSendOff = c.peerSendOff || p.hdr.Flags&ShutdownSend != 0
		if c.peerRecvOff && c.peerSendOff && c.tx.empty() {
			c.pending |= pendRst
		}
	case op == OpCreditUpdate && (c.state == stEstablished || c.state == stPeerInit || (c.state == stPeerClosed && !c.peerRecvOff)):
		// The credit fields above were all there was to it.
	case op == OpCreditRequest && (c.state == stEstablished || c.state == stPeerInit || (c.state == stPeerClosed && !c.peerSendOff)):
		c.pending |= pendCreditUpdate
	default:
		d.cfg.Log.Debugf("vsock: dropping invalid TX pkt for connection: state=%d, pkt.hdr=%v", c.state, &p.hdr)
	}
}

// sendBytes forwards a data packet to the host stream, buffering what the
// stream does not take now.
func (c *conn) sendBytes(d *Device, p *txPacket) error {
	n := p.hdr.Len
	if !c.tx.empty() {
		// Already waiting for the stream to drain: keep the byte order.
		return c.tx.push(p.payload(0, n, nil))
	}
	written, err := c.write(p.payload(0, n, nil))
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		d.m.txWriteFails.Add(1)
		return err
	}
	c.fwdCnt += uint32(written)
	d.m.txBytesCount.Add(uint64(written))
	if uint32(written) < n {
		return c.tx.push(p.payload(uint32(written), n-uint32(written), nil))
	}
	return nil
}

// write writes iov to the host stream without waiting. MSG_NOSIGNAL keeps a
// hung-up peer from raising SIGPIPE: the error is enough.
func (c *conn) write(iov [][]byte) (int, error) {
	if len(iov) == 0 {
		return 0, nil
	}
	var n int
	var werr error
	err := c.rc.Write(func(fd uintptr) bool {
		for {
			n, werr = unix.SendmsgBuffers(int(fd), iov, nil, nil, unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT)
			if werr != unix.EINTR {
				return true
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if werr != nil {
		return 0, werr
	}
	return n, nil
}

// notifyIn records that the host stream is readable.
func (c *conn) notifyIn() { c.pending |= pendRW }

// notifyOut flushes the TX buffer once the stream is writable.
func (c *conn) notifyOut(d *Device) {
	if c.tx.empty() {
		d.m.connEventFails.Add(1)
		d.cfg.Log.Infof("vsock: connection received unexpected EPOLLOUT event")
		return
	}
	flushed, err := c.tx.flushTo(c)
	if err != nil {
		d.m.txFlushFails.Add(1)
		d.cfg.Log.Warnf("vsock: error flushing TX buf for (lp=%d, pp=%d): %v", c.key.local, c.key.peer, err)
		if !errors.Is(err, unix.EAGAIN) {
			c.kill()
		}
		flushed = 0
	}
	c.fwdCnt += uint32(flushed)
	d.m.txBytesCount.Add(uint64(flushed))
	if c.state == stPeerClosed && c.peerRecvOff && c.peerSendOff && c.tx.empty() {
		c.pending |= pendRst
	} else if c.peerNeedsCreditUpdate() {
		c.pending |= pendCreditUpdate
	}
}

// txBuf is a connection's ring of guest data the host stream has not taken
// yet. Flow control keeps it within ConnBufSize; a guest that sends beyond
// its credit overflows it and gets its connection reset. Its memory is
// allocated on first use.
type txBuf struct {
	data       []byte
	head, tail uint32 // free-running
}

var errTxBufFull = errors.New("Attempted to push data to a full TX buffer")

func (b *txBuf) len() uint32 { return b.head - b.tail }
func (b *txBuf) empty() bool { return b.head == b.tail }
func (b *txBuf) clear()      { *b = txBuf{} }

// push appends all of src or, if it does not fit, nothing.
func (b *txBuf) push(src [][]byte) error {
	var n uint64
	for _, s := range src {
		n += uint64(len(s))
	}
	if uint64(b.len())+n > ConnBufSize {
		return errTxBufFull
	}
	if b.data == nil {
		b.data = make([]byte, ConnBufSize)
	}
	for _, s := range src {
		for len(s) > 0 {
			off := b.head % ConnBufSize
			k := copy(b.data[off:], s)
			s = s[k:]
			b.head += uint32(k)
		}
	}
	return nil
}

// flushTo writes as much as the stream takes now and returns how much. A
// failure after some progress counts as the progress, as in Firecracker.
func (b *txBuf) flushTo(c *conn) (int, error) {
	total := 0
	for !b.empty() {
		off := b.tail % ConnBufSize
		chunk := b.data[off:min(ConnBufSize, off+b.len())]
		n, err := c.write([][]byte{chunk})
		b.tail += uint32(n)
		total += n
		if err != nil {
			if total > 0 {
				return total, nil
			}
			return 0, err
		}
		if n < len(chunk) {
			break
		}
	}
	return total, nil
}
