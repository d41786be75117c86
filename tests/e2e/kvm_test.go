package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
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
	{"Devices", kvmDevices},
	{"BadInput", kvmBadInput},
	{"HugePages2M", kvmHugePages2M},
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

// kvmDevices checks, through the guest, the devices the kvm backend has and
// the qemu backend has not (or not the same way): the entropy device with
// Firecracker's feature set, the boot timer, and transparent huge pages
// backing guest RAM inside ember itself.
func kvmDevices(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{args: []string{"--boot-timer"}})
	e.mustAPI("PUT", "/machine-config", map[string]any{"vcpu_count": 1, "mem_size_mib": 128, "huge_pages": "Transparent"}, http.StatusNoContent)
	e.mustAPI("PUT", "/entropy", map[string]any{}, http.StatusNoContent)
	e.putBootSource(a.Vmlinux, a.Initramfs, testguest.Script(`
devmem 0xc0000000 8 123
echo "EMBER-GUEST: rng $(cat /sys/class/misc/hw_random/rng_current) $(head -c 16 /dev/hwrng | od -An -tx1 | tr -d ' \n')"
for d in /sys/bus/virtio/devices/*; do echo "EMBER-GUEST: virtio $(cat $d/device) $(cat $d/features)"; done
`), testguest.End(testguest.EndWait))
	e.action("InstanceStart")
	e.waitLine(testguest.MarkerReady, bootTimeout)

	if l := e.waitLine("Guest-boot-time = ", exitTimeout); !bootTimeLine.MatchString(l) {
		t.Errorf("boot timer line %q is not Firecracker's format", l)
	}
	rng := strings.Fields(e.waitLine("EMBER-GUEST: rng ", exitTimeout))
	if len(rng) != 4 || !strings.HasPrefix(rng[2], "virtio_rng") || len(rng[3]) != 32 {
		t.Errorf("entropy device: %q, want virtio_rng and 16 random bytes", rng)
	}
	feats := strings.Fields(e.waitLine("EMBER-GUEST: virtio 0x0004 ", exitTimeout))
	if want := strings.Repeat("0", 32) + "1" + strings.Repeat("0", 31); len(feats) != 4 || feats[3] != want {
		t.Errorf("entropy features %q, want VERSION_1 only (%s)", feats, want)
	}
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || !strings.Contains(string(mode), "[always]") && !strings.Contains(string(mode), "[madvise]") {
		t.Logf("NOT CHECKING huge pages: transparent huge pages are off on this host (%q, %v)", mode, err)
		return
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", e.pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`AnonHugePages:\s+(\d+) kB`).FindStringSubmatch(string(b))
	if m == nil || m[1] == "0" {
		t.Errorf("huge_pages Transparent: ember's guest RAM has no transparent huge pages (%v)", m)
	}
}

// bootTimeLine is Firecracker's boot timer log line.
var bootTimeLine = regexp.MustCompile(`Guest-boot-time = +\d+ us \d+ ms, +\d+ CPU us \d+ CPU ms$`)

// kvmBadInput: boot inputs the kvm backend's loader refuses answer
// InstanceStart with a 400 and Firecracker's text, and the same process
// then boots a good configuration.
func kvmBadInput(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	start := func() (int, string) {
		return e.api("PUT", "/actions", map[string]string{"action_type": "InstanceStart"})
	}
	for _, tc := range []struct {
		name   string
		memMiB int
		initrd string
		want   string
	}{
		{"initrd does not fit", 96, a.Rootfs,
			"Start microvm error: Error with initrd initialization: Failed to compute the initrd address.."},
		{"memory too small for the kernel", 8, "",
			"Start microvm error: System configuration error: Cannot load kernel due to invalid memory configuration or invalid kernel image: Kernel Loader: memory to load kernel image is not enough"},
	} {
		e.putMachine(tc.memMiB)
		e.putBootSource(a.Vmlinux, tc.initrd)
		code, body := start()
		var fault struct {
			FaultMessage string `json:"fault_message"`
		}
		if err := json.Unmarshal([]byte(body), &fault); code != http.StatusBadRequest || err != nil || fault.FaultMessage != tc.want {
			t.Errorf("%s: InstanceStart answered %d %s, want 400 with %q", tc.name, code, body, tc.want)
		}
		if got := e.instanceState(); got != "Not started" {
			t.Errorf("%s: state %q after a refused start", tc.name, got)
		}
	}
	e.boot(a, 128, testguest.End(testguest.EndReboot))
	e.waitLine(testguest.MarkerReady, bootTimeout)
	e.wantExit(0, bootTimeout)
}

// kvmHugePages2M: huge_pages 2M puts guest RAM on hugetlbfs pages, reserved
// when the VM is built, so a host short of them refuses InstanceStart with
// a clear message instead of failing the guest later. Inside L1 the test
// sizes L1's pool itself; on a real host it uses what the host has.
func kvmHugePages2M(t *testing.T) {
	a := requireVM(t)
	const pool = "/proc/sys/vm/nr_hugepages"
	setPool := func(n int) {
		t.Helper()
		if err := os.WriteFile(pool, []byte(strconv.Itoa(n)), 0o644); err != nil {
			t.Fatalf("set %s to %d: %v", pool, n, err)
		}
	}
	if nested.Inside() {
		setPool(0)
		t.Cleanup(func() { setPool(0) })
	}
	e := startEmber(t, startOpts{})
	e.mustAPI("PUT", "/machine-config", map[string]any{"vcpu_count": 1, "mem_size_mib": 128, "huge_pages": "2M"}, http.StatusNoContent)
	e.putBootSource(a.Vmlinux, a.Initramfs, testguest.End(testguest.EndReboot))
	if nested.Inside() {
		code, body := e.api("PUT", "/actions", map[string]string{"action_type": "InstanceStart"})
		if code != http.StatusBadRequest || !strings.Contains(body, "huge_pages 2M") {
			t.Errorf("InstanceStart with no free huge pages: %d %s, want a 400 naming huge_pages 2M", code, body)
		}
		setPool(64)
	} else if free := hugePagesFreeHere(t); free < 64 {
		t.Skipf("SKIPPING huge_pages 2M on the kvm backend: this host has %d free 2 MiB huge pages, the guest needs 64", free)
	}
	e.action("InstanceStart")
	e.waitLine(testguest.MarkerReady, bootTimeout)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", e.pid))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(Shared|Private)_Hugetlb:\s+[1-9]`).Match(b) {
		t.Errorf("guest RAM is not on huge pages:\n%s", b)
	}
	e.wantExit(0, bootTimeout)
}

// hugePagesFreeHere reads HugePages_Free from /proc/meminfo.
func hugePagesFreeHere(t *testing.T) int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`HugePages_Free:\s+(\d+)`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
