// Package mmio is the virtio-mmio transport, version 2 ("modern"), as
// Firecracker presents it: one 4 KiB window per device with the registers
// of virtio 1.2 §4.2.2 and the device's config space at 0x100, vendor id 0,
// one interrupt line whose cause is in InterruptStatus.
//
// A Transport is a bus.Device. Queue notifications arrive either as writes
// to QueueNotify (0x50) or from outside: the kvm backend registers an
// ioeventfd on base+NotifyOffset with datamatch = queue index for each
// queue (QueueCount) and calls Notify when one fires, so notifications
// never cost a vCPU exit to userspace.
//
// Invariants: register accesses at 0x000-0x0ff are 4 bytes wide (others
// are logged and ignored, reads giving zeros); the driver's status only
// moves along the virtio initialization sequence; queues are configurable
// only between FEATURES_OK and DRIVER_OK; the device sees its queues only
// after DRIVER_OK and never after a reset. Driver-acknowledged features
// are limited to those offered.
package mmio

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/virtio"
)

// Window layout.
const (
	// Size is the MMIO window of one device.
	Size = 0x1000
	// NotifyOffset is the QueueNotify register, where the backend attaches
	// ioeventfds.
	NotifyOffset = 0x50
	// ConfigOffset is where the device's config space starts.
	ConfigOffset = 0x100
)

// Registers (virtio 1.2 §4.2.2).
const (
	RegMagic            = 0x000
	RegVersion          = 0x004
	RegDeviceID         = 0x008
	RegVendorID         = 0x00c
	RegDeviceFeatures   = 0x010
	RegDeviceFeatSel    = 0x014
	RegDriverFeatures   = 0x020
	RegDriverFeatSel    = 0x024
	RegQueueSel         = 0x030
	RegQueueNumMax      = 0x034
	RegQueueNum         = 0x038
	RegQueueReady       = 0x044
	RegQueueNotify      = 0x050
	RegInterruptStatus  = 0x060
	RegInterruptAck     = 0x064
	RegStatus           = 0x070
	RegQueueDescLow     = 0x080
	RegQueueDescHigh    = 0x084
	RegQueueDriverLow   = 0x090
	RegQueueDriverHigh  = 0x094
	RegQueueDeviceLow   = 0x0a0
	RegQueueDeviceHigh  = 0x0a4
	RegConfigGeneration = 0x0fc
)

// Register values.
const (
	MagicValue = 0x74726976 // "virt"
	Version    = 2
	VendorID   = 0
)

// InterruptStatus bits.
const (
	IntVring  uint32 = 1
	IntConfig uint32 = 2
)

// Transport is one virtio-mmio device window.
type Transport struct {
	dev virtio.Device
	mem virtio.Memory
	irq virtio.Interrupt
	log logger.Log

	mu          sync.Mutex // registers, queue configuration, device calls
	queues      []*virtio.Queue
	featSel     uint32
	drvFeatSel  uint32
	drvFeatures uint64
	queueSel    uint32
	status      uint32
	configGen   uint32
	// quiesced says Quiesce stopped a running device, which Restore
	// starts again.
	quiesced bool

	isr        atomic.Uint32
	needsReset atomic.Bool // set from the device's goroutines, without mu
	active     atomic.Bool
}

// New builds the transport for dev over guest memory mem, raising irq for
// its interrupts. log receives Firecracker's warnings for misbehaving
// drivers.
func New(dev virtio.Device, mem virtio.Memory, irq virtio.Interrupt, log logger.Log) *Transport {
	t := &Transport{dev: dev, mem: mem, irq: irq, log: log}
	for _, max := range dev.QueueMaxSizes() {
		t.queues = append(t.queues, virtio.NewQueue(max))
	}
	return t
}

// Device returns the device model behind the transport.
func (t *Transport) Device() virtio.Device { return t.dev }

// QueueCount returns the number of queues, for registering one ioeventfd
// per queue.
func (t *Transport) QueueCount() int { return len(t.queues) }

// Status returns the device status register as the driver reads it.
func (t *Transport) Status() uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.statusLocked()
}

// Active reports whether the device is running (DRIVER_OK, activated).
func (t *Transport) Active() bool { return t.active.Load() }

func (t *Transport) statusLocked() uint32 {
	s := t.status
	if t.needsReset.Load() {
		s |= virtio.StatusDeviceNeedsReset
	}
	return s
}

func (t *Transport) has(set, clear uint32) bool {
	return t.statusLocked()&(set|clear) == set
}

// Notify delivers a driver notification for queue q, from QueueNotify or
// an ioeventfd. Notifications before activation are dropped: the device
// looks at every queue when it activates.
func (t *Transport) Notify(q uint32) {
	if !t.active.Load() || q >= uint32(len(t.queues)) {
		return
	}
	t.dev.Notify(int(q))
}

// SignalUsed implements virtio.Transport.
func (t *Transport) SignalUsed(int) error {
	t.isr.Or(IntVring)
	return t.irq.Signal()
}

// ChangeConfig implements virtio.Transport: the update runs under the
// transport's lock, so no config-space read sees it half done, and the
// config generation moves on before the interrupt.
func (t *Transport) ChangeConfig(update func()) error {
	t.mu.Lock()
	update()
	t.configGen++
	t.mu.Unlock()
	return t.signalConfig()
}

func (t *Transport) signalConfig() error {
	t.isr.Or(IntConfig)
	return t.irq.Signal()
}

// NeedsReset implements virtio.Transport.
func (t *Transport) NeedsReset(err error) {
	if t.needsReset.Swap(true) {
		return
	}
	t.log.Errorf("virtio %s device needs a reset: %v", t.dev.Type(), err)
	if err := t.signalConfig(); err != nil {
		t.log.Errorf("Failed to send irq to the guest: %v", err)
	}
}

// Read implements bus.Device.
func (t *Transport) Read(off uint64, data []byte) {
	switch {
	case off < ConfigOffset && len(data) == 4:
		v, ok := t.readReg(off)
		if !ok {
			t.log.Warnf("unknown virtio mmio register read: %#x", off)
			v = 0
		}
		binary.LittleEndian.PutUint32(data, v)
	case off >= ConfigOffset && off < Size:
		t.mu.Lock()
		t.dev.ReadConfig(off-ConfigOffset, data)
		t.mu.Unlock()
	default:
		t.log.Warnf("invalid virtio mmio read: %#x:%#x", off, len(data))
		clear(data)
	}
}

func (t *Transport) readReg(off uint64) (uint32, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch off {
	case RegMagic:
		return MagicValue, true
	case RegVersion:
		return Version, true
	case RegDeviceID:
		return uint32(t.dev.Type()), true
	case RegVendorID:
		return VendorID, true
	case RegDeviceFeatures:
		f := t.dev.Features() | virtio.Bit(virtio.FeatureVersion1)
		switch t.featSel {
		case 0:
			return uint32(f), true
		case 1:
			return uint32(f >> 32), true
		}
		t.log.Warnf("Received request for unknown features page.")
		return 0, true
	case RegQueueNumMax:
		if q := t.selected(); q != nil {
			return uint32(q.MaxSize), true
		}
		return 0, true
	case RegQueueReady:
		if q := t.selected(); q != nil && q.Ready {
			return 1, true
		}
		return 0, true
	case RegInterruptStatus:
		return t.isr.Load(), true
	case RegStatus:
		return t.statusLocked(), true
	case RegConfigGeneration:
		return t.configGen, true
	}
	return 0, false
}

func (t *Transport) selected() *virtio.Queue {
	if t.queueSel < uint32(len(t.queues)) {
		return t.queues[t.queueSel]
	}
	return nil
}

// Write implements bus.Device.
func (t *Transport) Write(off uint64, data []byte) {
	switch {
	case off < ConfigOffset && len(data) == 4:
		v := binary.LittleEndian.Uint32(data)
		if off == RegQueueNotify {
			// Not under mu: the device's Notify must not wait on a reset or a
			// config access, and this is the hot path.
			t.Notify(v)
			return
		}
		t.writeReg(off, v)
	case off >= ConfigOffset && off < Size:
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.has(virtio.StatusDriver, virtio.StatusFailed|virtio.StatusDeviceNeedsReset) {
			t.log.Warnf("can not write to device config data area before driver is ready")
			return
		}
		t.dev.WriteConfig(off-ConfigOffset, data)
	default:
		t.log.Warnf("invalid virtio mmio write: %#x:%#x", off, len(data))
	}
}

func (t *Transport) writeReg(off uint64, v uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch off {
	case RegDeviceFeatSel:
		t.featSel = v
	case RegDriverFeatures:
		if !t.has(virtio.StatusDriver, virtio.StatusFeaturesOK|virtio.StatusFailed|virtio.StatusDeviceNeedsReset) {
			t.log.Warnf("ack virtio features in invalid state %#x", t.statusLocked())
			return
		}
		t.ackFeatures(v)
	case RegDriverFeatSel:
		t.drvFeatSel = v
	case RegQueueSel:
		t.queueSel = v
	case RegQueueNum:
		t.updateQueue(func(q *virtio.Queue) { q.Size = uint16(v) })
	case RegQueueReady:
		t.updateQueue(func(q *virtio.Queue) { q.Ready = v == 1 })
	case RegInterruptAck:
		if t.has(virtio.StatusDriverOK, 0) {
			t.isr.And(^v)
		}
	case RegStatus:
		t.setStatus(v)
	case RegQueueDescLow:
		t.updateQueue(func(q *virtio.Queue) { q.DescTable = lo(q.DescTable, v) })
	case RegQueueDescHigh:
		t.updateQueue(func(q *virtio.Queue) { q.DescTable = hi(q.DescTable, v) })
	case RegQueueDriverLow:
		t.updateQueue(func(q *virtio.Queue) { q.AvailRing = lo(q.AvailRing, v) })
	case RegQueueDriverHigh:
		t.updateQueue(func(q *virtio.Queue) { q.AvailRing = hi(q.AvailRing, v) })
	case RegQueueDeviceLow:
		t.updateQueue(func(q *virtio.Queue) { q.UsedRing = lo(q.UsedRing, v) })
	case RegQueueDeviceHigh:
		t.updateQueue(func(q *virtio.Queue) { q.UsedRing = hi(q.UsedRing, v) })
	default:
		t.log.Warnf("unknown virtio mmio register write: %#x", off)
	}
}

func lo(a uint64, v uint32) uint64 { return a&^0xffff_ffff | uint64(v) }
func hi(a uint64, v uint32) uint64 { return a&0xffff_ffff | uint64(v)<<32 }

func (t *Transport) ackFeatures(v uint32) {
	var f uint64
	switch t.drvFeatSel {
	case 0:
		f = uint64(v)
	case 1:
		f = uint64(v) << 32
	default:
		t.log.Warnf("Cannot acknowledge unknown features page: %d", t.drvFeatSel)
		return
	}
	offered := t.dev.Features() | virtio.Bit(virtio.FeatureVersion1)
	if f&^offered != 0 {
		t.log.Warnf("Received acknowledge request for unknown feature: %#x", f)
		f &= offered
	}
	t.drvFeatures |= f
}

func (t *Transport) updateQueue(f func(*virtio.Queue)) {
	if !t.has(virtio.StatusFeaturesOK, virtio.StatusDriverOK|virtio.StatusFailed) {
		t.log.Warnf("update virtio queue in invalid state %#x", t.statusLocked())
		return
	}
	if q := t.selected(); q != nil {
		f(q)
	}
}

// setStatus follows the initialization sequence of virtio 1.2 §3.1.1.
func (t *Transport) setStatus(v uint32) {
	const (
		ack  = virtio.StatusAcknowledge
		drv  = virtio.StatusDriver
		fok  = virtio.StatusFeaturesOK
		dok  = virtio.StatusDriverOK
		init = 0
	)
	switch {
	case v&virtio.StatusFailed != 0:
		t.status |= virtio.StatusFailed
	case v == init:
		if t.statusLocked() != init {
			t.reset()
		}
	case t.status == init && v == ack,
		t.status == ack && v == ack|drv,
		t.status == ack|drv && v == ack|drv|fok:
		t.status = v
	case t.status == ack|drv|fok && v == ack|drv|fok|dok:
		t.status = v
		t.activate()
	default:
		t.log.Warnf("invalid virtio driver status transition: %#x -> %#x", t.statusLocked(), v)
	}
}

func (t *Transport) activate() {
	eventIdx := t.drvFeatures&virtio.Bit(virtio.FeatureRingEventIdx) != 0
	a := virtio.Activation{
		Mem:       t.mem,
		Queues:    make([]*virtio.Queue, len(t.queues)),
		Features:  t.drvFeatures,
		Transport: t,
	}
	var err error
	for i, q := range t.queues {
		if !q.Ready {
			continue
		}
		if err = q.Activate(t.mem, eventIdx); err != nil {
			err = fmt.Errorf("queue %d: %w", i, err)
			break
		}
		a.Queues[i] = q
	}
	if err == nil {
		err = t.dev.Activate(a)
	}
	if err != nil {
		// Virtio 1.2 §2.1.2: tell the driver with a config interrupt.
		t.status |= virtio.StatusDeviceNeedsReset
		t.log.Errorf("Failed to activate virtio device: %v", err)
		if err := t.signalConfig(); err != nil {
			t.log.Errorf("Failed to send irq to the guest: %v", err)
		}
		return
	}
	t.active.Store(true)
	// Buffers the driver made available before DRIVER_OK get looked at now.
	for i, q := range a.Queues {
		if q != nil {
			t.dev.Notify(i)
		}
	}
}

func (t *Transport) reset() {
	t.active.Store(false)
	if err := t.dev.Reset(); err != nil {
		t.log.Errorf("virtio %s device reset failed: %v", t.dev.Type(), err)
		t.status |= virtio.StatusFailed
		return
	}
	for _, q := range t.queues {
		q.ResetConfig()
	}
	t.featSel, t.drvFeatSel, t.drvFeatures, t.queueSel = 0, 0, 0, 0
	t.isr.Store(0)
	t.needsReset.Store(false)
	t.status = 0
	t.quiesced = false
	// The config generation keeps counting across resets.
}
