package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// TestNetworkPing: the guest pings the host end of a tap, with ember
// running inside a network namespace that holds the tap and its address.
func TestNetworkPing(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	ns := newNetns(t)
	const (
		tap      = "e2etap0"
		hostIP   = "172.16.0.1"
		guestIP  = "172.16.0.2"
		guestMAC = "06:00:ac:10:00:02"
	)
	addTap(t, ns, tap)
	ip(t, "-n", ns, "addr", "add", hostIP+"/30", "dev", tap)
	ip(t, "-n", ns, "link", "set", tap, "up")

	e := startEmber(t, startOpts{netns: ns})
	e.mustAPI("PUT", "/network-interfaces/eth0", map[string]string{
		"iface_id": "eth0", "host_dev_name": tap, "guest_mac": guestMAC,
	}, http.StatusNoContent)
	e.boot(a, 128, testguest.Net(guestIP+"/30"), testguest.Ping(hostIP),
		testguest.Script(`echo "EMBER-GUEST: mac $(cat /sys/class/net/eth0/address)"`),
		testguest.End(testguest.EndWait))
	if got := e.waitLine("EMBER-GUEST: ping ", bootTimeout); got != "EMBER-GUEST: ping ok" {
		t.Fatalf("the guest could not ping %s through the tap: %q", hostIP, got)
	}
	if got := e.waitLine("EMBER-GUEST: mac ", bootTimeout); got != "EMBER-GUEST: mac "+guestMAC {
		t.Errorf("guest eth0: %q, want MAC %s", got, guestMAC)
	}
	// The guest stays up while the host looks: once QEMU closes the tap the
	// link loses carrier and the kernel flushes the tap's neighbours.
	e.waitLine(testguest.MarkerReady, bootTimeout)
	if neigh := ip(t, "-n", ns, "neigh", "show", "dev", tap); !strings.Contains(neigh, guestMAC) {
		t.Errorf("the host side never saw the guest's MAC: %q", neigh)
	}
	e.action("SendCtrlAltDel")
	e.wantExit(0, exitTimeout)
}

var memLine = regexp.MustCompile(`^EMBER-GUEST: mem (\d+) (\d+)$`)

// memReports returns the guest's MemTotal and MemFree reports (kB) so far.
func memReports(e *ember) [][2]int {
	var out [][2]int
	for _, l := range e.con.Lines() {
		if m := memLine.FindStringSubmatch(l); m != nil {
			total, _ := strconv.Atoi(m[1])
			free, _ := strconv.Atoi(m[2])
			out = append(out, [2]int{total, free})
		}
	}
	return out
}

// balloonStatsFields are Firecracker's BalloonStats keys: four always
// there, the rest present once the guest has reported them.
var balloonStatsFields = map[string]bool{
	"target_pages": true, "actual_pages": true, "target_mib": true, "actual_mib": true,
	"swap_in": false, "swap_out": false, "major_faults": false, "minor_faults": false,
	"free_memory": false, "total_memory": false, "available_memory": false, "disk_caches": false,
	"hugetlb_allocations": false, "hugetlb_failures": false, "oom_kill": false, "alloc_stall": false,
	"async_scan": false, "direct_scan": false, "async_reclaim": false, "direct_reclaim": false,
}

// TestBalloon: a balloon configured before boot and inflated after it
// takes memory from the guest, and the statistics carry the guest's
// figures under Firecracker's names.
func TestBalloon(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	e.mustAPI("PUT", "/balloon", map[string]any{"amount_mib": 0, "deflate_on_oom": false, "stats_polling_interval_s": 1}, http.StatusNoContent)
	e.boot(a, 256, testguest.MemInfoEvery(300))
	e.waitLine("EMBER-GUEST: mem ", bootTimeout)
	before := memReports(e)[0]

	const inflateMiB = 100
	e.mustAPI("PATCH", "/balloon", map[string]int{"amount_mib": inflateMiB}, http.StatusNoContent)
	var now [2]int
	for deadline := time.Now().Add(30 * time.Second); ; {
		r := memReports(e)
		now = r[len(r)-1]
		// Without deflate_on_oom the guest takes the pages out of MemTotal;
		// MemFree drops as well.
		if before[0]-now[0] >= (inflateMiB-5)*1024 && before[1]-now[1] >= (inflateMiB-20)*1024 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a %d MiB balloon is not visible in the guest: MemTotal %d → %d kB, MemFree %d → %d kB",
				inflateMiB, before[0], now[0], before[1], now[1])
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("guest MemTotal %d → %d kB, MemFree %d → %d kB", before[0], now[0], before[1], now[1])

	var cfg struct {
		AmountMiB int `json:"amount_mib"`
	}
	if body := e.mustAPI("GET", "/balloon", nil, http.StatusOK); json.Unmarshal([]byte(body), &cfg) != nil || cfg.AmountMiB != inflateMiB {
		t.Errorf("GET /balloon: %s, want amount_mib %d", body, inflateMiB)
	}

	var stats map[string]json.Number
	var body string
	for deadline := time.Now().Add(20 * time.Second); ; {
		body = e.mustAPI("GET", "/balloon/statistics", nil, http.StatusOK)
		stats = nil
		dec := json.NewDecoder(strings.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&stats); err != nil {
			t.Fatalf("GET /balloon/statistics: %v: %s", err, body)
		}
		// The guest reports once per polling interval (1 s): wait for a
		// report made after the inflation, whose total is the guest's own
		// MemTotal.
		r := memReports(e)
		guestTotal := int64(r[len(r)-1][0]) * 1024
		if num(stats["actual_mib"]) >= inflateMiB-1 && stats["free_memory"] != "" &&
			abs(num(stats["total_memory"])-guestTotal) <= 2<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the statistics never showed the inflated balloon with the guest's current figures (guest MemTotal %d bytes): %s", guestTotal, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("balloon statistics: %s", body)
	for k, required := range balloonStatsFields {
		if _, ok := stats[k]; required && !ok {
			t.Errorf("statistics lack %q: %s", k, body)
		}
	}
	for k := range stats {
		if _, ok := balloonStatsFields[k]; !ok {
			t.Errorf("statistics have %q, which Firecracker does not: %s", k, body)
		}
	}
	if num(stats["target_mib"]) != inflateMiB || num(stats["target_pages"]) != inflateMiB*256 ||
		num(stats["actual_pages"]) != num(stats["actual_mib"])*256 {
		t.Errorf("balloon sizes in the statistics: %s", body)
	}
	total, free := num(stats["total_memory"]), num(stats["free_memory"])
	if total <= 100<<20 || total > 256<<20 || free <= 0 || free >= total {
		t.Errorf("implausible guest memory figures: total %d, free %d bytes", total, free)
	}

	// Deflated, the guest gets its memory back.
	e.mustAPI("PATCH", "/balloon", map[string]int{"amount_mib": 0}, http.StatusNoContent)
	for deadline := time.Now().Add(30 * time.Second); ; {
		r := memReports(e)
		now = r[len(r)-1]
		if before[0]-now[0] <= 2*1024 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deflating did not give the memory back: MemTotal %d kB before, %d kB now", before[0], now[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func num(n json.Number) int64 {
	v, err := n.Int64()
	if err != nil {
		return -1
	}
	return v
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// TestDriveResize: PATCH /drives with a bigger file after boot; the guest
// sees the new size and the new file's content.
func TestDriveResize(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	small := writeFile(t, filepath.Join(e.dir, "small.img"), bytes.Repeat([]byte{'A'}, 8<<20))
	big := writeFile(t, filepath.Join(e.dir, "big.img"), bytes.Repeat([]byte{'B'}, 16<<20))
	e.putDrive("rootfs", rootfsCopy(t), true, false)
	e.putDrive("data", small, false, false)
	// Print vdb's size (512-byte sectors) and first byte whenever the size
	// changes, for at most about a minute.
	e.boot(a, 128, testguest.Script(`
last=; i=0
while [ $i -lt 600 ]; do
  s=$(cat /sys/block/vdb/size)
  if [ "$s" != "$last" ]; then
    echo "EMBER-GUEST: vdb $s $(dd if=/dev/vdb bs=512 count=1 iflag=direct 2>/dev/null | head -c 1)"
    last=$s
  fi
  i=$((i+1)); sleep 0.1
done`))
	e.waitLine("EMBER-GUEST: vdb 16384 A", bootTimeout)
	e.mustAPI("PATCH", "/drives/data", map[string]string{"drive_id": "data", "path_on_host": big}, http.StatusNoContent)
	e.waitLine("EMBER-GUEST: vdb 32768 B", 20*time.Second)
	// The same path again after the file grew: Firecracker's way to
	// announce a resize.
	if err := os.Truncate(big, 24<<20); err != nil {
		t.Fatal(err)
	}
	e.mustAPI("PATCH", "/drives/data", map[string]string{"drive_id": "data", "path_on_host": big}, http.StatusNoContent)
	e.waitLine("EMBER-GUEST: vdb 49152 B", 20*time.Second)
}

// TestMetrics: with --metrics-path ember writes one line right when the VM
// starts, with a block_<id> section per drive, and FlushMetrics adds one.
func TestMetrics(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "metrics.json")
	e := startEmber(t, startOpts{args: []string{"--metrics-path", path}})
	e.putDrive("scratch", writeFile(t, filepath.Join(dir, "scratch.img"), make([]byte, 1<<20)), false, false)
	e.boot(a, 128, testguest.End(testguest.EndWait))
	first := waitMetricsLines(t, path, 1)
	e.waitLine(testguest.MarkerReady, bootTimeout)
	if lines := metricsLines(t, path); len(lines) != 1 {
		t.Fatalf("%d metrics lines before FlushMetrics, want 1", len(lines))
	}
	e.action("FlushMetrics")
	second := waitMetricsLines(t, path, 2)
	for i, m := range []map[string]json.RawMessage{first[0], second[1]} {
		var block map[string]json.RawMessage
		if err := json.Unmarshal(m["block_scratch"], &block); err != nil || block["read_bytes"] == nil || block["write_count"] == nil {
			t.Errorf("metrics line %d: block_scratch section %s (%v)", i+1, m["block_scratch"], err)
		}
		if m["utc_timestamp_ms"] == nil {
			t.Errorf("metrics line %d lacks utc_timestamp_ms", i+1)
		}
	}
}

// metricsLines parses the metrics file, one JSON object per line.
func metricsLines(t *testing.T, path string) []map[string]json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("metrics file: %v", err)
	}
	var out []map[string]json.RawMessage
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "" {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("metrics line is not a JSON object: %v: %.300s", err, l)
		}
		out = append(out, m)
	}
	return out
}

// waitMetricsLines waits (briefly) until the metrics file has exactly n
// complete lines.
func waitMetricsLines(t *testing.T, path string, n int) []map[string]json.RawMessage {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && bytes.Count(b, []byte("\n")) >= n {
			lines := metricsLines(t, path)
			if len(lines) != n {
				t.Fatalf("%d metrics lines, want %d", len(lines), n)
			}
			return lines
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(path)
			t.Fatalf("the metrics file has not %d lines within 5 s:\n%.2000s", n, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
