package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	gonet "net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/nested"
	"github.com/ember-vmm/ember/internal/testguest"
	"github.com/ember-vmm/ember/internal/uffd"
)

// The snapshot tests are backend neutral: TestSnapshot* run them on qemu,
// TestKVM's "Snapshot*" subtests on kvm.

func TestSnapshotRestore(t *testing.T) { testSnapshotRestore(t) }
func TestSnapshotClones(t *testing.T)  { testSnapshotClones(t) }
func TestSnapshotDiff(t *testing.T)    { testSnapshotDiff(t) }
func TestSnapshotErrors(t *testing.T)  { testSnapshotErrors(t) }

const (
	snapHostIP  = "172.16.9.1"
	snapGuestIP = "172.16.9.2"
	snapMAC     = "06:00:ac:10:09:02"
)

// snapGuestScript writes a random marker into the guest's RAM (a tmpfs
// file) and starts a counter that prints it with every tick, and now and
// then sends a ping to the host end of eth0, so a restored guest shows
// that its memory, its processes and its network device all continue.
const snapGuestScript = `
echo "m$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')" > /tmp/marker
(i=0; while :; do
	i=$((i + 1))
	echo "EMBER-GUEST: count $i $(cat /tmp/marker) $(cat /tmp/marker2 2>/dev/null)"
	[ $((i % 5)) = 0 ] && ping -c 1 -W 1 ` + snapHostIP + ` >/dev/null 2>&1 &
	sleep 0.2
done) </dev/null &
`

// countLine is one whole tick: the marker is 16 hex digits and the line
// ends with the tick, so a tick cut short by a log line written between its
// bytes on ember's stdout (its digits would read as more marker) is no tick.
var countLine = regexp.MustCompile(`EMBER-GUEST: count (\d+) (m[0-9a-f]{16}) ?(\S*)$`)

// guestCount is one tick of the snapshot guest's counter.
type guestCount struct {
	n               int
	marker, marker2 string
}

// lastMatch returns the submatches of the newest line e printed that re
// matches, or nil.
func lastMatch(e *ember, re *regexp.Regexp) []string {
	lines := e.con.Lines()
	for i := len(lines) - 1; i >= 0; i-- {
		if m := re.FindStringSubmatch(lines[i]); m != nil {
			return m
		}
	}
	return nil
}

// lastCount returns the newest counter tick e printed so far.
func lastCount(e *ember) (guestCount, bool) {
	m := lastMatch(e, countLine)
	if m == nil {
		return guestCount{}, false
	}
	n, _ := strconv.Atoi(m[1])
	return guestCount{n, m[2], m[3]}, true
}

// waitCount waits until e's guest has counted past n and returns that tick.
func waitCount(t *testing.T, e *ember, n int, timeout time.Duration) guestCount {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, ok := lastCount(e); ok && c.n > n {
			return c
		}
		if e.exited() {
			t.Fatalf("ember exited (%v) before its guest counted past %d", e.state, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c, _ := lastCount(e)
	t.Fatalf("the guest never counted past %d within %v (last tick %+v)", n, timeout, c)
	return c
}

// firstCount returns the first tick e printed.
func firstCount(e *ember) (guestCount, bool) {
	for _, l := range e.con.Lines() {
		if m := countLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			return guestCount{n, m[2], m[3]}, true
		}
	}
	return guestCount{}, false
}

// snapFiles are where one snapshot goes.
type snapFiles struct{ state, mem string }

func newSnapFiles(t *testing.T, name string) snapFiles {
	dir := t.TempDir()
	return snapFiles{filepath.Join(dir, name+".snap"), filepath.Join(dir, name+".mem")}
}

// bootSnapGuest starts ember with the snapshot guest on tap (in ns) and
// waits for its counter. The guest's machine is the first of machines the
// backend accepts (none: 1 vCPU, 128 MiB); the test skips, loudly, if it
// supports none.
func bootSnapGuest(t *testing.T, ns, tap string, machines ...map[string]any) *ember {
	t.Helper()
	a := requireVM(t)
	e := startEmber(t, startOpts{netns: ns})
	e.mustAPI("PUT", "/network-interfaces/eth0", map[string]string{
		"iface_id": "eth0", "host_dev_name": tap, "guest_mac": snapMAC,
	}, http.StatusNoContent)
	if len(machines) == 0 {
		machines = []map[string]any{{"vcpu_count": 1, "mem_size_mib": 128}}
	}
	for i, m := range machines {
		code, body := e.api("PUT", "/machine-config", m)
		if code == http.StatusNoContent {
			break
		}
		if !strings.Contains(body, "does not support") {
			t.Fatalf("PUT /machine-config: %d %s", code, body)
		}
		if i == len(machines)-1 {
			t.Skipf("NOT TESTED: the %s backend does not support this: %s", e.backend, body)
		}
		t.Logf("the %s backend refuses %v (%s); trying %v", e.backend, m, body, machines[i+1])
	}
	e.putBootSource(a.Vmlinux, a.Initramfs, testguest.Net(snapGuestIP+"/30"),
		testguest.Script(snapGuestScript), testguest.End(testguest.EndWait))
	e.action("InstanceStart")
	e.waitLine(testguest.MarkerReady, bootTimeout)
	waitCount(t, e, 5, bootTimeout)
	return e
}

// createSnapshot pauses e (if running) and writes a snapshot of kind.
func createSnapshot(t *testing.T, e *ember, f snapFiles, kind string) {
	t.Helper()
	e.mustAPI("PATCH", "/vm", map[string]string{"state": "Paused"}, http.StatusNoContent)
	start := time.Now()
	code, body := e.api("PUT", "/snapshot/create", map[string]string{
		"snapshot_type": kind, "snapshot_path": f.state, "mem_file_path": f.mem,
	})
	if code != http.StatusNoContent {
		t.Fatalf("PUT /snapshot/create (%s): %d %s", kind, code, body)
	}
	t.Logf("%s snapshot created in %v", kind, time.Since(start).Round(time.Millisecond))
	for _, p := range []string{f.state, f.mem} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Fatalf("snapshot file %s: %v", p, err)
		}
	}
	if fi, _ := os.Stat(f.mem); fi.Size() != 128<<20 {
		t.Errorf("memory file is %d bytes, want guest RAM's 128 MiB", fi.Size())
	}
}

// loadSnapshot starts a fresh ember in ns and loads f into it with the
// tap override, running.
func loadSnapshot(t *testing.T, ns, tap string, f snapFiles) *ember {
	t.Helper()
	e := startEmber(t, startOpts{netns: ns})
	start := time.Now()
	e.mustAPI("PUT", "/snapshot/load", map[string]any{
		"snapshot_path":     f.state,
		"mem_backend":       map[string]string{"backend_type": "File", "backend_path": f.mem},
		"network_overrides": []map[string]string{{"iface_id": "eth0", "host_dev_name": tap}},
		"resume_vm":         true,
	}, http.StatusNoContent)
	t.Logf("snapshot loaded and resumed in %v", time.Since(start).Round(time.Millisecond))
	return e
}

// hostEnd is a restored guest's host end: tap in ns, up, with the host
// address.
func hostEnd(t *testing.T, ns, tap string) {
	t.Helper()
	addTap(t, ns, tap)
	ip(t, "-n", ns, "addr", "add", snapHostIP+"/30", "dev", tap)
	ip(t, "-n", ns, "link", "set", tap, "up")
}

// pingGuest pings the snapshot guest three times from ns.
func pingGuest(ns string) ([]byte, error) {
	ping := []string{"ping", "-c", "3", "-W", "2", snapGuestIP}
	if ns != "" {
		ping = append([]string{"ip", "netns", "exec", ns}, ping...)
	}
	return exec.Command(ping[0], ping[1:]...).CombinedOutput()
}

// tapRxPackets is how many frames the guest has sent through tap.
func tapRxPackets(t *testing.T, ns, tap string) int {
	t.Helper()
	p := "/sys/class/net/" + tap + "/statistics/rx_packets"
	var out []byte
	var err error
	if ns == "" {
		out, err = os.ReadFile(p)
	} else {
		out, err = exec.Command("ip", "netns", "exec", ns, "cat", p).CombinedOutput()
	}
	if err != nil {
		t.Fatalf("read %s in %q: %v: %s", p, ns, err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("%s: %q", p, out)
	}
	return n
}

// wantContinues checks that the restored guest in e picks up where the
// saved one (last tick before) stopped: same marker, counting on from
// there (not from 1), and sending frames through its new tap.
func wantContinues(t *testing.T, e *ember, before guestCount, ns, tap string) {
	t.Helper()
	rx := tapRxPackets(t, ns, tap)
	after := waitCount(t, e, before.n+10, bootTimeout)
	first, _ := firstCount(e)
	if first.n < before.n-2 || first.n > before.n+3 {
		t.Errorf("the restored guest's first tick is %d; the saved guest was at %d", first.n, before.n)
	}
	if after.marker != before.marker {
		t.Errorf("guest RAM marker %q after restore, want %q", after.marker, before.marker)
	}
	deadline := time.Now().Add(exitTimeout)
	for tapRxPackets(t, ns, tap) == rx {
		if time.Now().After(deadline) {
			t.Fatalf("no frame from the restored guest reached %s in %v", tap, exitTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := e.instanceState(); got != "Running" {
		t.Errorf("state after a load with resume_vm: %q", got)
	}
}

// testSnapshotRestore: snapshot a running guest, load it in a fresh process
// on another tap, and see it continue: its counter, a file in its RAM, its
// network (the host pings it through the overridden tap); GET /vm/config
// shows the saved configuration with the override.
func testSnapshotRestore(t *testing.T) {
	t.Parallel()
	ns, ns2 := newNetns(t), newNetns(t)
	addTap(t, ns, "snap0")
	ip(t, "-n", ns, "link", "set", "snap0", "up")
	e := bootSnapGuest(t, ns, "snap0")
	f := newSnapFiles(t, "vm")
	createSnapshot(t, e, f, "Full")
	before, _ := lastCount(e)
	e.stop()

	hostEnd(t, ns2, "snap1")
	r := loadSnapshot(t, ns2, "snap1", f)
	wantContinues(t, r, before, ns2, "snap1")

	if out, err := pingGuest(ns2); err != nil {
		t.Errorf("the host cannot ping the restored guest through the overridden tap: %v\n%s", err, out)
	}
	var cfg struct {
		Machine struct {
			VCPUs int `json:"vcpu_count"`
			Mem   int `json:"mem_size_mib"`
		} `json:"machine-config"`
		Nets []struct {
			ID  string `json:"iface_id"`
			Tap string `json:"host_dev_name"`
		} `json:"network-interfaces"`
	}
	if err := json.Unmarshal([]byte(r.mustAPI("GET", "/vm/config", nil, http.StatusOK)), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Machine.VCPUs != 1 || cfg.Machine.Mem != 128 || len(cfg.Nets) != 1 || cfg.Nets[0].Tap != "snap1" {
		t.Errorf("GET /vm/config after load: %+v", cfg)
	}
	// Pause and resume still work on the restored VM, and it ends as a
	// booted one does.
	r.mustAPI("PATCH", "/vm", map[string]string{"state": "Paused"}, http.StatusNoContent)
	c, _ := lastCount(r)
	r.mustAPI("PATCH", "/vm", map[string]string{"state": "Resumed"}, http.StatusNoContent)
	waitCount(t, r, c.n+3, exitTimeout)
	r.action("SendCtrlAltDel")
	r.wantExit(0, exitTimeout)
}

// testSnapshotClones: one snapshot loaded into three processes at once,
// each on its own tap; each continues on its own, and the memory file is
// left as it was.
func testSnapshotClones(t *testing.T) {
	t.Parallel()
	ns := newNetns(t)
	addTap(t, ns, "clsrc")
	e := bootSnapGuest(t, ns, "clsrc")
	f := newSnapFiles(t, "clone")
	createSnapshot(t, e, f, "Full")
	before, _ := lastCount(e)
	e.stop()
	sum := fileDigest(t, f.mem)

	var wg sync.WaitGroup
	clones := make([]*ember, 3)
	taps := []string{"clone0", "clone1", "clone2"}
	nss := make([]string, 3)
	for i, tap := range taps {
		nss[i] = newNetns(t)
		addTap(t, nss[i], tap)
		ip(t, "-n", nss[i], "link", "set", tap, "up")
	}
	for i := range clones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clones[i] = launch(t, startOpts{netns: nss[i]})
		}()
	}
	wg.Wait()
	for i, c := range clones {
		c.waitLine(lineAPIStarted, startTimeout)
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := c.api("PUT", "/snapshot/load", map[string]any{
				"snapshot_path":     f.state,
				"mem_backend":       map[string]string{"backend_type": "File", "backend_path": f.mem},
				"network_overrides": []map[string]string{{"iface_id": "eth0", "host_dev_name": taps[i]}},
				"resume_vm":         true,
			})
			if code != http.StatusNoContent {
				t.Errorf("clone %d: load: %d %s", i, code, body)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, c := range clones {
		wantContinues(t, c, before, nss[i], taps[i])
	}
	// Each clone runs on its own: pausing one leaves the others counting.
	clones[0].mustAPI("PATCH", "/vm", map[string]string{"state": "Paused"}, http.StatusNoContent)
	c0, _ := lastCount(clones[0])
	c1, _ := lastCount(clones[1])
	waitCount(t, clones[1], c1.n+5, exitTimeout)
	if c, _ := lastCount(clones[0]); c.n > c0.n+1 {
		t.Errorf("the paused clone went on counting: %d → %d", c0.n, c.n)
	}
	if got := fileDigest(t, f.mem); got != sum {
		t.Error("running clones changed the memory file")
	}
}

// testSnapshotDiff: with dirty-page tracking on, a Full snapshot, then more
// guest writes, then a Diff snapshot written onto a copy of the base's
// memory file; the merged file loads and shows the later writes.
func testSnapshotDiff(t *testing.T) {
	t.Parallel()
	ns := newNetns(t)
	addTap(t, ns, "diff0")
	// With the dirty log where the backend keeps one; otherwise a Diff
	// holds every page guest RAM holds, as Firecracker's does without it.
	e := bootSnapGuest(t, ns, "diff0", map[string]any{"vcpu_count": 1, "mem_size_mib": 128, "track_dirty_pages": true},
		map[string]any{"vcpu_count": 1, "mem_size_mib": 128})
	base := newSnapFiles(t, "base")
	createSnapshot(t, e, base, "Full")
	e.mustAPI("PATCH", "/vm", map[string]string{"state": "Resumed"}, http.StatusNoContent)
	before, _ := lastCount(e)
	waitCount(t, e, before.n+5, exitTimeout)

	// The guest's RAM has changed since the base (the counter went on):
	// a Diff onto a copy of the base's memory file must carry those pages.
	diff := snapFiles{state: filepath.Join(t.TempDir(), "diff.snap"), mem: filepath.Join(t.TempDir(), "diff.mem")}
	copyFile(t, base.mem, diff.mem)
	createSnapshot(t, e, diff, "Diff")
	at, _ := lastCount(e)
	e.stop()

	r := loadSnapshot(t, ns, "diff0", diff)
	waitCount(t, r, at.n+5, bootTimeout)
	if first, ok := firstCount(r); !ok || first.n < at.n-2 || first.n > at.n+3 || first.marker != at.marker {
		t.Errorf("the merged snapshot resumed at tick %+v, want about %d (the base was at %d)", first, at.n, before.n)
	}
}

// testSnapshotErrors: the API's answers around snapshots on the real
// binary: create needs a paused VM; a load after a boot resource is refused
// and the process lives on; a load of a bad file answers and then ends the
// process with code 1, as Firecracker does.
func testSnapshotErrors(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	e.boot(a, 128, testguest.End(testguest.EndWait))
	e.waitLine(testguest.MarkerReady, bootTimeout)
	f := newSnapFiles(t, "x")
	code, body := e.api("PUT", "/snapshot/create", map[string]string{"snapshot_path": f.state, "mem_file_path": f.mem})
	wantFault(t, "create while running", code, body, "Create snapshot error: Cannot save the microVM state: Operation not allowed: save/restore unavailable while running")
	e.action("SendCtrlAltDel")
	e.wantExit(0, exitTimeout)

	e = startEmber(t, startOpts{})
	e.putMachine(128)
	code, body = e.api("PUT", "/snapshot/load", map[string]any{"snapshot_path": f.state, "mem_backend": map[string]string{"backend_type": "File", "backend_path": f.mem}})
	wantFault(t, "load after machine-config", code, body, "Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources.")
	e.mustAPI("GET", "/", nil, http.StatusOK)

	e = startEmber(t, startOpts{})
	bad := writeFile(t, filepath.Join(t.TempDir(), "bad.snap"), []byte("not a snapshot"))
	code, body = e.api("PUT", "/snapshot/load", map[string]any{"snapshot_path": bad, "mem_backend": map[string]string{"backend_type": "File", "backend_path": f.mem}})
	if code != http.StatusBadRequest || !strings.Contains(body, "Load snapshot error: Failed to restore from snapshot: Failed to get snapshot state from file: Failed to load snapshot state from file: ") {
		t.Errorf("load of a bad file: %d %s", code, body)
	}
	e.wantExit(1, exitTimeout)
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// copyFile copies src to dst (a fresh file; zero pages stay holes only
// where the filesystem makes them, which the test does not need).
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotVsockMMDS(t *testing.T) { testSnapshotVsockMMDS(t) }

// testSnapshotVsockMMDS: what Firecracker documents for vsock and MMDS
// across a snapshot. Vsock connections are reset but the guest's listeners
// accept again, on the socket vsock_override names. MMDS keeps its
// configuration (V2 on eth0) but not its data store, and tokens from
// before the snapshot are no longer valid; data PUT after the load is
// served. eth0 also has a rate limiter, so on qemu its device is ember's,
// over vhost-user, on both sides of the snapshot. The qemu backend cannot
// snapshot a VM with vsock (QEMU cannot migrate its vhost-user-vsock
// device): there the test checks the refusal on a VM of its own and runs
// the MMDS part without vsock.
func testSnapshotVsockMMDS(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	withVsock := backendOf(t) != "qemu"
	if !withVsock {
		wantVsockRefused(t, a)
	}
	ns := newNetns(t)
	addTap(t, ns, "snapmm0")
	ip(t, "-n", ns, "link", "set", "snapmm0", "up")
	dir := t.TempDir()
	uds, uds2 := filepath.Join(dir, "v.sock"), filepath.Join(dir, "v2.sock")
	e := startEmber(t, startOpts{netns: ns})
	e.mustAPI("PUT", "/network-interfaces/eth0", map[string]any{
		"iface_id": "eth0", "host_dev_name": "snapmm0", "guest_mac": snapMAC,
		"rx_rate_limiter": map[string]any{"bandwidth": map[string]int{"size": 8 << 20, "refill_time": 100}},
	}, http.StatusNoContent)
	e.mustAPI("PUT", "/mmds/config", map[string]any{"version": "V2", "network_interfaces": []string{"eth0"}}, http.StatusNoContent)
	e.mustAPI("PUT", "/mmds", map[string]any{"id": "before"}, http.StatusNoContent)
	listen := ""
	if withVsock {
		e.mustAPI("PUT", "/vsock", map[string]any{"guest_cid": 3, "uds_path": uds}, http.StatusNoContent)
		listen = fmt.Sprintf("vsockt listen %d echo &", portEcho)
	}
	// The guest keeps the token it got before the snapshot and polls with
	// it and with a fresh one (timeout, not wget -T, which makes the
	// guest's busybox wget crash); the poll lines carry a sequence number so
	// the test can tell lines printed after the load.
	e.boot(a, 128, testguest.Net("169.254.0.2/16"), testguest.Script(fmt.Sprintf(`
M=169.254.169.254
token() { printf 'PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 21600\r\n\r\n' | timeout 3 nc $M 80 | tail -n 1; }
get() { r=$(timeout 3 wget -q -O - --header "X-metadata-token: $1" http://$M/id 2>&1); echo "$r" | tr -d ' \n'; }
old=$(token)
%s
(i=0; while :; do i=$((i + 1)); echo "EMBER-GUEST: mmds $i old=$(get "$old") new=$(get "$(token)")"; sleep 0.5; done) </dev/null &
`, listen)), testguest.End(testguest.EndWait))
	e.waitLine(testguest.MarkerReady, bootTimeout)
	if withVsock {
		e.waitLine(fmt.Sprintf("EMBER-GUEST: vsockt listening %d", portEcho), exitTimeout)
	}
	e.waitLine("old=before new=before", bootTimeout)
	var held gonet.Conn
	if withVsock {
		// A connection left open across the snapshot, as Firecracker's own
		// test does. It is the device's first, so it has the first host
		// port, which the restored device hands out again: the guest must
		// have dropped its socket (TRANSPORT_RESET) before a new
		// connection's REQUEST reaches it.
		var err error
		held, err = vsockConnect(uds, portEcho, scaled(30*time.Second))
		if err != nil {
			t.Fatalf("vsock connect before the snapshot: %v", err)
		}
		defer held.Close()
		if err := echoThrough(held, 4096, scaled(30*time.Second)); err != nil {
			t.Fatalf("vsock echo before the snapshot: %v", err)
		}
	}
	f := newSnapFiles(t, "vm")
	createSnapshot(t, e, f, "Full")
	e.stop()

	r := startEmber(t, startOpts{netns: ns})
	load := map[string]any{
		"snapshot_path": f.state,
		"mem_backend":   map[string]string{"backend_type": "File", "backend_path": f.mem},
		"resume_vm":     true,
	}
	if withVsock {
		load["vsock_override"] = map[string]string{"uds_path": uds2}
	}
	r.mustAPI("PUT", "/snapshot/load", load, http.StatusNoContent)
	if withVsock {
		if !isSocketFile(uds2) {
			t.Fatalf("vsock_override: %s is not a socket after the load", uds2)
		}
		if err := vsockEcho(uds2, 4096, scaled(30*time.Second)); err != nil {
			t.Errorf("vsock echo through the overridden socket after the load: %v", err)
		}
		// The guest saw its connection from before the snapshot end.
		r.waitLine(fmt.Sprintf("EMBER-GUEST: vsockt echo %d 1 bytes 4096 ", portEcho), exitTimeout)
	}
	// The store starts empty: both tokens fail, the old one as invalid.
	from, l := r.waitLineFrom(0, "EMBER-GUEST: mmds ", bootTimeout)
	if !strings.Contains(l, "old=") || strings.Contains(l, "=before") {
		t.Errorf("first MMDS poll after the load: %q, want no data and the old token refused", l)
	}
	r.mustAPI("PUT", "/mmds", map[string]any{"id": "after"}, http.StatusNoContent)
	_, l = r.waitLineFrom(from, "new=after", bootTimeout)
	if !strings.Contains(l, "old=") || strings.Contains(l, "old=after") {
		t.Errorf("MMDS after the load: %q, want the pre-snapshot token refused and a fresh one served", l)
	}
	var cfg struct {
		MMDS *struct {
			Version string   `json:"version"`
			Ifaces  []string `json:"network_interfaces"`
		} `json:"mmds-config"`
	}
	if err := json.Unmarshal([]byte(r.mustAPI("GET", "/vm/config", nil, http.StatusOK)), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.MMDS == nil || cfg.MMDS.Version != "V2" || len(cfg.MMDS.Ifaces) != 1 {
		t.Errorf("mmds-config after the load: %+v", cfg.MMDS)
	}
}

// wantVsockRefused boots a VM with vsock and checks that a snapshot of it
// is refused with the reason and leaves no snapshot files behind.
func wantVsockRefused(t *testing.T, a testguest.Assets) {
	t.Helper()
	e := startEmber(t, startOpts{})
	e.mustAPI("PUT", "/vsock", map[string]any{"guest_cid": 3, "uds_path": filepath.Join(t.TempDir(), "v.sock")}, http.StatusNoContent)
	e.boot(a, 128, testguest.End(testguest.EndWait))
	e.waitLine(testguest.MarkerReady, bootTimeout)
	e.mustAPI("PATCH", "/vm", map[string]string{"state": "Paused"}, http.StatusNoContent)
	f := newSnapFiles(t, "vsock")
	code, body := e.api("PUT", "/snapshot/create", map[string]string{
		"snapshot_type": "Full", "snapshot_path": f.state, "mem_file_path": f.mem,
	})
	if code != http.StatusBadRequest || !strings.Contains(body, "vhost-user-vsock-device") {
		t.Errorf("snapshot of a VM with vsock on %s: %d %s, want a 400 naming QEMU's vhost-user-vsock-device", e.backend, code, body)
	}
	for _, p := range []string{f.state, f.mem} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("refused snapshot left %s behind (%v)", p, err)
		}
	}
	e.stop()
}

func TestSnapshotClockRealtime(t *testing.T) { testSnapshotClockRealtime(t) }

// clockLine is one tick of the clock guest: a sequence number and the
// guest's wall clock in seconds.
var clockLine = regexp.MustCompile(`EMBER-GUEST: clock (\d+) (\d+)$`)

// lastClock returns the newest clock tick e printed: its number and the
// guest's time.
func lastClock(e *ember) (n, at int64, ok bool) {
	m := lastMatch(e, clockLine)
	if m == nil {
		return 0, 0, false
	}
	n, _ = strconv.ParseInt(m[1], 10, 64)
	at, _ = strconv.ParseInt(m[2], 10, 64)
	return n, at, true
}

// testSnapshotClockRealtime: a load with clock_realtime moves the guest's
// clock on by the time since the snapshot (KVM_CLOCK_REALTIME); without
// it the guest's clock resumes where it stopped. One snapshot is loaded
// both ways, several seconds after it was taken. The qemu backend refuses
// clock_realtime: QEMU's stream has no way to move the clock on.
func testSnapshotClockRealtime(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	e.boot(a, 128, testguest.Script(`(i=0; while :; do i=$((i + 1)); echo "EMBER-GUEST: clock $i $(date +%s)"; sleep 0.5; done) </dev/null &`),
		testguest.End(testguest.EndWait))
	e.waitLine("EMBER-GUEST: clock 3 ", bootTimeout)
	f := newSnapFiles(t, "vm")
	createSnapshot(t, e, f, "Full")
	n0, at0, ok := lastClock(e)
	if !ok {
		t.Fatal("no clock tick before the snapshot")
	}
	taken := time.Now()
	e.stop()
	const gap = 8 * time.Second
	time.Sleep(gap)

	load := func(realtime bool) (jump int64) {
		r := startEmber(t, startOpts{})
		code, body := r.api("PUT", "/snapshot/load", map[string]any{
			"snapshot_path":  f.state,
			"mem_backend":    map[string]string{"backend_type": "File", "backend_path": f.mem},
			"clock_realtime": realtime,
			"resume_vm":      true,
		})
		if realtime && r.backend == "qemu" {
			if code != http.StatusBadRequest || !strings.Contains(body, "clock_realtime") {
				t.Errorf("qemu: load with clock_realtime: %d %s, want a 400 naming clock_realtime", code, body)
			}
			return -1
		}
		if code == http.StatusBadRequest && strings.Contains(body, "no realtime clock") {
			t.Skipf("NOT TESTED: this host's KVM saved no realtime clock (its clocksource is not the TSC): %s", body)
		}
		if code != http.StatusNoContent {
			t.Fatalf("load (clock_realtime %v): %d %s", realtime, code, body)
		}
		// A tick printed after the load (a tick cut off by the snapshot may
		// be printed again with its old number).
		deadline := time.Now().Add(bootTimeout)
		for {
			if n, at, ok := lastClock(r); ok && n > n0+1 {
				jump = at - at0
				t.Logf("clock_realtime %v: the guest's clock moved %d s across a snapshot %v old (tick %d → %d)",
					realtime, jump, time.Since(taken).Round(time.Second), n0, n)
				break
			}
			if time.Now().After(deadline) || r.exited() {
				t.Fatalf("clock_realtime %v: no clock tick after the load", realtime)
			}
			time.Sleep(100 * time.Millisecond)
		}
		r.stop()
		return jump
	}
	if still := load(false); still > 4 {
		t.Errorf("without clock_realtime the guest's clock moved %d s across the snapshot; want it to resume where it stopped (≤ 4 s)", still)
	}
	moved := load(true)
	if moved < 0 {
		return // refused, as it should be on qemu
	}
	if want := int64(gap / time.Second); moved < want {
		t.Errorf("with clock_realtime the guest's clock moved %d s across the snapshot; want at least the %d s it waited", moved, want)
	}
}

func TestSnapshotGoDevices(t *testing.T) { testSnapshotGoDevices(t) }

// blkLine is one write of snapGoScript's block loop.
var blkLine = regexp.MustCompile(`EMBER-GUEST: blk (\d+)$`)

// testSnapshotGoDevices: a guest whose interface and drive have rate
// limiters (on qemu, ember's own devices over vhost-user) continues after
// a load: its counter and RAM, frames through the overridden tap, and
// writes to the drive that reach the backing file.
func testSnapshotGoDevices(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	ns, ns2 := newNetns(t), newNetns(t)
	addTap(t, ns, "snapgo0")
	ip(t, "-n", ns, "link", "set", "snapgo0", "up")
	disk := filepath.Join(t.TempDir(), "scratch.img")
	if err := os.WriteFile(disk, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	limiter := map[string]any{"bandwidth": map[string]int{"size": 8 << 20, "refill_time": 100}}
	e := startEmber(t, startOpts{netns: ns})
	e.mustAPI("PUT", "/network-interfaces/eth0", map[string]any{
		"iface_id": "eth0", "host_dev_name": "snapgo0", "guest_mac": snapMAC,
		"rx_rate_limiter": limiter, "tx_rate_limiter": limiter,
	}, http.StatusNoContent)
	e.mustAPI("PUT", "/drives/scratch", map[string]any{
		"drive_id": "scratch", "path_on_host": disk, "is_root_device": false, "is_read_only": false,
		"rate_limiter": limiter,
	}, http.StatusNoContent)
	e.mustAPI("PUT", "/machine-config", map[string]any{"vcpu_count": 1, "mem_size_mib": 128}, http.StatusNoContent)
	// Each tick writes its number to the drive's first sector, past the
	// guest's page cache, then says so.
	blk := `(i=0; while :; do i=$((i + 1)); echo "blk $i" | dd of=/dev/vda bs=512 count=1 conv=sync,fsync oflag=direct 2>/dev/null && echo "EMBER-GUEST: blk $i"; sleep 0.3; done) </dev/null &`
	e.putBootSource(a.Vmlinux, a.Initramfs, testguest.Net(snapGuestIP+"/30"),
		testguest.Script(snapGuestScript+blk), testguest.End(testguest.EndWait))
	e.action("InstanceStart")
	e.waitLine(testguest.MarkerReady, bootTimeout)
	waitCount(t, e, 5, bootTimeout)
	e.waitLine("EMBER-GUEST: blk 3", bootTimeout)
	f := newSnapFiles(t, "vm")
	createSnapshot(t, e, f, "Full")
	before, _ := lastCount(e)
	blkBefore := 0
	if m := lastMatch(e, blkLine); m != nil {
		blkBefore, _ = strconv.Atoi(m[1])
	}
	e.stop()

	hostEnd(t, ns2, "snapgo1")
	r := loadSnapshot(t, ns2, "snapgo1", f)
	wantContinues(t, r, before, ns2, "snapgo1")
	if out, err := pingGuest(ns2); err != nil {
		t.Errorf("the host cannot ping the restored guest through its limited interface: %v\n%s", err, out)
	}
	// Writes after the load reach the file.
	want := blkBefore + 3
	r.waitLine(fmt.Sprintf("EMBER-GUEST: blk %d", want), bootTimeout)
	head := make([]byte, 16)
	fd, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if _, err := fd.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	var got int
	if _, err := fmt.Sscanf(string(head), "blk %d", &got); err != nil || got < want {
		t.Errorf("the drive's first sector reads %q after the guest wrote blk %d; want the restored guest's writes in the file", head, want)
	}
	t.Logf("drive: blk %d before the snapshot, %d in the file after the load", blkBefore, got)
}

func TestSnapshotUffd(t *testing.T) { testSnapshotUffd(t) }

// uffdHandler is a page-fault handler serving one memory file to every
// VMM that connects to its socket, as Firecracker's example handlers do.
type uffdHandler struct {
	sock   string
	served sync.WaitGroup
	mu     sync.Mutex
	errs   []error
	conns  int
}

// startUffdHandler listens at a new socket and serves mem from there
// until the test ends.
func startUffdHandler(t *testing.T, mem string) *uffdHandler {
	t.Helper()
	h := &uffdHandler{sock: filepath.Join(t.TempDir(), "uffd.sock")}
	ln, err := gonet.ListenUnix("unix", &gonet.UnixAddr{Name: h.sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			f, err := os.Open(mem)
			if err != nil {
				c.Close()
				h.fail(err)
				continue
			}
			h.mu.Lock()
			h.conns++
			h.mu.Unlock()
			h.served.Add(1)
			go func() {
				defer h.served.Done()
				defer f.Close()
				if err := uffd.Serve(ctx, c, f); err != nil && ctx.Err() == nil {
					h.fail(err)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		h.served.Wait()
		for _, err := range h.errs {
			t.Errorf("page-fault handler: %v", err)
		}
	})
	return h
}

func (h *uffdHandler) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.errs = append(h.errs, err)
}

func (h *uffdHandler) connections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns
}

// testSnapshotUffd: a load with mem_backend Uffd hands guest RAM to a
// page-fault handler (one in this test, serving the memory file), and the
// guest continues as after a File load: counter, RAM, network. A snapshot
// of a guest on 2 MiB huge pages loads only this way. On a backend that
// cannot (qemu: QEMU's own process touches guest RAM), the load is refused
// with Firecracker's prefix and the process ends, as every failed load.
func testSnapshotUffd(t *testing.T) {
	t.Parallel()
	snapshotUffd(t, "snapuf", nil)
}

// kvmSnapshotUffd2M is testSnapshotUffd with the guest on 2 MiB huge
// pages, whose snapshot a File load refuses (Firecracker's rule). Inside
// L1 it sizes L1's pool for the guest.
func kvmSnapshotUffd2M(t *testing.T) {
	t.Parallel()
	if nested.Inside() {
		const pool = "/proc/sys/vm/nr_hugepages"
		if err := os.WriteFile(pool, []byte("80"), 0o644); err != nil {
			t.Fatalf("set %s: %v", pool, err)
		}
		t.Cleanup(func() { os.WriteFile(pool, []byte("0"), 0o644) })
	} else if free := hugePagesFreeHere(t); free < 64 {
		t.Skipf("SKIPPING a Uffd load of a guest on 2 MiB huge pages: this host has %d free, the guest needs 64", free)
	}
	snapshotUffd(t, "snapuh", map[string]any{"vcpu_count": 1, "mem_size_mib": 128, "huge_pages": "2M"})
}

// snapshotUffd boots the snapshot guest on machine (nil: the default) with
// taps named prefix0 and prefix1, and runs testSnapshotUffd's checks.
func snapshotUffd(t *testing.T, prefix string, machine map[string]any) {
	ns, ns2 := newNetns(t), newNetns(t)
	tap0, tap1 := prefix+"0", prefix+"1"
	addTap(t, ns, tap0)
	ip(t, "-n", ns, "link", "set", tap0, "up")
	var machines []map[string]any
	if machine != nil {
		machines = append(machines, machine)
	}
	e := bootSnapGuest(t, ns, tap0, machines...)
	f := newSnapFiles(t, "vm")
	createSnapshot(t, e, f, "Full")
	before, _ := lastCount(e)
	e.stop()

	h := startUffdHandler(t, f.mem)
	hostEnd(t, ns2, tap1)
	r := startEmber(t, startOpts{netns: ns2})
	code, body := r.api("PUT", "/snapshot/load", map[string]any{
		"snapshot_path":     f.state,
		"mem_backend":       map[string]string{"backend_type": "Uffd", "backend_path": h.sock},
		"network_overrides": []map[string]string{{"iface_id": "eth0", "host_dev_name": tap1}},
		"resume_vm":         true,
	})
	if r.backend == "qemu" {
		want := "Load snapshot error: Failed to restore from snapshot: Failed to load guest memory: Error creating guest memory from uffd: "
		if code != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("qemu: load with mem_backend Uffd: %d %s, want a 400 starting %q", code, body, want)
		}
		r.wantExit(1, exitTimeout)
		return
	}
	if code != http.StatusNoContent {
		t.Fatalf("load with mem_backend Uffd: %d %s", code, body)
	}
	wantContinues(t, r, before, ns2, tap1)
	if n := h.connections(); n != 1 {
		t.Errorf("the handler had %d connections, want 1", n)
	}
	r.action("SendCtrlAltDel")
	r.wantExit(0, exitTimeout)
}
