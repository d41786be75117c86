package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
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
	{"MMDS", testMMDS},
	{"DriveRateLimiter", testDriveRateLimiter},
	{"NetRateLimiter", testNetRateLimiter},
	{"Vsock", testVsock},
	{"SnapshotRestore", testSnapshotRestore},
	{"SnapshotClones", testSnapshotClones},
	{"SnapshotDiff", testSnapshotDiff},
	{"SnapshotVsockMMDS", testSnapshotVsockMMDS},
	{"SnapshotClockRealtime", testSnapshotClockRealtime},
	{"SnapshotGoDevices", testSnapshotGoDevices},
	{"SnapshotUffd", testSnapshotUffd},
	{"SnapshotUffd2M", kvmSnapshotUffd2M},
	{"EntropyRateLimiter", testEntropyRateLimiter},
}

// TestKVM runs kvmTests against the kvm backend: directly on a host with
// hardware virtualization, otherwise inside an L1 VM under QEMU TCG with
// nested SVM, where a static ember boots the test guest as an L2 VM.
func TestKVM(t *testing.T) {
	opts := nested.Options{
		Guest: true,
		CPUs:  2,
		// Room for the parallel subtests' L2 guests all booting at once
		// (1 GiB ran out once every subtest was in).
		MemoryMiB: 3072,
		Modules:   []string{"tun"},
		// 27 subtests in one L1, some of them several guests each: 15 to 20
		// minutes under TCG.
		Timeout: 22 * time.Minute,
		Files:   map[string]string{},
	}
	if !nested.Inside() {
		opts.Files["ember"] = emberBin
	}
	if v := os.Getenv("EMBER_VSOCK_MIB"); v != "" {
		opts.Env = append(opts.Env, "EMBER_VSOCK_MIB="+v) // testVsock's transfer size
	}
	// -run cannot pick subtests: L1 runs TestKVM whole. EMBER_KVM_ONLY, a
	// regular expression, keeps the subtests whose names it matches.
	only := regexp.MustCompile(os.Getenv("EMBER_KVM_ONLY"))
	opts.Env = append(opts.Env, "EMBER_KVM_ONLY="+only.String())
	nested.Run(t, opts, func(t *testing.T, env *nested.Env) {
		if env.Nested {
			emberBin = env.File("ember")
		}
		g := env.Guest()
		kvmGuest = &g
		for _, tc := range kvmTests {
			if !only.MatchString(tc.name) {
				continue
			}
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

// testMMDS (either backend): the guest reads the metadata service over its interface, V1
// without a token and V2 with one (refused without or with a bad one), and
// sees PATCH /mmds made while it runs.
func testMMDS(t *testing.T) {
	for _, version := range []string{"V1", "V2"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			a := requireVM(t)
			ns := newNetns(t)
			tap := "mmdstap" + version // L1 runs both in one namespace
			addTap(t, ns, tap)
			ip(t, "-n", ns, "link", "set", tap, "up")
			e := startEmber(t, startOpts{netns: ns})
			e.mustAPI("PUT", "/network-interfaces/eth0", map[string]string{
				"iface_id": "eth0", "host_dev_name": tap, "guest_mac": "06:00:ac:10:00:02",
			}, http.StatusNoContent)
			e.mustAPI("PUT", "/mmds/config", map[string]any{"version": version, "network_interfaces": []string{"eth0"}}, http.StatusNoContent)
			e.mustAPI("PUT", "/mmds", map[string]any{"latest": map[string]any{"meta-data": map[string]any{"ami-id": "ami-12345678"}}}, http.StatusNoContent)
			// nc sends the token PUT (busybox wget cannot PUT); wget the GETs.
			e.boot(a, 128, testguest.Net("169.254.0.2/16"), testguest.Script(`
M=169.254.169.254
tok=$(printf 'PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n' | timeout 3 nc $M 80 | tail -n 1)
echo "EMBER-GUEST: token ${#tok}"
get() { r=$(wget -q -O - --header "X-metadata-token: $1" http://$M/latest/meta-data/ami-id 2>&1); echo "$r rc=$?"; }
echo "EMBER-GUEST: with-token $(get "$tok")"
echo "EMBER-GUEST: bad-token $(get "not-a-token")"
r=$(wget -q -O - http://$M/latest/meta-data/ami-id 2>&1)
echo "EMBER-GUEST: no-token $r rc=$?"
(for i in $(seq 1 120); do echo "EMBER-GUEST: poll $(get "$tok")"; sleep 0.5; done) &
`), testguest.End(testguest.EndWait))
			e.waitLine(testguest.MarkerReady, bootTimeout)
			if l := e.waitLine("EMBER-GUEST: token ", exitTimeout); l == "EMBER-GUEST: token 0" {
				t.Errorf("no token from PUT /latest/api/token: %q", l)
			}
			want := map[string]string{"with-token": "ami-12345678 rc=0"}
			if version == "V1" {
				want["bad-token"], want["no-token"] = "ami-12345678 rc=0", "ami-12345678 rc=0"
			} else {
				want["bad-token"], want["no-token"] = "401 rc=1", "401 rc=1"
			}
			for k, w := range want {
				l := e.waitLine("EMBER-GUEST: "+k+" ", exitTimeout)
				got := strings.TrimPrefix(l, "EMBER-GUEST: "+k+" ")
				if w == "401 rc=1" {
					if !strings.Contains(got, "401") || !strings.HasSuffix(got, "rc=1") {
						t.Errorf("%s %s: %q, want a 401 refusal", version, k, got)
					}
				} else if got != w {
					t.Errorf("%s %s: %q, want %q", version, k, got, w)
				}
			}
			e.mustAPI("PATCH", "/mmds", map[string]any{"latest": map[string]any{"meta-data": map[string]any{"ami-id": "ami-patched"}}}, http.StatusNoContent)
			e.waitLine("EMBER-GUEST: poll ami-patched rc=0", bootTimeout)
		})
	}
}

// testDriveRateLimiter (either backend): a drive limited to 256 KiB/s holds
// the guest's direct writes to that rate (±10 %), and a PATCH to 512 KiB/s
// while the guest runs takes effect for the next writes.
func testDriveRateLimiter(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	dir := t.TempDir()
	e := startEmber(t, startOpts{})
	// 64 KiB every 250 ms: 256 KiB/s, with a bucket small next to the
	// 2 MiB written, so the initial full bucket hardly counts. The rates
	// stay far below what an emulated guest writes unthrottled on a busy
	// host, so the limiter, not the emulator, sets the pace.
	bucket := func(size uint64) map[string]any {
		return map[string]any{"bandwidth": map[string]any{"size": size, "refill_time": 250}}
	}
	e.mustAPI("PUT", "/drives/scratch", map[string]any{
		"drive_id": "scratch", "path_on_host": writeFile(t, filepath.Join(dir, "scratch.img"), make([]byte, 16<<20)),
		"is_root_device": false, "is_read_only": false, "rate_limiter": bucket(64 << 10),
	}, http.StatusNoContent)
	// Timed on the host, between the lines the guest prints after each
	// write: an emulated guest's clock runs slow on a loaded host, which
	// made its own timing read high. Writes run back to back, so the time
	// between two lines is one write (plus a few shell commands).
	e.boot(a, 128, testguest.Script(`
for i in 1 2 3 4; do
	dd if=/dev/zero of=/dev/vda bs=16k count=128 oflag=direct 2>/dev/null
	echo "EMBER-GUEST: write $i"
done
`), testguest.End(testguest.EndWait))
	const kib, mib = 1 << 10, 1 << 20
	done := func(n int) time.Time {
		e.waitLine(fmt.Sprintf("EMBER-GUEST: write %d", n), bootTimeout)
		return time.Now()
	}
	check := func(what string, from, to time.Time, want float64) {
		got := 2 * mib / to.Sub(from).Seconds() / kib
		if got < want*0.9 || got > want*1.1 {
			t.Errorf("%s: the guest wrote at %.0f KiB/s, want %.0f ±10 %%", what, got, want)
		} else {
			t.Logf("%s: %.0f KiB/s (limit %.0f)", what, got, want)
		}
	}
	// Write 1 starts on a full bucket; write 2 runs on refills alone.
	t1 := done(1)
	check("limited to 256 KiB/s", t1, done(2), 256)
	e.mustAPI("PATCH", "/drives/scratch", map[string]any{"drive_id": "scratch", "rate_limiter": bucket(128 << 10)}, http.StatusNoContent)
	t3 := done(3) // straddles the PATCH
	check("patched to 512 KiB/s", t3, done(4), 512)
}
