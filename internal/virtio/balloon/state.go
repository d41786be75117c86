package balloon

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ember-vmm/ember/internal/hypervisor"
)

// StateVersion is the layout version of State.
const StateVersion = 1

// ErrState means saved balloon state does not fit this device.
var ErrState = errors.New("invalid balloon state")

// State is what a snapshot keeps of the balloon beyond its configuration:
// the sizes in its config space, the statistics interval (PATCH may have
// changed it) and the last statistics the guest reported.
type State struct {
	Version        int    `json:"version"`
	TargetPages    uint32 `json:"num_pages"`
	ActualPages    uint32 `json:"actual_pages"`
	FreePageHintID uint32 `json:"free_page_hint_cmd_id"`
	StatsIntervalS uint16 `json:"stats_polling_interval_s"`
	// Stats carries only the guest-reported counters; the sizes come from
	// the fields above.
	Stats hypervisor.BalloonStats `json:"stats"`
}

// SaveState returns the balloon's state. Take it before the device is
// stopped for a snapshot: a reset forgets what the guest reported.
func (d *Device) SaveState() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return State{
		Version:        StateVersion,
		TargetPages:    binary.LittleEndian.Uint32(d.config[0:]),
		ActualPages:    binary.LittleEndian.Uint32(d.config[4:]),
		FreePageHintID: binary.LittleEndian.Uint32(d.config[8:]),
		StatsIntervalS: d.interval,
		Stats:          d.stats,
	}
}

// RestoreState loads s into an inactive balloon configured as the saved
// one was (statistics on or off alike).
func (d *Device) RestoreState(s State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case s.Version != StateVersion:
		return fmt.Errorf("%w: version %d, this ember reads %d", ErrState, s.Version, StateVersion)
	case d.act != nil:
		return fmt.Errorf("%w: the device is running", ErrState)
	case (s.StatsIntervalS != 0) != d.withStats:
		return fmt.Errorf("%w: statistics interval %d s for a balloon with statistics %s", ErrState, s.StatsIntervalS, onOff(d.withStats))
	}
	binary.LittleEndian.PutUint32(d.config[0:], s.TargetPages)
	binary.LittleEndian.PutUint32(d.config[4:], s.ActualPages)
	binary.LittleEndian.PutUint32(d.config[8:], s.FreePageHintID)
	d.interval = s.StatsIntervalS
	d.stats = s.Stats
	d.stats.TargetPages, d.stats.ActualPages, d.stats.TargetMiB, d.stats.ActualMiB = 0, 0, 0, 0
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
