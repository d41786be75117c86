// Package sdk runs firecracker-go-sdk v1.0.0, unchanged, with ember as its
// firecracker binary: the SDK starts the process, waits for the API socket,
// configures machine, kernel and drives, starts the VM, reads it back, and
// shuts it down with SendCtrlAltDel. It lives in its own module so the
// SDK's dependencies stay out of ember's.
package sdk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	firecracker "github.com/firecracker-microvm/firecracker-go-sdk"
	models "github.com/firecracker-microvm/firecracker-go-sdk/client/models"
	"github.com/sirupsen/logrus"
)

var emberBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ember-sdk-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	emberBin = filepath.Join(dir, "ember")
	args, cgo := []string{"build", "-o", emberBin}, "CGO_ENABLED=0"
	if raceBuild() {
		// The race detector's runtime needs cgo; linked statically, as
		// internal/testember builds it for ember's own suites.
		args = append(args, "-race", "-tags", "netgo,osusergo", "-ldflags", "-linkmode=external -extldflags=-static")
		cgo = "CGO_ENABLED=1"
		fmt.Fprintln(os.Stderr, "sdk: EMBER_RACE=1: ember is built with -race; a race report in its output fails the test")
	}
	build := exec.Command("go", append(args, "./cmd/ember")...)
	build.Dir = repoRoot()
	build.Env = append(os.Environ(), cgo)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building ember: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// raceBuild reports whether EMBER_RACE=1 asks for a race-built ember, as
// for ember's own binary-driving suites (internal/testember, which this
// module cannot import).
func raceBuild() bool { return os.Getenv("EMBER_RACE") == "1" }

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}

func guestDir(t *testing.T) string {
	d := os.Getenv("EMBER_GUEST_DIR")
	if d == "" {
		d = filepath.Join(repoRoot(), "build", "guest")
	}
	for _, f := range []string{"vmlinux", "initramfs.cpio.gz", "rootfs.ext4"} {
		if _, err := os.Stat(filepath.Join(d, f)); err != nil {
			t.Fatalf("test guest missing (%v): run guest/build.sh first (scripts/test.sh does)", err)
		}
	}
	return d
}

// syncBuffer collects the process's output for assertions.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSDKBootAndShutdown(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("SKIPPED: qemu-system-x86_64 is not installed; this test needs a real guest")
	}
	g := guestDir(t)
	tmp := t.TempDir()
	rootfs := filepath.Join(tmp, "rootfs.ext4")
	copyFile(t, filepath.Join(g, "rootfs.ext4"), rootfs)
	sock := filepath.Join(tmp, "fc.sock")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := &syncBuffer{}
	// Whatever the build, only the race detector prints this.
	t.Cleanup(func() {
		if strings.Contains(out.String(), "WARNING: DATA RACE") {
			t.Errorf("ember reported a data race:\n%s", out.String())
		}
	})
	cmd := firecracker.VMCommandBuilder{}.
		WithBin(emberBin).
		WithSocketPath(sock).
		WithStdout(out).
		WithStderr(out).
		Build(ctx)

	cfg := firecracker.Config{
		SocketPath:      sock,
		KernelImagePath: filepath.Join(g, "vmlinux"),
		InitrdPath:      filepath.Join(g, "initramfs.cpio.gz"),
		KernelArgs:      "console=ttyS0 reboot=k panic=1 ember.end=wait",
		Drives:          firecracker.NewDrivesBuilder(rootfs).Build(),
		MachineCfg: models.MachineConfiguration{
			VcpuCount:  firecracker.Int64(1),
			MemSizeMib: firecracker.Int64(256),
		},
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	m, err := firecracker.NewMachine(ctx, cfg, firecracker.WithProcessRunner(cmd), firecracker.WithLogger(logrus.NewEntry(log)))
	if err != nil {
		t.Fatalf("NewMachine: %v", err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start: %v\nember output:\n%s", err, out.String())
	}
	waitFor(t, out, "EMBER-GUEST: ready", 90*time.Second)

	info, err := m.DescribeInstanceInfo(ctx)
	if err != nil {
		t.Fatalf("DescribeInstanceInfo: %v", err)
	}
	if got := firecracker.StringValue(info.State); got != "Running" {
		t.Errorf("state = %q, want Running", got)
	}
	if got := firecracker.StringValue(info.AppName); got != "Firecracker" {
		t.Errorf("app_name = %q", got)
	}
	mc, err := m.GetFirecrackerVersion(ctx)
	if err != nil || mc != "1.17.0-dev" {
		t.Errorf("GetFirecrackerVersion = %q, %v", mc, err)
	}
	if err := m.PauseVM(ctx); err != nil {
		t.Fatalf("PauseVM: %v", err)
	}
	if err := m.ResumeVM(ctx); err != nil {
		t.Fatalf("ResumeVM: %v", err)
	}

	// Shutdown sends Ctrl+Alt+Del; the guest reboots, which ends ember with 0.
	if err := m.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Wait(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait: %v\nember output:\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("ember did not exit after Shutdown\nember output:\n%s", out.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("ember exit code = %d, want 0", code)
	}
	if !strings.Contains(out.String(), "Firecracker exiting successfully. exit_code=0") {
		t.Errorf("exit line missing from ember's output")
	}
}

func waitFor(t *testing.T, out *syncBuffer, marker string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(out.String(), marker) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%q not seen within %v; output:\n%s", marker, d, out.String())
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
