package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The network benchmark's addresses. They exist only inside the network
// namespace the benchmark creates (and deletes), never on the host's own
// interfaces.
const (
	netHostIP    = "10.203.0.1"
	netGuestCIDR = "10.203.0.2/30"
	netPort      = 5001
	netTap       = "benchtap0"
	netGuestMAC  = "06:00:ac:10:cb:02"
)

// netEnv is a network namespace holding one tap with the host-side
// address, and a TCP sink listening on it.
type netEnv struct {
	ns   string
	tap  string
	ln   net.Listener
	mu   sync.Mutex
	want int64 // bytes each connection carries; the sink closes after them
	recv chan transfer
}

// transfer is what the sink saw of one connection.
type transfer struct {
	bytes       int64
	first, last time.Time
	err         error
}

func (t transfer) mibps() float64 {
	d := t.last.Sub(t.first).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(t.bytes) / (1 << 20) / d
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetEnv creates the namespace, the tap and the sink. Before each run,
// expect says how many bytes the guest sends; the sink closes the
// connection after that many, which ends the guest's nc.
func newNetEnv() (*netEnv, error) {
	b := make([]byte, 4)
	rand.Read(b)
	n := &netEnv{ns: "ember-bench-" + hex.EncodeToString(b), tap: netTap, recv: make(chan transfer, 4)}
	if err := ipCmd("netns", "add", n.ns); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"-n", n.ns, "link", "set", "lo", "up"},
		{"-n", n.ns, "tuntap", "add", "dev", n.tap, "mode", "tap"},
		{"-n", n.ns, "addr", "add", netHostIP + "/30", "dev", n.tap},
		{"-n", n.ns, "link", "set", n.tap, "up"},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			n.Close()
			return nil, err
		}
	}
	ln, err := listenInNetns(n.ns, fmt.Sprintf("%s:%d", netHostIP, netPort))
	if err != nil {
		n.Close()
		return nil, err
	}
	n.ln = ln
	go n.serve()
	return n, nil
}

// listenInNetns opens a TCP listener inside namespace ns. The socket is
// created on an OS thread moved into the namespace; that thread is never
// returned to the runtime (the goroutine ends locked, so Go retires it), so
// no other goroutine ever runs in the namespace.
func listenInNetns(ns, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("entering network namespace %s: %w", ns, err)}
			return
		}
		ln, err := net.Listen("tcp", addr)
		ch <- result{ln, err}
	}()
	r := <-ch
	return r.ln, r.err
}

func (n *netEnv) serve() {
	for {
		c, err := n.ln.Accept()
		if err != nil {
			return
		}
		go n.sink(c)
	}
}

// sinkStall is how long the sink waits for the next bytes.
const sinkStall = 10 * time.Second

// errNetStall means a transfer stopped midway: the connection stayed up
// but no data came for sinkStall. Seen about once in a dozen guests under
// TCG, with ember and with bare QEMU alike.
var errNetStall = errors.New("the guest's network transfer stalled")

func (n *netEnv) sink(c net.Conn) {
	defer c.Close()
	n.mu.Lock()
	want := n.want
	n.mu.Unlock()
	t := transfer{}
	buf := make([]byte, 256*1024)
	for t.bytes < want {
		// A transfer that stalls fails fast rather than at TCP's
		// keep-alive timeout.
		c.SetReadDeadline(time.Now().Add(sinkStall))
		k, err := c.Read(buf)
		if k > 0 {
			now := time.Now()
			if t.bytes == 0 {
				t.first = now
			}
			t.bytes += int64(k)
			t.last = now
		}
		if err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				t.err = fmt.Errorf("%w: no data for %v after %d bytes", errNetStall, sinkStall, t.bytes)
			case !errors.Is(err, io.EOF):
				t.err = err
			}
			break
		}
	}
	if t.bytes < want && t.err == nil {
		t.err = fmt.Errorf("the guest sent %d bytes, want %d", t.bytes, want)
	}
	if t.err != nil {
		// What the host's TCP saw of the connection, for the report.
		out, _ := exec.Command("ip", "netns", "exec", n.ns, "ss", "-tni").CombinedOutput()
		t.err = fmt.Errorf("%w\nss -tni in %s:\n%s", t.err, n.ns, out)
	}
	select {
	case n.recv <- t:
	default: // nobody waits: a stray connection
	}
}

// expect sets the next transfers' size and drops stale results.
func (n *netEnv) expect(b int64) {
	n.mu.Lock()
	n.want = b
	n.mu.Unlock()
	for {
		select {
		case <-n.recv:
		default:
			return
		}
	}
}

// Close removes the listener and the namespace with everything in it.
func (n *netEnv) Close() error {
	if n.ln != nil {
		n.ln.Close()
	}
	return ipCmd("netns", "del", n.ns)
}
