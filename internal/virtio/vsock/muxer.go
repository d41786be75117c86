package vsock

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Muxer limits, as Firecracker's.
const (
	// MaxConnections bounds the live connections.
	MaxConnections = 1023
	// LocalPortFirst is the first host port given to a host-initiated
	// connection; ports go round-robin through [2^30, 2^31).
	LocalPortFirst = 1 << 30
	muxerRxQSize   = 256
	killQSize      = 128
	// connectLineMax bounds the CONNECT line read from a host stream.
	connectLineMax = 32
	connectLineMin = len("connect 0\n")
)

// ErrInvalidPortRequest is the error for a CONNECT line Firecracker would
// refuse.
var ErrInvalidPortRequest = errors.New("The host made an invalid vsock port connection request.")

// rxItem is an entry of the muxer's RX queue: a connection with something
// to say, or an RST the muxer owes the guest for a packet it could not
// route.
type rxItem struct {
	rst bool
	key connKey
}

// rxQueue orders what the guest hears next. When it overflows it loses
// sync with the connections and is rebuilt from them once drained.
type rxQueue struct {
	q      []rxItem
	synced bool
}

func newRxQueue() rxQueue { return rxQueue{synced: true} }

func (r *rxQueue) push(it rxItem) bool {
	if r.synced && len(r.q) < muxerRxQSize {
		r.q = append(r.q, it)
		return true
	}
	if it.rst {
		// An RST has no other home: evict the newest connection entry (it
		// can be found again by a rebuild).
		for i := len(r.q) - 1; i >= 0; i-- {
			if !r.q[i].rst {
				r.q[i] = it
				r.synced = false
				return true
			}
		}
		return false
	}
	r.synced = false
	return false
}

// killQueue holds connections whose kill timer runs, oldest first; like
// rxQueue it may lose sync and is rebuilt when drained.
type killQueue struct {
	q      []killItem
	synced bool
}

type killItem struct {
	key connKey
	at  time.Time
}

func newKillQueue() killQueue { return killQueue{synced: true} }

func (k *killQueue) push(key connKey, at time.Time) {
	if !k.synced || len(k.q) >= killQSize {
		k.synced = false
		return
	}
	k.q = append(k.q, killItem{key, at})
}

func (k *killQueue) pop(now time.Time) (connKey, bool) {
	if len(k.q) > 0 && now.After(k.q[0].at) {
		it := k.q[0]
		k.q = k.q[1:]
		return it.key, true
	}
	return connKey{}, false
}

// muxer routes packets between the guest and host streams. It belongs to
// the device's worker goroutine; only count is read elsewhere.
type muxer struct {
	d      *Device
	a      *active
	conns  map[connKey]*conn
	count  atomic.Int32
	rxq    rxQueue
	killq  killQueue
	ports  map[uint32]struct{}
	lastLP uint32
}

func newMuxer(d *Device, a *active) *muxer {
	return &muxer{
		d: d, a: a,
		conns: map[connKey]*conn{},
		rxq:   newRxQueue(), killq: newKillQueue(),
		ports:  map[uint32]struct{}{},
		lastLP: LocalPortFirst - 1,
	}
}

func (m *muxer) hasPendingRx() bool { return len(m.rxq.q) > 0 || !m.rxq.synced }

// recvPkt fills p with the next packet for the guest, or returns false.
func (m *muxer) recvPkt(p *rxPacket) bool {
	if len(m.rxq.q) == 0 && !m.rxq.synced {
		m.rebuildRxq()
	}
	for len(m.rxq.q) > 0 {
		it := m.rxq.q[0]
		if it.rst {
			p.hdr = Header{
				Op: OpRst, SrcCID: HostCID, DstCID: m.d.cfg.GuestCID,
				SrcPort: it.key.local, DstPort: it.key.peer, Type: TypeStream,
			}
			m.rxq.q = m.rxq.q[1:]
			return true
		}
		ok, pop := false, true
		m.mutate(it.key, func(c *conn) {
			ok = c.recvPkt(m.d, p)
			pop = !c.hasPendingRx()
		})
		if pop {
			m.rxq.q = m.rxq.q[1:]
		}
		if ok {
			if p.hdr.Op == OpRst {
				m.removeConn(connKey{p.hdr.SrcPort, p.hdr.DstPort})
			}
			m.d.cfg.Log.Debugf("vsock muxer: RX pkt: %v", &p.hdr)
			return true
		}
	}
	return false
}

func (m *muxer) rebuildRxq() {
	m.rxq = newRxQueue()
	for key, c := range m.conns {
		if !c.hasPendingRx() {
			continue
		}
		if len(m.rxq.q) >= muxerRxQSize {
			m.rxq.synced = false
			break
		}
		m.rxq.q = append(m.rxq.q, rxItem{key: key})
	}
}

// sendPkt takes a packet from the guest. Packets are always consumed.
func (m *muxer) sendPkt(p *txPacket) {
	key := connKey{local: p.hdr.DstPort, peer: p.hdr.SrcPort}
	m.d.cfg.Log.Debugf("vsock: muxer.send[rxq.len=%d]: %v", len(m.rxq.q), &p.hdr)
	if p.hdr.Type != TypeStream {
		m.enqRst(key)
		return
	}
	if p.hdr.DstCID != HostCID {
		m.d.cfg.Log.Infof("vsock: dropping guest packet for unknown CID: %v", &p.hdr)
		return
	}
	if _, ok := m.conns[key]; !ok {
		if p.hdr.Op == OpRequest {
			m.peerRequest(p)
		} else {
			m.enqRst(key)
		}
		return
	}
	if p.hdr.Op == OpRst {
		m.removeConn(key)
		return
	}
	m.mutate(key, func(c *conn) { c.sendPkt(m.d, p) })
}

func (m *muxer) enqRst(key connKey) {
	if !m.rxq.push(rxItem{rst: true, key: key}) {
		m.d.cfg.Log.Warnf("vsock: muxer.rxq full; dropping RST packet for lp=%d, pp=%d", key.local, key.peer)
	}
}

// peerRequest connects a guest's REQUEST to the host socket <uds_path>_<port>.
// Connecting a Unix socket never waits: a listener with a full backlog
// refuses, and the guest gets an RST as for no listener at all.
func (m *muxer) peerRequest(p *txPacket) {
	key := connKey{local: p.hdr.DstPort, peer: p.hdr.SrcPort}
	path := m.d.hostPath(fmt.Sprintf("%s_%d", m.d.cfg.UDSPath, p.hdr.DstPort))
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err == nil {
		var c *conn
		if c, err = newConn(uc, key, m.d.cfg.GuestCID, stPeerInit); err == nil {
			c.peerBufAlloc = p.hdr.BufAlloc
			err = m.addConn(c)
		}
		if err != nil {
			uc.Close()
		}
	}
	if err != nil {
		m.d.cfg.Log.Debugf("vsock: guest connection to port %d refused: %v", p.hdr.DstPort, err)
		m.enqRst(key)
	}
}

var errTooManyConnections = errors.New("Muxer connection limit reached.")

func (m *muxer) addConn(c *conn) error {
	m.sweepKillq()
	if len(m.conns) >= MaxConnections {
		m.d.cfg.Log.Infof("vsock: muxer connection limit reached (%d)", MaxConnections)
		return errTooManyConnections
	}
	if c.hasPendingRx() {
		m.rxq.push(rxItem{key: c.key})
	}
	m.conns[c.key] = c
	m.count.Store(int32(len(m.conns)))
	m.d.m.connsAdded.Add(1)
	m.a.startWaiters(c)
	m.arm(c)
	return nil
}

func (m *muxer) removeConn(key connKey) {
	if c, ok := m.conns[key]; ok {
		delete(m.conns, key)
		m.count.Store(int32(len(m.conns)))
		c.close()
		m.d.m.connsRemoved.Add(1)
	}
	delete(m.ports, key.local)
}

func (m *muxer) killConn(key connKey) {
	m.d.m.connsKilled.Add(1)
	hadRx := false
	if c, ok := m.conns[key]; ok {
		hadRx = c.hasPendingRx()
		c.kill()
	}
	if !hadRx {
		m.rxq.push(rxItem{key: key})
	}
}

func (m *muxer) allocLocalPort() uint32 {
	for {
		m.lastLP = (m.lastLP+1)&^(1<<31) | 1<<30
		if _, used := m.ports[m.lastLP]; !used {
			m.ports[m.lastLP] = struct{}{}
			return m.lastLP
		}
	}
}

// localConnect adds a host-initiated connection whose CONNECT line asked for
// the guest's port peer.
func (m *muxer) localConnect(uc *net.UnixConn, peer uint32) {
	key := connKey{local: m.allocLocalPort(), peer: peer}
	c, err := newConn(uc, key, m.d.cfg.GuestCID, stLocalInit)
	if err == nil {
		err = m.addConn(c)
	}
	if err != nil {
		// The port stays taken, as in Firecracker, until the next reset.
		m.d.cfg.Log.Infof("vsock: error adding local-init connection: %v", err)
		uc.Close()
	}
}

// mutate applies f to a connection and then does the bookkeeping any state
// change needs: the OK line for a newly established host-initiated
// connection, RX and kill scheduling, and the events to wait for.
func (m *muxer) mutate(key connKey, f func(c *conn)) {
	c, ok := m.conns[key]
	if !ok {
		return
	}
	now := time.Now()
	hadRx, wasExpiring, prev := c.hasPendingRx(), c.willExpire(now), c.state
	f(c)
	if prev == stLocalInit && c.state == stEstablished {
		msg := fmt.Appendf(nil, "OK %d\n", key.local)
		n, err := c.write([][]byte{msg})
		switch {
		case err != nil:
			c.kill()
			m.d.cfg.Log.Warnf("vsock: unable to ack host connection: %v", err)
		case n != len(msg):
			c.kill()
			m.d.cfg.Log.Warnf("vsock: unable to fully write connection ack msg.")
		}
	}
	if !hadRx && c.hasPendingRx() {
		m.rxq.push(rxItem{key: key})
	}
	if !wasExpiring && c.willExpire(time.Now()) {
		m.killq.push(key, c.expiry)
	}
	m.arm(c)
}

// arm asks the connection's waiters for the events it now needs.
func (m *muxer) arm(c *conn) {
	if c.closed {
		return
	}
	if c.wantsIn() && !c.inArmed {
		c.inArmed = true
		c.wantIn <- struct{}{}
	}
	if c.wantsOut() && !c.outArmed {
		c.outArmed = true
		c.wantOut <- struct{}{}
	}
}

// connEvent handles a waiter's report that c's stream is readable (out
// false) or writable.
func (m *muxer) connEvent(c *conn, out bool) {
	if c.closed || m.conns[c.key] != c {
		return
	}
	if out {
		c.outArmed = false
		if !c.wantsOut() {
			m.arm(c)
			return
		}
		m.mutate(c.key, func(c *conn) { c.notifyOut(m.d) })
		return
	}
	c.inArmed = false
	if !c.wantsIn() {
		// No longer wanted (out of credit, or closing): forget it; the stream
		// is looked at again when the connection wants it.
		m.arm(c)
		return
	}
	m.mutate(c.key, func(c *conn) { c.notifyIn() })
}

// sweepKillq kills the connections whose timers ran out. Like Firecracker,
// the muxer sweeps when it adds a connection.
func (m *muxer) sweepKillq() {
	for {
		now := time.Now()
		for {
			key, ok := m.killq.pop(now)
			if !ok {
				break
			}
			if c, ok := m.conns[key]; ok && c.hasExpired(now) {
				m.killConn(key)
				m.arm(c)
			}
		}
		if len(m.killq.q) > 0 || m.killq.synced {
			return
		}
		m.killq = newKillQueue()
		for key, c := range m.conns {
			if !c.willExpire(now) {
				continue
			}
			if len(m.killq.q) >= killQSize {
				m.killq.synced = false
				break
			}
			m.killq.q = append(m.killq.q, killItem{key, c.expiry})
		}
		sort.Slice(m.killq.q, func(i, j int) bool { return m.killq.q[i].at.Before(m.killq.q[j].at) })
		m.d.m.killqResync.Add(1)
	}
}

// closeAll drops every connection (device reset).
func (m *muxer) closeAll() {
	for key := range m.conns {
		m.removeConn(key)
	}
	m.ports = map[uint32]struct{}{}
	m.lastLP = LocalPortFirst - 1
	m.rxq, m.killq = newRxQueue(), newKillQueue()
}

func (c *conn) close() {
	if c.closed {
		return
	}
	c.closed = true
	close(c.quit)
	c.uc.Close()
}

// startWaiters starts the goroutines that wait, through Go's poller, for
// c's stream to become readable or writable whenever the worker arms them.
func (a *active) startWaiters(c *conn) {
	for _, out := range []bool{false, true} {
		want := c.wantIn
		if out {
			want = c.wantOut
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for {
				select {
				case <-c.quit:
					return
				case <-want:
				}
				if err := waitReady(c.rc, out); err != nil {
					select {
					case <-c.quit:
						return
					default:
					}
					// Not closed by us: report it, so the read or write
					// that follows meets the error.
				}
				a.post(event{conn: c, out: out})
			}
		}()
	}
}

// waitReady blocks until the socket is readable (or at EOF, or in error),
// or writable when out is set.
func waitReady(rc syscall.RawConn, out bool) error {
	if out {
		return rc.Write(func(fd uintptr) bool {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			n, err := unix.Poll(fds, 0)
			return err != nil || n > 0
		})
	}
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		for {
			_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if err != unix.EINTR {
				return err != unix.EAGAIN
			}
		}
	})
}

// readConnect reads a host stream's CONNECT line the way Firecracker does:
// once the stream is readable, the first 10 bytes and then one byte at a
// time up to a newline or 32 bytes, none of it waiting. A line still
// incomplete at that point is refused, as is one that does not parse.
func readConnect(uc *net.UnixConn) (uint32, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	if err := waitReady(rc, false); err != nil {
		return 0, err
	}
	var buf [connectLineMax]byte
	n := 0
	fill := func(to int) error {
		for n < to {
			var k int
			var rerr error
			if err := rc.Read(func(fd uintptr) bool {
				k, rerr = unix.Read(int(fd), buf[n:to])
				return true
			}); err != nil {
				return err
			}
			switch {
			case rerr == unix.EINTR:
				continue
			case rerr != nil:
				return rerr
			case k == 0:
				return io.ErrUnexpectedEOF
			}
			n += k
		}
		return nil
	}
	if err := fill(connectLineMin); err != nil {
		return 0, err
	}
	for buf[n-1] != '\n' && n < len(buf) {
		if err := fill(n + 1); err != nil {
			return 0, err
		}
	}
	return ParseConnect(buf[:n])
}

// ParseConnect parses a CONNECT line as Firecracker does: valid UTF-8,
// whitespace-separated words, the first "connect" in any case, the second a
// decimal u32 (a leading '+' allowed), anything after ignored.
func ParseConnect(line []byte) (uint32, error) {
	if !utf8.Valid(line) {
		return 0, ErrInvalidPortRequest
	}
	w := strings.Fields(string(line))
	if len(w) < 2 || strings.ToLower(w[0]) != "connect" {
		return 0, ErrInvalidPortRequest
	}
	s := strings.TrimPrefix(w[1], "+")
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, ErrInvalidPortRequest
	}
	port, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, ErrInvalidPortRequest
	}
	return uint32(port), nil
}

// event is something for the worker from another goroutine: a stream
// ready for a connection, a new host stream with its CONNECT port, or a
// call to run on the worker.
type event struct {
	conn *conn
	out  bool

	stream *net.UnixConn
	port   uint32

	call func()
}

// events is the worker's inbox.
type events struct {
	mu sync.Mutex
	q  []event
}

func (e *events) take() []event {
	e.mu.Lock()
	defer e.mu.Unlock()
	q := e.q
	e.q = nil
	return q
}
