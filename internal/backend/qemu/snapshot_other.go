//go:build !linux

package qemu

import (
	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/snapshot"
)

// snapshotsSupported: without memfds QEMU keeps guest RAM to itself.
const snapshotsSupported = false

// guestRAM leaves guest RAM to QEMU.
func guestRAM(_ *hypervisor.Spec, rs *restoreInputs) (*snapRAM, error) {
	if rs != nil {
		return nil, hypervisor.Unsupported(Name, "snapshots on this host")
	}
	return nil, nil
}

func (r *snapRAM) reader([]snapshot.Region) snapshot.ReadFunc { return nil }

func (r *snapRAM) resident([]snapshot.Region) ([][]uint64, error) {
	return nil, hypervisor.Unsupported(Name, "snapshots on this host")
}

func (r *snapRAM) changed([]snapshot.Region) ([][]uint64, []uint64, error) {
	return nil, nil, hypervisor.Unsupported(Name, "snapshots on this host")
}
