package faults

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testember"
)

// TestAPISocketMode: Firecracker binds its API socket with no chmod, so the
// file gets what the umask leaves of 0777. ember keeps the owner's part of
// that and never grants group or other access (connecting needs write
// permission), whatever the umask.
func TestAPISocketMode(t *testing.T) {
	t.Parallel()
	for _, mask := range []int{0o000, 0o002, 0o022, 0o027, 0o277} {
		t.Run(fmt.Sprintf("umask%04o", mask), func(t *testing.T) {
			t.Parallel()
			m := mask
			e := startEmber(t, testember.Options{Umask: &m})
			fi, err := os.Lstat(e.Sock)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != os.ModeSocket {
				t.Fatalf("%s is %v, not a socket", e.Sock, fi.Mode())
			}
			firecracker := os.FileMode(0o777 &^ mask)
			want := firecracker & 0o700
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("socket mode %04o, want %04o (Firecracker's %04o without group and other)", got, want, firecracker)
			}
			// The process's own umask is left as it was: files ember
			// creates later (logs, metrics, vsock sockets) follow it.
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.PID))
			if !strings.Contains(string(st), fmt.Sprintf("Umask:\t%04o\n", mask)) {
				t.Errorf("ember's umask after start is not %04o:\n%s", mask, st)
			}
			if os.Geteuid() == 0 {
				e.MustAPI("GET", "/", nil, http.StatusOK)
			}
		})
	}
}

// TestClientDisconnect: clients that go away mid-request (half a header,
// half a body, or after a whole request without reading the answer), and
// clients that hold a connection with a half-sent request, never stop the
// server answering others, and leave no descriptor or thread behind.
func TestClientDisconnect(t *testing.T) {
	t.Parallel()
	e := startEmber(t, testember.Options{})
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("unix", e.Sock)
		if err != nil {
			t.Fatalf("dial %s: %v", e.Sock, err)
		}
		return c
	}
	put := func(mem int) string {
		body := fmt.Sprintf(`{"vcpu_count": 1, "mem_size_mib": %d}`, mem)
		return "PUT /machine-config HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: " +
			fmt.Sprint(len(body)) + "\r\n\r\n" + body
	}
	// Warm up: the first requests make the runtime grow its pools.
	for range 5 {
		e.MustAPI("GET", "/", nil, http.StatusOK)
	}
	e.Client.CloseIdleConnections()
	settle := func() (fds, threads int) {
		time.Sleep(200 * time.Millisecond)
		return fdCount(t, e.PID), threadCount(t, e.PID)
	}
	baseFDs, baseThreads := settle()

	// A witness keeps asking while the others misbehave; every answer must
	// come promptly.
	stop := make(chan struct{})
	var witness sync.WaitGroup
	var witnessErr error
	var witnessN int
	witness.Add(1)
	go func() {
		defer witness.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			code, _, err := e.Do("GET", "/", nil)
			if err != nil || code != http.StatusOK {
				witnessErr = fmt.Errorf("GET / answered %d, %v", code, err)
				return
			}
			if d := time.Since(start); d > 2*time.Second {
				witnessErr = fmt.Errorf("GET / took %v", d)
				return
			}
			witnessN++
		}
	}()

	// Firecracker's server serves 10 connections at once; 7 hold half a
	// request open for the whole run, next to the witness's and the one
	// being abandoned.
	var held []net.Conn
	for range 7 {
		c := dial()
		io.WriteString(c, "GET /machine-config HTTP/1.1\r\nAcc")
		held = append(held, c)
	}

	// Wait until the server has taken all of them (and the witness's).
	for deadline := time.Now().Add(5 * time.Second); fdCount(t, e.PID) < baseFDs+len(held)+1; {
		if time.Now().After(deadline) {
			t.Fatalf("ember took only %d of %d connections", fdCount(t, e.PID)-baseFDs, len(held)+1)
		}
		time.Sleep(time.Millisecond)
	}

	lastMem := 0
	cases := []struct {
		name string
		send func(i int) string
	}{
		{"nothing", func(int) string { return "" }},
		{"half a request line", func(int) string { return "PUT /machine-con" }},
		{"half a header", func(int) string { return "GET /machine-config HTTP/1.1\r\nAccept: appl" }},
		{"half a body", func(i int) string { r := put(128 + i); return r[:len(r)-7] }},
		{"whole request, answer unread", func(i int) string { lastMem = 256 + i; return put(lastMem) }},
	}
	const rounds = 100
	for _, tc := range cases {
		for i := range rounds {
			before := fdCount(t, e.PID)
			c := dial()
			if s := tc.send(i); s != "" {
				if _, err := io.WriteString(c, s); err != nil {
					t.Fatalf("%s: write: %v", tc.name, err)
				}
			}
			c.Close()
			// Each abandoned connection is released before the next, so
			// the server never reaches its connection limit.
			deadline := time.Now().Add(5 * time.Second)
			for fdCount(t, e.PID) > before {
				if time.Now().After(deadline) {
					t.Fatalf("%s: ember holds %d descriptors %v after the client left, %d before", tc.name, fdCount(t, e.PID), 5*time.Second, before)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	// Firecracker drops a connection on hang-up without reading what is
	// left in it, so an abandoned whole request may or may not have run;
	// a half one never runs. Either way the configuration is one a client
	// asked for.
	var mc struct {
		Mem int `json:"mem_size_mib"`
	}
	body := e.MustAPI("GET", "/machine-config", nil, http.StatusOK)
	if err := json.Unmarshal([]byte(body), &mc); err != nil || (mc.Mem != 128 && (mc.Mem < 256 || mc.Mem > lastMem)) {
		t.Errorf("GET /machine-config %s: mem_size_mib neither the default nor one of the abandoned PUTs (%v)", body, err)
	}
	t.Logf("after the abandoned PUTs: %s", body)
	// A half-sent request held open does not block its own connection's
	// completion either: finish one and read the answer.
	io.WriteString(held[0], "ept: application/json\r\n\r\n")
	held[0].SetReadDeadline(time.Now().Add(testember.APITimeout))
	buf := make([]byte, 4096)
	n, err := held[0].Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Errorf("completed held request: %q, %v", buf[:n], err)
	}
	held[0].Close()
	held = held[1:]
	close(stop)
	witness.Wait()
	if witnessErr != nil {
		t.Fatalf("witness after %d answers: %v", witnessN, witnessErr)
	}
	t.Logf("witness got %d answers", witnessN)
	e.Client.CloseIdleConnections()
	for deadline := time.Now().Add(5 * time.Second); fdCount(t, e.PID) > baseFDs+len(held); {
		if time.Now().After(deadline) {
			t.Fatalf("ember holds %d descriptors, want %d", fdCount(t, e.PID), baseFDs+len(held))
		}
		time.Sleep(time.Millisecond)
	}

	// Past the limit, Firecracker's answer: the 11th connection gets a 503
	// and is closed, and the server goes on serving the other 10.
	for len(held) < 10 {
		before := fdCount(t, e.PID)
		c := dial()
		io.WriteString(c, "GET / HTTP/1.1\r\n")
		held = append(held, c)
		for deadline := time.Now().Add(5 * time.Second); fdCount(t, e.PID) == before && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	extra := dial()
	extra.SetReadDeadline(time.Now().Add(testember.APITimeout))
	full, err := io.ReadAll(extra)
	extra.Close()
	const serverFull = "HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\nContent-Length: 40\r\n\r\n{ \"error\": \"Too many open connections\" }"
	if string(full) != serverFull || err != nil {
		t.Errorf("11th connection: %q, %v; want %q", full, err, serverFull)
	}
	io.WriteString(held[9], "\r\n")
	held[9].SetReadDeadline(time.Now().Add(testember.APITimeout))
	n, err = held[9].Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Errorf("10th connection while full: %q, %v", buf[:n], err)
	}
	for _, c := range held {
		c.Close()
	}

	// Back to the baseline: every abandoned connection closed.
	var fds, threads int
	deadline := time.Now().Add(5 * time.Second)
	for {
		fds, threads = settle()
		if fds <= baseFDs || time.Now().After(deadline) {
			break
		}
	}
	if fds > baseFDs {
		t.Errorf("ember has %d descriptors, %d before the abandoned connections", fds, baseFDs)
	}
	// Threads are the Go runtime's to keep; a handful more is fine, one per
	// connection is a leak.
	if threads > baseThreads+8 {
		t.Errorf("ember has %d threads, %d before", threads, baseThreads)
	}
	t.Logf("descriptors %d → %d, threads %d → %d", baseFDs, fds, baseThreads, threads)
	if err := e.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e.WaitExit(testember.ExitTimeout)
	assertClean(t, e, nil, "", "")
}
