package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/testguest"
)

// TestPauseResume: a paused guest makes no progress (its 100 ms ticks
// stop) and GET / says Paused; resumed, it ticks again.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	e.boot(a, 128, testguest.Counter())
	e.waitLine("EMBER-GUEST: tick 5", bootTimeout)

	e.mustAPI("PATCH", "/vm", map[string]string{"state": "Paused"}, http.StatusNoContent)
	if got := e.instanceState(); got != "Paused" {
		t.Errorf("GET / state %q after pausing, want Paused", got)
	}
	time.Sleep(300 * time.Millisecond) // output already on its way to stdout
	paused := lastTick(e)
	time.Sleep(time.Second)
	if got := lastTick(e); got != paused {
		t.Fatalf("the guest went on while paused: tick %d → %d", paused, got)
	}

	e.mustAPI("PATCH", "/vm", map[string]string{"state": "Resumed"}, http.StatusNoContent)
	if got := e.instanceState(); got != "Running" {
		t.Errorf("GET / state %q after resuming, want Running", got)
	}
	e.waitLine("EMBER-GUEST: tick "+strconv.Itoa(paused+3), 20*time.Second)
	for _, want := range []string{"'pause vm' VMM action took", "'resume vm' VMM action took"} {
		if !e.hasLine(want) {
			t.Errorf("ember did not log %q", want)
		}
	}

	// A paused VM is still cleaned up on SIGTERM.
	e.mustAPI("PATCH", "/vm", map[string]string{"state": "Paused"}, http.StatusNoContent)
	desc := descendants(e.pid)
	e.cmd.Process.Signal(syscall.SIGTERM)
	if code, sig := e.waitExit(exitTimeout); sig != syscall.SIGTERM {
		t.Errorf("paused VM: ember exited with code %d (signal %v), want death by SIGTERM", code, sig)
	}
	if left := waitGone(desc, goneTimeout); len(left) > 0 {
		t.Errorf("paused VM: processes outlived ember: %v", left)
	}
}

var tickLine = regexp.MustCompile(`^EMBER-GUEST: tick (\d+)$`)

// lastTick is the highest tick the guest printed so far.
func lastTick(e *ember) int {
	n := 0
	for _, l := range e.con.Lines() {
		if m := tickLine.FindStringSubmatch(l); m != nil {
			v, _ := strconv.Atoi(m[1])
			n = max(n, v)
		}
	}
	return n
}

// TestCtrlAltDel: SendCtrlAltDel reaches the guest, which reboots, which
// ends ember successfully.
func TestCtrlAltDel(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	e.boot(a, 128, testguest.End(testguest.EndWait))
	e.waitLine(testguest.MarkerReady, bootTimeout)
	e.action("SendCtrlAltDel")
	e.waitLine(testguest.MarkerCtrlAltDel, exitTimeout)
	e.wantExit(0, exitTimeout)
}

// TestCtrlAltDelWhilePaused: Ctrl-Alt-Del sent to a paused VM is not
// lost. Firecracker queues the keys in its i8042 and raises the keyboard
// interrupt, which the guest takes once resumed.
func TestCtrlAltDelWhilePaused(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	e.boot(a, 128, testguest.End(testguest.EndWait))
	e.waitLine(testguest.MarkerReady, bootTimeout)
	e.mustAPI("PATCH", "/vm", map[string]string{"state": "Paused"}, http.StatusNoContent)
	e.action("SendCtrlAltDel")
	e.mustAPI("PATCH", "/vm", map[string]string{"state": "Resumed"}, http.StatusNoContent)
	e.waitLine(testguest.MarkerCtrlAltDel, exitTimeout)
	e.wantExit(0, exitTimeout)
}

// TestGuestReboot: a guest reboot ends ember with 0, Firecracker's exit
// line, a last metrics line, and no QEMU left.
func TestGuestReboot(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	metrics := filepath.Join(t.TempDir(), "metrics.json")
	e := startEmber(t, startOpts{args: []string{"--metrics-path", metrics}})
	e.boot(a, 128, testguest.End(testguest.EndReboot))
	vmm := e.vmmPIDs()
	e.waitLine(testguest.MarkerReady, bootTimeout)
	e.wantExit(0, bootTimeout)
	stopping, _ := e.waitLineFrom(0, "Vmm is stopping.", time.Second)
	exitLine, _ := e.waitLineFrom(0, lineExitOK, time.Second)
	if stopping > exitLine {
		t.Errorf("\"Vmm is stopping.\" logged after the exit line")
	}
	if left := waitGone(vmm, goneTimeout); len(left) > 0 {
		t.Errorf("QEMU (pid %v) outlived ember", left)
	}
	// One line at boot, one at exit, as Firecracker writes them.
	if n := len(metricsLines(t, metrics)); n != 2 {
		t.Errorf("%d metrics lines after boot and guest reboot, want 2", n)
	}
}

// TestGuestTripleFault: a guest that resets by triple fault (reboot=t)
// has crashed as far as Firecracker is concerned: KVM_EXIT_SHUTDOWN is an
// unhandled vCPU exit, so Firecracker exits with 1, unlike the i8042 reset
// of reboot=k.
func TestGuestTripleFault(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	e.boot(a, 128, "reboot=t", testguest.End(testguest.EndReboot))
	e.waitLine(testguest.MarkerReady, bootTimeout)
	e.wantExit(1, exitTimeout)
}

// TestGuestPoweroff: as on Firecracker, a guest that powers off does not
// end ember, which keeps answering its API until it is told to stop.
func TestGuestPoweroff(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	e.boot(a, 128, testguest.End(testguest.EndPoweroff))
	vmm := e.vmmPIDs()
	// With an ACPI power-off method (QEMU's microvm) the kernel powers
	// down; without one (Firecracker's tables, the kvm backend's) the
	// request becomes a halt. Either way the guest has stopped.
	if l := e.waitLine("reboot: ", bootTimeout); !strings.HasSuffix(l, "reboot: Power down") && !strings.HasSuffix(l, "reboot: System halted") {
		t.Fatalf("the guest did not power off or halt: %q", l)
	}
	select {
	case <-e.done:
		t.Fatalf("ember ended after the guest powered off: %v", e.state)
	case <-time.After(1500 * time.Millisecond):
	}
	if got := e.instanceState(); got != "Running" {
		t.Errorf("GET / state %q after a guest poweroff, want Running", got)
	}
	for _, pid := range vmm {
		if !alive(pid) {
			t.Errorf("QEMU (pid %d) ended with the guest's poweroff", pid)
		}
	}
	// The powered-off VM still takes runtime requests, as Firecracker's does.
	e.mustAPI("PATCH", "/vm", map[string]string{"state": "Paused"}, http.StatusNoContent)
	if got := e.instanceState(); got != "Paused" {
		t.Errorf("GET / state %q after pausing a powered-off guest, want Paused", got)
	}
	e.mustAPI("PATCH", "/vm", map[string]string{"state": "Resumed"}, http.StatusNoContent)
	if got := e.instanceState(); got != "Running" {
		t.Errorf("GET / state %q after resuming a powered-off guest, want Running", got)
	}
	if e.exited() {
		t.Fatalf("ember ended after pause/resume of a powered-off guest: %v", e.state)
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	if _, sig := e.waitExit(exitTimeout); sig != syscall.SIGTERM {
		t.Errorf("ember did not die of SIGTERM: %v", e.state)
	}
	if left := waitGone(vmm, goneTimeout); len(left) > 0 {
		t.Errorf("QEMU (pid %v) outlived ember", left)
	}
}

// TestQEMUKilled: QEMU dying under ember ends ember with 1, the reason in
// the log and Firecracker's error exit line.
func TestQEMUKilled(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	e.boot(a, 128, testguest.End(testguest.EndWait))
	e.waitLine(testguest.MarkerInit, bootTimeout)
	qemu := e.qemuPID()
	if err := syscall.Kill(qemu, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.wantExit(1, exitTimeout)
	// The reason names the process and how it died.
	found := false
	for _, l := range e.con.Lines() {
		if strings.Contains(l, "[anonymous-instance:") && strings.Contains(l, strconv.Itoa(qemu)) &&
			(strings.Contains(l, "signal 9") || strings.Contains(l, "SIGKILL") || strings.Contains(l, "killed")) {
			found = true
			t.Logf("logged reason: %s", l)
			break
		}
	}
	if !found {
		t.Errorf("no log line names QEMU (pid %d) and its SIGKILL", qemu)
	}
	if !strings.HasPrefix(e.stderr(), "Error: ") {
		t.Errorf("stderr %q, want Firecracker's \"Error: ...\"", e.stderr())
	}
}

// TestEmberKilled: SIGKILL on ember (no chance to clean up) still takes
// its QEMU down.
func TestEmberKilled(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	e.boot(a, 128, testguest.End(testguest.EndWait))
	e.waitLine(testguest.MarkerInit, bootTimeout)
	qemu := e.qemuPID()
	desc := descendants(e.pid)
	if err := e.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, sig := e.waitExit(exitTimeout); sig != syscall.SIGKILL {
		t.Fatalf("ember ended with %v, want SIGKILL", e.state)
	}
	if left := waitGone(desc, goneTimeout); len(left) > 0 {
		t.Errorf("processes outlived the SIGKILLed ember: %v (QEMU is %d)", left, qemu)
	}
}

// TestSIGTERM: ember dies of SIGTERM as Firecracker does, after removing
// its QEMU, its runtime directory and the tap it created.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	ns := newNetns(t)
	const tap = "e2etap0"
	e := startEmber(t, startOpts{netns: ns})
	// The tap does not exist: ember creates it, as Firecracker does.
	e.mustAPI("PUT", "/network-interfaces/eth0", map[string]string{"iface_id": "eth0", "host_dev_name": tap}, http.StatusNoContent)
	e.boot(a, 128, testguest.End(testguest.EndWait))
	e.waitLine(testguest.MarkerInit, bootTimeout)
	qemu := e.qemuPID()
	desc := descendants(e.pid)
	dirs, _ := runtimeDirs(e.pid)
	if len(dirs) == 0 {
		t.Errorf("no runtime directory ember-%d-* in %s while running", e.pid, os.TempDir())
	}
	if !linkExists(t, ns, tap) {
		t.Errorf("tap %s does not exist while ember runs", tap)
	}

	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, sig := e.waitExit(exitTimeout); sig != syscall.SIGTERM {
		t.Errorf("ember exited with code %d (signal %v), want death by SIGTERM", code, sig)
	}
	if left := waitGone(desc, goneTimeout); len(left) > 0 {
		t.Errorf("processes outlived ember: %v (QEMU is %d)", left, qemu)
	}
	if left, _ := runtimeDirs(e.pid); len(left) > 0 {
		t.Errorf("runtime directories left behind: %v", left)
	}
	if linkExists(t, ns, tap) {
		t.Errorf("tap %s left behind", tap)
	}
	// The API socket stays, as Firecracker (killed by the signal) leaves it.
	if _, err := os.Stat(e.sock); err != nil {
		t.Errorf("the API socket is gone: %v", err)
	}
}

// TestSignalBeforeBoot: SIGTERM or SIGINT before any VM exists ends ember
// by that signal, without a runtime directory left behind.
func TestSignalBeforeBoot(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			t.Parallel()
			e := startEmber(t, startOpts{})
			e.putMachine(128)
			dirs, _ := runtimeDirs(e.pid)
			if len(dirs) == 0 {
				t.Errorf("no runtime directory ember-%d-* in %s", e.pid, os.TempDir())
			}
			e.cmd.Process.Signal(sig)
			if code, got := e.waitExit(exitTimeout); got != sig {
				t.Errorf("ember exited with code %d (signal %v), want death by %v", code, got, sig)
			}
			if left, _ := runtimeDirs(e.pid); len(left) > 0 {
				t.Errorf("runtime directories left behind: %v", left)
			}
		})
	}
}

// TestAbortCleanup: an ember that ends by Firecracker's panic (SIGABRT;
// here invalid --metadata) still leaves no runtime directory behind.
func TestAbortCleanup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := writeFile(t, filepath.Join(dir, "metadata.json"), []byte("{bad"))
	e := launch(t, startOpts{args: []string{"--metadata", bad}})
	if code, sig := e.waitExit(exitTimeout); sig != syscall.SIGABRT {
		t.Fatalf("ember exited with code %d (signal %v), want SIGABRT as Firecracker's panic", code, sig)
	}
	e.waitLine("Firecracker panicked", time.Second)
	if left, _ := runtimeDirs(e.pid); len(left) > 0 {
		t.Errorf("runtime directories left behind: %v", left)
	}
}
