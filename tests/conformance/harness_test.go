package conformance

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testember"
)

// Timeouts. Boots run QEMU under TCG on a loaded 2-core machine, so they
// get generous bounds; API answers must come quickly.
const (
	startTimeout = 10 * time.Second // process start to "API server started."
	exitTimeout  = 15 * time.Second // an ember expected to end on its own
	guestTimeout = 60 * time.Second // InstanceStart to the guest's ready marker
	logTimeout   = 5 * time.Second  // a log line expected after an answer
)

// Log lines and markers the suite waits for.
const (
	lineAPIStarted = "API server started."
	lineExitOK     = "Firecracker exiting successfully. exit_code=0"
	markerReady    = "EMBER-GUEST: ready"
)

// syncBuffer collects a stream written by one goroutine and read by others.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ember is one ember process started by a test.
type ember struct {
	t       testing.TB
	dir     string // private temporary directory
	sock    string // --api-sock, "" with --no-api
	logPath string // --log-path when given; log lines are read from it
	args    []string
	cmd     *exec.Cmd
	stdout  *syncBuffer
	stderr  *syncBuffer
	done    chan struct{} // closed when the process has ended
	state   *os.ProcessState
	waitErr error
}

// launchOpts say how to start ember.
type launchOpts struct {
	args  []string // command line; --api-sock is added unless given or --no-api
	netns string   // run inside this network namespace
	dir   string   // private directory (default: a new t.TempDir())
}

// hasArg reports whether args contain the flag name (as "--name").
func hasArg(args []string, name string) bool { return slices.Contains(args, name) }

// argValue returns the value after flag name in args.
func argValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// launch starts ember and returns at once. The process is ended (SIGTERM,
// then SIGKILL) when the test finishes if it is still running.
func launch(t testing.TB, o launchOpts) *ember {
	t.Helper()
	dir := o.dir
	if dir == "" {
		dir = t.TempDir()
	}
	args := slices.Clone(o.args)
	e := &ember{t: t, dir: dir, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	switch {
	case hasArg(args, "--api-sock"):
		e.sock = argValue(args, "--api-sock")
	case hasArg(args, "--no-api"):
	default:
		e.sock = filepath.Join(dir, "api.sock")
		args = append([]string{"--api-sock", e.sock}, args...)
	}
	e.logPath = argValue(args, "--log-path")
	e.args = args
	if o.netns != "" {
		e.cmd = exec.Command("ip", append([]string{"netns", "exec", o.netns, emberBin}, args...)...)
	} else {
		e.cmd = exec.Command(emberBin, args...)
	}
	e.cmd.Dir = dir
	e.cmd.Stdout = e.stdout
	e.cmd.Stderr = e.stderr
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("start ember %q: %v", args, err)
	}
	go func() {
		e.waitErr = e.cmd.Wait()
		e.state = e.cmd.ProcessState
		close(e.done)
	}()
	t.Cleanup(e.stop)
	return e
}

// startEmber launches ember and waits until its API serves.
func startEmber(t testing.TB, args ...string) *ember {
	t.Helper()
	return startEmberIn(t, "", args...)
}

// startEmberIn is startEmber inside a network namespace.
func startEmberIn(t testing.TB, netns string, args ...string) *ember {
	t.Helper()
	e := launch(t, launchOpts{args: args, netns: netns})
	e.waitLog(lineAPIStarted, startTimeout)
	return e
}

// stop ends the process if it still runs and reports what it printed when
// the test failed.
func (e *ember) stop() {
	select {
	case <-e.done:
	default:
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(5 * time.Second):
			_ = e.cmd.Process.Kill()
			<-e.done
		}
	}
	testember.CheckRace(e.t, e.cmd.Process.Pid, e.stderr.String())
	if e.t.Failed() {
		e.t.Logf("ember %q output (last 60 lines):\n%s\nstderr:\n%s", e.args, tailLines(e.allOutput(), 60), e.stderr.String())
	}
}

// allOutput is stdout plus the log file, for failure reports.
func (e *ember) allOutput() string {
	s := e.stdout.String()
	if e.logPath != "" {
		if b, err := os.ReadFile(e.path(e.logPath)); err == nil {
			s += "\n--- " + e.logPath + " ---\n" + string(b)
		}
	}
	return s
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// path resolves p against the process's working directory.
func (e *ember) path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(e.dir, p)
}

// logText is everything ember logged so far: the --log-path file when one
// was given, else stdout (where the guest console also goes).
func (e *ember) logText() string {
	if e.logPath != "" {
		b, _ := os.ReadFile(e.path(e.logPath))
		return string(b)
	}
	return e.stdout.String()
}

// logLines returns the log split into lines.
func (e *ember) logLines() []string {
	return strings.Split(strings.TrimRight(e.logText(), "\n"), "\n")
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLog waits for a log line containing substr and returns that line.
func (e *ember) waitLog(substr string, timeout time.Duration) string {
	e.t.Helper()
	var line string
	ok := waitFor(timeout, func() bool {
		for _, l := range e.logLines() {
			if strings.Contains(l, substr) {
				line = l
				return true
			}
		}
		return e.exited()
	})
	if !ok || line == "" {
		e.t.Fatalf("ember never logged %q (exited: %v)", substr, e.exited())
	}
	return line
}

// waitStdout waits for stdout (the guest console) to contain substr.
func (e *ember) waitStdout(substr string, timeout time.Duration) {
	e.t.Helper()
	ok := waitFor(timeout, func() bool {
		return strings.Contains(e.stdout.String(), substr) || e.exited()
	})
	if !ok || !strings.Contains(e.stdout.String(), substr) {
		e.t.Fatalf("ember's stdout never showed %q (exited: %v)", substr, e.exited())
	}
}

func (e *ember) exited() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// waitExit waits for the process to end and returns its exit code; a
// process killed by a signal returns -1 and the signal.
func (e *ember) waitExit(timeout time.Duration) (int, syscall.Signal) {
	e.t.Helper()
	select {
	case <-e.done:
	case <-time.After(timeout):
		e.t.Fatalf("ember %q did not exit within %v", e.args, timeout)
	}
	return testember.ExitStatus(e.state)
}

// wantExit asserts the process ends with code.
func (e *ember) wantExit(code int, timeout time.Duration) {
	e.t.Helper()
	got, sig := e.waitExit(timeout)
	if sig != 0 {
		e.t.Fatalf("ember %q died of signal %v, want exit code %d", e.args, sig, code)
	}
	if got != code {
		e.t.Fatalf("ember %q exit code = %d, want %d", e.args, got, code)
	}
}

// client dials a keep-alive API connection to this process.
func (e *ember) client() *apiClient {
	e.t.Helper()
	return dialAPI(e.t, e.sock)
}

// hasLog reports whether any log line contains substr.
func (e *ember) hasLog(substr string) bool {
	return strings.Contains(e.logText(), substr)
}

// requireRoot skips tests that need root (taps, namespaces).
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: this test needs root (network namespaces, tap devices)")
	}
}

// newNetns creates a network namespace holding the given tap devices and
// removes it (and its taps) when the test ends. Taps never live outside it.
func newNetns(t testing.TB, taps ...string) string {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("SKIPPED: iproute2's ip is missing; network namespaces cannot be made")
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	name := "emberconf-" + hex.EncodeToString(rnd[:])
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	mustRun(t, "ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
	for _, tap := range taps {
		mustRun(t, "ip", "netns", "exec", name, "ip", "tuntap", "add", "dev", tap, "mode", "tap")
	}
	return name
}

func mustRun(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// writeFile writes data to a new file in dir and returns its path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// scratchFile makes a small zero-filled disk image.
func scratchFile(t testing.TB, dir, name string) string {
	t.Helper()
	return writeFile(t, dir, name, make([]byte, 1<<20))
}

// reqString renders a request for failure messages.
func reqString(method, path, body string) string {
	if body == "" {
		return method + " " + path
	}
	if len(body) > 120 {
		body = body[:120] + "..."
	}
	return fmt.Sprintf("%s %s %s", method, path, body)
}
