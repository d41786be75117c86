package e2e

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/nested"
	"github.com/ember-vmm/ember/internal/testember"
	"github.com/ember-vmm/ember/internal/testguest"
)

// The suite drives ember through testember's harness; these are its
// names for what the harness exports.
var (
	startTimeout = testember.StartTimeout
	bootTimeout  = testember.BootTimeout
	exitTimeout  = testember.ExitTimeout
	goneTimeout  = testember.GoneTimeout
	scaled       = testember.Scaled

	descendants = testember.Descendants
	alive       = testember.Alive
	waitGone    = testember.WaitGone
	runtimeDirs = testember.RuntimeDirs
	linkExists  = testember.LinkExists
	randHex     = testember.RandHex
	writeFile   = testember.WriteFile
)

const (
	baseBootArgs   = testember.BaseBootArgs
	lineAPIStarted = testember.LineAPIStarted
	lineExitOK     = testember.LineExitOK
)

// backendOf is the backend a test drives: the kvm backend for the subtests
// of TestKVM, qemu for every other test. It is always passed explicitly, so
// a host with KVM (where --backend auto picks kvm) still tests qemu.
func backendOf(t *testing.T) string {
	if strings.HasPrefix(t.Name(), "TestKVM/") {
		return "kvm"
	}
	return "qemu"
}

// requireVM skips (loudly) where no guest can boot, takes one VM slot for
// the rest of the test and returns the guest's assets.
func requireVM(t *testing.T) testguest.Assets {
	t.Helper()
	if backendOf(t) != "kvm" {
		return testember.RequireVM(t)
	}
	if kvmGuest == nil {
		t.Fatal("a TestKVM subtest ran without TestKVM's guest")
	}
	testember.TakeVMSlot(t)
	return *kvmGuest
}

// ember is one ember process started by a test: a testember.Process with
// the lower-case names the suite's tests use.
type ember struct {
	*testember.Process
	backend string // "qemu" or "kvm"
	dir     string // private directory: API socket, stderr, test files
	sock    string
	cmd     *exec.Cmd
	pid     int
	con     *testguest.Console // stdout: log lines and the guest console
	done    <-chan struct{}    // closed when the process has ended
	state   exitState          // how it ended, for messages
}

// exitState prints how the process ended as *os.ProcessState does
// ("<nil>" while it runs).
type exitState struct{ p *testember.Process }

func (s exitState) String() string { return s.p.State().String() }

// startOpts say how to start ember.
type startOpts struct {
	// backend is --backend's value; "" is backendOf(t).
	backend string
	args    []string // extra command-line arguments (--api-sock and --backend are always given)
	netns   string   // run inside this network namespace (ip netns exec)
}

func (o startOpts) options(t *testing.T) testember.Options {
	backend := o.backend
	if backend == "" {
		backend = backendOf(t)
	}
	return testember.Options{Bin: emberBin, Backend: backend, Args: o.args, Netns: o.netns}
}

// startEmber starts ember and waits until its API serves. The process (and
// anything it left running) is ended when the test finishes.
func startEmber(t *testing.T, o startOpts) *ember {
	t.Helper()
	return wrap(testember.Start(t, o.options(t)))
}

// launch starts ember and returns at once.
func launch(t *testing.T, o startOpts) *ember {
	t.Helper()
	return wrap(testember.Launch(t, o.options(t)))
}

func wrap(p *testember.Process) *ember {
	return &ember{Process: p, backend: p.Backend, dir: p.Dir, sock: p.Sock, cmd: p.Cmd, pid: p.PID, con: p.Con, done: p.Done(), state: exitState{p}}
}

func (e *ember) stop()          { e.Stop() }
func (e *ember) exited() bool   { return e.Exited() }
func (e *ember) stderr() string { return e.Stderr() }

func (e *ember) api(method, path string, body any) (int, string) {
	e.T.Helper()
	return e.API(method, path, body)
}

func (e *ember) mustAPI(method, path string, body any, want int) string {
	e.T.Helper()
	return e.MustAPI(method, path, body, want)
}

func (e *ember) instanceState() string {
	e.T.Helper()
	return e.InstanceState()
}

func (e *ember) putMachine(memMiB int) {
	e.T.Helper()
	e.PutMachine(memMiB)
}

func (e *ember) putBootSource(kernel, initrd string, switches ...string) {
	e.T.Helper()
	e.PutBootSource(kernel, initrd, switches...)
}

func (e *ember) putDrive(id, path string, root, readOnly bool) {
	e.T.Helper()
	e.PutDrive(id, path, root, readOnly)
}

func (e *ember) action(action string) {
	e.T.Helper()
	e.Action(action)
}

func (e *ember) boot(a testguest.Assets, memMiB int, switches ...string) {
	e.T.Helper()
	e.Boot(a, memMiB, switches...)
}

func (e *ember) waitLine(substr string, timeout time.Duration) string {
	e.T.Helper()
	return e.WaitLine(substr, timeout)
}

func (e *ember) waitLineFrom(from int, substr string, timeout time.Duration) (int, string) {
	e.T.Helper()
	return e.WaitLineFrom(from, substr, timeout)
}

func (e *ember) hasLine(substr string) bool { return e.HasLine(substr) }

func (e *ember) waitExit(timeout time.Duration) (int, syscall.Signal) {
	e.T.Helper()
	return e.WaitExit(timeout)
}

func (e *ember) wantExit(code int, timeout time.Duration) {
	e.T.Helper()
	e.WantExit(code, timeout)
}

func (e *ember) vmmPIDs() []int {
	e.T.Helper()
	return e.VMMPIDs()
}

func (e *ember) qemuPID() int {
	e.T.Helper()
	return e.QEMUPID()
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
	return testember.NewNetns(t, "ember-e2e-")
}

// ip runs the ip command and fails the test on error. A "-n" "" pair
// (the namespace newNetns gives inside L1) is dropped.
func ip(t *testing.T, args ...string) string {
	t.Helper()
	return testember.IP(t, args...)
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
