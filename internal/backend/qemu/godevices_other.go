//go:build !linux

package qemu

import (
	"os"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/vmconfig"
)

// goDevices needs vhost-user, which ember serves on Linux only.
type goDevices struct{}

func startGoDevices(spec *hypervisor.Spec, _ hypervisor.Env, _ []string) (*goDevices, error) {
	if usesVhostUser(spec) {
		return nil, hypervisor.Unsupported(Name, "vsock, MMDS and rate limiters on this operating system")
	}
	return nil, nil
}

func (*goDevices) frontEnds() (drives []*os.File, nets []string, vsock, rng *os.File) {
	return nil, nil, nil, nil
}
func (*goDevices) releaseFrontEnds()                                           {}
func (*goDevices) close()                                                      {}
func (*goDevices) updateDrive(string, string) (bool, error)                    { return false, nil }
func (*goDevices) updateDriveLimiter(string, *vmconfig.RateLimiterConfig) bool { return false }
func (*goDevices) updateNetLimiters(_ string, _, _ *vmconfig.RateLimiterConfig) bool {
	return false
}
func (*goDevices) stats(*hypervisor.DeviceStats) {}
