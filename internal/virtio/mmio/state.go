package mmio

import (
	"errors"
	"fmt"

	"github.com/ember-vmm/ember/internal/virtio"
)

// Snapshots. Quiesce stops a device the way a driver reset would, but
// keeps everything the driver sees: the registers, each queue's
// configuration and how far the device got in its rings. Restore loads
// that into a transport whose device is inactive (a fresh one, or the
// quiesced one itself) and, if the device was running, activates it on its
// queues where it stopped. Chains a device took and had not completed are
// taken again: ember's devices complete chains in the order they take them,
// so the next used slot is also the first chain not done.

// StateVersion is the layout version of State.
const StateVersion = 1

// ErrState means saved transport state cannot be loaded into this
// transport: malformed, out of bounds, of another device or layout version.
var ErrState = errors.New("invalid virtio-mmio transport state")

// State is the transport's part of a snapshot.
type State struct {
	Version     int    `json:"version"`
	DeviceType  uint32 `json:"device_type"`
	Status      uint32 `json:"status"`
	FeatSel     uint32 `json:"features_select"`
	DrvFeatSel  uint32 `json:"driver_features_select"`
	DrvFeatures uint64 `json:"driver_features"`
	QueueSel    uint32 `json:"queue_select"`
	ISR         uint32 `json:"interrupt_status"`
	ConfigGen   uint32 `json:"config_generation"`
	NeedsReset  bool   `json:"needs_reset"`
	// Active says the device was running on its queues.
	Active bool         `json:"active"`
	Queues []QueueState `json:"queues"`
}

// QueueState is one queue's configuration and position.
type QueueState struct {
	MaxSize   uint16 `json:"max_size"`
	Size      uint16 `json:"size"`
	Ready     bool   `json:"ready"`
	DescTable uint64 `json:"desc_table"`
	AvailRing uint64 `json:"avail_ring"`
	UsedRing  uint64 `json:"used_ring"`
	// NextAvail and NextUsed are the device's free-running ring positions.
	NextAvail uint16 `json:"next_avail"`
	NextUsed  uint16 `json:"next_used"`
}

// Quiesce stops the device (its Reset: nothing of it runs or touches guest
// memory afterwards) and returns the transport's state with the queues'
// positions. The transport then drops notifications until Restore.
func (t *Transport) Quiesce() (State, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	active := t.active.Load()
	if active {
		t.active.Store(false)
		if err := t.dev.Reset(); err != nil {
			return State{}, fmt.Errorf("stopping the %s device: %w", t.dev.Type(), err)
		}
		t.quiesced = true
	}
	s := State{
		Version:     StateVersion,
		DeviceType:  uint32(t.dev.Type()),
		Status:      t.status,
		FeatSel:     t.featSel,
		DrvFeatSel:  t.drvFeatSel,
		DrvFeatures: t.drvFeatures,
		QueueSel:    t.queueSel,
		ISR:         t.isr.Load(),
		ConfigGen:   t.configGen,
		NeedsReset:  t.needsReset.Load(),
		Active:      active || t.quiesced,
	}
	for _, q := range t.queues {
		qs := QueueState{
			MaxSize: q.MaxSize, Size: q.Size, Ready: q.Ready,
			DescTable: q.DescTable, AvailRing: q.AvailRing, UsedRing: q.UsedRing,
		}
		if q.Active() {
			qs.NextAvail, qs.NextUsed = q.Position()
		}
		s.Queues = append(s.Queues, qs)
	}
	return s, nil
}

// validStatus lists the status values a driver can reach: the steps of the
// initialization sequence, each possibly with FAILED.
func validStatus(s uint32) bool {
	const (
		ack = virtio.StatusAcknowledge
		drv = virtio.StatusDriver
		fok = virtio.StatusFeaturesOK
		dok = virtio.StatusDriverOK
	)
	switch s &^ virtio.StatusFailed {
	case 0, ack, ack | drv, ack | drv | fok, ack | drv | fok | dok:
		return true
	}
	return false
}

// check validates s against this transport's device.
func (t *Transport) check(s *State) error {
	offered := t.dev.Features() | virtio.Bit(virtio.FeatureVersion1)
	switch {
	case s.Version != StateVersion:
		return fmt.Errorf("%w: version %d, this ember reads %d", ErrState, s.Version, StateVersion)
	case s.DeviceType != uint32(t.dev.Type()):
		return fmt.Errorf("%w: state of a %s device for a %s device", ErrState, virtio.DeviceType(s.DeviceType), t.dev.Type())
	case !validStatus(s.Status &^ virtio.StatusDeviceNeedsReset):
		return fmt.Errorf("%w: device status %#x", ErrState, s.Status)
	case s.DrvFeatures&^offered != 0:
		return fmt.Errorf("%w: driver features %#x beyond those offered (%#x)", ErrState, s.DrvFeatures, offered)
	case s.ISR&^(IntVring|IntConfig) != 0:
		return fmt.Errorf("%w: interrupt status %#x", ErrState, s.ISR)
	case len(s.Queues) != len(t.queues):
		return fmt.Errorf("%w: %d queues for a device with %d", ErrState, len(s.Queues), len(t.queues))
	case s.Active && s.Status&virtio.StatusDriverOK == 0:
		return fmt.Errorf("%w: active device without DRIVER_OK (status %#x)", ErrState, s.Status)
	}
	for i, q := range s.Queues {
		if q.MaxSize != t.queues[i].MaxSize {
			return fmt.Errorf("%w: queue %d has maximum size %d, this device's has %d", ErrState, i, q.MaxSize, t.queues[i].MaxSize)
		}
		if n := q.NextAvail - q.NextUsed; n > q.Size {
			return fmt.Errorf("%w: queue %d is %d chains ahead of its completions, more than its size %d", ErrState, i, n, q.Size)
		}
	}
	return nil
}

// Restore loads s into the transport, whose device must be inactive (a new
// transport, or one Quiesce stopped). A device that was running is
// activated on its queues at their saved positions (its queue addresses
// checked against guest memory as the driver's own activation would be),
// looks at every queue, and gets one interrupt: what it completed just
// before it stopped may not have been signalled, and a spurious used-ring
// interrupt is harmless to a driver. A device with DEVICE_NEEDS_RESET
// stays stopped until the driver resets it.
func (t *Transport) Restore(s State) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.active.Load() {
		return fmt.Errorf("%w: the %s device is running", ErrState, t.dev.Type())
	}
	if err := t.check(&s); err != nil {
		return err
	}
	t.status = s.Status &^ virtio.StatusDeviceNeedsReset
	t.featSel, t.drvFeatSel, t.drvFeatures, t.queueSel = s.FeatSel, s.DrvFeatSel, s.DrvFeatures, s.QueueSel
	t.configGen = s.ConfigGen
	t.isr.Store(s.ISR)
	t.needsReset.Store(s.NeedsReset)
	t.quiesced = false
	for i, qs := range s.Queues {
		q := t.queues[i]
		q.ResetConfig()
		q.Size, q.Ready = qs.Size, qs.Ready
		q.DescTable, q.AvailRing, q.UsedRing = qs.DescTable, qs.AvailRing, qs.UsedRing
	}
	if !s.Active || s.NeedsReset || s.Status&virtio.StatusFailed != 0 {
		return nil
	}
	eventIdx := t.drvFeatures&virtio.Bit(virtio.FeatureRingEventIdx) != 0
	a := virtio.Activation{
		Mem:       t.mem,
		Queues:    make([]*virtio.Queue, len(t.queues)),
		Features:  t.drvFeatures,
		Transport: t,
	}
	for i, q := range t.queues {
		if !q.Ready {
			continue
		}
		if err := q.Activate(t.mem, eventIdx); err != nil {
			return fmt.Errorf("%w: queue %d: %w", ErrState, i, err)
		}
		q.SetPosition(s.Queues[i].NextUsed, s.Queues[i].NextUsed)
		a.Queues[i] = q
	}
	if err := t.dev.Activate(a); err != nil {
		return fmt.Errorf("activating the restored %s device: %w", t.dev.Type(), err)
	}
	t.active.Store(true)
	for i, q := range a.Queues {
		if q != nil {
			t.dev.Notify(i)
		}
	}
	t.isr.Or(IntVring)
	if err := t.irq.Signal(); err != nil {
		t.log.Errorf("Failed to send irq to the guest: %v", err)
	}
	return nil
}
