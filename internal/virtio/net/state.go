package net

import (
	"errors"
	"fmt"
	gonet "net"
)

// StateVersion is the layout version of State.
const StateVersion = 1

// ErrState means saved net device state cannot be loaded.
var ErrState = errors.New("invalid net device state")

// State is what a snapshot keeps of a net device beyond its configuration:
// the MAC it offers the guest ("" when none was configured). The tap is
// not state: a restored VM gets the tap its load names.
type State struct {
	Version int    `json:"version"`
	MAC     string `json:"mac,omitempty"`
}

// SaveState returns the device's state.
func (d *Device) SaveState() State {
	s := State{Version: StateVersion}
	if d.cfg.MAC != nil {
		s.MAC = gonet.HardwareAddr(d.config[0:6]).String()
	}
	return s
}

// RestoreState loads s into a device not yet running (before its transport
// is restored, so the driver never sees the config space change).
func (d *Device) RestoreState(s State) error {
	if s.Version != StateVersion {
		return fmt.Errorf("%w: version %d, this ember reads %d", ErrState, s.Version, StateVersion)
	}
	var mac gonet.HardwareAddr
	if s.MAC != "" {
		var err error
		if mac, err = gonet.ParseMAC(s.MAC); err != nil || len(mac) != 6 {
			return fmt.Errorf("%w: MAC %q", ErrState, s.MAC)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.act != nil {
		return fmt.Errorf("%w: the device is running", ErrState)
	}
	// The MAC feature is offered exactly when there is a MAC.
	d.cfg.MAC = mac
	clear(d.config[0:6])
	copy(d.config[0:6], mac)
	return nil
}
