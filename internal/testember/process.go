package testember

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/nested"
	"github.com/ember-vmm/ember/internal/testguest"
)

// Timeouts. Guests run under TCG on a loaded 2-core machine, so boots get
// generous bounds; everything else is expected promptly. Inside an L1 VM
// (tests/e2e's TestKVM on a host without KVM) everything runs under TCG
// once more, so the bounds triple there.
var (
	StartTimeout = Scaled(10 * time.Second) // process start to "API server started."
	BootTimeout  = Scaled(60 * time.Second) // InstanceStart to a guest marker, or to the exit a guest causes
	ExitTimeout  = Scaled(15 * time.Second) // an exit expected soon after its cause
	APITimeout   = Scaled(30 * time.Second) // one API request
	GoneTimeout  = Scaled(5 * time.Second)  // a process expected to disappear
)

// Scaled is d, tripled inside an L1 VM.
func Scaled(d time.Duration) time.Duration {
	if nested.Inside() {
		return 3 * d
	}
	return d
}

// BaseBootArgs replace Firecracker's default boot arguments, whose
// nomodule and 8250.nr_uarts=0 break the test guest. quiet keeps the
// emulated serial port short; the markers and the kernel's reboot/power
// messages still print.
const BaseBootArgs = "console=ttyS0 reboot=k panic=1 pci=off quiet"

// BootArgs is the kernel command line: the base plus switches.
func BootArgs(switches ...string) string {
	return strings.Join(append([]string{BaseBootArgs}, switches...), " ")
}

// Firecracker's log lines the suites wait for.
const (
	LineAPIStarted = "API server started."
	LineExitOK     = "Firecracker exiting successfully. exit_code=0"
)

// LineExitError is Firecracker's log line for an exit with code.
func LineExitError(code int) string {
	return fmt.Sprintf("Firecracker exiting with error. exit_code=%d", code)
}

// vmSlots bounds the VMs booting at once in one test binary: two TCG
// guests already keep both cores busy.
var vmSlots = make(chan struct{}, 2)

// TakeVMSlot waits for one of the VM slots and holds it until t ends.
func TakeVMSlot(t testing.TB) {
	vmSlots <- struct{}{}
	t.Cleanup(func() { <-vmSlots })
}

// RequireVM skips (loudly) where no guest can boot on the qemu backend,
// takes one VM slot for the rest of the test and returns the guest's
// assets.
func RequireVM(t *testing.T) testguest.Assets {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skipf("SKIPPING end-to-end test: qemu-system-x86_64 is not installed (%v), so ember's qemu backend is NOT tested", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING end-to-end test: it must run as root (taps, network namespaces, killing QEMU), so ember's qemu backend is NOT tested")
	}
	a := testguest.Require(t)
	TakeVMSlot(t)
	return a
}

// Options say how to start ember.
type Options struct {
	Bin     string   // the ember binary (required)
	Backend string   // --backend's value; "" is qemu
	Args    []string // extra command-line arguments (--api-sock and --backend are always given)
	Netns   string   // run inside this network namespace (ip netns exec)
	Umask   *int     // start ember with this umask (through sh's umask and exec)
}

// Process is one ember process started by a test. Its exported fields are
// set when it starts and never change.
type Process struct {
	T       testing.TB
	Bin     string
	Backend string // "qemu" or "kvm"
	Dir     string // private directory: API socket, stderr, test files
	Sock    string
	Args    []string
	Cmd     *exec.Cmd
	PID     int
	Con     *testguest.Console // stdout: log lines and the guest console
	Client  *http.Client       // talks to Sock

	stdoutR    *os.File
	stderrPath string
	done       chan struct{} // closed when the process has ended
	state      *os.ProcessState
}

// Start starts ember and waits until its API serves. The process (and
// anything it left running) is ended when the test finishes.
func Start(t testing.TB, o Options) *Process {
	t.Helper()
	p := Launch(t, o)
	p.WaitLine(LineAPIStarted, StartTimeout)
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID)); err != nil || exe != o.Bin {
		t.Fatalf("process %d runs %q (%v), not ember", p.PID, exe, err)
	}
	return p
}

// Launch starts ember and returns at once.
func Launch(t testing.TB, o Options) *Process {
	t.Helper()
	dir := t.TempDir()
	backend := o.Backend
	if backend == "" {
		backend = "qemu"
	}
	p := &Process{T: t, Bin: o.Bin, Backend: backend, Dir: dir, Sock: filepath.Join(dir, "api.sock"), done: make(chan struct{})}
	p.Args = append([]string{"--api-sock", p.Sock, "--backend", p.Backend}, o.Args...)
	switch {
	case o.Netns != "":
		// ip netns exec execs the command without forking, so the pid
		// started here is ember's.
		p.Cmd = exec.Command("ip", append([]string{"netns", "exec", o.Netns, o.Bin}, p.Args...)...)
	case o.Umask != nil:
		// The test's shell, not ember's: sh sets the umask and execs
		// ember in place, so the pid is still ember's.
		script := fmt.Sprintf(`umask %04o && exec "$0" "$@"`, *o.Umask)
		p.Cmd = exec.Command("/bin/sh", append([]string{"-c", script, o.Bin}, p.Args...)...)
	default:
		p.Cmd = exec.Command(o.Bin, p.Args...)
	}
	p.Cmd.Dir = dir
	// Real files rather than io.Writers: Wait must not hang on a QEMU that
	// inherited the descriptors and outlives ember.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stderrPath = filepath.Join(dir, "ember.stderr")
	errf, err := os.Create(p.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	p.Cmd.Stdout, p.Cmd.Stderr = w, errf
	err = p.Cmd.Start()
	w.Close()
	errf.Close()
	if err != nil {
		r.Close()
		t.Fatalf("start ember %q: %v", p.Args, err)
	}
	p.PID = p.Cmd.Process.Pid
	p.stdoutR = r
	p.Con = testguest.NewConsole(r)
	go func() {
		p.Cmd.Wait()
		p.state = p.Cmd.ProcessState
		close(p.done)
	}()
	p.Client = &http.Client{
		Timeout: APITimeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p.Sock)
		}},
	}
	t.Cleanup(p.Stop)
	return p
}

// Stop ends ember if it still runs, kills whatever it left running, fails
// the test on a race report and reports ember's output when the test
// failed. It runs when the test ends; calling it earlier is harmless.
func (p *Process) Stop() {
	left := Descendants(p.PID)
	if !p.Exited() {
		p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.Cmd.Process.Kill()
			<-p.done
		}
	}
	for _, pid := range left {
		if Alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// Whatever a test found, leave no runtime directory behind.
	if dirs, _ := RuntimeDirs(p.PID); len(dirs) > 0 {
		for _, d := range dirs {
			os.RemoveAll(d)
		}
	}
	p.Client.CloseIdleConnections()
	select {
	case <-p.Con.Done():
	case <-time.After(2 * time.Second):
	}
	p.stdoutR.Close()
	stderr := p.Stderr()
	CheckRace(p.T, p.PID, stderr)
	if p.T.Failed() {
		p.T.Logf("ember %q (pid %d) stdout, last 80 lines:\n%s\nstderr:\n%s", p.Args, p.PID, p.Con.Tail(80), stderr)
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// State is how the process ended; nil until Done is closed.
func (p *Process) State() *os.ProcessState {
	if !p.Exited() {
		return nil
	}
	return p.state
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Do sends one request as a Firecracker client does and returns the
// status code and body, or the error a client sees. body is nil (no
// body), a string (sent as is) or a value encoded as JSON. It never
// touches the test, so goroutines may call it.
func (p *Process) Do(method, path string, body any) (int, string, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return 0, "", err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, "http://localhost"+path, rd)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Accept", "application/json")
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		err = fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, string(b), err
}

// API is Do that fails the test on an error.
func (p *Process) API(method, path string, body any) (int, string) {
	p.T.Helper()
	code, resp, err := p.Do(method, path, body)
	if err != nil {
		p.T.Fatalf("%s %s: %v", method, path, err)
	}
	return code, resp
}

// MustAPI is API that fails the test unless the status is want.
func (p *Process) MustAPI(method, path string, body any, want int) string {
	p.T.Helper()
	got, resp := p.API(method, path, body)
	if got != want {
		p.T.Fatalf("%s %s %v: status %d, want %d; body %s", method, path, body, got, want, resp)
	}
	return resp
}

// InstanceState is GET /'s "state".
func (p *Process) InstanceState() string {
	p.T.Helper()
	var info struct {
		State string `json:"state"`
	}
	body := p.MustAPI("GET", "/", nil, http.StatusOK)
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		p.T.Fatalf("GET /: %v: %s", err, body)
	}
	return info.State
}

// PutMachine configures one vCPU and memMiB of memory.
func (p *Process) PutMachine(memMiB int) {
	p.T.Helper()
	p.MustAPI("PUT", "/machine-config", map[string]any{"vcpu_count": 1, "mem_size_mib": memMiB}, http.StatusNoContent)
}

// PutBootSource sets the kernel, the initrd (none if "") and boot_args.
func (p *Process) PutBootSource(kernel, initrd string, switches ...string) {
	p.T.Helper()
	body := map[string]any{"kernel_image_path": kernel, "boot_args": BootArgs(switches...)}
	if initrd != "" {
		body["initrd_path"] = initrd
	}
	p.MustAPI("PUT", "/boot-source", body, http.StatusNoContent)
}

// PutDrive adds or replaces a drive before boot.
func (p *Process) PutDrive(id, path string, root, readOnly bool) {
	p.T.Helper()
	p.MustAPI("PUT", "/drives/"+id, map[string]any{
		"drive_id": id, "path_on_host": path, "is_root_device": root, "is_read_only": readOnly,
	}, http.StatusNoContent)
}

// Action sends PUT /actions with action_type action.
func (p *Process) Action(action string) {
	p.T.Helper()
	p.MustAPI("PUT", "/actions", map[string]string{"action_type": action}, http.StatusNoContent)
}

// Boot configures a 1-vCPU guest from the initramfs (plus whatever the
// test configured before) and starts it.
func (p *Process) Boot(a testguest.Assets, memMiB int, switches ...string) {
	p.T.Helper()
	p.PutMachine(memMiB)
	p.PutBootSource(a.Vmlinux, a.Initramfs, switches...)
	p.Action("InstanceStart")
}

// WaitLine waits for a stdout line containing substr and returns it.
func (p *Process) WaitLine(substr string, timeout time.Duration) string {
	p.T.Helper()
	_, line := p.WaitLineFrom(0, substr, timeout)
	return line
}

// WaitLineFrom waits for a stdout line at index from or later containing
// substr and returns its index and the line. On a timeout a still-running
// ember gets SIGQUIT, so that its goroutines land in its stderr.
func (p *Process) WaitLineFrom(from int, substr string, timeout time.Duration) (int, string) {
	p.T.Helper()
	return p.waitLineFrom(p.T, from, substr, timeout)
}

// WaitLineFor is WaitLine reporting a timeout to t, a subtest of the test
// that started the process (failing the parent from a subtest is not
// allowed).
func (p *Process) WaitLineFor(t testing.TB, substr string, timeout time.Duration) string {
	t.Helper()
	_, line := p.waitLineFrom(t, 0, substr, timeout)
	return line
}

func (p *Process) waitLineFrom(t testing.TB, from int, substr string, timeout time.Duration) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The console ends only when every holder of ember's stdout is gone;
	// an ember that exited ends the wait too.
	go func() {
		select {
		case <-p.done:
			time.Sleep(time.Second) // let the reader catch up with the last output
			cancel()
		case <-ctx.Done():
		}
	}()
	i, line, err := p.Con.WaitFrom(ctx, from, substr)
	if err != nil {
		how := "still running"
		if p.Exited() {
			how = "exited: " + p.state.String()
		} else {
			how += "; SIGQUIT sent, its goroutines are in its stderr"
			p.quitForStacks()
		}
		t.Fatalf("ember (pid %d, %s) never printed %q within %v: %v", p.PID, how, substr, timeout, err)
	}
	return i, line
}

// quitForStacks makes a stuck ember print every goroutine (vCPU threads
// included, in KVM_RUN or not) to its stderr and exit, which tells a guest
// that stalled in the hypervisor from an ember that stopped serving it.
func (p *Process) quitForStacks() {
	syscall.Kill(p.PID, syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// HasLine reports whether a stdout line so far contains substr.
func (p *Process) HasLine(substr string) bool {
	for _, l := range p.Con.Lines() {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

// WaitExit waits for ember to end and returns its exit code, or the
// signal that killed it (code -1).
func (p *Process) WaitExit(timeout time.Duration) (int, syscall.Signal) {
	p.T.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.T.Fatalf("ember (pid %d) did not exit within %v", p.PID, timeout)
	}
	return ExitStatus(p.state)
}

// WantExit asserts that ember exits with code and logs Firecracker's exit
// line for it.
func (p *Process) WantExit(code int, timeout time.Duration) {
	p.T.Helper()
	got, sig := p.WaitExit(timeout)
	if sig != 0 {
		p.T.Fatalf("ember died of signal %v, want exit code %d", sig, code)
	}
	if got != code {
		p.T.Fatalf("ember exit code %d, want %d", got, code)
	}
	want := LineExitOK
	if code != 0 {
		want = LineExitError(code)
	}
	p.WaitLine(want, 5*time.Second)
}

// Stderr is what ember printed on stderr so far.
func (p *Process) Stderr() string {
	b, _ := os.ReadFile(p.stderrPath)
	return string(b)
}

// VMMPIDs returns the processes that run ember's VM besides ember itself:
// QEMU for the qemu backend, none for kvm (the VM runs in ember).
func (p *Process) VMMPIDs() []int {
	p.T.Helper()
	if p.Backend == "kvm" {
		return nil
	}
	return []int{p.QEMUPID()}
}

// QEMUPID returns the pid of ember's QEMU child, waiting briefly for it.
func (p *Process) QEMUPID() int {
	p.T.Helper()
	deadline := time.Now().Add(GoneTimeout)
	for {
		for _, c := range children(p.PID) {
			if strings.HasPrefix(c.comm, "qemu-system") {
				return c.pid
			}
		}
		if time.Now().After(deadline) {
			p.T.Fatalf("ember (pid %d) has no QEMU child", p.PID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
