package e2e

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// The network data path benchmark (issue 7, item 5): what ember's Go
// virtio-net device (served to QEMU over vhost-user) costs next to QEMU's
// own virtio-net on a tap, in one guest that has one interface of each
// kind, TCP both ways.
const (
	envNetBenchMiB   = "EMBER_NETBENCH_MIB" // payload per transfer, default 16
	netBenchMiBDef   = 16
	netBenchDocBegin = "<!-- net-bench:begin -->"
	netBenchDocEnd   = "<!-- net-bench:end -->"
	netBenchCommand  = "EMBER_BENCH=1 EMBER_BENCH_WRITE=1 go test ./tests/e2e -run TestNetBench -timeout 60m"
)

// netBenchPath is one interface of the benchmark's guest.
type netBenchPath struct {
	name    string // "qemu" (QEMU's tap path) or "go" (ember's device)
	iface   string // guest interface
	tap     string
	hostIP  string
	guestIP string
	mac     string
	limited bool // a limiter (that never throttles) puts it on the Go path
}

// TestNetBench measures TCP throughput guest → host and host → guest
// through QEMU's tap fast path and through ember's Go device, in the same
// guest, rounds alternating which goes first. It runs only with
// EMBER_BENCH=1; with EMBER_BENCH_WRITE=1 it also writes its section of
// docs/benchmarks.md.
func TestNetBench(t *testing.T) {
	if os.Getenv(envBench) != "1" {
		t.Skip("SKIPPING the network data path benchmark: it runs only with EMBER_BENCH=1 " +
			"(minutes of TCG guest traffic); the Go net path is NOT compared with QEMU's")
	}
	a := requireVM(t)
	if backendOf(t) != "qemu" {
		t.Fatal("the network benchmark compares two paths of the qemu backend")
	}
	rounds := benchRounds(t)
	mibs := netBenchMiBDef
	if v := os.Getenv(envNetBenchMiB); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1024 {
			t.Fatalf("%s=%q: want MiB from 1 to 1024", envNetBenchMiB, v)
		}
		mibs = n
	}
	n := int64(mibs) << 20

	ns := newNetns(t)
	paths := []netBenchPath{
		{"qemu", "eth0", "nbtap0", "172.16.6.1", "172.16.6.2", "06:00:ac:10:06:02", false},
		{"go", "eth1", "nbtap1", "172.16.7.1", "172.16.7.2", "06:00:ac:10:07:02", true},
	}
	host := newNSThread(t, ns)
	lns := map[string][2]net.Listener{}
	for _, p := range paths {
		addTap(t, ns, p.tap)
		ip(t, "-n", ns, "addr", "add", p.hostIP+"/30", "dev", p.tap)
		ip(t, "-n", ns, "link", "set", p.tap, "up")
		lns[p.name] = [2]net.Listener{
			host.listen(t, net.JoinHostPort(p.hostIP, strconv.Itoa(portGuestTx))),
			host.listen(t, net.JoinHostPort(p.hostIP, strconv.Itoa(portGuestRx))),
		}
	}
	e := startEmber(t, startOpts{netns: ns})
	// 1 GiB per 100 ms: 10 GiB/s, far beyond an emulated guest, so the
	// limiter only decides the path.
	never := map[string]any{"bandwidth": map[string]any{"size": uint64(1 << 30), "refill_time": 100}}
	for _, p := range paths {
		body := map[string]any{"iface_id": p.iface, "host_dev_name": p.tap, "guest_mac": p.mac}
		if p.limited {
			body["rx_rate_limiter"], body["tx_rate_limiter"] = never, never
		}
		e.mustAPI("PUT", "/network-interfaces/"+p.iface, body, http.StatusNoContent)
	}
	order := func(r int) []netBenchPath {
		o := slices.Clone(paths)
		if r%2 == 0 {
			slices.Reverse(o)
		}
		return o
	}
	// The guest finds each interface by its MAC: the two kinds of device
	// need not enumerate in the order they were configured.
	var script strings.Builder
	script.WriteString(`up() { for d in /sys/class/net/*; do [ "$(cat $d/address)" = $1 ] && ip addr add $2 dev ${d##*/} && ip link set ${d##*/} up; done; }
xfer() { dd if=/dev/zero bs=1M count=` + strconv.Itoa(mibs) + ` 2>/dev/null | nc $1 ` + strconv.Itoa(portGuestTx) +
		`; echo "EMBER-GUEST: rx $1 $(nc $1 ` + strconv.Itoa(portGuestRx) + ` | wc -c)"; }
`)
	for _, p := range paths {
		fmt.Fprintf(&script, "up %s %s/30\n", p.mac, p.guestIP)
	}
	for r := 1; r <= rounds; r++ {
		for _, p := range order(r) {
			fmt.Fprintf(&script, "xfer %s\n", p.hostIP)
		}
	}
	e.boot(a, 256, testguest.Script(script.String()), testguest.End(testguest.EndWait))
	// A transfer gets a minute plus 4 s per MiB (256 KiB/s) before the
	// run gives up on it.
	timeout := time.Minute + time.Duration(mibs)*4*time.Second

	res := map[string]map[string][]float64{} // path → direction → MiB/s per round
	for _, p := range paths {
		res[p.name] = map[string][]float64{}
	}
	for r := 1; r <= rounds; r++ {
		for _, p := range order(r) {
			tx := guestTxRound(t, host, lns[p.name][0], p.tap, n, timeout)
			rx := guestRxRound(t, e, host, lns[p.name][1], p.tap, n, timeout)
			for k, v := range map[string]float64{"tx": tx.goodput, "rx": rx.goodput, "txwire": tx.wireRate, "rxwire": rx.wireRate} {
				res[p.name][k] = append(res[p.name][k], v/(1<<20))
			}
			t.Logf("round %d, %s path: guest → host %.2f MiB/s, host → guest %.2f MiB/s (payload, whole transfer; mid-transfer on the wire %.2f and %.2f)",
				r, p.name, tx.goodput/(1<<20), rx.goodput/(1<<20), tx.wireRate/(1<<20), rx.wireRate/(1<<20))
		}
	}
	table := netBenchTable(res)
	t.Logf("network data path, %d rounds of %d MiB each way:\n%s", rounds, mibs, table)
	if os.Getenv(envBenchWrite) == "1" {
		writeNetBenchDoc(t, table, rounds, mibs)
	}
}

// median and the range of xs.
func medianRange(xs []float64) (med, lo, hi float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	med = s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return med, s[0], s[len(s)-1]
}

func netBenchTable(res map[string]map[string][]float64) string {
	var b strings.Builder
	b.WriteString("| TCP | QEMU's tap path: median (min–max) | ember's Go path: median (min–max) | Go ÷ QEMU |\n|---|---|---|---|\n")
	for _, d := range []struct{ key, label string }{
		{"tx", "guest → host, payload over the whole transfer"},
		{"rx", "host → guest, payload over the whole transfer"},
		{"txwire", "guest → host, frames on the tap between 20 % and 95 % of the transfer"},
		{"rxwire", "host → guest, frames on the tap between 20 % and 95 % of the transfer"},
	} {
		qm, ql, qh := medianRange(res["qemu"][d.key])
		gm, gl, gh := medianRange(res["go"][d.key])
		fmt.Fprintf(&b, "| %s | %.2f MiB/s (%.2f–%.2f) | %.2f MiB/s (%.2f–%.2f) | %.2f× |\n", d.label, qm, ql, qh, gm, gl, gh, gm/qm)
	}
	return b.String()
}

// writeNetBenchDoc replaces (or appends) the network section of
// docs/benchmarks.md.
func writeNetBenchDoc(t *testing.T, table string, rounds, mibs int) {
	t.Helper()
	path := filepath.Join(repoDir(t), "docs", "benchmarks.md")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	section := fmt.Sprintf(`%s
## Network data path: ember's Go virtio-net next to QEMU's tap path

Written by `+"`%s`"+` (not by `+"`go run ./bench`"+`). Measured %s on a %d-core %s host; load average at the end %s.

One guest (the test guest, 1 vCPU, 256 MiB, under QEMU TCG through ember's qemu backend) with two interfaces on two taps in a network namespace the test creates: eth0 without a rate limiter, which stays on QEMU's own virtio-net on the tap, and eth1 with rx and tx limiters of 10 GiB/s that never throttle, which puts it on ember's Go virtio-net device served to QEMU over vhost-user. The host end is a Go program in the namespace. Each round the guest sends %d MiB with busybox `+"`dd | nc`"+` (timed by the host from the first byte to the last) and then receives %d MiB (timed from the host accepting the connection to the guest's report of the byte count on the console) over each interface, the interface that goes first alternating; %d rounds, medians. Only the ratio means much: TCG emulates the guest's whole network stack, so absolute figures are the emulator's.

%s%s`, netBenchDocBegin, netBenchCommand, time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), cpuModel(),
		strings.Join(strings.Fields(string(load))[:3], " "), mibs, mibs, rounds, table, netBenchDocEnd)
	doc := string(old)
	if i, j := strings.Index(doc, netBenchDocBegin), strings.Index(doc, netBenchDocEnd); i >= 0 && j > i {
		doc = doc[:i] + section + doc[j+len(netBenchDocEnd):]
	} else {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + section + "\n"
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote the network section of %s", path)
}

// repoDir is the repository root (the test runs in tests/e2e).
func repoDir(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}
