// Package vsock is ember's virtio-vsock device (device id 19) with
// Firecracker's host side: guest AF_VSOCK streams become AF_UNIX streams on
// the host, not kernel vsock.
//
// The guest sees what Firecracker offers: three queues of 256 entries (RX
// 0, TX 1, event 2), features VERSION_1, IN_ORDER and EVENT_IDX, and an
// 8-byte config space holding guest_cid. Packets carry the 44-byte
// virtio_vsock_hdr; the device keeps credit-based flow control per
// connection with a 64 KiB buffer (buf_alloc) and sends a credit update
// when the guest may think fewer than 4 KiB are free.
//
// The host side: New binds a listening socket at uds_path (as PUT /vsock
// does); a host program connects to it and sends "CONNECT <port>\n", and
// once the guest accepts, reads "OK <host port>\n" followed by the byte
// stream; host ports are handed out from 2^30. A guest connecting to CID 2
// port P is connected to the socket "<uds_path>_P", and gets an RST if
// nobody listens there. Close unlinks uds_path.
//
// # Goroutines
//
// All protocol state lives on one virtio.Worker goroutine, which also does
// every read and write on host streams, none of them waiting: data moves
// straight between guest buffers and the sockets. Waiting happens
// elsewhere, in Go's poller: each connection has two small goroutines that,
// when the worker asks, wait for its stream to become readable or writable
// and report back, and one goroutine accepts host connections and reads
// their CONNECT lines. So a slow host peer holds nothing but its own
// connection, whose buffer is bounded by the credit the device advertised,
// and no vCPU thread ever waits on a socket.
//
// # Over vhost-user
//
// QEMU's vhost-user-vsock-device keeps the event queue and hands the
// back-end RX and TX only: WithoutEventQueue is the device so served. QEMU
// also stops the queues whenever the VM pauses and restarts them where
// they stopped; Suspend and Resume carry the connections across that, as a
// paused Firecracker VM keeps them.
//
// # Trust
//
// Malformed packets (short chains, bad lengths, wrong descriptor
// directions) are dropped and their buffers returned, as Firecracker does;
// packets of unknown type or for unknown connections get an RST; a guest
// that exceeds its credit gets its connection reset.
package vsock

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/syserr"
	"github.com/ember-vmm/ember/internal/virtio"
)

// Queue indexes.
const (
	RxQueue = 0
	TxQueue = 1
	EvQueue = 2
)

// ConfigSize is the length of the config space (guest_cid, u64 LE).
const ConfigSize = 8

// EventTransportReset is VIRTIO_VSOCK_EVENT_TRANSPORT_RESET.
const EventTransportReset = 0

// Worker bits beyond the queue indexes.
const bitBackend = 3

// Errors.
var (
	// ErrBind wraps failures to bind or unlink uds_path; its text is
	// Firecracker's ("Error binding to the host-side Unix socket: ...").
	ErrBind = errors.New("Error binding to the host-side Unix socket")
	// ErrEmptyEventQueue: TransportReset found no event buffer.
	ErrEmptyEventQueue = errors.New("vsock: the event queue has no buffer")
)

// BackendError is what New and Close return; its text is Firecracker's
// VsockConfigError ("Cannot create backend for vsock device: ...").
type BackendError struct{ Err error }

func (e *BackendError) Error() string {
	return "Cannot create backend for vsock device: " + e.Err.Error()
}

func (e *BackendError) Unwrap() error { return e.Err }

// bindError renders an OS error the way Rust's io::Error prints it.
type bindError struct{ err error }

func (e *bindError) Error() string { return ErrBind.Error() + ": " + syserr.Display(e.err) }
func (e *bindError) Unwrap() []error {
	return []error{ErrBind, e.err}
}

// Config configures a vsock device.
type Config struct {
	GuestCID uint64
	// UDSPath is the host socket; guest-initiated connections go to
	// UDSPath + "_<port>".
	UDSPath string
	Log     logger.Log
}

// Metrics are the device's cumulative counters, named as the fields of
// Firecracker's "vsock" metrics section.
type Metrics struct {
	ActivateFails     uint64
	CfgFails          uint64
	RxQueueEventFails uint64
	TxQueueEventFails uint64
	EvQueueEventFails uint64
	MuxerEventFails   uint64
	ConnEventFails    uint64
	RxQueueEventCount uint64
	TxQueueEventCount uint64
	RxBytesCount      uint64
	TxBytesCount      uint64
	RxPacketsCount    uint64
	TxPacketsCount    uint64
	ConnsAdded        uint64
	ConnsKilled       uint64
	ConnsRemoved      uint64
	KillqResync       uint64
	TxFlushFails      uint64
	TxWriteFails      uint64
	RxReadFails       uint64
}

type counters struct {
	activateFails, cfgFails, rxQueueEventFails, txQueueEventFails, evQueueEventFails,
	muxerEventFails, connEventFails, rxQueueEventCount, txQueueEventCount,
	rxBytesCount, txBytesCount, rxPacketsCount, txPacketsCount,
	connsAdded, connsKilled, connsRemoved, killqResync,
	txFlushFails, txWriteFails, rxReadFails atomic.Uint64
}

// Device is a virtio-vsock device with its host-side Unix socket.
type Device struct {
	cfg    Config
	ln     *net.UnixListener
	config [ConfigSize]byte
	m      counters

	mu     sync.Mutex
	act    *active
	closed bool
	// restoredLP is the last host port a snapshot recorded (0: none).
	restoredLP uint32
}

// active is one activation.
type active struct {
	d     *Device
	t     virtio.Transport
	rxq   *virtio.Queue
	txq   *virtio.Queue
	evq   *virtio.Queue
	w     *virtio.Worker
	chain virtio.Chain
	mux   *muxer
	inbox events
	// pendingEventAck gates RX after a TRANSPORT_RESET until the guest
	// acknowledges it: it kicks the event queue with more buffers in it
	// than resetPending, what was left once the event took one.
	pendingEventAck bool
	resetPending    uint16
	// parked: Suspend took the queues away; the worker keeps serving host
	// streams but touches no queue and no guest memory until Resume.
	parked bool
	// evqOwned: the device serves the event queue (false when the
	// transport keeps it).
	evqOwned bool

	quit chan struct{}
	wg   sync.WaitGroup
	// streams holds host streams still sending their CONNECT line.
	smu     sync.Mutex
	streams map[*net.UnixConn]struct{}
}

// New binds the host socket at cfg.UDSPath and returns an inactive device.
// Host programs may connect at once; their connections are taken up when
// the guest driver activates the device.
func New(cfg Config) (*Device, error) {
	d := &Device{cfg: cfg}
	for i := range ConfigSize {
		d.config[i] = byte(cfg.GuestCID >> (8 * i))
	}
	if err := checkPath(cfg.UDSPath); err != nil {
		return nil, &BackendError{&bindError{err}}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: d.hostPath(cfg.UDSPath), Net: "unix"})
	if err != nil {
		return nil, &BackendError{&bindError{err}}
	}
	// Close unlinks explicitly, reporting a socket file someone removed.
	ln.SetUnlinkOnClose(false)
	d.ln = ln
	return d, nil
}

// checkPath refuses what Rust's Unix socket address refuses, with its texts.
func checkPath(p string) error {
	if strings.IndexByte(p, 0) >= 0 {
		return errors.New("paths must not contain interior null bytes")
	}
	if len(p) >= 108 {
		return errors.New("path must be shorter than SUN_LEN")
	}
	return nil
}

// hostPath keeps Go from taking a leading '@' for Linux's abstract
// namespace: Firecracker's paths are always file names.
func (d *Device) hostPath(p string) string {
	if strings.HasPrefix(p, "@") {
		return "./" + p
	}
	return p
}

// UDSPath returns the host socket's path.
func (d *Device) UDSPath() string { return d.cfg.UDSPath }

// GuestCID returns the guest's CID.
func (d *Device) GuestCID() uint64 { return d.cfg.GuestCID }

// Close stops the device, drops every connection, closes the listening
// socket and unlinks uds_path. The unlink error, if any, is Firecracker's
// when a re-PUT finds the old socket file gone.
func (d *Device) Close() error {
	d.Reset()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.ln.Close()
	if err := syscall.Unlink(d.hostPath(d.cfg.UDSPath)); err != nil {
		return &BackendError{&bindError{err}}
	}
	return nil
}

// Metrics returns the cumulative counters.
func (d *Device) Metrics() Metrics {
	m := &d.m
	return Metrics{
		ActivateFails: m.activateFails.Load(), CfgFails: m.cfgFails.Load(),
		RxQueueEventFails: m.rxQueueEventFails.Load(), TxQueueEventFails: m.txQueueEventFails.Load(),
		EvQueueEventFails: m.evQueueEventFails.Load(), MuxerEventFails: m.muxerEventFails.Load(),
		ConnEventFails: m.connEventFails.Load(), RxQueueEventCount: m.rxQueueEventCount.Load(),
		TxQueueEventCount: m.txQueueEventCount.Load(), RxBytesCount: m.rxBytesCount.Load(),
		TxBytesCount: m.txBytesCount.Load(), RxPacketsCount: m.rxPacketsCount.Load(),
		TxPacketsCount: m.txPacketsCount.Load(), ConnsAdded: m.connsAdded.Load(),
		ConnsKilled: m.connsKilled.Load(), ConnsRemoved: m.connsRemoved.Load(),
		KillqResync: m.killqResync.Load(), TxFlushFails: m.txFlushFails.Load(),
		TxWriteFails: m.txWriteFails.Load(), RxReadFails: m.rxReadFails.Load(),
	}
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeVsock }

// Features implements virtio.Device.
func (d *Device) Features() uint64 {
	return virtio.Bit(virtio.FeatureVersion1) | virtio.Bit(virtio.FeatureInOrder) | virtio.Bit(virtio.FeatureRingEventIdx)
}

// QueueMaxSizes implements virtio.Device.
func (d *Device) QueueMaxSizes() []uint16 {
	return []uint16{virtio.MaxQueueSize, virtio.MaxQueueSize, virtio.MaxQueueSize}
}

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(off uint64, data []byte) {
	clear(data)
	if off < ConfigSize {
		copy(data, d.config[off:])
	}
}

// WriteConfig implements virtio.Device: the config space is read-only.
func (d *Device) WriteConfig(off uint64, data []byte) {
	d.m.cfgFails.Add(1)
	d.cfg.Log.Warnf("vsock: guest driver attempted to write device config (offset=%#x, len=%#x)", off, len(data))
}

// Activate implements virtio.Device.
func (d *Device) Activate(a virtio.Activation) error { return d.activate(a, true) }

// checkQueues checks an activation's queues: RX and TX, and the event
// queue when the device serves it.
func checkQueues(qs []*virtio.Queue, evq bool) error {
	n := 2
	if evq {
		n = 3
	}
	if len(qs) != n || qs[RxQueue] == nil || qs[TxQueue] == nil || (evq && qs[EvQueue] == nil) {
		return fmt.Errorf("vsock device: the driver did not enable all %d queues", n)
	}
	return nil
}

// activate starts an activation; evq says whether the device serves the
// event queue (else the transport keeps it).
func (d *Device) activate(a virtio.Activation, evq bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		d.m.activateFails.Add(1)
		return errors.New("vsock device is closed")
	case d.act != nil:
		d.m.activateFails.Add(1)
		return errors.New("vsock device already active")
	}
	if err := checkQueues(a.Queues, evq); err != nil {
		d.m.activateFails.Add(1)
		return err
	}
	act := &active{
		d: d, t: a.Transport,
		rxq: a.Queues[RxQueue], txq: a.Queues[TxQueue],
		quit:    make(chan struct{}),
		streams: map[*net.UnixConn]struct{}{},
	}
	if evq {
		act.evq, act.evqOwned = a.Queues[EvQueue], true
	}
	act.mux = newMuxer(d, act)
	act.mux.lastLP = d.portLast()
	d.restoredLP = 0 // a later activation (after a driver reset) starts afresh
	d.ln.SetDeadline(time.Time{})
	act.w = virtio.StartWorker(act.handle)
	act.wg.Add(1)
	go act.acceptLoop()
	d.act = act
	return nil
}

// Notify implements virtio.Device.
func (d *Device) Notify(q int) {
	d.mu.Lock()
	act := d.act
	d.mu.Unlock()
	if act != nil && q >= RxQueue && q <= EvQueue {
		act.w.Notify(q)
	}
}

// Reset implements virtio.Device: every connection is dropped (host
// streams see EOF), host connections wait in the listen backlog until the
// next activation, and host ports start again from 2^30.
func (d *Device) Reset() error {
	d.mu.Lock()
	act := d.act
	d.act = nil
	d.mu.Unlock()
	if act == nil {
		return nil
	}
	close(act.quit)
	d.ln.SetDeadline(time.Unix(1, 0))
	act.w.Stop()
	act.mux.closeAll()
	act.smu.Lock()
	for s := range act.streams {
		s.Close()
	}
	act.smu.Unlock()
	act.wg.Wait()
	// Host streams handed to the worker after it stopped.
	for _, e := range act.inbox.take() {
		if e.stream != nil {
			e.stream.Close()
		}
	}
	return nil
}

// TransportReset sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET to the guest (as
// Firecracker does before a snapshot), after which the guest drops its
// connections; the device sends nothing on RX until the guest has
// acknowledged by kicking the event queue. It fails with ErrNotActive, or
// ErrEmptyEventQueue when the guest posted no event buffer.
func (d *Device) TransportReset() error {
	return d.onWorker(func(a *active) error { return a.sendTransportReset() })
}

// ErrNoEventQueue: TransportReset on a device whose transport keeps the
// event queue.
var ErrNoEventQueue = errors.New("vsock: the event queue is not the device's")

// ErrSuspended: TransportReset while the device is suspended.
var ErrSuspended = errors.New("vsock: the device is suspended")

// ErrNotSuspended: Resume on a device Suspend did not stop.
var ErrNotSuspended = errors.New("vsock: the device is not suspended")

// Suspend stops all use of the queues and guest memory but keeps every
// connection, for a transport that stops the queues while the VM is
// paused and starts them again where they stopped (vhost-user does). Host
// streams are still accepted and written to; what they send waits until
// Resume. It fails with virtio.ErrNotActive on an inactive device.
func (d *Device) Suspend() error {
	return d.onWorker(func(a *active) error {
		a.parked = true
		a.rxq, a.txq, a.evq, a.t = nil, nil, nil, nil
		return nil
	})
}

// Resume continues a suspended device on the queues of act, which must
// carry on from where the suspended ones stopped; the device then looks at
// both queues again. It fails with ErrNotSuspended unless Suspend stopped
// the device, leaving it as it was.
func (d *Device) Resume(act virtio.Activation) error {
	return d.resume(act, true)
}

func (d *Device) resume(act virtio.Activation, evq bool) error {
	if err := checkQueues(act.Queues, evq); err != nil {
		return err
	}
	err := d.onWorker(func(a *active) error {
		if !a.parked || (a.evqOwned != evq) {
			return ErrNotSuspended
		}
		a.parked = false
		a.t, a.rxq, a.txq = act.Transport, act.Queues[RxQueue], act.Queues[TxQueue]
		if evq {
			a.evq = act.Queues[EvQueue]
		}
		// An interrupt owed when Suspend came may have been dropped; a
		// spurious one is harmless.
		a.signal(RxQueue)
		a.signal(TxQueue)
		a.w.Notify(RxQueue)
		a.w.Notify(TxQueue)
		return nil
	})
	if errors.Is(err, virtio.ErrNotActive) {
		return ErrNotSuspended
	}
	return err
}

// WithoutEventQueue returns the device as served by a transport that keeps
// the event queue itself, as QEMU's vhost-user-vsock-device does: the
// returned device declares RX and TX only, and TransportReset fails with
// ErrNoEventQueue (the transport sends its own reset events). It also has
// Suspend and Resume. It shares everything else with d; use one view or
// the other, not both.
func (d *Device) WithoutEventQueue() *NoEventQueue { return &NoEventQueue{d} }

// NoEventQueue is a Device whose event queue belongs to the transport.
type NoEventQueue struct{ d *Device }

// Device returns the device this is a view of.
func (v *NoEventQueue) Device() *Device { return v.d }

// Type implements virtio.Device.
func (v *NoEventQueue) Type() virtio.DeviceType { return v.d.Type() }

// Features implements virtio.Device.
func (v *NoEventQueue) Features() uint64 { return v.d.Features() }

// QueueMaxSizes implements virtio.Device: RX and TX.
func (v *NoEventQueue) QueueMaxSizes() []uint16 { return v.d.QueueMaxSizes()[:2] }

// ReadConfig implements virtio.Device.
func (v *NoEventQueue) ReadConfig(off uint64, data []byte) { v.d.ReadConfig(off, data) }

// WriteConfig implements virtio.Device.
func (v *NoEventQueue) WriteConfig(off uint64, data []byte) { v.d.WriteConfig(off, data) }

// Activate implements virtio.Device.
func (v *NoEventQueue) Activate(a virtio.Activation) error { return v.d.activate(a, false) }

// Notify implements virtio.Device.
func (v *NoEventQueue) Notify(q int) {
	if q == RxQueue || q == TxQueue {
		v.d.Notify(q)
	}
}

// Reset implements virtio.Device.
func (v *NoEventQueue) Reset() error { return v.d.Reset() }

// Suspend is Device.Suspend.
func (v *NoEventQueue) Suspend() error { return v.d.Suspend() }

// Resume is Device.Resume for RX and TX only.
func (v *NoEventQueue) Resume(act virtio.Activation) error { return v.d.resume(act, false) }

// Kick re-delivers what a pause may have left pending, as Firecracker does
// on resume: the event interrupt if a reset event awaits its
// acknowledgement, and a pass over the TX queue.
func (d *Device) Kick() {
	d.onWorker(func(a *active) error {
		if a.parked {
			return nil
		}
		if a.pendingEventAck {
			d.cfg.Log.Infof("[Vsock:vsock] signaling event queue")
			a.signal(EvQueue)
		}
		a.w.Notify(TxQueue)
		return nil
	})
}

// onWorker runs f on the worker goroutine and waits for it.
func (d *Device) onWorker(f func(a *active) error) error {
	d.mu.Lock()
	defer d.mu.Unlock() // Reset waits for this, so the worker stays up
	act := d.act
	if act == nil {
		return virtio.ErrNotActive
	}
	done := make(chan error, 1)
	act.post(event{call: func() { done <- f(act) }})
	return <-done
}

// post queues an event for the worker.
func (a *active) post(e event) {
	a.inbox.mu.Lock()
	a.inbox.q = append(a.inbox.q, e)
	a.inbox.mu.Unlock()
	a.w.Notify(bitBackend)
}

// acceptLoop takes host connections while the device is active.
func (a *active) acceptLoop() {
	defer a.wg.Done()
	d := a.d
	for {
		uc, err := d.ln.AcceptUnix()
		select {
		case <-a.quit:
			if uc != nil {
				uc.Close()
			}
			return
		default:
		}
		if err != nil {
			d.cfg.Log.Warnf("vsock: unable to accept local connection: %v", err)
			d.m.muxerEventFails.Add(1)
			select { // e.g. out of file descriptors: do not spin
			case <-a.quit:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if a.mux.count.Load() >= MaxConnections {
			d.cfg.Log.Warnf("vsock: connection limit reached; refusing new host connection")
			uc.Close()
			continue
		}
		// Reset closes quit before it closes the streams under smu, so a
		// stream is either closed by Reset or handed on here, never lost.
		a.smu.Lock()
		select {
		case <-a.quit:
			a.smu.Unlock()
			uc.Close()
			return
		default:
		}
		a.streams[uc] = struct{}{}
		a.wg.Add(1)
		a.smu.Unlock()
		go func() {
			defer a.wg.Done()
			port, err := readConnect(uc)
			a.smu.Lock()
			defer a.smu.Unlock()
			delete(a.streams, uc)
			select {
			case <-a.quit:
				err = net.ErrClosed
			default:
			}
			if err != nil {
				d.cfg.Log.Infof("vsock: error adding local-init connection: %v", err)
				uc.Close()
				return
			}
			a.post(event{stream: uc, port: port})
		}()
	}
}

// handle is the worker: queue notifications and backend events.
func (a *active) handle(bits uint64) {
	if a.parked {
		// Host events still move host streams along; queue work waits
		// for Resume, which looks at both queues.
		if bits&(1<<bitBackend) != 0 {
			for _, e := range a.inbox.take() {
				a.handleEvent(e)
			}
		}
		return
	}
	var used [3]bool
	if bits&(1<<EvQueue) != 0 {
		if a.pendingEventAck && a.resetAcked() {
			a.pendingEventAck = false
		}
		if a.mux.hasPendingRx() {
			used[RxQueue] = a.processRx() || used[RxQueue]
		}
	}
	if bits&(1<<bitBackend) != 0 {
		for _, e := range a.inbox.take() {
			a.handleEvent(e)
		}
		if a.parked { // one of the events was Suspend; Resume signals
			return
		}
		used[TxQueue] = a.processTx() || used[TxQueue]
		if a.mux.hasPendingRx() {
			used[RxQueue] = a.processRx() || used[RxQueue]
		}
	}
	if bits&(1<<TxQueue) != 0 {
		a.d.m.txQueueEventCount.Add(1)
		used[TxQueue] = a.processTx() || used[TxQueue]
		if a.mux.hasPendingRx() {
			used[RxQueue] = a.processRx() || used[RxQueue]
		}
	}
	if bits&(1<<RxQueue) != 0 && a.mux.hasPendingRx() {
		a.d.m.rxQueueEventCount.Add(1)
		used[RxQueue] = a.processRx() || used[RxQueue]
	}
	for q, u := range used {
		if u {
			a.signal(q)
		}
	}
}

func (a *active) handleEvent(e event) {
	switch {
	case e.call != nil:
		e.call()
	case e.stream != nil:
		a.mux.localConnect(e.stream, e.port)
	case e.conn != nil:
		a.mux.connEvent(e.conn, e.out)
	}
}

func (a *active) signal(q int) {
	if err := a.t.SignalUsed(q); err != nil {
		a.d.cfg.Log.Errorf("vsock: Could not trigger device interrupt: %v", err)
	}
}

// processRx fills guest RX buffers with what the muxer has to say. It
// returns whether the guest should be interrupted.
func (a *active) processRx() bool {
	if a.pendingEventAck {
		return false
	}
	q := a.rxq
	haveUsed := false
	var p rxPacket
	for {
		ok, err := q.Next(&a.chain)
		if err != nil {
			a.t.NeedsReset(err)
			return false
		}
		if !ok {
			break
		}
		var n uint32
		if err := parseRx(&a.chain, &p); err != nil {
			a.d.cfg.Log.Warnf("vsock: RX queue error: %v. Discarding the package.", err)
		} else if !a.mux.recvPkt(&p) {
			q.Undo()
			break
		} else if err := p.commit(); err != nil {
			a.d.cfg.Log.Warnf("vsock: Error writing packet header to guest memory: %v.Discarding the package.", err)
		} else {
			n = HeaderSize + p.hdr.Len
		}
		haveUsed = true
		if err := q.Add(a.chain.Head, n); err != nil {
			a.t.NeedsReset(err)
			return false
		}
	}
	if err := q.Publish(); err != nil {
		a.t.NeedsReset(err)
		return false
	}
	return haveUsed && q.NeedsSignal()
}

// processTx hands every packet the guest sent to the muxer.
func (a *active) processTx() bool {
	q := a.txq
	haveUsed := false
	var p txPacket
	for {
		ok, err := q.Next(&a.chain)
		if err != nil {
			a.t.NeedsReset(err)
			return false
		}
		if !ok {
			break
		}
		if err := parseTx(&a.chain, &p); err != nil {
			a.d.cfg.Log.Errorf("vsock: error reading TX packet: %v", err)
		} else {
			a.mux.sendPkt(&p)
		}
		haveUsed = true
		if err := q.Add(a.chain.Head, 0); err != nil {
			a.t.NeedsReset(err)
			return false
		}
	}
	if err := q.Publish(); err != nil {
		a.t.NeedsReset(err)
		return false
	}
	return haveUsed && q.NeedsSignal()
}

// sendTransportReset puts a TRANSPORT_RESET event in the guest's next event
// buffer.
func (a *active) sendTransportReset() error {
	if !a.evqOwned {
		return ErrNoEventQueue
	}
	if a.parked {
		return ErrSuspended
	}
	q := a.evq
	ok, err := q.Pop(&a.chain)
	if err != nil {
		a.d.m.evQueueEventFails.Add(1)
		return err
	}
	if !ok {
		a.d.m.evQueueEventFails.Add(1)
		return ErrEmptyEventQueue
	}
	// Firecracker writes the event id at the first buffer, whatever its
	// direction, and reports that buffer's length as used.
	var first []byte
	if len(a.chain.Out) > 0 {
		first = a.chain.Out[0]
	} else if len(a.chain.In) > 0 {
		first = a.chain.In[0]
	}
	var ev [4]byte // EventTransportReset, LE
	copy(first, ev[:])
	if err := q.Push(a.chain.Head, uint32(len(first))); err != nil {
		return err
	}
	q.ArmNotify()
	a.pendingEventAck = true
	a.resetPending, _ = q.Pending()
	a.signal(EvQueue)
	return nil
}

// resetAcked reports whether the guest has handled the TRANSPORT_RESET:
// Linux resets its connected sockets, gives the event's buffer back and
// then kicks. A notification alone is no acknowledgement: a transport
// restored from a snapshot notifies every queue, and RX let through before
// the guest's reset could reach a socket from before the snapshot (a host
// port the restored device hands out again) and be refused.
func (a *active) resetAcked() bool {
	n, err := a.evq.Pending()
	return err != nil || n > a.resetPending
}
