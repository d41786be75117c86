package badrequests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testember"
	"github.com/ember-vmm/ember/internal/testguest"
)

const (
	startTimeout  = 10 * time.Second       // process start to a connectable socket
	answerTimeout = 10 * time.Second       // one request to its whole answer
	quietWindow   = 250 * time.Millisecond // how long "< none" waits for nothing
)

// emberProc is one ember process started by a test.
type emberProc struct {
	t     testing.TB
	dir   string
	sock  string
	log   string // stdout and stderr
	cmd   *exec.Cmd
	done  chan struct{}
	state *os.ProcessState
}

// shortTempDir is a fresh directory with a short path, since a socket path
// must stay under 108 bytes.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "badreq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// qemuInstalled reports whether the qemu backend can be forced.
func qemuInstalled() bool {
	_, err := exec.LookPath("qemu-system-x86_64")
	return err == nil
}

// startEmber starts ember in dir with its API socket there and waits until
// the socket accepts connections. The qemu backend is forced where QEMU is
// installed so that answers do not depend on which engine auto picks.
func startEmber(t testing.TB, dir string, args ...string) *emberProc {
	t.Helper()
	e := &emberProc{t: t, dir: dir, sock: filepath.Join(dir, "api.sock"), log: filepath.Join(dir, "ember.log"), done: make(chan struct{})}
	argv := []string{"--api-sock", e.sock}
	if qemuInstalled() {
		argv = append(argv, "--backend", "qemu")
	}
	argv = append(argv, args...)
	out, err := os.Create(e.log)
	if err != nil {
		t.Fatal(err)
	}
	e.cmd = exec.Command(emberBin, argv...)
	e.cmd.Dir = dir
	e.cmd.Stdout, e.cmd.Stderr = out, out
	if err := e.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start ember: %v", err)
	}
	go func() {
		e.cmd.Wait()
		out.Close()
		e.state = e.cmd.ProcessState
		close(e.done)
	}()
	t.Cleanup(e.stop)
	deadline := time.Now().Add(startTimeout)
	for {
		if c, err := net.Dial("unix", e.sock); err == nil {
			c.Close()
			return e
		}
		if e.exited() || time.Now().After(deadline) {
			t.Fatalf("ember %q never served its API socket (exited: %v)\n%s", argv, e.exited(), e.tail(30))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *emberProc) exited() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// stop ends the process (SIGTERM, then SIGKILL) if it still runs.
func (e *emberProc) stop() {
	if !e.exited() {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			_ = e.cmd.Process.Kill()
			<-e.done
		}
	}
	// The log holds stderr too.
	log, _ := os.ReadFile(e.log)
	testember.CheckRace(e.t, e.cmd.Process.Pid, string(log))
	if e.t.Failed() {
		e.t.Logf("ember's output (last 40 lines):\n%s", e.tail(40))
	}
}

func (e *emberProc) tail(n int) string {
	b, _ := os.ReadFile(e.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exchange sends req on a fresh connection and returns the answer bytes:
// one answer, or an interim 100 followed by the final answer. With quiet,
// it instead waits quietWindow and returns whatever arrived (nothing, if
// the server waits for more of the request).
func (e *emberProc) exchange(req []byte, quiet bool) ([]byte, error) {
	c, err := net.Dial("unix", e.sock)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(answerTimeout))
	if _, err := c.Write(req); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	if quiet {
		c.SetReadDeadline(time.Now().Add(quietWindow))
		b, err := io.ReadAll(c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = nil
		}
		return b, err
	}
	r := bufio.NewReader(c)
	first, err := readAnswer(r)
	if err != nil || !bytes.HasPrefix(first[min(len(first), 8):], []byte(" 100 ")) {
		return first, err
	}
	final, err := readAnswer(r)
	return append(first, final...), err
}

// readAnswer reads one HTTP answer: the header block and Content-Length
// bytes of body.
func readAnswer(r *bufio.Reader) ([]byte, error) {
	var out []byte
	length := 0
	for {
		line, err := r.ReadBytes('\n')
		out = append(out, line...)
		if err != nil {
			return out, fmt.Errorf("reading the header block: %w", err)
		}
		if string(line) == "\r\n" {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return out, fmt.Errorf("bad Content-Length %q", line)
			}
		}
	}
	body := make([]byte, length)
	n, err := io.ReadFull(r, body)
	out = append(out, body[:n]...)
	if err != nil {
		return out, fmt.Errorf("reading a %d-byte body: %w", length, err)
	}
	return out, nil
}

// serving checks that a fresh connection gets GET / answered, as
// Firecracker answers it (200 with the instance info).
func (e *emberProc) serving() error {
	if e.exited() {
		return fmt.Errorf("ember exited: %v", e.state)
	}
	got, err := e.exchange([]byte("GET / HTTP/1.1\r\n\r\n"), false)
	if err != nil {
		return fmt.Errorf("GET /: %v (got %q)", err, got)
	}
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 200 \r\n")) || !bytes.Contains(got, []byte(`"app_name":"Firecracker"}`)) {
		return fmt.Errorf("GET / answered %q", got)
	}
	return nil
}

// rssKiB is the process's resident set (VmRSS in /proc/<pid>/status).
func (e *emberProc) rssKiB() (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, errors.New("no VmRSS line")
}

// guestVars boots nothing but returns the substitutions a booted corpus
// file needs, skipping loudly where no guest can boot.
func guestVars(t *testing.T) map[string]string {
	t.Helper()
	if !qemuInstalled() {
		t.Skip("SKIPPED: qemu-system-x86_64 is not installed, so no guest can boot; the post-boot cases are NOT checked")
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: booting the test guest needs root; the post-boot cases are NOT checked")
	}
	a := testguest.Require(t)
	return map[string]string{
		"KERNEL":   a.Vmlinux,
		"INITRD":   a.Initramfs,
		"ROOTFS":   testguest.RootfsCopy(t),
		"BOOTARGS": "console=ttyS0 reboot=k panic=1 pci=off quiet " + testguest.End(testguest.EndWait),
	}
}
