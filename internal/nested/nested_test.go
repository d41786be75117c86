package nested

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// realModeCode writes "Hi\n" to port 0x3f8 and halts:
// mov dx,0x3f8; mov al,'H'; out dx,al; mov al,'i'; out dx,al; mov al,10; out dx,al; hlt.
var realModeCode = []byte{0xba, 0xf8, 0x03, 0xb0, 'H', 0xee, 0xb0, 'i', 0xee, 0xb0, '\n', 0xee, 0xf4}

// TestNestedKVMProbe runs a tiny real-mode guest on a real /dev/kvm: here
// if the host has one, else inside an L1 VM.
func TestNestedKVMProbe(t *testing.T) {
	Run(t, Options{}, func(t *testing.T, env *Env) {
		if env.Nested != Inside() {
			t.Errorf("env.Nested = %v, Inside() = %v", env.Nested, Inside())
		}
		if ok, why := KVMUsable(); !ok {
			t.Fatalf("the body runs without a usable KVM: %s", why)
		} else {
			t.Logf("%s", why)
		}
		start := time.Now()
		api, exits, err := kvmProbe(realModeCode, 100)
		elapsed := time.Since(start)
		if err != nil {
			t.Fatalf("probe: %v (exits so far %v)", err, exits)
		}
		if api != 12 {
			t.Errorf("KVM_GET_API_VERSION = %d, want 12", api)
		}
		want := []probeExit{
			{Reason: kvmExitIO, Port: 0x3f8, Dir: 1, Size: 1, Data: 'H'},
			{Reason: kvmExitIO, Port: 0x3f8, Dir: 1, Size: 1, Data: 'i'},
			{Reason: kvmExitIO, Port: 0x3f8, Dir: 1, Size: 1, Data: '\n'},
			{Reason: kvmExitHLT},
		}
		if !reflect.DeepEqual(exits, want) {
			t.Errorf("exits:\n got %v\nwant %v", exits, want)
		}
		t.Logf("real-mode guest: %d exits in %v (VM and vCPU setup included)", len(exits), elapsed)
	})
}

// TestNestedTrivial measures the harness's overhead with a body that only
// checks what it was given: a shipped file, an environment variable, and
// /dev/kvm.
func TestNestedTrivial(t *testing.T) {
	file := filepath.Join(t.TempDir(), "payload")
	if !Inside() {
		if err := os.WriteFile(file, []byte("shipped into L1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts := Options{
		Files:   map[string]string{"dir/payload": file},
		Env:     []string{"EMBER_NESTED_TEST_VAR=it's here"},
		Modules: []string{"tun", "bridge"},
	}
	// A subtest whose name needs quoting in -test.run.
	t.Run("files+env (x)", func(t *testing.T) { Run(t, opts, trivialBody) })
}

func trivialBody(t *testing.T, env *Env) {
	if env.Nested && os.Getenv("EMBER_NESTED_TEST_VAR") != "it's here" {
		t.Errorf("EMBER_NESTED_TEST_VAR = %q", os.Getenv("EMBER_NESTED_TEST_VAR"))
	}
	b, err := os.ReadFile(env.File("dir/payload"))
	if err != nil || string(b) != "shipped into L1\n" {
		t.Errorf("payload = %q, %v", b, err)
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open /dev/kvm: %v", err)
	}
	f.Close()
	if env.Nested {
		for _, m := range []string{"kvm_amd", "tun", "bridge", "stp", "llc"} {
			if _, err := os.Stat("/sys/module/" + m); err != nil {
				t.Errorf("module %s is not loaded in L1: %v", m, err)
			}
		}
	}
}

// Demo tests run only as subprocesses of TestNestedVerdicts, which checks
// that an inner failure fails the outer test, an inner skip skips it, and
// an L1 that cannot boot in time or dies fails it with the harness's
// message and L1's console.
const demoEnv = "EMBER_NESTED_DEMO"

func TestNestedDemo(t *testing.T) {
	mode := os.Getenv(demoEnv)
	if mode == "" {
		t.Skip("run by TestNestedVerdicts")
	}
	opts := Options{Env: []string{demoEnv + "=" + mode}}
	switch mode {
	case "boot-timeout":
		opts.BootTimeout = time.Millisecond
	case "l1-dies":
		opts.KernelArgs = []string{"rdinit=/nested/no-such-init"} // L1's kernel panics
	case "l1-triple-faults":
		opts.KernelArgs = []string{"reboot=t"} // a restart is a triple fault
	case "l1-freezes":
		opts.FrozenAfter = 25 * time.Second
	}
	Run(t, opts, func(t *testing.T, env *Env) {
		switch mode {
		case "fail":
			t.Errorf("DEMO-FAILURE inside L1=%v", env.Nested)
		case "skip":
			t.Skip("DEMO-SKIP-REASON")
		case "pass":
			t.Log("DEMO-PASS")
		case "l1-triple-faults":
			if a := os.Getenv(EnvAttempt); a == "1" {
				// An emergency restart with reboot=t: L1 triple faults as
				// QEMU's SVM sometimes makes it, and the harness boots a
				// second L1.
				os.WriteFile("/proc/sysrq-trigger", []byte("b"), 0)
				time.Sleep(time.Minute)
				t.Fatal("L1 survived its triple fault")
			}
			t.Logf("DEMO-PASS in L1 attempt %s", os.Getenv(EnvAttempt))
		case "l2-loses-interrupt":
			if os.Getenv(EnvAttempt) == "1" {
				LostInterrupt(t, "DEMO-EVIDENCE")
				return
			}
			t.Logf("DEMO-PASS in L1 attempt %s", os.Getenv(EnvAttempt))
		case "l1-freezes":
			if os.Getenv(EnvAttempt) == "1" {
				stopHeartbeat(t) // to the harness, L1 looks frozen
				time.Sleep(5 * time.Minute)
				t.Fatal("L1 ran on without a heartbeat")
			}
			t.Logf("DEMO-PASS in L1 attempt %s", os.Getenv(EnvAttempt))
		}
	})
}

// stopHeartbeat stops the shell loop that prints L1's heartbeat: the
// parent of every "sleep 10".
func stopHeartbeat(t *testing.T) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	stopped := 0
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || string(b) != "sleep\x0010\x00" {
			continue
		}
		st, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		if ppid, err := strconv.Atoi(f[1]); err == nil && syscall.Kill(ppid, syscall.SIGSTOP) == nil {
			stopped++
		}
	}
	if stopped == 0 {
		t.Fatal("found no heartbeat loop to stop")
	}
}

func TestNestedVerdicts(t *testing.T) {
	if Inside() {
		t.Skip("runs its demos from the outside")
	}
	if ok, _ := KVMUsable(); ok {
		t.Skip("SKIP: KVM is usable here, so demos would run directly and prove nothing about L1")
	}
	if testing.Short() {
		t.Skip("SKIP (-short): boots an L1 VM per verdict")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("SKIP LOUDLY: qemu-system-x86_64 not found; the nested harness is NOT tested")
	}
	testguest.Require(t) // build the guest here, not three times in the demos
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode     string
		exitCode int
		want     []string
	}{
		{"fail", 1, []string{"L1| ", "DEMO-FAILURE inside L1=true", "--- FAIL: TestNestedDemo", "the inner test failed inside L1 (exit status 1", "L1 console (last lines)"}},
		{"skip", 0, []string{"--- SKIP: TestNestedDemo", "the inner test skipped inside L1", "DEMO-SKIP-REASON"}},
		{"boot-timeout", 1, []string{"--- FAIL: TestNestedDemo", "nested: L1 did not boot", `no "EMBER-NESTED: kvm ready" within 1ms`}},
		{"l1-dies", 1, []string{"--- FAIL: TestNestedDemo", "nested: L1 failed: QEMU exited before the inner test reported", "Kernel panic"}},
		{"l1-freezes", 0, []string{"L1 ITSELF FROZE (attempt 1 of 2", "no heartbeat for", "L1's vCPUs (QEMU monitor)", "RIP=", "DEMO-PASS in L1 attempt 2", "--- PASS: TestNestedDemo"}},
		{"l2-loses-interrupt", 0, []string{"L1 ITSELF LOST AN INTERRUPT OF ITS L2 GUEST (attempt 1 of 2", markLostInterrupt + "DEMO-EVIDENCE", "DEMO-PASS in L1 attempt 2", "--- PASS: TestNestedDemo"}},
		{"l1-triple-faults", 0, []string{"L1 ITSELF TRIPLE FAULTED (attempt 1 of 2", "Triple fault", "DEMO-PASS in L1 attempt 2", "--- PASS: TestNestedDemo"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, self, "-test.run", "^TestNestedDemo$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), demoEnv+"="+tc.mode)
			out, err := cmd.CombinedOutput()
			code := 0
			if err != nil {
				ee, ok := err.(*exec.ExitError)
				if !ok {
					t.Fatalf("run demo: %v", err)
				}
				code = ee.ExitCode()
			}
			text := string(out)
			if code != tc.exitCode {
				t.Errorf("demo %s exited %d, want %d", tc.mode, code, tc.exitCode)
			}
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("demo %s output lacks %q", tc.mode, w)
				}
			}
			if t.Failed() {
				t.Logf("demo output:\n%s", text)
			}
		})
	}
}

// TestNestedEmberBinary ships the static ember binary into L1 and runs it
// there, as the kvm backend's end-to-end tests will.
func TestNestedEmberBinary(t *testing.T) {
	var ember string
	if !Inside() {
		if testing.Short() {
			t.Skip("SKIP (-short): builds ember and boots L1")
		}
		ember = buildEmber(t)
	}
	Run(t, Options{Files: map[string]string{"bin/ember": ember}}, func(t *testing.T, env *Env) {
		bin := env.File("bin/ember")
		if err := CheckStatic(bin); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("ember --version: %v\n%s", err, out)
		}
		t.Logf("ember --version: %s", strings.TrimSpace(string(out)))
		if !strings.Contains(string(out), "Firecracker v") {
			t.Errorf("ember --version = %q, want Firecracker's version line", out)
		}
	})
}

// buildEmber builds a static ember (as testember.Main does) into t's
// temporary directory.
func buildEmber(t *testing.T) string {
	t.Helper()
	// The module root, two levels above this package (testember, which
	// knows it too, imports this package).
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "ember")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ember")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/ember: %v\n%s", err, out)
	}
	return bin
}

// TestNestedQEMUBootsL2 boots the test guest's kernel as an L2 with QEMU
// and -accel kvm inside L1: the whole path a KVM VMM takes (nested paging,
// in-kernel irqchip, a real Linux guest) works here. QEMU is dynamically
// linked, so it travels with its libraries and is started through the
// shipped dynamic loader.
func TestNestedQEMUBootsL2(t *testing.T) {
	var files map[string]string
	if !Inside() {
		if testing.Short() {
			t.Skip("SKIP (-short): boots L1 and an L2 inside it")
		}
		files = QEMUFiles(t)
	}
	opts := Options{Guest: true, Files: files}
	Run(t, opts, func(t *testing.T, env *Env) {
		g := env.Guest()
		lib := env.File("qemu/lib/ld-linux-x86-64.so.2")
		args := []string{
			"--library-path", filepath.Dir(lib), env.File("qemu/bin/qemu-system-x86_64"),
			"-L", filepath.Dir(env.File("qemu/share/bios-microvm.bin")),
			"-accel", "kvm", "-M", "microvm,acpi=on", "-cpu", "host", "-m", "256", "-smp", "1",
			"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot", "-device", "i8042",
			"-kernel", g.Vmlinux, "-initrd", g.Initramfs,
			"-append", strings.Join([]string{"console=ttyS0", "quiet", "panic=-1", "reboot=k",
				testguest.TSCEarlyArg(), testguest.End(testguest.EndPoweroff)}, " "),
		}
		ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, lib, args...)
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = pw, pw
		start := time.Now()
		if err := cmd.Start(); err != nil {
			pw.Close()
			t.Fatalf("start L2 QEMU: %v", err)
		}
		pw.Close()
		con := testguest.NewConsole(pr)
		defer func() {
			cancel()
			cmd.Wait()
			pr.Close()
		}()
		if _, err := con.Wait(ctx, testguest.MarkerInit); err != nil {
			t.Fatalf("L2 never printed %q: %v\nL2 console:\n%s", testguest.MarkerInit, err, con.Tail(40))
		}
		toInit := time.Since(start)
		if _, err := con.Wait(ctx, testguest.MarkerReady); err != nil {
			t.Fatalf("L2 never got ready: %v\nL2 console:\n%s", err, con.Tail(40))
		}
		err = cmd.Wait()
		if err != nil {
			t.Errorf("L2 QEMU: %v\nL2 console:\n%s", err, con.Tail(40))
		}
		t.Logf("L2 Linux under KVM in L1: QEMU start to %q in %.2fs, powered off after %.2fs",
			testguest.MarkerInit, toInit.Seconds(), time.Since(start).Seconds())
	})
}
