package conformance

import (
	"fmt"
	"os/exec"
	"testing"

	"github.com/ember-vmm/ember/internal/testguest"
)

// guest is a bootable test guest: the kernel and initramfs are shared, the
// root file system is a private copy.
type guest struct {
	kernel, initrd, rootfs string
}

// requireGuest returns the test guest, skipping loudly when QEMU (the only
// backend that can boot it here) is missing.
func requireGuest(t testing.TB) guest {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("SKIPPED: qemu-system-x86_64 is not installed, so no guest can boot; post-boot conformance is NOT checked")
	}
	a := testguest.Require(t)
	return guest{kernel: a.Vmlinux, initrd: a.Initramfs, rootfs: testguest.RootfsCopy(t)}
}

// bootArgs keeps the guest up (ember.end=wait) or makes it reboot once
// ready (ember.end=reboot), which ends the VM as Firecracker's does.
func bootArgs(end string) string {
	return "console=ttyS0 reboot=k panic=1 " + testguest.End(end)
}

// bootSourceBody is PUT /boot-source for the guest.
func (g guest) bootSourceBody(end string) string {
	return fmt.Sprintf(`{"kernel_image_path":%s,"initrd_path":%s,"boot_args":%s}`,
		serdeQuote(g.kernel), serdeQuote(g.initrd), serdeQuote(bootArgs(end)))
}

// rootDriveBody is PUT /drives/rootfs for the guest's root file system.
func (g guest) rootDriveBody() string {
	return fmt.Sprintf(`{"drive_id":"rootfs","path_on_host":%s,"is_root_device":true,"is_read_only":false}`, serdeQuote(g.rootfs))
}

const (
	endWait   = testguest.EndWait
	endReboot = testguest.EndReboot
)
