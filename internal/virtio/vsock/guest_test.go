package vsock

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/virtio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// This file is a small guest vsock driver speaking the packet protocol over
// the virtqueues, as Linux's virtio_transport does, for the tests.

const (
	testCID    = 3
	gMemSize   = 32 << 20
	gSlots     = 64
	gSlotData  = 4096
	gSlotSize  = HeaderSize + gSlotData
	gBufAlloc  = 256 << 10 // the guest's per-socket receive buffer
	gEvSlots   = 4
	gPollSleep = 20 * time.Microsecond
)

type gkey struct{ local, peer uint32 } // guest port, host port

type gsock struct {
	g   *guest
	key gkey

	// guarded by g.mu
	established, refused, reset bool
	peerShut                    uint32 // SHUTDOWN flags the host sent
	closed                      bool   // we sent SHUTDOWN
	rbuf                        []byte
	rcvd, fwdCnt, lastFwdSent   uint32
	peerBufAlloc, peerFwdCnt    uint32
	txCnt                       uint32
	ops                         []uint16 // ops received, in order
}

type outPkt struct {
	hdr  Header
	data []byte
}

type guest struct {
	t    testing.TB
	mem  *guestmem.Memory
	d    *Device
	tr   *vt.Transport
	rx   *vt.VQ
	tx   *vt.VQ
	ev   *vt.VQ
	qs   []*virtio.Queue
	feat uint64
	// split posts RX buffers as a header descriptor plus a data descriptor.
	split bool
	// noEv activates the device as a transport that keeps the event queue
	// does (WithoutEventQueue).
	noEv bool

	rxSlots, txSlots []uint64
	rxHead           map[uint16]int
	txHead           map[uint16]int
	txFree           []int
	evAddr           []uint64

	mu        sync.Mutex
	cond      *sync.Cond
	socks     map[gkey]*gsock
	listeners map[uint32]chan *gsock
	silent    map[uint32]bool // ports whose REQUESTs go unanswered
	out       []outPkt
	nextPort  uint32
	creditBad []string // credit violations by the device
	stray     []Header // packets for no socket
	stop      chan struct{}
	done      chan struct{}
}

func newGuest(t testing.TB, d *Device, split bool) *guest {
	t.Helper()
	return newGuestWith(t, d, split, false)
}

func newGuestWith(t testing.TB, d *Device, split, noEv bool) *guest {
	t.Helper()
	mem := vt.NewMemory(t, gMemSize)
	alloc := vt.NewAllocator(0x1000, gMemSize)
	g := &guest{
		t: t, mem: mem, d: d, tr: vt.NewTransport(), split: split, noEv: noEv,
		rx: vt.NewVQ(mem, alloc, 256), tx: vt.NewVQ(mem, alloc, 256), ev: vt.NewVQ(mem, alloc, 8),
		rxHead: map[uint16]int{}, txHead: map[uint16]int{},
		socks: map[gkey]*gsock{}, listeners: map[uint32]chan *gsock{}, silent: map[uint32]bool{},
		nextPort: 50000,
		stop:     make(chan struct{}), done: make(chan struct{}),
	}
	g.cond = sync.NewCond(&g.mu)
	for i := 0; i < gSlots; i++ {
		g.rxSlots = append(g.rxSlots, alloc.Alloc(gSlotSize, 64))
		g.txSlots = append(g.txSlots, alloc.Alloc(gSlotSize, 64))
		g.txFree = append(g.txFree, i)
	}
	for i := 0; i < gEvSlots; i++ {
		g.evAddr = append(g.evAddr, alloc.Alloc(8, 8))
	}
	g.feat = d.Features()
	g.activate()
	// Before the memory goes: stop the guest, then the device.
	t.Cleanup(func() { g.shutdown(); d.Reset() })
	return g
}

func (g *guest) activate() {
	g.t.Helper()
	g.qs = nil
	for _, vq := range []*vt.VQ{g.rx, g.tx, g.ev} {
		q := vq.Queue(virtio.MaxQueueSize)
		if err := q.Activate(g.mem, true); err != nil {
			g.t.Fatal(err)
		}
		g.qs = append(g.qs, q)
	}
	for i := range g.rxSlots {
		g.postRx(i)
	}
	for i := range g.evAddr {
		g.ev.Add(vt.Buf{Write: true, Len: 8, Addr: g.evAddr[i]})
	}
	var dev virtio.Device = g.d
	qs := g.qs
	if g.noEv {
		dev, qs = g.d.WithoutEventQueue(), g.qs[:2]
	}
	if err := dev.Activate(virtio.Activation{Mem: g.mem, Queues: qs, Features: g.feat, Transport: g.tr}); err != nil {
		g.t.Fatal(err)
	}
	g.d.Notify(RxQueue)
	go g.pump()
}

func (g *guest) shutdown() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
		<-g.done
	}
}

func (g *guest) postRx(i int) {
	addr := g.rxSlots[i]
	var head uint16
	if g.split {
		head = g.rx.Build(vt.Buf{Write: true, Len: HeaderSize, Addr: addr}, vt.Buf{Write: true, Len: gSlotData, Addr: addr + HeaderSize})
	} else {
		head = g.rx.Build(vt.Buf{Write: true, Len: gSlotSize, Addr: addr})
	}
	g.rxHead[head] = i
	g.rx.Publish(head)
}

// pump is the driver's interrupt handler and transmit path, polling.
func (g *guest) pump() {
	defer close(g.done)
	idle := 0
	for {
		select {
		case <-g.stop:
			return
		default:
		}
		busy := false
		if used := g.rx.TakeUsed(); len(used) > 0 {
			busy = true
			for _, u := range used {
				i, ok := g.rxHead[uint16(u.ID)]
				if !ok {
					g.t.Errorf("RX used element for unknown head %d", u.ID)
					continue
				}
				delete(g.rxHead, uint16(u.ID))
				if u.Len >= HeaderSize {
					b := g.rx.Read(g.rxSlots[i], int(u.Len))
					var h Header
					h.Unmarshal(b)
					g.receive(h, b[HeaderSize:])
				}
				g.postRx(i)
			}
			g.d.Notify(RxQueue)
		}
		for _, u := range g.tx.TakeUsed() {
			busy = true
			g.txFree = append(g.txFree, g.txHead[uint16(u.ID)])
			delete(g.txHead, uint16(u.ID))
		}
		g.mu.Lock()
		sent := false
		for len(g.out) > 0 && len(g.txFree) > 0 {
			p := g.out[0]
			g.out = g.out[1:]
			i := g.txFree[0]
			g.txFree = g.txFree[1:]
			var hb [HeaderSize]byte
			p.hdr.Marshal(hb[:])
			addr := g.txSlots[i]
			var head uint16
			if len(p.data) > 0 {
				head = g.tx.Build(vt.Buf{Data: hb[:], Addr: addr}, vt.Buf{Data: p.data, Addr: addr + HeaderSize})
			} else {
				head = g.tx.Build(vt.Buf{Data: hb[:], Addr: addr})
			}
			g.txHead[head] = i
			g.tx.Publish(head)
			sent = true
		}
		g.cond.Broadcast()
		g.mu.Unlock()
		if sent {
			busy = true
			g.d.Notify(TxQueue)
		}
		if busy {
			idle = 0
		} else {
			idle = min(idle+1, 6)
			time.Sleep(gPollSleep << idle)
		}
	}
}

// send queues a packet; callers hold g.mu.
func (g *guest) sendLocked(s *gsock, op uint16, flags uint32, data []byte) {
	h := Header{
		SrcCID: testCID, DstCID: HostCID, SrcPort: s.key.local, DstPort: s.key.peer,
		Len: uint32(len(data)), Type: TypeStream, Op: op, Flags: flags,
		BufAlloc: gBufAlloc, FwdCnt: s.fwdCnt,
	}
	s.lastFwdSent = s.fwdCnt
	g.out = append(g.out, outPkt{h, data})
}

// sendRaw queues an arbitrary packet.
func (g *guest) sendRaw(h Header, data []byte) {
	g.mu.Lock()
	g.out = append(g.out, outPkt{h, data})
	g.mu.Unlock()
}

func (g *guest) receive(h Header, data []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer g.cond.Broadcast()
	if h.DstCID != testCID || h.SrcCID != HostCID || h.Type != TypeStream {
		g.t.Errorf("packet with bad addressing: %v", &h)
	}
	if int(h.Len) != len(data) {
		g.t.Errorf("packet len %d but %d bytes used", h.Len, len(data))
	}
	key := gkey{h.DstPort, h.SrcPort}
	s := g.socks[key]
	if s == nil {
		if h.Op == OpRequest {
			if l, ok := g.listeners[h.DstPort]; ok {
				s = &gsock{g: g, key: key, established: true, peerBufAlloc: h.BufAlloc, peerFwdCnt: h.FwdCnt}
				s.ops = append(s.ops, h.Op)
				g.socks[key] = s
				g.sendLocked(s, OpResponse, 0, nil)
				select {
				case l <- s:
				default:
					g.t.Errorf("listener %d backlog full", h.DstPort)
				}
				return
			}
			if g.silent[h.DstPort] {
				g.stray = append(g.stray, h)
				return
			}
			g.out = append(g.out, outPkt{Header{SrcCID: testCID, DstCID: HostCID, SrcPort: h.DstPort, DstPort: h.SrcPort, Type: TypeStream, Op: OpRst}, nil})
			g.stray = append(g.stray, h)
			return
		}
		g.stray = append(g.stray, h)
		return
	}
	s.ops = append(s.ops, h.Op)
	s.peerBufAlloc, s.peerFwdCnt = h.BufAlloc, h.FwdCnt
	switch h.Op {
	case OpResponse:
		s.established = true
	case OpRW:
		if s.rcvd+h.Len-s.fwdCnt > gBufAlloc {
			g.creditBad = append(g.creditBad, fmt.Sprintf("%v: %d bytes unread + %d new > %d", s.key, s.rcvd-s.fwdCnt, h.Len, gBufAlloc))
		}
		s.rbuf = append(s.rbuf, data...)
		s.rcvd += h.Len
	case OpShutdown:
		s.peerShut |= h.Flags
		if s.peerShut == ShutdownRcv|ShutdownSend {
			g.sendLocked(s, OpRst, 0, nil)
		}
	case OpRst:
		if !s.established {
			s.refused = true
		}
		s.reset = true
		delete(g.socks, key)
	case OpCreditRequest:
		g.sendLocked(s, OpCreditUpdate, 0, nil)
	case OpCreditUpdate:
	default:
		g.t.Errorf("unexpected op %d", h.Op)
	}
}

func (g *guest) listen(port uint32) chan *gsock {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := make(chan *gsock, 128)
	g.listeners[port] = l
	return l
}

func (g *guest) accept(l chan *gsock) *gsock {
	g.t.Helper()
	select {
	case s := <-l:
		return s
	case <-time.After(10 * time.Second):
		g.t.Fatal("timed out accepting a guest connection")
		return nil
	}
}

// acceptPort returns the accepted socket for guest port port and host port
// hp, when several are accepted at once.
func (g *guest) acceptPort(port, hp uint32) *gsock {
	g.mu.Lock()
	defer g.mu.Unlock()
	var s *gsock
	if !g.waitLocked(func() bool { s = g.socks[gkey{port, hp}]; return s != nil }) {
		g.t.Errorf("no guest socket for %d<-%d", port, hp)
	}
	return s
}

var errRefused = errors.New("connection refused (RST)")

// connect opens a guest connection to host port port.
func (g *guest) connect(port uint32) (*gsock, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.nextPort++
	s := &gsock{g: g, key: gkey{g.nextPort, port}}
	g.socks[s.key] = s
	g.sendLocked(s, OpRequest, 0, nil)
	if !g.waitLocked(func() bool { return s.established || s.reset }) {
		return nil, errors.New("timed out connecting")
	}
	if s.reset {
		return nil, errRefused
	}
	return s, nil
}

// waitLocked waits for cond under g.mu, for at most 20 s.
func (g *guest) waitLocked(cond func() bool) bool {
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		// The pump broadcasts on every pass; no wake-up is lost.
		g.cond.Wait()
	}
	return true
}

// Write sends p, respecting the host's credit.
func (s *gsock) Write(p []byte) (int, error) {
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for n < len(p) {
		var credit uint32
		if !g.waitLocked(func() bool {
			credit = s.peerBufAlloc - (s.txCnt - s.peerFwdCnt)
			return s.reset || (credit > 0 && len(g.out) < 2*gSlots)
		}) {
			return n, errors.New("timed out waiting for credit")
		}
		if s.reset {
			return n, errors.New("connection reset")
		}
		k := min(len(p)-n, gSlotData, int(credit))
		g.sendLocked(s, OpRW, 0, append([]byte(nil), p[n:n+k]...))
		s.txCnt += uint32(k)
		n += k
	}
	return n, nil
}

// Read reads what has arrived, io.EOF after the host's shutdown.
func (s *gsock) Read(p []byte) (int, error) {
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.waitLocked(func() bool { return len(s.rbuf) > 0 || s.reset || s.peerShut&ShutdownSend != 0 }) {
		return 0, errors.New("timed out reading")
	}
	if len(s.rbuf) == 0 {
		if s.peerShut&ShutdownSend != 0 || s.reset {
			return 0, io.EOF
		}
	}
	n := copy(p, s.rbuf)
	s.rbuf = s.rbuf[n:]
	s.fwdCnt += uint32(n)
	if s.fwdCnt-s.lastFwdSent >= 16<<10 && !s.reset {
		g.sendLocked(s, OpCreditUpdate, 0, nil)
	}
	return n, nil
}

// Close shuts the connection down both ways, as close(2) does.
func (s *gsock) Close() error {
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.closed || s.reset {
		return nil
	}
	s.closed = true
	g.sendLocked(s, OpShutdown, ShutdownRcv|ShutdownSend, nil)
	return nil
}

// opsSeen returns the ops the socket received.
func (s *gsock) opsSeen() []uint16 {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	return append([]uint16(nil), s.ops...)
}

func (s *gsock) isReset() bool {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	return s.reset
}

// resumeQueues returns queues that continue where the device's queues in
// g.qs stopped, as a vhost-user front-end restarting them would give.
func (g *guest) resumeQueues() virtio.Activation {
	g.t.Helper()
	return g.queues(true)
}

// idleQueues returns queues on g's rings at their start, for a call that
// must fail before it looks at them: reading the running device's positions
// would race with its worker.
func (g *guest) idleQueues() virtio.Activation {
	g.t.Helper()
	return g.queues(false)
}

func (g *guest) queues(resume bool) virtio.Activation {
	g.t.Helper()
	var qs []*virtio.Queue
	for i, vq := range []*vt.VQ{g.rx, g.tx, g.ev} {
		if g.noEv && i == EvQueue {
			break
		}
		q := vq.Queue(virtio.MaxQueueSize)
		if err := q.Activate(g.mem, true); err != nil {
			g.t.Fatal(err)
		}
		if resume {
			q.SetPosition(g.qs[i].Position())
		}
		qs = append(qs, q)
	}
	return virtio.Activation{Mem: g.mem, Queues: qs, Features: g.feat, Transport: g.tr}
}
