package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
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
	"golang.org/x/sys/unix"
)

// The vsock benchmark (issue 6, item 6): throughput host→guest and
// guest→host and connection set-up latency over vsock, beside the same
// transfers over TCP through a tap (QEMU's virtio-net) of the same guest,
// so the two can be compared in one run on one machine. Run with
// EMBER_BENCH=1; EMBER_BENCH_MIB sets the transfer size (default 16),
// EMBER_BENCH_CONNECTS the connects timed (default 51). Both sides of
// every transfer are checked by sha256. The guest does the same work on
// both paths as far as its tools allow: it hashes what it receives and
// what it sends (vsockt for vsock, busybox's sha256sum beside nc for TCP;
// vsockt also generates its random data, nc sends a file made at boot).
const (
	benchPortEcho   = 5000
	benchPortSink   = 5001
	benchPortSource = 5002
	benchTCPEcho    = 7000
	benchTCPSink    = 7001
	benchTCPSource  = 7002
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestVsockBench measures vsock against TCP on the qemu backend.
func TestVsockBench(t *testing.T) {
	if os.Getenv(envBench) != "1" {
		t.Skip("SKIPPING the vsock benchmark: set EMBER_BENCH=1 to run it")
	}
	a := requireVM(t)
	size := int64(envInt("EMBER_BENCH_MIB", 16)) << 20
	connects := envInt("EMBER_BENCH_CONNECTS", 51)
	ns := newNetns(t)
	const (
		tap     = "e2evbench0"
		hostIP  = "172.16.9.1"
		guestIP = "172.16.9.2"
	)
	addTap(t, ns, tap)
	ip(t, "-n", ns, "addr", "add", hostIP+"/30", "dev", tap)
	ip(t, "-n", ns, "link", "set", tap, "up")

	dir := t.TempDir()
	uds := filepath.Join(dir, "v.sock")
	e := startEmber(t, startOpts{netns: ns})
	e.mustAPI("PUT", "/network-interfaces/eth0", map[string]string{
		"iface_id": "eth0", "host_dev_name": tap, "guest_mac": "06:00:ac:10:09:02",
	}, http.StatusNoContent)
	e.mustAPI("PUT", "/vsock", map[string]any{"guest_cid": 3, "uds_path": uds}, http.StatusNoContent)
	e.boot(a, 256, testguest.Net(guestIP+"/30"), testguest.Script(fmt.Sprintf(`
head -c %[1]d /dev/urandom > /tmp/blob
vsockt listen %[2]d echo > /dev/null &
vsockt listen %[3]d sink &
vsockt listen %[4]d source %[1]d > /dev/null &
nc -ll -p %[5]d -e /bin/cat &
( while true; do nc -l -p %[6]d | sha256sum | sed 's/^/EMBER-GUEST: tcpsink /'; done ) &
( while true; do nc -l -p %[7]d < /tmp/blob & sha256sum /tmp/blob > /dev/null; wait; done ) &
echo "EMBER-GUEST: bench ready $(sha256sum < /tmp/blob)"
`, size, benchPortEcho, benchPortSink, benchPortSource, benchTCPEcho, benchTCPSink, benchTCPSource)),
		testguest.End(testguest.EndWait))
	ready := strings.Fields(e.waitLine("EMBER-GUEST: bench ready ", 2*bootTimeout))
	if len(ready) < 4 {
		t.Fatalf("guest: %q", ready)
	}
	blobSum := ready[3]
	timeout := scaled(5 * time.Minute)

	// TCP sockets must be made inside ember's network namespace.
	dialTCP := func(port int) (net.Conn, error) {
		return inNetns(ns, func() (net.Conn, error) {
			return net.DialTimeout("tcp", net.JoinHostPort(guestIP, strconv.Itoa(port)), 10*time.Second)
		})
	}
	dialRetry := func(dial func() (net.Conn, error)) net.Conn {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			c, err := dial()
			if err == nil {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// host→guest: send size random bytes, time until the guest reports
	// the checksum of what it read.
	toGuest := func(c net.Conn, line string) time.Duration {
		t.Helper()
		from := len(e.con.Lines())
		h := sha256.New()
		start := time.Now()
		if n, err := io.Copy(io.MultiWriter(c, h), io.LimitReader(rand.Reader, size)); err != nil || n != size {
			t.Fatalf("sending: %d bytes, %v", n, err)
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		_, got := e.waitLineFrom(from, line, timeout)
		took := time.Since(start)
		c.Close()
		if want := hex.EncodeToString(h.Sum(nil)); !strings.Contains(got, want) {
			t.Fatalf("guest received %q, want sha256 %s", got, want)
		}
		return took
	}
	// guest→host: read size bytes, check them against want.
	fromGuest := func(c net.Conn, start time.Time, want string) time.Duration {
		t.Helper()
		defer c.Close()
		h := sha256.New()
		c.SetReadDeadline(time.Now().Add(timeout))
		n, err := io.CopyN(h, c, size)
		took := time.Since(start)
		if err != nil || n != size {
			t.Fatalf("receiving: %d bytes, %v", n, err)
		}
		if want != "" && hex.EncodeToString(h.Sum(nil)) != want {
			t.Fatalf("received data does not match the guest's sha256 %s", want)
		}
		return took
	}
	mibs := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }

	type row struct {
		what         string
		vsock, tcp   float64
		unit         string
		higherBetter bool
	}
	var rows []row

	// Throughput, vsock and TCP alternately, twice, the better of each.
	var vIn, tIn, vOut, tOut time.Duration
	best := func(cur *time.Duration, d time.Duration) {
		if *cur == 0 || d < *cur {
			*cur = d
		}
	}
	for round := range 2 {
		best(&vIn, toGuest(vsockDial(t, uds, benchPortSink), fmt.Sprintf("vsockt sink %d %d ", benchPortSink, round+1)))
		best(&tIn, toGuest(dialRetry(func() (net.Conn, error) { return dialTCP(benchTCPSink) }), "EMBER-GUEST: tcpsink "))
		start := time.Now()
		best(&vOut, fromGuest(vsockDial(t, uds, benchPortSource), start, ""))
		start = time.Now()
		best(&tOut, fromGuest(dialRetry(func() (net.Conn, error) { return dialTCP(benchTCPSource) }), start, blobSum))
	}
	rows = append(rows,
		row{"host→guest", mibs(vIn), mibs(tIn), "MiB/s", true},
		row{"guest→host", mibs(vOut), mibs(tOut), "MiB/s", true})

	// Connection set-up: connect, until the host knows the guest accepted
	// (vsock: the OK line; TCP: the handshake), then close.
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2].Microseconds()) / 1000
	}
	var vLat, tLat []time.Duration
	for range connects {
		start := time.Now()
		c, err := vsockConnect(uds, benchPortEcho, timeout)
		if err != nil {
			t.Fatal(err)
		}
		vLat = append(vLat, time.Since(start))
		c.Close()
		start = time.Now()
		c, err = dialTCP(benchTCPEcho)
		if err != nil {
			t.Fatal(err)
		}
		tLat = append(tLat, time.Since(start))
		c.Close()
	}
	rows = append(rows, row{fmt.Sprintf("connect (median of %d)", connects), median(vLat), median(tLat), "ms", false})

	t.Logf("vsock benchmark, qemu backend (%s, %d CPUs), %d MiB transfers:", runtime.GOARCH, runtime.NumCPU(), size>>20)
	t.Logf("| | vsock | TCP via tap | vsock / TCP |")
	t.Logf("|---|---|---|---|")
	for _, r := range rows {
		t.Logf("| %s | %.2f %s | %.2f %s | %.2f |", r.what, r.vsock, r.unit, r.tcp, r.unit, r.vsock/r.tcp)
	}
}

// inNetns runs dial on an OS thread that has entered network namespace ns
// (ns "" is this one), so the socket it makes lives there; the socket works
// from any thread afterwards. The thread is never returned to Go's pool:
// it exits with its goroutine.
func inNetns(ns string, dial func() (net.Conn, error)) (net.Conn, error) {
	if ns == "" {
		return dial()
	}
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("entering network namespace %s: %w", ns, err)}
			return
		}
		c, err := dial()
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
