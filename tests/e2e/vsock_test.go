package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// bulkSize is what each bulk transfer of testVsock moves, each way:
// EMBER_VSOCK_MIB if set, else 64 MiB on qemu and 16 MiB on kvm.
func bulkSize(backend string) int64 {
	if v, err := strconv.Atoi(os.Getenv("EMBER_VSOCK_MIB")); err == nil && v > 0 {
		return int64(v) << 20
	}
	if backend == "kvm" {
		// In L1, KVM on QEMU's emulated SVM sometimes never delivers the
		// device's interrupt and a transfer stalls (explainStall,
		// docs/reliability.md): 16 MiB makes that rarer in CI, and
		// EMBER_VSOCK_MIB=64 with EMBER_RACE=1 reproduces it.
		return 16 << 20
	}
	return 64 << 20
}

// Guest ports of the vsock test's listeners, and the host ports the guest
// connects to (uds_path_<port>).
const (
	portEcho       = 5000 // echo, any number of connections
	portSink       = 5001 // reads to EOF: host→guest bulk
	portSource     = 5002 // sends vsockBulk: guest→host bulk, host-initiated
	portGuestClose = 5003 // reads 64 KiB, then closes
	portHostClose  = 5004 // sends forever; the host closes
	hostPortBulk   = 6000 // guest-initiated: the guest sends vsockBulk here
	hostPortEcho   = 6001 // guest-initiated: the host echoes
)

// TestVsock is testVsock on the qemu backend: ember's vsock device served
// to QEMU's vhost-user-vsock-device.
func TestVsock(t *testing.T) { testVsock(t) }

// testVsock (either backend): PUT /vsock binds uds_path at once, a re-PUT
// unlinks the old socket, bind errors carry Firecracker's texts; then a
// guest moves data both ways over host- and guest-initiated connections,
// checked by sha256, with 64 concurrent connections, either side closing
// mid-stream, a pause in the middle of a transfer, and the vsock metrics
// counting it all.
//
// It runs alone, not in parallel: its bulk transfers keep L1's CPUs busy
// and would starve the timing-sensitive tests beside it (rate limiters,
// balloon).
func testVsock(t *testing.T) {
	a := requireVM(t)
	vsockBulk := bulkSize(backendOf(t))
	dir := t.TempDir()
	metricsPath := filepath.Join(dir, "metrics.json")
	e := startEmber(t, startOpts{args: []string{"--metrics-path", metricsPath}})
	// A stalled transfer is diagnosed by what the device did meanwhile: the
	// periodic metrics lines (every 60 s) carry its counters.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		b, err := os.ReadFile(metricsPath)
		if err != nil {
			return
		}
		for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var m map[string]json.RawMessage
			if json.Unmarshal([]byte(l), &m) == nil {
				t.Logf("metrics line %d, vsock: %s", i+1, m["vsock"])
			}
		}
	})

	// Binding at PUT time, re-PUT, errors.
	first, uds := filepath.Join(dir, "first.sock"), filepath.Join(dir, "v.sock")
	putVsock := func(path string) (int, string) {
		return e.api("PUT", "/vsock", map[string]any{"guest_cid": 3, "uds_path": path})
	}
	if code, body := putVsock(first); code != http.StatusNoContent {
		t.Fatalf("PUT /vsock: %d %s", code, body)
	}
	if !isSocketFile(first) {
		t.Fatalf("uds_path %s is not a socket right after PUT /vsock", first)
	}
	if c, err := net.Dial("unix", first); err != nil {
		t.Errorf("cannot connect to uds_path before boot: %v", err)
	} else {
		c.Close()
	}
	if code, body := putVsock(uds); code != http.StatusNoContent {
		t.Fatalf("re-PUT /vsock: %d %s", code, body)
	}
	if _, err := os.Stat(first); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("re-PUT /vsock left the old socket %s (%v)", first, err)
	}
	if !isSocketFile(uds) {
		t.Fatalf("re-PUT /vsock did not bind %s", uds)
	}
	os.Remove(uds)
	const bindErr = "Vsock config error: Cannot create backend for vsock device: Error binding to the host-side Unix socket: "
	code, body := putVsock(uds)
	wantFault(t, "re-PUT after the socket file vanished", code, body, bindErr+"No such file or directory (os error 2)")
	code, body = putVsock(writeFile(t, filepath.Join(dir, "taken"), nil))
	wantFault(t, "uds_path is a file", code, body, bindErr+"Address in use (os error 98)")
	if code, body := putVsock(uds); code != http.StatusNoContent {
		t.Fatalf("PUT /vsock: %d %s", code, body)
	}

	// Host listeners for guest-initiated connections, before the guest runs.
	bulkIn := listenHost(t, fmt.Sprintf("%s_%d", uds, hostPortBulk), func(c net.Conn) (int64, string, error) {
		h := sha256.New()
		n, err := io.Copy(h, c)
		return n, hex.EncodeToString(h.Sum(nil)), err
	})
	echoIn := listenHost(t, fmt.Sprintf("%s_%d", uds, hostPortEcho), func(c net.Conn) (int64, string, error) {
		n, err := io.Copy(c, c)
		return n, "", err
	})

	// The heartbeat tells a stalled transfer from a stalled guest, and its
	// interrupt counts a lost interrupt (explainStall).
	e.boot(a, 256, testguest.Script(fmt.Sprintf(`
vsockt listen %d echo &
vsockt listen %d sink &
vsockt listen %d source %d &
vsockt listen %d sink 65536 &
vsockt listen %d source 100000000000 &
vsockt connect 2 %d source %d &
vsockt connect 2 %d echo 1048576 &
%s
`, portEcho, portSink, portSource, vsockBulk, portGuestClose, portHostClose, hostPortBulk, vsockBulk, hostPortEcho, heartbeatScript)), testguest.End(testguest.EndWait))
	e.waitLine(testguest.MarkerReady, bootTimeout)
	for _, p := range []int{portEcho, portSink, portSource, portGuestClose, portHostClose} {
		e.waitLine(fmt.Sprintf("EMBER-GUEST: vsockt listening %d", p), exitTimeout)
	}
	stepTimeout := scaled(60 * time.Second)

	// Guest-initiated: the guest sent vsockBulk bytes to uds_path_6000 and
	// echoed 1 MiB through uds_path_6001.
	t.Run("GuestToHost", func(t *testing.T) {
		g := vsockLine(t, e, fmt.Sprintf("source %d 0", hostPortBulk), stepTimeout)
		r := bulkIn.result(t, stepTimeout)
		if r.err != nil || r.n != vsockBulk || r.sum != g.sum || !g.ok {
			t.Errorf("guest→host: host got %d bytes sha256 %s (%v); guest sent %+v", r.n, r.sum, r.err, g)
		}
		if g := vsockLine(t, e, fmt.Sprintf("echo %d 0", hostPortEcho), stepTimeout); !g.ok || g.n != 1<<20 {
			t.Errorf("guest echo through uds_path_%d: %+v", hostPortEcho, g)
		}
		echoIn.result(t, stepTimeout)
	})

	// Host-initiated bulk, each way.
	t.Run("HostToGuest", func(t *testing.T) {
		c := vsockDial(t, uds, portSink)
		defer c.Close()
		h := sha256.New()
		start := time.Now()
		n, err := io.Copy(io.MultiWriter(c, h), io.LimitReader(rand.Reader, vsockBulk))
		if err != nil || n != vsockBulk {
			t.Fatalf("sending to the guest: %d bytes, %v", n, err)
		}
		c.(*net.UnixConn).CloseWrite()
		g := vsockLine(t, e, fmt.Sprintf("sink %d 1", portSink), stepTimeout)
		took := time.Since(start)
		if want := hex.EncodeToString(h.Sum(nil)); !g.ok || g.n != vsockBulk || g.sum != want {
			t.Errorf("host→guest: guest got %+v, host sent %d bytes sha256 %s", g, n, want)
		}
		t.Logf("host→guest: %d MiB in %v (%.1f MiB/s, including the guest's sha256)", vsockBulk>>20, took.Round(time.Millisecond), float64(vsockBulk>>20)/took.Seconds())
	})
	t.Run("GuestToHostHostInitiated", func(t *testing.T) {
		c := vsockDial(t, uds, portSource)
		defer c.Close()
		h := sha256.New()
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(stepTimeout))
		n, err := io.Copy(h, c)
		took := time.Since(start)
		if err != nil || n != vsockBulk {
			explainStall(t, e)
			t.Fatalf("guest→host: host got %d of %d bytes in %v: %v", n, vsockBulk, took, err)
		}
		g := vsockLine(t, e, fmt.Sprintf("source %d 1", portSource), stepTimeout)
		if got := hex.EncodeToString(h.Sum(nil)); err != nil || n != vsockBulk || !g.ok || g.sum != got {
			t.Errorf("guest→host: host got %d bytes sha256 %s (%v), guest sent %+v", n, got, err, g)
		}
		t.Logf("guest→host: %d MiB in %v (%.1f MiB/s, including the guest's sha256)", vsockBulk>>20, took.Round(time.Millisecond), float64(vsockBulk>>20)/took.Seconds())
	})

	t.Run("Concurrent64", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := vsockEcho(uds, 64<<10, stepTimeout); err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("GuestClosesMidStream", func(t *testing.T) {
		c := vsockDial(t, uds, portGuestClose)
		defer c.Close()
		c.SetWriteDeadline(time.Now().Add(stepTimeout))
		n, err := io.Copy(c, io.LimitReader(rand.Reader, vsockBulk))
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("host kept writing after the guest closed: %d bytes, %v", n, err)
		}
		if g := vsockLine(t, e, fmt.Sprintf("sink %d 1", portGuestClose), stepTimeout); !g.ok || g.n != 65536 {
			t.Errorf("guest side: %+v", g)
		}
		if err := vsockEcho(uds, 1<<20, stepTimeout); err != nil {
			t.Errorf("after the guest closed mid-stream: %v", err)
		}
	})

	t.Run("HostClosesMidStream", func(t *testing.T) {
		c := vsockDial(t, uds, portHostClose)
		c.SetReadDeadline(time.Now().Add(stepTimeout))
		if _, err := io.ReadFull(c, make([]byte, 1<<20)); err != nil {
			t.Fatalf("reading from the guest: %v", err)
		}
		c.Close()
		if g := vsockLine(t, e, fmt.Sprintf("source %d 1", portHostClose), stepTimeout); g.ok || g.n < 1<<20 {
			t.Errorf("guest side after the host closed: %+v, want an error after at least 1 MiB", g)
		}
		if err := vsockEcho(uds, 1<<20, stepTimeout); err != nil {
			t.Errorf("after the host closed mid-stream: %v", err)
		}
	})

	// A transfer under way when the VM pauses, and a connection made while
	// it is paused, both complete after resume.
	t.Run("PauseResume", func(t *testing.T) {
		during := make(chan error, 1)
		go func() { during <- vsockEcho(uds, 8<<20, 2*stepTimeout) }()
		time.Sleep(500 * time.Millisecond)
		e.mustAPI("PATCH", "/vm", map[string]string{"state": "Paused"}, http.StatusNoContent)
		paused := make(chan error, 1)
		go func() { paused <- vsockEcho(uds, 64<<10, 2*stepTimeout) }()
		time.Sleep(time.Second)
		select {
		case err := <-paused:
			t.Errorf("a connection completed while the VM was paused (%v)", err)
		default:
		}
		e.mustAPI("PATCH", "/vm", map[string]string{"state": "Resumed"}, http.StatusNoContent)
		if err := <-during; err != nil {
			t.Errorf("transfer across pause/resume: %v", err)
		}
		if err := <-paused; err != nil {
			t.Errorf("connection made while paused: %v", err)
		}
	})

	// The metrics lines' vsock sections (per-flush deltas) add up to what
	// happened.
	t.Run("Metrics", func(t *testing.T) {
		e.action("FlushMetrics")
		lines := metricsLines(t, metricsPath)
		sum := map[string]uint64{}
		for _, l := range lines {
			var v map[string]uint64
			if err := json.Unmarshal(l["vsock"], &v); err != nil {
				t.Fatalf("vsock section %s: %v", l["vsock"], err)
			}
			for k, n := range v {
				sum[k] += n
			}
		}
		// Connections: 2 guest-initiated, 64 concurrent, 4 to the bulk and
		// mid-stream listeners, 2 echo checks and 2 around the pause; some
		// may still be closing.
		bulk := uint64(vsockBulk)
		// rx_queue_event_count counts, as Firecracker's does, only RX
		// kicks that find data waiting. The guest's credit (256 KiB) runs
		// out before its RX buffers do, so data waits for the credit
		// update that comes on TX, not for RX buffers. On qemu the
		// back-end sees kicks through eventfds and one for RX and one for
		// TX often arrive together (TX is served first), so none may
		// count there.
		rxEvents := uint64(1)
		if backendOf(t) == "qemu" {
			rxEvents = 0
		}
		for _, c := range []struct {
			key string
			min uint64
		}{
			{"conns_added", 74},
			{"conns_removed", 64},
			{"rx_bytes_count", bulk + 64*64<<10},
			{"tx_bytes_count", 2*bulk + 64*64<<10},
			{"rx_packets_count", bulk / (64 << 10)},
			{"tx_packets_count", 2 * bulk / (64 << 10)},
			{"rx_queue_event_count", rxEvents},
			{"tx_queue_event_count", 1},
		} {
			if sum[c.key] < c.min {
				t.Errorf("vsock %s = %d over %d metrics lines, want at least %d", c.key, sum[c.key], len(lines), c.min)
			}
		}
		for _, k := range []string{"activate_fails", "cfg_fails", "rx_queue_event_fails", "tx_queue_event_fails", "muxer_event_fails", "conn_event_fails"} {
			if sum[k] != 0 {
				t.Errorf("vsock %s = %d, want 0", k, sum[k])
			}
		}
		t.Logf("vsock metrics: %v", sum)
	})
}

// wantFault checks that an API answer is a 400 with fault_message msg.
func wantFault(t *testing.T, what string, code int, body, msg string) {
	t.Helper()
	var f struct {
		FaultMessage string `json:"fault_message"`
	}
	if err := json.Unmarshal([]byte(body), &f); code != http.StatusBadRequest || err != nil || f.FaultMessage != msg {
		t.Errorf("%s: %d %s, want 400 with %q", what, code, body, msg)
	}
}

func isSocketFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&os.ModeSocket != 0
}

// vsockDial connects to the guest's port through uds_path as Firecracker's
// clients do: "CONNECT <port>\n", answered "OK <host port>\n".
func vsockDial(t *testing.T, uds string, port int) net.Conn {
	t.Helper()
	c, err := vsockConnect(uds, port, scaled(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func vsockConnect(uds string, port int, timeout time.Duration) (net.Conn, error) {
	c, err := net.Dial("unix", uds)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		c.Close()
		return nil, err
	}
	// Byte by byte: what follows the line is the guest's stream.
	var line []byte
	b := make([]byte, 1)
	for len(line) < 32 {
		if _, err := c.Read(b); err != nil {
			c.Close()
			return nil, fmt.Errorf("CONNECT %d: no answer (%q so far): %w", port, line, err)
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	f := strings.Fields(string(line))
	if len(f) != 2 || f[0] != "OK" {
		c.Close()
		return nil, fmt.Errorf("CONNECT %d: answer %q, want OK <port>", port, line)
	}
	if p, err := strconv.ParseUint(f[1], 10, 32); err != nil || p < 1<<30 {
		c.Close()
		return nil, fmt.Errorf("CONNECT %d: host port %q, want one from 2^30", port, f[1])
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// vsockEcho sends n random bytes through the guest's echo port and checks
// they come back.
func vsockEcho(uds string, n int, timeout time.Duration) error {
	c, err := vsockConnect(uds, portEcho, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	return echoThrough(c, n, timeout)
}

// echoThrough sends n random bytes through c, connected to the guest's
// echo port, and checks they come back.
func echoThrough(c net.Conn, n int, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	data := make([]byte, n)
	rand.Read(data)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	back := make([]byte, n)
	_, rerr := io.ReadFull(c, back)
	if err := <-werr; err != nil {
		return fmt.Errorf("echo: write: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("echo: read: %w", rerr)
	}
	if !bytes.Equal(data, back) {
		return errors.New("echo: the guest sent back different bytes")
	}
	return nil
}

// guestReport is one vsockt line.
type guestReport struct {
	n   int64
	sum string
	ok  bool
	raw string
}

// vsockLine waits for vsockt's line for "<mode> <port> <conn>".
func vsockLine(t *testing.T, e *ember, key string, timeout time.Duration) guestReport {
	t.Helper()
	want := "EMBER-GUEST: vsockt " + key + " bytes "
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	_, _, err := e.Con.WaitFrom(ctx, 0, want)
	cancel()
	if err != nil {
		// Looked into while ember still runs (the wait below then ends it).
		explainStall(t, e)
	}
	l := e.WaitLineFor(t, want, time.Second)
	f := strings.Fields(l[strings.Index(l, "EMBER-GUEST: vsockt "):])
	// EMBER-GUEST: vsockt mode port conn bytes N sha256 HEX ok|err ...
	if len(f) < 10 {
		t.Fatalf("malformed vsockt line %q", l)
	}
	n, _ := strconv.ParseInt(f[6], 10, 64)
	return guestReport{n: n, sum: f[8], ok: f[9] == "ok", raw: l}
}

// hostListener accepts one guest-initiated connection on a Unix socket.
type hostListener struct {
	done chan hostResult
}

type hostResult struct {
	n   int64
	sum string
	err error
}

func listenHost(t *testing.T, path string, serve func(net.Conn) (int64, string, error)) *hostListener {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h := &hostListener{done: make(chan hostResult, 1)}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			h.done <- hostResult{err: err}
			return
		}
		defer c.Close()
		n, sum, err := serve(c)
		h.done <- hostResult{n, sum, err}
	}()
	return h
}

func (h *hostListener) result(t *testing.T, timeout time.Duration) hostResult {
	t.Helper()
	select {
	case r := <-h.done:
		return r
	case <-time.After(timeout):
		t.Fatalf("no guest connection within %v", timeout)
		return hostResult{}
	}
}
