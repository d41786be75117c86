// Package net is ember's virtio network device (device id 1) on a host tap
// as Firecracker has it: one RX queue (0) and one TX queue (1) of 256
// entries, the 12-byte virtio_net_hdr_v1 on every frame in both
// directions (the tap is opened with IFF_VNET_HDR and a header size of
// 12), and Firecracker's features: CSUM, GUEST_CSUM, GUEST_TSO4/6,
// GUEST_UFO, HOST_TSO4/6, HOST_UFO, MRG_RXBUF, EVENT_IDX, VERSION_1, plus
// MAC when a guest MAC is configured and MTU when an MTU is. The config
// space is virtio_net_config (mac, status, max_virtqueue_pairs, mtu);
// driver writes to it are ignored, as Firecracker ignores them. On
// activation the tap's offloads follow the GUEST_* features the driver
// accepted.
//
// # Goroutines
//
// Each direction has its own goroutine. TX is a virtio.Worker: it writes
// each chain's buffers to the tap with one writev, straight from guest
// memory. RX waits until the guest has posted buffers, then reads one frame
// from the tap (through Go's poller; the tap is non-blocking) into a host
// buffer and copies it into as many chains as it needs (several only with
// MRG_RXBUF, which sets num_buffers), publishing them together. A frame
// that does not fit even the whole ring is dropped. Interrupts are batched:
// RX signals when the tap runs dry, TX after each notification's chains.
// Stop is prompt in both: a read deadline wakes the RX goroutine.
//
// # Seams
//
// An Interceptor (Firecracker's MMDS network stack) sees every frame the
// guest sends before the tap does and may consume it; the frames it has
// for the guest are delivered before the tap's. Limiters throttle RX and
// TX (one operation plus the frame's bytes each); a throttled frame waits
// in place for its budget.
//
// Counters follow Firecracker's net metrics: byte counts include the vnet
// header.
package net

import (
	"encoding/binary"
	"errors"
	"fmt"
	gonet "net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/tap"
	"github.com/ember-vmm/ember/internal/virtio"
)

// Feature bits of virtio-net.
const (
	FeatureCsum      = 0
	FeatureGuestCsum = 1
	FeatureMTU       = 3
	FeatureMAC       = 5
	FeatureGuestTSO4 = 7
	FeatureGuestTSO6 = 8
	FeatureGuestUFO  = 10
	FeatureHostTSO4  = 11
	FeatureHostTSO6  = 12
	FeatureHostUFO   = 14
	FeatureMrgRxbuf  = 15
)

// Sizes.
const (
	// VnetHdrSize is the virtio_net_hdr_v1 length.
	VnetHdrSize = 12
	// MaxFrameSize bounds a frame with its vnet header in both directions,
	// as Firecracker's MAX_BUFFER_SIZE.
	MaxFrameSize = 65562
	// ConfigSize is the length of the config space.
	ConfigSize = 12
)

// Queue indexes.
const (
	RxQueue = 0
	TxQueue = 1
)

const bitTxRetry = 2 // TX worker bit for a limiter's retry timer

// ErrInvalidMTU is returned by New for an MTU outside [68, 65535].
var ErrInvalidMTU = errors.New("MTU out of range")

// Interceptor sees guest traffic before the tap (the seam for MMDS). Its
// methods are called from the TX and RX goroutines concurrently.
type Interceptor interface {
	// Intercept is offered each Ethernet frame the guest sends (without the
	// vnet header; valid only during the call). Returning true consumes it.
	Intercept(frame []byte) bool
	// Receive copies the next frame it has for the guest into buf and
	// returns its length, or 0 when it has none.
	Receive(buf []byte) int
}

// Config configures a network device.
type Config struct {
	// ID is the interface id, for logs.
	ID string
	// MAC, if set (6 bytes), is offered to the guest (VIRTIO_NET_F_MAC).
	MAC gonet.HardwareAddr
	// MTU, if not 0, is offered to the guest (VIRTIO_NET_F_MTU).
	MTU uint16
	// Interceptor, if set, sees frames before the tap.
	Interceptor Interceptor
	// Limiters, if set, throttle each direction.
	RxLimiter, TxLimiter virtio.Limiter
	// SetOffload sets the tap's offload flags (tap.Offload*); nil uses
	// tap.SetOffload on the tap file.
	SetOffload func(flags uint32) error
	Log        logger.Log
}

// Stats are the device's cumulative counters.
type Stats struct {
	RxBytes, RxPackets, TxBytes, TxPackets uint64
	// RxDropped counts frames from the tap that no guest buffers could take;
	// TxDropped frames the guest sent that were malformed or that the tap
	// refused; TxSpoofedMAC frames whose source is not the configured MAC.
	RxDropped, TxDropped, TxSpoofedMAC uint64
	// RxThrottled and TxThrottled count the times a limiter held a frame
	// back; RxLimiterEvents and TxLimiterEvents the retries its wait
	// ended in (Firecracker's rx/tx_rate_limiter_throttled and
	// rx_event_rate_limiter_count/tx_rate_limiter_event_count).
	RxThrottled, TxThrottled, RxLimiterEvents, TxLimiterEvents uint64
}

// Device is a virtio-net device on a tap.
type Device struct {
	cfg    Config
	tap    *os.File
	rc     syscall.RawConn
	config [ConfigSize]byte

	mu  sync.Mutex
	act *active

	rxBytes, rxPackets, txBytes, txPackets, rxDropped, txDropped, spoofed atomic.Uint64
	rxThrottled, txThrottled, rxLimiterEvents, txLimiterEvents            atomic.Uint64
}

// active is one activation: the queues, the two goroutines and their
// buffers.
type active struct {
	t   virtio.Transport
	mrg bool

	// RX side, owned by the RX goroutine.
	rxq     *virtio.Queue
	rxWake  chan struct{}
	rxQuit  chan struct{}
	rxDone  chan struct{}
	rxBuf   []byte // the frame being delivered, with its vnet header
	rxLen   int    // 0 when no frame is pending
	first   virtio.Chain
	chain   virtio.Chain
	heads   []usedElem
	retryAt time.Time

	// TX side, owned by the TX worker.
	tx    *virtio.Worker
	txq   *virtio.Queue
	txc   virtio.Chain
	txBuf []byte
}

type usedElem struct {
	head uint16
	n    uint32
}

// New returns an inactive device on the tap f, which it owns from now on.
// f must be non-blocking (tap.Open's files are) so that reads go through
// Go's poller.
func New(f *os.File, cfg Config) (*Device, error) {
	if cfg.MAC != nil && len(cfg.MAC) != 6 {
		return nil, fmt.Errorf("guest MAC %v is not 6 bytes", cfg.MAC)
	}
	if cfg.MTU != 0 && cfg.MTU < 68 {
		return nil, fmt.Errorf("%w: MTU %d is out of range [68, 65535]", ErrInvalidMTU, cfg.MTU)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	// Stopping RX relies on read deadlines, which only files in Go's poller
	// and in non-blocking mode honour.
	flags := 0
	rc.Control(func(fd uintptr) { flags, err = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if err == nil && flags&unix.O_NONBLOCK == 0 {
		err = errors.New("blocking mode")
	}
	if err == nil {
		err = f.SetReadDeadline(time.Time{})
	}
	if err != nil {
		return nil, fmt.Errorf("tap %s is not pollable: %w", f.Name(), err)
	}
	d := &Device{cfg: cfg, tap: f, rc: rc}
	copy(d.config[0:6], cfg.MAC)
	binary.LittleEndian.PutUint16(d.config[10:], cfg.MTU)
	if d.cfg.SetOffload == nil {
		d.cfg.SetOffload = func(flags uint32) error { return tap.SetOffload(f, flags) }
	}
	return d, nil
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeNet }

// Features implements virtio.Device.
func (d *Device) Features() uint64 {
	f := virtio.Bit(FeatureCsum) | virtio.Bit(FeatureGuestCsum) |
		virtio.Bit(FeatureGuestTSO4) | virtio.Bit(FeatureGuestTSO6) | virtio.Bit(FeatureGuestUFO) |
		virtio.Bit(FeatureHostTSO4) | virtio.Bit(FeatureHostTSO6) | virtio.Bit(FeatureHostUFO) |
		virtio.Bit(FeatureMrgRxbuf) | virtio.Bit(virtio.FeatureRingEventIdx) | virtio.Bit(virtio.FeatureVersion1)
	if d.cfg.MAC != nil {
		f |= virtio.Bit(FeatureMAC)
	}
	if d.cfg.MTU != 0 {
		f |= virtio.Bit(FeatureMTU)
	}
	return f
}

// QueueMaxSizes implements virtio.Device.
func (d *Device) QueueMaxSizes() []uint16 {
	return []uint16{virtio.MaxQueueSize, virtio.MaxQueueSize}
}

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(off uint64, data []byte) {
	clear(data)
	if off < ConfigSize {
		copy(data, d.config[off:])
	}
}

// WriteConfig implements virtio.Device: writes are ignored, as in
// Firecracker (a guest changes its MAC in its own stack).
func (d *Device) WriteConfig(off uint64, data []byte) {
	d.cfg.Log.Warnf("virtio-net: guest driver attempted to write device config (offset=%#x, len=%#x)", off, len(data))
}

// OffloadFlags maps the features a driver accepted to tap offload flags,
// as Firecracker does.
func OffloadFlags(features uint64) uint32 {
	var f uint32
	for _, m := range []struct {
		feature uint
		flag    uint32
	}{
		{FeatureGuestCsum, tap.OffloadCsum},
		{FeatureGuestUFO, tap.OffloadUFO},
		{FeatureGuestTSO4, tap.OffloadTSO4},
		{FeatureGuestTSO6, tap.OffloadTSO6},
	} {
		if features&virtio.Bit(m.feature) != 0 {
			f |= m.flag
		}
	}
	return f
}

// Activate implements virtio.Device.
func (d *Device) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.act != nil {
		return errors.New("net device already active")
	}
	if len(a.Queues) != 2 || a.Queues[RxQueue] == nil || a.Queues[TxQueue] == nil {
		return errors.New("net device: the driver did not enable both queues")
	}
	if err := d.cfg.SetOffload(OffloadFlags(a.Features)); err != nil {
		return fmt.Errorf("Setting tap interface offload flags failed: %w", err)
	}
	act := &active{
		t:      a.Transport,
		mrg:    a.Has(FeatureMrgRxbuf),
		rxq:    a.Queues[RxQueue],
		rxWake: make(chan struct{}, 1),
		rxQuit: make(chan struct{}),
		rxDone: make(chan struct{}),
		rxBuf:  make([]byte, MaxFrameSize),
		txq:    a.Queues[TxQueue],
	}
	if d.cfg.Interceptor != nil {
		act.txBuf = make([]byte, MaxFrameSize)
	}
	d.tap.SetReadDeadline(time.Time{})
	act.tx = virtio.StartWorker(func(bits uint64) {
		if bits&(1<<bitTxRetry) != 0 {
			d.txLimiterEvents.Add(1)
		}
		d.processTx(act)
	})
	go d.rxLoop(act)
	d.act = act
	return nil
}

// Notify implements virtio.Device.
func (d *Device) Notify(q int) {
	d.mu.Lock()
	act := d.act
	d.mu.Unlock()
	if act == nil {
		return
	}
	switch q {
	case RxQueue:
		act.wakeRx()
	case TxQueue:
		act.tx.Notify(TxQueue)
	}
}

func (a *active) wakeRx() {
	select {
	case a.rxWake <- struct{}{}:
	default:
	}
}

// WakeRx tells the RX goroutine the Interceptor may have frames for the
// guest. (It is called automatically after the Interceptor consumes a
// guest frame.)
func (d *Device) WakeRx() {
	d.mu.Lock()
	act := d.act
	d.mu.Unlock()
	if act != nil {
		d.interruptRead(act)
	}
}

// interruptRead wakes the RX goroutine even if it is blocked reading the
// tap.
func (d *Device) interruptRead(a *active) {
	a.wakeRx()
	d.tap.SetReadDeadline(time.Unix(1, 0))
}

// Reset implements virtio.Device. A frame read from the tap and not yet
// delivered is dropped.
func (d *Device) Reset() error {
	d.mu.Lock()
	act := d.act
	d.act = nil
	d.mu.Unlock()
	if act == nil {
		return nil
	}
	act.tx.Stop()
	close(act.rxQuit)
	d.tap.SetReadDeadline(time.Unix(1, 0))
	<-act.rxDone
	d.tap.SetReadDeadline(time.Time{})
	return nil
}

// Close stops the device and closes the tap.
func (d *Device) Close() error {
	d.Reset()
	return d.tap.Close()
}

// Stats returns the cumulative counters.
func (d *Device) Stats() Stats {
	return Stats{
		RxBytes: d.rxBytes.Load(), RxPackets: d.rxPackets.Load(),
		TxBytes: d.txBytes.Load(), TxPackets: d.txPackets.Load(),
		RxDropped: d.rxDropped.Load(), TxDropped: d.txDropped.Load(),
		TxSpoofedMAC: d.spoofed.Load(),
		RxThrottled:  d.rxThrottled.Load(), TxThrottled: d.txThrottled.Load(),
		RxLimiterEvents: d.rxLimiterEvents.Load(), TxLimiterEvents: d.txLimiterEvents.Load(),
	}
}

// processTx sends every chain the guest has made available on the TX
// queue.
func (d *Device) processTx(a *active) {
	consumed := false
	for {
		ok, err := a.txq.Next(&a.txc)
		if err != nil {
			a.t.NeedsReset(err)
			return
		}
		if !ok {
			break
		}
		c := &a.txc
		if l := d.cfg.TxLimiter; l != nil {
			if ok, wait := l.Allow(1, c.OutLen); !ok {
				a.txq.Undo()
				d.txThrottled.Add(1)
				a.tx.After(wait, bitTxRetry)
				break
			}
		}
		switch {
		case c.OutLen < VnetHdrSize || c.OutLen > MaxFrameSize:
			d.cfg.Log.Errorf("net: malformed TX frame of %d bytes", c.OutLen)
			d.txDropped.Add(1)
		case d.intercept(a):
			consumed = true
		default:
			d.checkSource(c)
			if err := d.writeTap(c.Out); err != nil {
				d.cfg.Log.Errorf("Failed to write to tap: %v", err)
				d.txDropped.Add(1)
			} else {
				d.txBytes.Add(c.OutLen)
				d.txPackets.Add(1)
			}
		}
		if err := a.txq.Push(c.Head, 0); err != nil {
			a.t.NeedsReset(err)
			return
		}
	}
	if a.txq.NeedsSignal() {
		if err := a.t.SignalUsed(TxQueue); err != nil {
			d.cfg.Log.Errorf("Failed to send irq to the guest: %v", err)
		}
	}
	if consumed {
		d.interruptRead(a)
	}
}

// intercept offers the frame in a.txc to the Interceptor.
func (d *Device) intercept(a *active) bool {
	ic := d.cfg.Interceptor
	if ic == nil {
		return false
	}
	n := a.txc.ReadOut(a.txBuf, 0)
	return ic.Intercept(a.txBuf[VnetHdrSize:n])
}

// checkSource counts frames whose Ethernet source is not the guest's MAC.
func (d *Device) checkSource(c *virtio.Chain) {
	if d.cfg.MAC == nil || c.OutLen < VnetHdrSize+12 {
		return
	}
	var src [6]byte
	c.ReadOut(src[:], VnetHdrSize+6)
	if string(src[:]) != string(d.cfg.MAC) {
		d.spoofed.Add(1)
	}
}

func (d *Device) writeTap(iov [][]byte) error {
	var werr error
	err := d.rc.Write(func(fd uintptr) bool {
		for {
			_, werr = unix.Writev(int(fd), iov)
			if werr != unix.EINTR {
				return werr != unix.EAGAIN
			}
		}
	})
	if err != nil {
		return err
	}
	return werr
}

// readTap reads one frame into a.rxBuf. Without block it returns EAGAIN
// when the tap has nothing.
func (d *Device) readTap(a *active, block bool) (int, error) {
	var n int
	var rerr error
	err := d.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), a.rxBuf)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN || !block
			}
		}
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

type next int

const (
	frameReady next = iota // a.rxBuf holds a frame
	frameWait              // nothing to do until woken
	frameRetry             // woken while reading: look again
)

// rxLoop moves frames from the Interceptor and the tap into the RX queue
// until the device stops.
func (d *Device) rxLoop(a *active) {
	defer close(a.rxDone)
	for {
		select {
		case <-a.rxQuit:
			return
		default:
		}
		if a.rxLen == 0 {
			switch d.nextFrame(a) {
			case frameWait:
				if !d.wait(a) {
					return
				}
				continue
			case frameRetry:
				continue
			}
		}
		delivered, err := d.deliver(a)
		if err != nil {
			a.t.NeedsReset(err)
			<-a.rxQuit
			return
		}
		if !delivered {
			// Out of guest buffers or budget: signal what is done, then wait.
			d.signalRx(a)
			if !d.wait(a) {
				return
			}
		}
	}
}

// nextFrame fills a.rxBuf from the Interceptor or, if the guest has posted
// buffers, from the tap.
func (d *Device) nextFrame(a *active) next {
	if ic := d.cfg.Interceptor; ic != nil {
		if n := ic.Receive(a.rxBuf[VnetHdrSize:]); n > 0 {
			clear(a.rxBuf[:VnetHdrSize])
			a.rxLen = VnetHdrSize + min(n, MaxFrameSize-VnetHdrSize)
			return frameReady
		}
	}
	// Only read the tap when a buffer waits for the frame: otherwise frames
	// stay queued in the kernel, which drops what overflows.
	for {
		n, err := a.rxq.Pending()
		if err == nil && n == 0 {
			var more bool
			if more, err = a.rxq.ArmNotify(); err == nil && more {
				continue
			}
		}
		if err != nil {
			a.t.NeedsReset(err)
			return frameWait
		}
		if n == 0 {
			d.signalRx(a)
			return frameWait
		}
		break
	}
	n, err := d.readTap(a, false)
	if err == unix.EAGAIN {
		d.signalRx(a) // the tap is dry: tell the guest about what arrived
		n, err = d.readTap(a, true)
	}
	switch {
	case err == nil && n >= VnetHdrSize:
		a.rxLen = n
		return frameReady
	case err == nil:
		d.rxDropped.Add(1) // a runt: not even a vnet header
		return frameRetry
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Woken on purpose (Interceptor frames, stop). Clear the deadline
		// before looking at why, so no later wake-up is lost.
		d.tap.SetReadDeadline(time.Time{})
		return frameRetry
	default:
		d.cfg.Log.Errorf("Failed to read tap: %v", err)
		d.sleep(a, 100*time.Millisecond) // a broken tap must not spin
		return frameRetry
	}
}

// sleep waits dur unless the device stops first.
func (d *Device) sleep(a *active, dur time.Duration) {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-a.rxQuit:
	case <-t.C:
	}
}

// wait blocks until the RX goroutine is woken (or a limiter's retry time
// comes); it returns false when the device stops.
func (d *Device) wait(a *active) bool {
	var timer <-chan time.Time
	if !a.retryAt.IsZero() {
		t := time.NewTimer(time.Until(a.retryAt))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-a.rxQuit:
		return false
	case <-a.rxWake:
	case <-timer:
		d.rxLimiterEvents.Add(1)
	}
	return true
}

// deliver copies the pending frame into guest buffers. It returns false,
// keeping the frame, when the guest has not posted enough buffers or the
// limiter wants a pause.
func (d *Device) deliver(a *active) (bool, error) {
	frame := a.rxBuf[:a.rxLen]
	if !a.retryAt.IsZero() {
		if time.Now().Before(a.retryAt) {
			return false, nil
		}
		a.retryAt = time.Time{}
	}
gather:
	a.heads = a.heads[:0]
	off := 0
	for off < len(frame) {
		c := &a.chain
		if len(a.heads) == 0 {
			c = &a.first
		}
		ok, err := a.rxq.Pop(c)
		if err != nil {
			return false, err
		}
		if !ok {
			if len(a.heads) >= int(a.rxq.Size) {
				break // the whole ring cannot hold it
			}
			a.rxq.UndoN(uint16(len(a.heads)))
			more, err := a.rxq.ArmNotify()
			if err != nil {
				return false, err
			}
			if more {
				goto gather
			}
			return false, nil
		}
		n := c.WriteIn(frame[off:], 0)
		off += n
		a.heads = append(a.heads, usedElem{c.Head, uint32(n)})
		if !a.mrg {
			break // one chain per frame
		}
	}
	fits := off == len(frame) && a.first.InLen >= VnetHdrSize
	if l := d.cfg.RxLimiter; l != nil && fits {
		if ok, wait := l.Allow(1, uint64(len(frame))); !ok {
			a.rxq.UndoN(uint16(len(a.heads)))
			d.rxThrottled.Add(1)
			a.retryAt = time.Now().Add(wait)
			return false, nil
		}
	}
	if fits {
		var nb [2]byte
		binary.LittleEndian.PutUint16(nb[:], uint16(len(a.heads)))
		a.first.WriteIn(nb[:], 10) // num_buffers
		d.rxBytes.Add(uint64(len(frame)))
		d.rxPackets.Add(1)
	} else {
		// Too big for the buffers: drop it, giving the chains back empty.
		d.cfg.Log.Debugf("net: dropping a %d-byte frame the guest's buffers cannot hold", len(frame))
		d.rxDropped.Add(1)
	}
	for _, h := range a.heads {
		n := h.n
		if !fits {
			n = 0
		}
		if err := a.rxq.Add(h.head, n); err != nil {
			return false, err
		}
	}
	a.rxLen = 0
	return true, a.rxq.Publish()
}

func (d *Device) signalRx(a *active) {
	if a.rxq.NeedsSignal() {
		if err := a.t.SignalUsed(RxQueue); err != nil {
			d.cfg.Log.Errorf("Failed to send irq to the guest: %v", err)
		}
	}
}
