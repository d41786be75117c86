package kvm

import (
	"github.com/ember-vmm/ember/internal/hypervisor"
)

// Name is the backend's --backend value.
const Name = "kvm"

func init() { hypervisor.Register(&Backend{}) }

// Backend runs VMs on /dev/kvm in this process.
type Backend struct{}

// Name returns "kvm".
func (*Backend) Name() string { return Name }

// Capabilities reports what the built-in VMM implements today. Pmem and
// memory hotplug are not implemented yet.
func (*Backend) Capabilities() hypervisor.Capabilities {
	return hypervisor.Capabilities{
		Vsock:              true,
		MMDS:               true,
		NetRateLimiter:     true,
		BlockRateLimiter:   true,
		EntropyRateLimiter: true,
		Balloon:            true,
		BalloonStats:       true,
		FreePageReporting:  true,
		Entropy:            true,
		HugePages:          true,
		BootTimer:          true,
		DrivePathUpdate:    true,
		SendCtrlAltDel:     true,
		Snapshot:           true,
		DiffSnapshot:       true,
		SnapshotUffd:       uffdSupported,
		TrackDirtyPages:    true,
	}
}

func unavailable(reason string) error {
	return &hypervisor.UnavailableError{Backend: Name, Reason: reason}
}
