package e2e

import (
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/nested"
	"github.com/ember-vmm/ember/internal/testguest"
)

// kvmGuest is the test guest where TestKVM's subtests run (inside L1, or
// on this host when it has KVM).
var kvmGuest *testguest.Assets

// kvmTests are the end-to-end tests that also run against the kvm
// backend: each drives ember exactly as for qemu, with --backend kvm.
var kvmTests = []struct {
	name string
	run  func(*testing.T)
}{
	{"Boot", TestBoot},
	{"RootPersists", TestRootPersists},
	{"ReadOnlyDrive", TestReadOnlyDrive},
	{"HostileDrivePath", TestHostileDrivePath},
	{"SerialOutPath", TestSerialOutPath},
	{"DriveResize", TestDriveResize},
	{"Balloon", TestBalloon},
	{"Metrics", TestMetrics},
	{"NetworkPing", TestNetworkPing},
	{"PauseResume", TestPauseResume},
	{"CtrlAltDel", TestCtrlAltDel},
	{"CtrlAltDelWhilePaused", TestCtrlAltDelWhilePaused},
	{"GuestReboot", TestGuestReboot},
	{"GuestTripleFault", TestGuestTripleFault},
	{"GuestPoweroff", TestGuestPoweroff},
}

// TestKVM runs kvmTests against the kvm backend: directly on a host with
// hardware virtualization, otherwise inside an L1 VM under QEMU TCG with
// nested SVM, where a static ember boots the test guest as an L2 VM.
func TestKVM(t *testing.T) {
	opts := nested.Options{
		Guest:   true,
		CPUs:    2,
		Modules: []string{"tun"},
		Timeout: 15 * time.Minute,
		Files:   map[string]string{},
	}
	if !nested.Inside() {
		opts.Files["ember"] = emberBin
	}
	nested.Run(t, opts, func(t *testing.T, env *nested.Env) {
		if env.Nested {
			emberBin = env.File("ember")
		}
		g := env.Guest()
		kvmGuest = &g
		for _, tc := range kvmTests {
			t.Run(tc.name, tc.run)
		}
	})
}
