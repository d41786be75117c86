package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/nested"
	"github.com/ember-vmm/ember/internal/testguest"
)

// TestNetRateLimiter runs the interface rate limiter check against the qemu
// backend, where a limited interface runs on ember's virtio-net model over
// vhost-user.
func TestNetRateLimiter(t *testing.T) { testNetRateLimiter(t) }

// Ports of the host end of a transfer: the guest connects to the first to
// send (its TX) and to the second to receive (its RX).
const (
	portGuestTx = 5001
	portGuestRx = 5002
)

// vnetHdrLen is the virtio_net_hdr_v1 every frame carries through the Go
// device, which its limiters count and the tap's counters do not.
const vnetHdrLen = 12

// netLimitRound is one pair of transfers (guest TX, then guest RX) under
// one limiter setting.
type netLimitRound struct {
	name  string
	rate  float64 // bytes/s the limiter allows; 0 for no limit worth the name
	blk64 int     // 64 KiB blocks moved each way
}

// testNetRateLimiter (either backend): an interface whose rx and tx
// limiters allow 128 KiB/s (64 KiB/s in L2) holds the guest's throughput
// in both directions to that rate (±10 %); a PATCH doubling it while the
// guest runs takes effect for the next transfers; a PATCH to a limit far
// beyond the guest's reach shows what it moves unthrottled, which must
// exceed the limits comfortably for the checks to mean anything. Throughput is the
// tap's own count of the bytes ember moved (plus the vnet header the
// limiters also count), sampled while a transfer runs, between 20 % and
// 90 % of it: the full bucket and the one-time burst a limiter
// starts with, and TCP's slow start, fall before that window. The
// limiter events show in the interface's metrics.
func testNetRateLimiter(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	ns := newNetns(t)
	const (
		tap      = "nltap0"
		hostIP   = "172.16.5.1"
		guestIP  = "172.16.5.2"
		guestMAC = "06:00:ac:10:05:02"
		kib      = 1 << 10
	)
	addTap(t, ns, tap)
	ip(t, "-n", ns, "addr", "add", hostIP+"/30", "dev", tap)
	ip(t, "-n", ns, "link", "set", tap, "up")
	host := newNSThread(t, ns)
	lnTx := host.listen(t, net.JoinHostPort(hostIP, strconv.Itoa(portGuestTx)))
	lnRx := host.listen(t, net.JoinHostPort(hostIP, strconv.Itoa(portGuestRx)))

	// A refused frame waits Firecracker's 100 ms before it is offered
	// again, so a bucket must hold the largest frame (64 KiB with TSO) plus
	// 100 ms of refill, or the tokens that overflow it meanwhile are lost
	// and the guest falls short of the limit: here buckets refill over a
	// second. A guest the busy host stalls for less than that catches up
	// on the tokens it earned meanwhile. The rates stay far below what an
	// emulated guest moves unthrottled on a loaded host (1.5 MiB/s and
	// more), so the limiter, not the emulator, sets the pace. An L2 guest
	// in an emulated L1 moves 300 KiB/s to 1.5 MiB/s, so there the rates
	// are lower and the unthrottled transfer is smaller; its buckets still
	// hold a whole 64 KiB frame and more: a frame larger than the bucket is
	// let through as an over-consumption whose wait the bucket's own
	// refill then repays a second time (Firecracker's token bucket does
	// the same), and a guest sending such frames got twice the limit.
	// The nested guest also stalls now and then and catches up on a full
	// bucket, so there a bucket is one size at every rate, 80 KiB (a whole
	// frame, and more than a frame plus the 100 ms a refused frame waits,
	// so no token is lost), and transfers last 16 s to dilute the stalls.
	low, secs, unthrottledBlocks := float64(128*kib), 8, 256
	bucketBytes := func(rate float64) float64 { return rate } // refilled over a second
	if nested.Inside() {
		low, secs, unthrottledBlocks = 64*kib, 16, 32
		bucketBytes = func(float64) float64 { return 80 * kib }
	}
	bucket := func(rate float64, burst uint64) map[string]any {
		size := bucketBytes(rate)
		b := map[string]any{"size": uint64(size), "refill_time": uint64(size / rate * 1000)}
		if burst > 0 {
			b["one_time_burst"] = burst
		}
		return map[string]any{"bandwidth": b}
	}
	rounds := []netLimitRound{
		{fmt.Sprintf("limited to %.0f KiB/s", low/kib), low, int(low * float64(secs) / (64 * kib))},
		{fmt.Sprintf("patched to %.0f KiB/s", 2*low/kib), 2 * low, int(2 * low * float64(secs) / (64 * kib))},
		{"patched to no practical limit", 0, unthrottledBlocks},
	}
	unlimited := map[string]any{"bandwidth": map[string]any{"size": uint64(1 << 30), "refill_time": 100}} // 10 GiB/s

	metricsPath := filepath.Join(t.TempDir(), "metrics.json")
	e := startEmber(t, startOpts{netns: ns, args: []string{"--metrics-path", metricsPath}})
	e.mustAPI("PUT", "/network-interfaces/eth0", map[string]any{
		"iface_id": "eth0", "host_dev_name": tap, "guest_mac": guestMAC,
		"rx_rate_limiter": bucket(rounds[0].rate, uint64(low/2)),
		"tx_rate_limiter": bucket(rounds[0].rate, uint64(low/2)),
	}, http.StatusNoContent)
	var sizes []string
	for _, r := range rounds {
		sizes = append(sizes, strconv.Itoa(r.blk64))
	}
	e.boot(a, 128, testguest.Net(guestIP+"/30"), testguest.Script(guestTransfers(hostIP, sizes)),
		testguest.End(testguest.EndWait))

	var rates [][2]float64
	for i, r := range rounds {
		switch i {
		case 1:
			e.mustAPI("PATCH", "/network-interfaces/eth0", map[string]any{
				"iface_id": "eth0", "rx_rate_limiter": bucket(r.rate, 0), "tx_rate_limiter": bucket(r.rate, 0),
			}, http.StatusNoContent)
		case 2:
			// The limits so far must have shown in the metrics.
			e.action("FlushMetrics")
			checkNetLimiterMetrics(t, metricsPath, "eth0")
			e.mustAPI("PATCH", "/network-interfaces/eth0", map[string]any{
				"iface_id": "eth0", "rx_rate_limiter": unlimited, "tx_rate_limiter": unlimited,
			}, http.StatusNoContent)
		}
		n := int64(r.blk64) * 64 * kib
		tx := guestTxRound(t, host, lnTx, tap, n, bootTimeout)
		rx := guestRxRound(t, e, host, lnRx, tap, n, bootTimeout)
		rates = append(rates, [2]float64{tx.wireRate, rx.wireRate})
		for _, d := range []struct {
			dir string
			m   transferMeasure
		}{{"guest tx", tx}, {"guest rx", rx}} {
			if r.rate == 0 {
				t.Logf("%s, %s: %.0f KiB/s on the wire (%.0f KiB/s of payload)", r.name, d.dir, d.m.wireRate/kib, d.m.goodput/kib)
				continue
			}
			if got := d.m.wireRate; got < r.rate*0.9 || got > r.rate*1.1 {
				t.Errorf("%s, %s: %.0f KiB/s on the wire, want %.0f ±10 %% (payload %.0f KiB/s)", r.name, d.dir, got/kib, r.rate/kib, d.m.goodput/kib)
			} else {
				t.Logf("%s, %s: %.0f KiB/s on the wire (limit %.0f; payload %.0f KiB/s)", r.name, d.dir, got/kib, r.rate/kib, d.m.goodput/kib)
			}
		}
	}
	// Unthrottled, the guest must go well past the highest limit, or the
	// limited figures say nothing about the limiter.
	top := rounds[1].rate
	for i, dir := range []string{"tx", "rx"} {
		if u := rates[2][i]; u < 1.5*top {
			t.Errorf("unthrottled, the guest's %s reaches only %.0f KiB/s: too close to the %.0f KiB/s limit for the limited rounds to test the limiter",
				dir, u/kib, top/kib)
		}
	}
}

// guestTransfers is the guest's side of a series of rounds: for each size
// (in 64 KiB blocks), send that much to the host's TX port, then receive
// from its RX port and report the count.
func guestTransfers(hostIP string, blocks []string) string {
	return fmt.Sprintf(`
for n in %s; do
	dd if=/dev/zero bs=64k count=$n 2>/dev/null | nc %s %d
	echo "EMBER-GUEST: rx $n $(nc %s %d | wc -c)"
done
`, strings.Join(blocks, " "), hostIP, portGuestTx, hostIP, portGuestRx)
}

// transferMeasure is one timed transfer.
type transferMeasure struct {
	wireRate float64 // bytes/s the tap counted (vnet header added), mid-transfer window
	goodput  float64 // payload bytes/s over the whole transfer, as the host saw it
}

// guestTxRound takes one connection on ln, reads n bytes the guest sends
// and closes it, sampling the tap's receive counter meanwhile.
func guestTxRound(t *testing.T, host *nsThread, ln net.Listener, tap string, n int64, timeout time.Duration) transferMeasure {
	t.Helper()
	s := startSampler(host, tap, false)
	defer s.stop()
	c := acceptWithin(t, ln, timeout)
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	var start time.Time
	var got int64
	buf := make([]byte, 256<<10)
	for got < n {
		k, err := c.Read(buf[:min(int64(len(buf)), n-got)])
		if k > 0 && got == 0 {
			start = time.Now()
		}
		got += int64(k)
		if err != nil {
			t.Fatalf("guest tx: read %d of %d bytes: %v", got, n, err)
		}
	}
	end := time.Now()
	samples := s.stop()
	return transferMeasure{wireRate: windowRate(t, samples, n), goodput: float64(n) / end.Sub(start).Seconds()}
}

// guestRxRound takes one connection on ln, writes n bytes to the guest and
// closes it, sampling the tap's transmit counter meanwhile, and checks that
// the guest received them all.
func guestRxRound(t *testing.T, e *ember, host *nsThread, ln net.Listener, tap string, n int64, timeout time.Duration) transferMeasure {
	t.Helper()
	from := e.con.Len()
	s := startSampler(host, tap, true)
	defer s.stop()
	c := acceptWithin(t, ln, timeout)
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	start := time.Now()
	if _, err := io.CopyN(c, zeroReader{}, n); err != nil {
		t.Fatalf("guest rx: write: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	// The guest's nc half-closes at once (its stdin is empty), so only the
	// guest's report says when everything has arrived.
	_, l := e.waitLineFrom(from, "EMBER-GUEST: rx ", timeout)
	end := time.Now()
	samples := s.stop()
	if f := strings.Fields(l); len(f) != 4 || f[3] != strconv.FormatInt(n, 10) {
		t.Fatalf("the guest received %q, want %d bytes", l, n)
	}
	return transferMeasure{wireRate: windowRate(t, samples, n), goodput: float64(n) / end.Sub(start).Seconds()}
}

func acceptWithin(t *testing.T, ln net.Listener, timeout time.Duration) net.Conn {
	t.Helper()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(timeout))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("the guest never connected to %s: %v", ln.Addr(), err)
	}
	return c
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// counterSample is a tap's byte count (vnet headers added) at one time.
type counterSample struct {
	at    time.Time
	bytes int64
}

// windowRate is the rate between the samples where the count first passed
// 20 % and 90 % of an n-byte transfer beyond the first sample. (The tap's
// count of a nested guest's last frames was seen to lag the transfer's
// end: 92 % of it counted when the host had read every byte.)
func windowRate(t *testing.T, s []counterSample, n int64) float64 {
	t.Helper()
	if len(s) < 2 {
		t.Fatalf("only %d counter samples", len(s))
	}
	base := s[0].bytes
	lo, hi := -1, -1
	for i, x := range s {
		if lo < 0 && x.bytes-base >= n/5 {
			lo = i
		}
		if hi < 0 && x.bytes-base >= n*9/10 {
			hi = i
		}
	}
	if lo < 0 || hi <= lo {
		t.Fatalf("the tap's counters never covered the transfer's middle (%d bytes over %v, for %d):\n%s",
			s[len(s)-1].bytes-base, s[len(s)-1].at.Sub(s[0].at), n, sampleTrace(s))
	}
	// Samples come about every 10 ms: a middle shorter than 200 ms counts
	// as 200 ms, a lower bound on the rate. Only an unthrottled transfer
	// is that fast, and its rate is checked only from below.
	d := s[hi].at.Sub(s[lo].at)
	if floor := 200 * time.Millisecond; d < floor {
		t.Logf("the transfer's middle took only %v; rated as if it took %v (a lower bound)", d, floor)
		d = floor
	}
	return float64(s[hi].bytes-s[lo].bytes) / d.Seconds()
}

// sampleTrace shows samples about every 250 ms, for failure messages.
func sampleTrace(s []counterSample) string {
	var b strings.Builder
	next := s[0].at
	for _, x := range s {
		if !x.at.Before(next) {
			fmt.Fprintf(&b, "  +%.2fs %d\n", x.at.Sub(s[0].at).Seconds(), x.bytes-s[0].bytes)
			next = x.at.Add(250 * time.Millisecond)
		}
	}
	return b.String()
}

// sampler polls one direction of a tap's counters until stopped.
type sampler struct {
	quit    chan struct{}
	done    chan struct{}
	samples []counterSample
}

// startSampler samples what the host sent through tap (tx true: the
// guest's RX) or received from it (the guest's TX) every 10 ms.
func startSampler(host *nsThread, tap string, tx bool) *sampler {
	s := &sampler{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			var c tapCounts
			var err error
			host.do(func() { c, err = readTapCounts(tap) })
			if err == nil {
				b := c.rxBytes + vnetHdrLen*c.rxPackets
				if tx {
					b = c.txBytes + vnetHdrLen*c.txPackets
				}
				s.samples = append(s.samples, counterSample{time.Now(), b})
			}
			select {
			case <-s.quit:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends the sampling (more than once is fine) and returns the samples.
func (s *sampler) stop() []counterSample {
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	<-s.done
	return s.samples
}

// tapCounts are a host interface's counters as /proc/net/dev has them.
type tapCounts struct {
	rxBytes, rxPackets, txBytes, txPackets int64
}

// readTapCounts reads name's counters from the calling thread's network
// namespace (run it on an nsThread).
func readTapCounts(name string) (tapCounts, error) {
	b, err := os.ReadFile("/proc/thread-self/net/dev")
	if err != nil {
		return tapCounts{}, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || strings.TrimSpace(k) != name {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 10 {
			break
		}
		var n [4]int64
		for i, j := range []int{0, 1, 8, 9} {
			if n[i], err = strconv.ParseInt(f[j], 10, 64); err != nil {
				return tapCounts{}, fmt.Errorf("/proc/net/dev line %q: %w", l, err)
			}
		}
		return tapCounts{n[0], n[1], n[2], n[3]}, nil
	}
	return tapCounts{}, fmt.Errorf("no interface %q in /proc/net/dev", name)
}

// nsThread runs functions on one OS thread inside a network namespace, so
// that sockets it creates and /proc/thread-self/net belong to that
// namespace. The thread is never handed back to the Go scheduler: it ends
// with its goroutine when the test does.
type nsThread struct {
	req chan func()
}

// newNSThread starts the thread in namespace ns ("" keeps the test's own,
// as inside an L1 VM).
func newNSThread(t *testing.T, ns string) *nsThread {
	t.Helper()
	w := &nsThread{req: make(chan func())}
	ready := make(chan error, 1)
	quit := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves with the goroutine
		if ns != "" {
			f, err := os.Open(filepath.Join("/var/run/netns", ns))
			if err != nil {
				ready <- err
				return
			}
			err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
			f.Close()
			if err != nil {
				ready <- fmt.Errorf("setns %s: %w", ns, err)
				return
			}
		}
		ready <- nil
		for {
			select {
			case f := <-w.req:
				f()
			case <-quit:
				return
			}
		}
	}()
	if err := <-ready; err != nil {
		t.Fatalf("a thread in network namespace %q: %v", ns, err)
	}
	t.Cleanup(func() { close(quit) })
	return w
}

// do runs f on the namespace's thread and waits for it.
func (w *nsThread) do(f func()) {
	done := make(chan struct{})
	w.req <- func() { f(); close(done) }
	<-done
}

// listen opens a TCP listener on addr inside the namespace, closed when
// the test ends.
func (w *nsThread) listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	w.do(func() { ln, err = net.Listen("tcp4", addr) })
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// checkNetLimiterMetrics checks that the interface's metrics, summed over
// every line of the metrics file, show its limiters at work: frames held
// back in both directions, as Firecracker counts them.
func checkNetLimiterMetrics(t *testing.T, path, iface string) {
	t.Helper()
	sum := map[string]int64{}
	for _, line := range metricsLines(t, path) {
		var sec map[string]json.RawMessage
		if err := json.Unmarshal(line["net_"+iface], &sec); err != nil {
			t.Fatalf("metrics: no net_%s section: %v", iface, err)
		}
		for k, v := range sec {
			var n int64
			if json.Unmarshal(v, &n) == nil {
				sum[k] += n
			}
		}
	}
	t.Logf("net_%s metrics so far: rx_rate_limiter_throttled %d, rx_event_rate_limiter_count %d, tx_rate_limiter_throttled %d, tx_rate_limiter_event_count %d, rx_bytes_count %d, tx_bytes_count %d",
		iface, sum["rx_rate_limiter_throttled"], sum["rx_event_rate_limiter_count"], sum["tx_rate_limiter_throttled"], sum["tx_rate_limiter_event_count"], sum["rx_bytes_count"], sum["tx_bytes_count"])
	for _, k := range []string{"rx_rate_limiter_throttled", "tx_rate_limiter_throttled", "rx_bytes_count", "tx_bytes_count"} {
		if sum[k] == 0 {
			t.Errorf("net_%s %s stayed 0 through limited transfers both ways", iface, k)
		}
	}
}
