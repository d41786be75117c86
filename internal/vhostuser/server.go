// Package vhostuser serves an ember virtio device model to QEMU over the
// vhost-user protocol (QEMU's docs/interop/vhost-user.rst), so that the
// qemu backend runs the same device models as the kvm backend: QEMU keeps
// the virtio transport, ember runs the queues.
//
// The server maps the front-end's guest memory (memfd regions passed with
// SET_MEM_TABLE) outside the Go heap and gives the device a virtio.Memory
// addressed by guest-physical address; the vring addresses SET_VRING_ADDR
// carries are the front-end's virtual addresses and are translated to
// guest-physical ones before the device sees them. Each kick eventfd is
// read on its own goroutine through Go's poller and becomes dev.Notify;
// each call eventfd is the queue's virtio.Interrupt.
//
// Activation: with the STATUS protocol feature the device is activated
// when the front-end sets DRIVER_OK and reset when it clears it; without,
// it is activated once every queue is started, or at the first kick. A
// started queue has its size, addresses and kick eventfd. GET_VRING_BASE
// (or clearing DRIVER_OK, RESET_OWNER, RESET_DEVICE) resets the whole
// device, as virtio.Device only stops as a whole, and records where each
// queue stopped. A device that implements Suspender is suspended instead
// by GET_VRING_BASE and by clearing DRIVER_OK (QEMU stops the queues so
// whenever the VM pauses), and resumed if its queues start again exactly
// where they stopped; any other restart resets it first.
//
// Invariants: every message is size- and fd-checked before use, and every
// file descriptor received is either owned by the server or closed; a
// malformed message, an unknown request or a protocol violation the
// front-end cannot be told about ends Serve with an error, never a panic.
// When Serve returns, the device is reset, every eventfd is closed and
// guest memory is unmapped.
//
// Queue sizes up to MaxQueueSize are accepted whatever the device model's
// own maximum, since the front-end's transport decides what the driver
// sees.
//
// Migration: VHOST_F_LOG_ALL is offered so that QEMU will migrate the VM,
// but no dirty log is kept (see FeatureLogAll for why none is needed).
//
// Limits: IOTLB, inflight tracking and memory slots are not offered.
package vhostuser

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/virtio"
)

// MaxQueueSize is the largest queue a front-end may set up. The front-end
// owns the transport, and with it the size the driver sees: QEMU's
// virtio-mmio offers every driver QEMU's maximum, 1024, whatever the
// device model's own maximum (virtio.MaxQueueSize). Queue.Activate still
// checks the size is a power of two and the rings lie in guest RAM.
const MaxQueueSize = 1024

// Options tune a Server.
type Options struct {
	Log logger.Log
	// QueueNum is GET_QUEUE_NUM's answer (queue pairs for net devices);
	// 0 means the device's number of queues.
	QueueNum uint64
	// Withhold are protocol features (1<<ProtoStatus, ...) not to offer.
	// QEMU 7.2's vhost-user-vsock-device and vhost-user-rng negotiate
	// STATUS but never set DRIVER_OK (they only send FEATURES_OK), which
	// would leave the device waiting forever: without STATUS it runs once
	// its queues start or at the first kick. A device without a config
	// space need not offer CONFIG (QEMU warns about it on vhost-user-rng).
	Withhold uint64
}

// protocolOffered is GET_PROTOCOL_FEATURES' answer.
func (s *Server) protocolOffered() uint64 {
	return offeredProtocol &^ s.opts.Withhold
}

// ring is the front-end's configuration of one queue.
type ring struct {
	num               uint32
	desc, avail, used uint64 // guest-physical
	addrSet           bool
	base              uint16 // where the queue starts, or stopped
	kick              *kicker
	started           bool // SET_VRING_KICK seen since the last stop
	enabled           bool
	call              *callFd // one per queue for the server's life
}

// Server serves one device over vhost-user, one connection at a time.
type Server struct {
	dev      virtio.Device
	opts     Options
	log      logger.Log
	maxSizes []uint16
	offered  uint64

	serving atomic.Bool

	mu       sync.Mutex // everything below, and the message loop's state
	features uint64
	protocol uint64
	status   uint32
	// What the front-end last acknowledged, kept after the connection.
	lastFeatures, lastProtocol uint64
	mem                        *Memory
	rings                      []ring
	queues                     []*virtio.Queue // the active queues, nil when inactive
	gen                        uint64          // counts activations
	active                     atomic.Bool
	// suspended: a Suspender was suspended when the front-end stopped its
	// queues; held is how they were.
	suspended bool
	held      []heldRing

	configMu sync.Mutex // serialises config space reads with ChangeConfig

	backendMu sync.Mutex
	backend   *net.UnixConn // the backend-request channel, or nil
}

// NewServer returns a server for dev.
func NewServer(dev virtio.Device, opts Options) *Server {
	s := &Server{dev: dev, opts: opts, log: opts.Log, maxSizes: dev.QueueMaxSizes()}
	s.offered = dev.Features() | transportFeatures
	s.rings = make([]ring, len(s.maxSizes))
	for i := range s.rings {
		s.rings[i].call = &callFd{fd: -1}
	}
	return s
}

// Serve runs the protocol on conn until the front-end hangs up (nil), ctx
// ends (ctx.Err()) or a message is refused (an error wrapping
// ErrMalformed, ErrUnknownRequest, ErrProtocol or ErrUnsupported). It
// closes conn and leaves the device reset and all resources released.
func Serve(ctx context.Context, conn *net.UnixConn, dev virtio.Device, opts Options) error {
	return NewServer(dev, opts).Serve(ctx, conn)
}

// ErrBusy is returned by Serve while another connection is being served.
var ErrBusy = errors.New("vhost-user: server already has a connection")

// Serve serves one connection; see the package function Serve.
func (s *Server) Serve(ctx context.Context, conn *net.UnixConn) error {
	if !s.serving.CompareAndSwap(false, true) {
		conn.Close()
		return ErrBusy
	}
	defer s.serving.Store(false)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	defer s.teardown()

	mc := newMsgConn(conn)
	for {
		h, body, fds, err := mc.read()
		if err == nil {
			err = s.handle(mc, h, body, fds)
		} else {
			closeFds(fds)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			s.log.Errorf("vhost-user: %v", err)
			return err
		}
	}
}

// handle decodes and executes one request; fds are consumed.
func (s *Server) handle(mc *msgConn, h header, body []byte, fds []int) error {
	defer closeFds(fds)
	m, err := decode(h, body, len(fds))
	if err != nil {
		return err
	}
	s.log.Debugf("vhost-user: %v flags %#x size %d fds %d", h.Request, h.Flags, h.Size, len(fds))
	s.mu.Lock()
	reply, err := s.exec(m, fds)
	ack := h.needReply() && s.protocol&(1<<ProtoReplyAck) != 0
	s.mu.Unlock()
	if reply != nil {
		if err != nil {
			return err
		}
		return mc.write(encodeReply(h.Request, reply))
	}
	if ack {
		code := uint64(0)
		if err != nil {
			s.log.Errorf("vhost-user: %v failed: %v", h.Request, err)
			code = 1
		}
		if werr := mc.write(encodeReply(h.Request, u64Body(code))); werr != nil {
			return werr
		}
		if err != nil && errors.Is(err, ErrMalformed) {
			return err
		}
		return nil
	}
	return err
}

// exec runs a decoded request under s.mu. A non-nil reply is the request's
// own answer. fds entries it keeps are set to -1.
func (s *Server) exec(m message, fds []int) (reply []byte, err error) {
	switch m.Request {
	case ReqGetFeatures:
		return u64Body(s.offered), nil
	case ReqSetFeatures:
		if m.U64&^s.offered != 0 {
			return nil, fmt.Errorf("%w: features %#x were not offered (%#x)", ErrProtocol, m.U64, s.offered)
		}
		// QEMU turns logging on and off on a running device.
		if s.active.Load() && (m.U64^s.features)&^virtio.Bit(FeatureLogAll) != 0 {
			return nil, fmt.Errorf("%w: changing features %#x to %#x on an active device", ErrUnsupported, s.features, m.U64)
		}
		s.features, s.lastFeatures = m.U64, m.U64
		if m.U64&virtio.Bit(FeatureProtocolFeatures) == 0 {
			// Without protocol features, rings are enabled from the start.
			for i := range s.rings {
				s.rings[i].enabled = true
			}
		}
		return nil, nil
	case ReqGetProtocolFeatures:
		return u64Body(s.protocolOffered()), nil
	case ReqSetProtocolFeatures:
		if m.U64&^s.protocolOffered() != 0 {
			return nil, fmt.Errorf("%w: protocol features %#x were not offered (%#x)", ErrProtocol, m.U64, s.protocolOffered())
		}
		s.protocol, s.lastProtocol = m.U64, m.U64
		return nil, nil
	case ReqGetQueueNum:
		n := s.opts.QueueNum
		if n == 0 {
			n = uint64(len(s.rings))
		}
		return u64Body(n), nil
	case ReqSetOwner:
		return nil, nil
	case ReqResetOwner, ReqResetDevice:
		s.reset()
		s.resetRings()
		s.features, s.status = 0, 0
		return nil, nil
	case ReqSetMemTable:
		return nil, s.setMemTable(m, fds)
	case ReqSetLogBase:
		// See FeatureLogAll: nothing is logged, so the log is not mapped
		// (handle closes its fd). The front-end waits for this reply.
		s.log.Debugf("vhost-user: dirty log of %d bytes offered; guest RAM is shared, nothing to log", m.U64)
		return u64Body(0), nil
	case ReqSetVringNum, ReqSetVringBase, ReqSetVringAddr:
		return nil, s.setVring(m)
	case ReqGetVringBase:
		i, err := s.ringIndex(m.State[0])
		if err != nil {
			return stateBody(m.State[0], 0), err
		}
		if s.active.Load() {
			s.stop()
			for j := range s.rings {
				s.stopRing(j)
			}
		}
		s.stopRing(i)
		return stateBody(m.State[0], uint32(s.rings[i].base)), nil
	case ReqSetVringKick:
		i, err := s.ringIndex(uint32(m.U64 & vringIndexMask))
		if err != nil {
			return nil, err
		}
		r := &s.rings[i]
		r.kick.stop()
		r.kick = nil
		if m.U64&vringNoFd == 0 {
			fd := fds[0]
			fds[0] = -1
			if r.kick, err = startKicker(fd, func() { s.kicked(i) }); err != nil {
				return nil, fmt.Errorf("vhost-user: kick eventfd for queue %d: %w", i, err)
			}
		}
		// Polling without a kick fd is allowed by the protocol; ember's
		// devices only work on notifications, so such a queue starts but
		// sees only the notification given at activation.
		r.started = true
		return nil, s.maybeActivate(false)
	case ReqSetVringCall:
		i, err := s.ringIndex(uint32(m.U64 & vringIndexMask))
		if err != nil {
			return nil, err
		}
		fd := -1
		if m.U64&vringNoFd == 0 {
			fd, fds[0] = fds[0], -1
		}
		s.rings[i].call.set(fd)
		if s.active.Load() {
			// The queue may have used buffers whose interrupt went to the
			// old eventfd or nowhere; a spurious interrupt is harmless.
			s.rings[i].call.Signal()
		}
		return nil, nil
	case ReqSetVringErr:
		if _, err := s.ringIndex(uint32(m.U64 & vringIndexMask)); err != nil {
			return nil, err
		}
		return nil, nil // ember never reports ring errors; the fd is closed
	case ReqSetVringEnable:
		i, err := s.ringIndex(m.State[0])
		if err != nil {
			return nil, err
		}
		if m.State[1] > 1 {
			return nil, fmt.Errorf("%w: SET_VRING_ENABLE %d", ErrProtocol, m.State[1])
		}
		s.rings[i].enabled = m.State[1] == 1
		return nil, s.maybeActivate(false)
	case ReqSetBackendReqFd:
		fd := fds[0]
		fds[0] = -1
		f := os.NewFile(uintptr(fd), "vhost-user-backend")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: backend-request channel: %v", ErrProtocol, err)
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			return nil, fmt.Errorf("%w: backend-request channel is not a unix socket", ErrProtocol)
		}
		s.backendMu.Lock()
		old := s.backend
		s.backend = uc
		s.backendMu.Unlock()
		if old != nil {
			old.Close()
		}
		return nil, nil
	case ReqGetConfig:
		if s.protocol&(1<<ProtoConfig) == 0 {
			return configBody(m.Config, nil), fmt.Errorf("%w: GET_CONFIG without the CONFIG protocol feature", ErrProtocol)
		}
		data := make([]byte, m.Config.Size)
		s.configMu.Lock()
		s.dev.ReadConfig(uint64(m.Config.Offset), data)
		s.configMu.Unlock()
		return configBody(m.Config, data), nil
	case ReqSetConfig:
		if s.protocol&(1<<ProtoConfig) == 0 {
			return nil, fmt.Errorf("%w: SET_CONFIG without the CONFIG protocol feature", ErrProtocol)
		}
		s.configMu.Lock()
		s.dev.WriteConfig(uint64(m.Config.Offset), m.Config.Data)
		s.configMu.Unlock()
		return nil, nil
	case ReqGetStatus:
		return u64Body(uint64(s.status)), nil
	case ReqSetStatus:
		if m.U64 > 0xff {
			return nil, fmt.Errorf("%w: status %#x", ErrProtocol, m.U64)
		}
		s.status = uint32(m.U64)
		if s.status&virtio.StatusDriverOK == 0 {
			s.stop()
			return nil, nil
		}
		return nil, s.maybeActivate(true)
	}
	return nil, fmt.Errorf("%w: %v", ErrUnknownRequest, m.Request)
}

func (s *Server) ringIndex(i uint32) (int, error) {
	if int(i) >= len(s.rings) {
		return 0, fmt.Errorf("%w: queue %d of a device with %d queues", ErrProtocol, i, len(s.rings))
	}
	return int(i), nil
}

func (s *Server) setVring(m message) error {
	idx := m.State[0]
	if m.Request == ReqSetVringAddr {
		idx = m.Addr.Index
	}
	i, err := s.ringIndex(idx)
	if err != nil {
		return err
	}
	r := &s.rings[i]
	if s.active.Load() && s.queues[i] != nil {
		return fmt.Errorf("%w: %v on running queue %d", ErrProtocol, m.Request, i)
	}
	switch m.Request {
	case ReqSetVringNum:
		if m.State[1] == 0 || m.State[1] > MaxQueueSize {
			return fmt.Errorf("%w: queue %d size %d (at most %d)", ErrProtocol, i, m.State[1], MaxQueueSize)
		}
		r.num = m.State[1]
	case ReqSetVringBase:
		if m.State[1] > 0xffff {
			return fmt.Errorf("%w: queue %d base %d", ErrProtocol, i, m.State[1])
		}
		r.base = uint16(m.State[1])
	case ReqSetVringAddr:
		if s.mem == nil {
			return fmt.Errorf("%w: SET_VRING_ADDR before SET_MEM_TABLE", ErrProtocol)
		}
		var err error
		tr := func(ua uint64, what string) uint64 {
			gpa, e := s.mem.ToGPA(ua)
			if e != nil && err == nil {
				err = fmt.Errorf("%w: queue %d %s: %w", ErrProtocol, i, what, e)
			}
			return gpa
		}
		r.desc, r.avail, r.used = tr(m.Addr.Desc, "descriptor table"), tr(m.Addr.Avail, "available ring"), tr(m.Addr.Used, "used ring")
		r.addrSet = err == nil
		return err
	}
	return nil
}

func (s *Server) setMemTable(m message, fds []int) error {
	if s.active.Load() {
		if s.mem != nil && sameTable(s.mem, m.Regions) {
			return nil // a repeat of the table in use
		}
		return fmt.Errorf("%w: a new memory table for an active device", ErrUnsupported)
	}
	mem, err := mapMemory(m.Regions, fds)
	if err != nil {
		return err
	}
	if s.mem != nil {
		s.mem.Close()
	}
	s.mem = mem
	// Vring addresses were translated through the old table.
	for i := range s.rings {
		s.rings[i].addrSet = false
	}
	return nil
}

func sameTable(mem *Memory, rs []memRegion) bool {
	if len(rs) != len(mem.regions) {
		return false
	}
	for _, r := range rs {
		found := false
		for _, have := range mem.regions {
			found = found || have.memRegion == r
		}
		if !found {
			return false
		}
	}
	return true
}

// maybeActivate activates the device if it should run now. With STATUS
// negotiated that is once DRIVER_OK is set (mustRun: the front-end just
// set it); without, once every queue has started.
func (s *Server) maybeActivate(mustRun bool) error {
	if s.active.Load() {
		return nil
	}
	if s.protocol&(1<<ProtoStatus) != 0 {
		if s.status&virtio.StatusDriverOK == 0 {
			return nil
		}
	} else {
		for i := range s.rings {
			if !s.rings[i].started {
				return nil
			}
		}
	}
	err := s.activate()
	if err != nil && !mustRun && s.protocol&(1<<ProtoStatus) == 0 {
		// Nobody asked for the device to run yet: a half-set-up queue
		// may still be completed.
		return nil
	}
	return err
}

// kicked runs on a kicker goroutine.
func (s *Server) kicked(q int) {
	if s.active.Load() {
		s.dev.Notify(q)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active.Load() {
		s.dev.Notify(q)
		return
	}
	if q >= len(s.rings) || !s.rings[q].started {
		return // a kicker stopped while we waited
	}
	if s.protocol&(1<<ProtoStatus) != 0 && s.status&virtio.StatusDriverOK == 0 {
		return
	}
	// Without STATUS, a kick means the driver is running, even if the
	// front-end leaves some queues to itself; but not while a queue it
	// has set up is still to be started, as when QEMU restarts the queues
	// one by one after a pause and kicks the first before the second is
	// back (the last one's SET_VRING_KICK activates).
	for i := range s.rings {
		if r := &s.rings[i]; !r.started && (r.num != 0 || r.addrSet) {
			return
		}
	}
	if err := s.activate(); err != nil {
		s.log.Errorf("vhost-user: activating on a kick of queue %d: %v", q, err)
	}
}

// activate hands the started queues to the device.
func (s *Server) activate() error {
	if s.mem == nil {
		return fmt.Errorf("%w: no memory table", ErrProtocol)
	}
	if f := s.features &^ s.dev.Features() &^ transportFeatures; f != 0 {
		return fmt.Errorf("%w: features %#x", ErrProtocol, f)
	}
	queues := make([]*virtio.Queue, len(s.rings))
	any := false
	for i := range s.rings {
		r := &s.rings[i]
		if !r.started {
			continue
		}
		if !r.addrSet || r.num == 0 {
			return fmt.Errorf("%w: queue %d started without its size and addresses", ErrProtocol, i)
		}
		q := virtio.NewQueue(max(s.maxSizes[i], uint16(r.num)))
		q.Size, q.Ready = uint16(r.num), true
		q.DescTable, q.AvailRing, q.UsedRing = r.desc, r.avail, r.used
		if err := q.Activate(s.mem, s.features&virtio.Bit(virtio.FeatureRingEventIdx) != 0); err != nil {
			return fmt.Errorf("queue %d: %w", i, err)
		}
		if r.base != 0 {
			// Resuming after a stop: the driver's used index says how far
			// completions went (ember's devices finish what they take).
			used, err := s.mem.Load16(q.UsedRing + 2)
			if err != nil {
				return fmt.Errorf("queue %d: %w", i, err)
			}
			q.SetPosition(r.base, used)
		}
		queues[i] = q
		any = true
	}
	if !any {
		return fmt.Errorf("%w: no queue started", ErrProtocol)
	}
	s.gen++
	act := virtio.Activation{
		Mem:       s.mem,
		Queues:    queues,
		Features:  s.features &^ transportFeatures,
		Transport: &transport{s: s, gen: s.gen},
	}
	resumed := false
	if s.suspended {
		if s.resumes(queues) {
			if err := s.dev.(Suspender).Resume(act); err != nil {
				s.log.Errorf("vhost-user: resuming the %v device: %v", s.dev.Type(), err)
			} else {
				resumed = true
			}
		}
		if !resumed {
			// A driver reset, or a resume that failed: start afresh.
			s.resetDevice()
		}
		s.suspended, s.held = false, nil
	}
	if !resumed {
		if err := s.dev.Activate(act); err != nil {
			return fmt.Errorf("vhost-user: activating the %v device: %w", s.dev.Type(), err)
		}
	}
	s.queues = queues
	s.active.Store(true)
	s.log.Debugf("vhost-user: %v device active (resumed %v), features %#x", s.dev.Type(), resumed, s.features)
	// Requests may have been queued before the device ran.
	for i, q := range queues {
		if q != nil {
			s.dev.Notify(i)
		}
	}
	return nil
}

// Suspender is a device whose state should outlive a stop of its queues:
// QEMU stops a vhost-user back-end's queues whenever the VM pauses and
// starts them again where they stopped, and a device such as vsock would
// lose its connections to a reset. Suspend stops all use of the queues
// and guest memory; Resume continues on queues that carry on from there.
type Suspender interface {
	Suspend() error
	Resume(a virtio.Activation) error
}

// heldRing is a queue as it was when a Suspender was suspended.
type heldRing struct {
	started           bool
	num               uint32
	desc, avail, used uint64
	base              uint16
}

// stop ends the device's use of the queues because the front-end stopped
// them: a Suspender is suspended, so that a restart of the same queues
// where they stopped resumes it; any other device is reset.
func (s *Server) stop() {
	if !s.active.Load() {
		return
	}
	sus, ok := s.dev.(Suspender)
	if !ok {
		s.deactivate()
		return
	}
	s.active.Store(false)
	if err := sus.Suspend(); err != nil {
		s.log.Errorf("vhost-user: suspending the %v device: %v", s.dev.Type(), err)
		s.resetDevice()
	} else {
		s.suspended = true
	}
	s.recordPositions()
	if s.suspended {
		s.held = make([]heldRing, len(s.rings))
		for i, r := range s.rings {
			s.held[i] = heldRing{
				started: s.queues[i] != nil, num: r.num,
				desc: r.desc, avail: r.avail, used: r.used, base: r.base,
			}
		}
	}
	s.queues = nil
}

// resumes reports whether queues restart the suspended device's queues
// where they stopped (a VM resumed) rather than anew (a driver reset).
func (s *Server) resumes(queues []*virtio.Queue) bool {
	if !s.suspended || len(s.held) != len(s.rings) {
		return false
	}
	for i, h := range s.held {
		r := &s.rings[i]
		if h.started != (queues[i] != nil) {
			return false
		}
		if h.started && (h.num != r.num || h.desc != r.desc || h.avail != r.avail || h.used != r.used || h.base != r.base) {
			return false
		}
	}
	return true
}

// reset resets the device, suspended or active.
func (s *Server) reset() {
	if s.active.Load() {
		s.deactivate()
		return
	}
	if s.suspended {
		s.resetDevice()
	}
}

// resetDevice resets the device and forgets a suspension.
func (s *Server) resetDevice() {
	s.suspended, s.held = false, nil
	if err := s.dev.Reset(); err != nil {
		s.log.Errorf("vhost-user: resetting the %v device: %v", s.dev.Type(), err)
	}
}

// deactivate resets the device and records where each queue stopped.
func (s *Server) deactivate() {
	if !s.active.Load() {
		return
	}
	s.active.Store(false)
	s.resetDevice()
	s.recordPositions()
	s.queues = nil
}

// recordPositions records where each active queue stopped.
func (s *Server) recordPositions() {
	for i, q := range s.queues {
		if q != nil {
			s.rings[i].base = s.position(q)
		}
	}
}

// position is the index of the next available entry the stopped device
// would have taken.
func (s *Server) position(q *virtio.Queue) uint16 {
	avail, _ := q.Position()
	return avail
}

// stopRing stops queue i's notifications: the kick eventfd is closed and
// the queue must be started again with SET_VRING_KICK.
func (s *Server) stopRing(i int) {
	r := &s.rings[i]
	r.kick.stop()
	r.kick = nil
	r.started = false
}

func (s *Server) resetRings() {
	for i := range s.rings {
		s.stopRing(i)
		call := s.rings[i].call
		call.set(-1)
		s.rings[i] = ring{call: call}
	}
}

// teardown releases everything at the end of a connection.
func (s *Server) teardown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset()
	s.resetRings()
	s.features, s.protocol, s.status = 0, 0, 0
	if s.mem != nil {
		s.mem.Close()
		s.mem = nil
	}
	s.backendMu.Lock()
	if s.backend != nil {
		s.backend.Close()
		s.backend = nil
	}
	s.backendMu.Unlock()
}

// transport is what an activated device calls back into.
type transport struct {
	s   *Server
	gen uint64
}

// SignalUsed implements virtio.Transport.
func (t *transport) SignalUsed(q int) error {
	if q < 0 || q >= len(t.s.rings) {
		return fmt.Errorf("vhost-user: interrupt for queue %d of %d", q, len(t.s.rings))
	}
	return t.s.rings[q].call.Signal()
}

// ChangeConfig implements virtio.Transport: the update runs under the lock
// GET_CONFIG reads under, then the front-end is told over the
// backend-request channel, and reads the config space again.
func (t *transport) ChangeConfig(update func()) error {
	t.s.configMu.Lock()
	update()
	t.s.configMu.Unlock()
	return t.s.notifyConfig()
}

// NeedsReset implements virtio.Transport. vhost-user has no message for
// DEVICE_NEEDS_RESET: the device stops, GET_STATUS shows the bit, and the
// queues stay silent until the front-end resets them.
func (t *transport) NeedsReset(err error) {
	t.s.log.Errorf("vhost-user: %v device needs a reset: %v", t.s.dev.Type(), err)
	// The device's own goroutine calls this, and Reset waits for it.
	go func() {
		s := t.s
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.gen == t.gen && s.active.Load() {
			s.reset()
			s.status |= virtio.StatusDeviceNeedsReset
		}
	}()
}

// notifyConfig sends VHOST_USER_BACKEND_CONFIG_CHANGE_MSG.
func (s *Server) notifyConfig() error {
	s.backendMu.Lock()
	defer s.backendMu.Unlock()
	if s.backend == nil || s.protocol&(1<<ProtoBackendReq) == 0 {
		return fmt.Errorf("%w: no backend-request channel to announce a config change", ErrUnsupported)
	}
	var msg [headerSize]byte
	binary.LittleEndian.PutUint32(msg[0:], backendConfigChange)
	binary.LittleEndian.PutUint32(msg[4:], version)
	_, err := s.backend.Write(msg[:])
	return err
}

// Negotiated returns the virtio features and protocol features the
// front-end last acknowledged, on this connection or the previous one.
func (s *Server) Negotiated() (features, protocol uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastFeatures, s.lastProtocol
}
