package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/nested"
	"github.com/ember-vmm/ember/internal/testember"
	"github.com/ember-vmm/ember/internal/testguest"
)

// Timeouts. Guests run under TCG on a loaded 2-core machine, so boots get
// generous bounds; everything else is expected promptly. Inside an L1 VM
// (TestKVM on a host without KVM) everything runs under TCG once more, so
// the bounds triple there.
var (
	startTimeout = scaled(10 * time.Second) // process start to "API server started."
	bootTimeout  = scaled(60 * time.Second) // InstanceStart to a guest marker, or to the exit a guest causes
	exitTimeout  = scaled(15 * time.Second) // an exit expected soon after its cause
	apiTimeout   = scaled(30 * time.Second) // one API request
	goneTimeout  = scaled(5 * time.Second)  // a process expected to disappear
)

func scaled(d time.Duration) time.Duration {
	if nested.Inside() {
		return 3 * d
	}
	return d
}

// backendOf is the backend a test drives: the kvm backend for the subtests
// of TestKVM, qemu for every other test. It is always passed explicitly, so
// a host with KVM (where --backend auto picks kvm) still tests qemu.
func backendOf(t *testing.T) string {
	if strings.HasPrefix(t.Name(), "TestKVM/") {
		return "kvm"
	}
	return "qemu"
}

// baseBootArgs replace Firecracker's default boot arguments, whose
// nomodule and 8250.nr_uarts=0 break the test guest. quiet keeps the
// emulated serial port short; the markers and the kernel's reboot/power
// messages still print.
const baseBootArgs = "console=ttyS0 reboot=k panic=1 pci=off quiet"

// Firecracker's log lines the suite waits for.
const (
	lineAPIStarted = "API server started."
	lineExitOK     = "Firecracker exiting successfully. exit_code=0"
)

func lineExitError(code int) string {
	return fmt.Sprintf("Firecracker exiting with error. exit_code=%d", code)
}

// vmSlots bounds the VMs booting at once: two TCG guests already keep
// both cores busy.
var vmSlots = make(chan struct{}, 2)

// requireVM skips (loudly) where no guest can boot, takes one VM slot for
// the rest of the test and returns the guest's assets.
func requireVM(t *testing.T) testguest.Assets {
	t.Helper()
	if backendOf(t) == "kvm" {
		if kvmGuest == nil {
			t.Fatal("a TestKVM subtest ran without TestKVM's guest")
		}
		vmSlots <- struct{}{}
		t.Cleanup(func() { <-vmSlots })
		return *kvmGuest
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skipf("SKIPPING end-to-end test: qemu-system-x86_64 is not installed (%v), so ember's qemu backend is NOT tested", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING end-to-end test: it must run as root (taps, network namespaces, killing QEMU), so ember's qemu backend is NOT tested")
	}
	a := testguest.Require(t)
	vmSlots <- struct{}{}
	t.Cleanup(func() { <-vmSlots })
	return a
}

// ember is one ember process started by a test.
type ember struct {
	t          *testing.T
	backend    string // "qemu" or "kvm"
	dir        string // private directory: API socket, stderr, test files
	sock       string
	args       []string
	cmd        *exec.Cmd
	pid        int
	con        *testguest.Console // stdout: log lines and the guest console
	stdoutR    *os.File
	stderrPath string
	client     *http.Client
	done       chan struct{} // closed when the process has ended
	state      *os.ProcessState
}

// startOpts say how to start ember.
type startOpts struct {
	// backend is --backend's value; "" is backendOf(t).
	backend string
	args    []string // extra command-line arguments (--api-sock and --backend are always given)
	netns   string   // run inside this network namespace (ip netns exec)
}

// startEmber starts ember and waits until its API serves. The process (and
// anything it left running) is ended when the test finishes.
func startEmber(t *testing.T, o startOpts) *ember {
	t.Helper()
	e := launch(t, o)
	e.waitLine(lineAPIStarted, startTimeout)
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", e.pid)); err != nil || exe != emberBin {
		t.Fatalf("process %d runs %q (%v), not ember", e.pid, exe, err)
	}
	return e
}

// launch starts ember and returns at once.
func launch(t *testing.T, o startOpts) *ember {
	t.Helper()
	dir := t.TempDir()
	backend := o.backend
	if backend == "" {
		backend = backendOf(t)
	}
	e := &ember{t: t, backend: backend, dir: dir, sock: filepath.Join(dir, "api.sock"), done: make(chan struct{})}
	e.args = append([]string{"--api-sock", e.sock, "--backend", e.backend}, o.args...)
	if o.netns != "" {
		// ip netns exec execs the command without forking, so the pid
		// started here is ember's.
		e.cmd = exec.Command("ip", append([]string{"netns", "exec", o.netns, emberBin}, e.args...)...)
	} else {
		e.cmd = exec.Command(emberBin, e.args...)
	}
	e.cmd.Dir = dir
	// Real files rather than io.Writers: Wait must not hang on a QEMU that
	// inherited the descriptors and outlives ember.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	e.stderrPath = filepath.Join(dir, "ember.stderr")
	errf, err := os.Create(e.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	e.cmd.Stdout, e.cmd.Stderr = w, errf
	err = e.cmd.Start()
	w.Close()
	errf.Close()
	if err != nil {
		r.Close()
		t.Fatalf("start ember %q: %v", e.args, err)
	}
	e.pid = e.cmd.Process.Pid
	e.stdoutR = r
	e.con = testguest.NewConsole(r)
	go func() {
		e.cmd.Wait()
		e.state = e.cmd.ProcessState
		close(e.done)
	}()
	e.client = &http.Client{
		Timeout: apiTimeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.sock)
		}},
	}
	t.Cleanup(e.stop)
	return e
}

// stop ends ember if it still runs, kills whatever it left running, and
// reports its output when the test failed.
func (e *ember) stop() {
	left := descendants(e.pid)
	if !e.exited() {
		e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			e.cmd.Process.Kill()
			<-e.done
		}
	}
	for _, pid := range left {
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// Whatever a test found, leave no runtime directory behind.
	if dirs, _ := runtimeDirs(e.pid); len(dirs) > 0 {
		for _, d := range dirs {
			os.RemoveAll(d)
		}
	}
	e.client.CloseIdleConnections()
	select {
	case <-e.con.Done():
	case <-time.After(2 * time.Second):
	}
	e.stdoutR.Close()
	if e.t.Failed() {
		stderr, _ := os.ReadFile(e.stderrPath)
		e.t.Logf("ember %q (pid %d) stdout, last 80 lines:\n%s\nstderr:\n%s", e.args, e.pid, e.con.Tail(80), stderr)
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

// api sends one request as a Firecracker client does and returns the
// status code and body. body is nil (no body), a string (sent as is) or a
// value encoded as JSON.
func (e *ember) api(method, path string, body any) (int, string) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, "http://localhost"+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return resp.StatusCode, string(b)
}

// mustAPI is api that fails the test unless the status is want.
func (e *ember) mustAPI(method, path string, body any, want int) string {
	e.t.Helper()
	got, resp := e.api(method, path, body)
	if got != want {
		e.t.Fatalf("%s %s %v: status %d, want %d; body %s", method, path, body, got, want, resp)
	}
	return resp
}

// instanceState is GET /'s "state".
func (e *ember) instanceState() string {
	e.t.Helper()
	var info struct {
		State string `json:"state"`
	}
	body := e.mustAPI("GET", "/", nil, http.StatusOK)
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		e.t.Fatalf("GET /: %v: %s", err, body)
	}
	return info.State
}

// bootArgs is the kernel command line: the base plus switches.
func bootArgs(switches ...string) string {
	return strings.Join(append([]string{baseBootArgs}, switches...), " ")
}

func (e *ember) putMachine(memMiB int) {
	e.t.Helper()
	e.mustAPI("PUT", "/machine-config", map[string]any{"vcpu_count": 1, "mem_size_mib": memMiB}, http.StatusNoContent)
}

// putBootSource sets the kernel, the initrd (none if "") and boot_args.
func (e *ember) putBootSource(kernel, initrd string, switches ...string) {
	e.t.Helper()
	body := map[string]any{"kernel_image_path": kernel, "boot_args": bootArgs(switches...)}
	if initrd != "" {
		body["initrd_path"] = initrd
	}
	e.mustAPI("PUT", "/boot-source", body, http.StatusNoContent)
}

func (e *ember) putDrive(id, path string, root, readOnly bool) {
	e.t.Helper()
	e.mustAPI("PUT", "/drives/"+id, map[string]any{
		"drive_id": id, "path_on_host": path, "is_root_device": root, "is_read_only": readOnly,
	}, http.StatusNoContent)
}

func (e *ember) action(action string) {
	e.t.Helper()
	e.mustAPI("PUT", "/actions", map[string]string{"action_type": action}, http.StatusNoContent)
}

// boot configures a 1-vCPU guest from the initramfs (plus whatever the
// test configured before) and starts it.
func (e *ember) boot(a testguest.Assets, memMiB int, switches ...string) {
	e.t.Helper()
	e.putMachine(memMiB)
	e.putBootSource(a.Vmlinux, a.Initramfs, switches...)
	e.action("InstanceStart")
}

// waitLine waits for a stdout line containing substr and returns it.
func (e *ember) waitLine(substr string, timeout time.Duration) string {
	e.t.Helper()
	_, line := e.waitLineFrom(0, substr, timeout)
	return line
}

// waitLineFrom waits for a stdout line at index from or later containing
// substr and returns its index and the line.
func (e *ember) waitLineFrom(from int, substr string, timeout time.Duration) (int, string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The console ends only when every holder of ember's stdout is gone;
	// an ember that exited ends the wait too.
	go func() {
		select {
		case <-e.done:
			time.Sleep(time.Second) // let the reader catch up with the last output
			cancel()
		case <-ctx.Done():
		}
	}()
	i, line, err := e.con.WaitFrom(ctx, from, substr)
	if err != nil {
		how := "still running"
		if e.exited() {
			how = "exited: " + e.state.String()
		} else {
			how += "; SIGQUIT sent, its goroutines are in its stderr"
			e.quitForStacks()
		}
		e.t.Fatalf("ember (pid %d, %s) never printed %q within %v: %v", e.pid, how, substr, timeout, err)
	}
	return i, line
}

// quitForStacks makes a stuck ember print every goroutine (vCPU threads
// included, in KVM_RUN or not) to its stderr and exit, which tells a guest
// that stalled in the hypervisor from an ember that stopped serving it.
func (e *ember) quitForStacks() {
	syscall.Kill(e.pid, syscall.SIGQUIT)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
	}
}

// hasLine reports whether a stdout line so far contains substr.
func (e *ember) hasLine(substr string) bool {
	for _, l := range e.con.Lines() {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

// waitExit waits for ember to end and returns its exit code, or the
// signal that killed it (code -1).
func (e *ember) waitExit(timeout time.Duration) (int, syscall.Signal) {
	e.t.Helper()
	select {
	case <-e.done:
	case <-time.After(timeout):
		e.t.Fatalf("ember (pid %d) did not exit within %v", e.pid, timeout)
	}
	return testember.ExitStatus(e.state)
}

// wantExit asserts that ember exits with code and logs Firecracker's exit
// line for it.
func (e *ember) wantExit(code int, timeout time.Duration) {
	e.t.Helper()
	got, sig := e.waitExit(timeout)
	if sig != 0 {
		e.t.Fatalf("ember died of signal %v, want exit code %d", sig, code)
	}
	if got != code {
		e.t.Fatalf("ember exit code %d, want %d", got, code)
	}
	want := lineExitOK
	if code != 0 {
		want = lineExitError(code)
	}
	e.waitLine(want, 5*time.Second)
}

// stderr is what ember printed on stderr so far.
func (e *ember) stderr() string {
	b, _ := os.ReadFile(e.stderrPath)
	return string(b)
}

// vmmPIDs returns the processes that run ember's VM besides ember itself:
// QEMU for the qemu backend, none for kvm (the VM runs in ember).
func (e *ember) vmmPIDs() []int {
	e.t.Helper()
	if e.backend == "kvm" {
		return nil
	}
	return []int{e.qemuPID()}
}

// qemuPID returns the pid of ember's QEMU child, waiting briefly for it.
func (e *ember) qemuPID() int {
	e.t.Helper()
	deadline := time.Now().Add(goneTimeout)
	for {
		for _, c := range children(e.pid) {
			if strings.HasPrefix(c.comm, "qemu-system") {
				return c.pid
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("ember (pid %d) has no QEMU child", e.pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procStat is what the suite needs from /proc/<pid>/stat.
type procStat struct {
	pid, ppid int
	comm      string
	state     byte
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || end+2 >= len(s) {
		return procStat{}, false
	}
	fields := strings.Fields(s[end+2:])
	if len(fields) < 2 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(fields[1])
	return procStat{pid: pid, ppid: ppid, comm: s[open+1 : end], state: fields[0][0]}, true
}

// children lists the live processes whose parent is pid.
func children(pid int) []procStat {
	ents, _ := os.ReadDir("/proc")
	var out []procStat
	for _, ent := range ents {
		p, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(p); ok && st.ppid == pid && st.state != 'Z' {
			out = append(out, st)
		}
	}
	return out
}

// descendants lists pid's live descendants.
func descendants(pid int) []int {
	var out []int
	for queue := []int{pid}; len(queue) > 0; queue = queue[1:] {
		for _, c := range children(queue[0]) {
			out = append(out, c.pid)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// alive reports whether pid runs (a zombie counts as dead).
func alive(pid int) bool {
	st, ok := readStat(pid)
	return ok && st.state != 'Z'
}

// waitGone waits until none of pids runs and returns those still running.
func waitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, p := range pids {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runtimeDirs lists ember's runtime directories (<tmp>/ember-<pid>-*).
func runtimeDirs(pid int) ([]string, error) {
	return filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("ember-%d-*", pid)))
}

// newNetns creates a network namespace with a unique name (lo up) and
// deletes it, with everything in it, when the test ends. Inside an L1 VM it
// returns "": L1 has no network device at all, so its own namespace is
// already one no test traffic can leave (and its busybox has no netns).
func newNetns(t *testing.T) string {
	t.Helper()
	if nested.Inside() {
		return ""
	}
	name := "ember-e2e-" + randHex(t, 4)
	ip(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ip(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// ip runs the ip command and fails the test on error. A "-n" "" pair
// (the namespace newNetns gives inside L1) is dropped.
func ip(t *testing.T, args ...string) string {
	t.Helper()
	if len(args) >= 2 && args[0] == "-n" && args[1] == "" {
		args = args[2:]
	}
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// linkExists reports whether network namespace ns has a link called name.
func linkExists(t *testing.T, ns, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s link show: %v: %s", ns, err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "7: name: <FLAGS> ..." or "7: name@peer: ..."
		f := strings.Fields(sc.Text())
		if len(f) > 1 && strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0] == name {
			return true
		}
	}
	return false
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// writeFile writes data to path, creating its directories.
func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// hostHasHardwareVirt reports whether ember can use KVM for this guest
// (vmx or svm and an openable /dev/kvm); otherwise it runs under TCG.
func hostHasHardwareVirt() bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	hasFlag := false
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "flags" {
			for _, f := range strings.Fields(v) {
				if f == "vmx" || f == "svm" {
					hasFlag = true
				}
			}
			break
		}
	}
	if !hasFlag {
		return false
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// rootfsCopy returns a private copy of the test guest's root file system.
func rootfsCopy(t *testing.T) string {
	t.Helper()
	if backendOf(t) != "kvm" {
		return testguest.RootfsCopy(t)
	}
	dst := filepath.Join(t.TempDir(), "rootfs.ext4")
	in, err := os.Open(kvmGuest.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// addTap creates a persistent tap called name in network namespace ns and
// deletes it when the test ends. Inside L1 (ns "") busybox's ip cannot
// create taps, so the tun driver is asked directly.
func addTap(t *testing.T, ns, name string) {
	t.Helper()
	if ns != "" {
		ip(t, "-n", ns, "tuntap", "add", "dev", name, "mode", "tap")
		return
	}
	persist := func(on bool) error {
		f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		rc, err := f.SyscallConn()
		if err != nil {
			return err
		}
		var opErr error
		err = rc.Control(func(fd uintptr) {
			if opErr = unix.IoctlIfreq(int(fd), unix.TUNSETIFF, ifr); opErr != nil {
				return
			}
			v := 0
			if on {
				v = 1
			}
			opErr = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, v)
		})
		if err != nil {
			return err
		}
		return opErr
	}
	if err := persist(true); err != nil {
		t.Fatalf("create tap %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := persist(false); err != nil {
			t.Errorf("delete tap %s: %v", name, err)
		}
	})
}
