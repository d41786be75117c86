package vmconfig

import (
	"fmt"
	"io"
	"os"

	"github.com/ember-vmm/ember/internal/syserr"
)

// Drive returns the drive with the given id.
func (r *Resources) Drive(id string) (BlockDeviceConfig, bool) {
	for _, d := range r.drives {
		if d.DriveID == id {
			return d, true
		}
	}
	return BlockDeviceConfig{}, false
}

// CheckDrivePath opens a new backing file the way a drive update does.
func (r *Resources) CheckDrivePath(path string, readOnly bool) error {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err == nil {
		_, err = f.Seek(0, io.SeekEnd)
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("Virtio backend error: Error manipulating the backing file: %s %s", syserr.Display(err), path)
	}
	return nil
}

// SetDrivePath records a drive's new backing file after a successful update.
func (r *Resources) SetDrivePath(id, path string) {
	for i := range r.drives {
		if r.drives[i].DriveID == id {
			p := path
			r.drives[i].PathOnHost = &p
		}
	}
}

// HasNet reports whether an interface with this id exists.
func (r *Resources) HasNet(id string) bool {
	for _, n := range r.nets {
		if n.config.IfaceID == id {
			return true
		}
	}
	return false
}

// UpdateBalloonAmount records a new balloon target after boot.
func (r *Resources) UpdateBalloonAmount(mib uint32) {
	if r.balloon != nil {
		r.balloon.AmountMiB = mib
	}
}

// UpdateBalloonStatsInterval records a new statistics interval after boot.
func (r *Resources) UpdateBalloonStatsInterval(s uint16) {
	if r.balloon != nil {
		r.balloon.StatsPollingIntervalS = s
	}
}
