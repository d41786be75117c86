package vsock

import (
	"errors"
	"fmt"
)

// State is what a snapshot keeps of the device beyond its transport: the
// last host port handed to a host-initiated connection. Connections do not
// survive a snapshot, but sockets the guest held for them may outlive the
// TRANSPORT_RESET until its programs close them; a restored device that
// handed out the same ports again would reach those sockets, which refuse
// the new connection. So it carries on from where the snapshot left off,
// as Firecracker does.
type State struct {
	LocalPortLast uint32 `json:"local_port_last"`
}

// ErrState: a State no device could have written.
var ErrState = errors.New("vsock: bad device state")

// SaveState returns the device's state.
func (d *Device) SaveState() State {
	var s State
	err := d.onWorker(func(a *active) error {
		s.LocalPortLast = a.mux.lastLP
		return nil
	})
	if err != nil { // not active: what the next activation starts from
		d.mu.Lock()
		s.LocalPortLast = d.portLast()
		d.mu.Unlock()
	}
	return s
}

// RestoreState sets where the device's next activation hands out host
// ports from. Call it before the transport is restored.
func (d *Device) RestoreState(s State) error {
	if p := s.LocalPortLast; p != LocalPortFirst-1 && p != p&^(1<<31)|1<<30 {
		return fmt.Errorf("%w: local_port_last %#x is not a host port", ErrState, p)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.act != nil {
		return errors.New("vsock: RestoreState on an active device")
	}
	d.restoredLP = s.LocalPortLast
	return nil
}

// portLast is where a new muxer starts. d.mu is held.
func (d *Device) portLast() uint32 {
	if d.restoredLP != 0 {
		return d.restoredLP
	}
	return LocalPortFirst - 1
}
