//go:build linux && amd64

package kvm

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/nested"
	"github.com/ember-vmm/ember/internal/snapshot"
	"github.com/ember-vmm/ember/internal/testguest"
	"github.com/ember-vmm/ember/internal/uffd"
)

var tickLine = regexp.MustCompile(`EMBER-GUEST: tick (\d+)`)

// lastTick is the newest counter tick on v's console, or 0.
func (v *guestVM) lastTick() int {
	lines := v.con.Lines()
	for i := len(lines) - 1; i >= 0; i-- {
		if m := tickLine.FindStringSubmatch(lines[i]); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return 0
}

// waitTick waits until v's guest has counted past n and returns its tick.
func (v *guestVM) waitTick(t *testing.T, n int, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if got := v.lastTick(); got > n {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the guest did not count past %d within %v (last tick %d)\n%s", n, d, v.lastTick(), v.vcpuStates())
	return 0
}

// snapSpec is the counting test guest with the devices that keep state
// across a snapshot: a balloon with statistics and an entropy device.
func snapSpec(g testguest.Assets, track bool) *hypervisor.Spec {
	return &hypervisor.Spec{
		VCPUs:           1,
		MemMiB:          128,
		TrackDirtyPages: track,
		Boot: hypervisor.Boot{
			KernelPath: g.Vmlinux,
			InitrdPath: g.Initramfs,
			Cmdline:    bootArgs + " " + testguest.Counter() + " " + testguest.End(testguest.EndWait),
		},
		Balloon: &hypervisor.Balloon{AmountMiB: 0, StatsPollingIntervalS: 1},
		Entropy: &hypervisor.Entropy{},
	}
}

// save snapshots the paused machine into dir and reads the state file back
// as a load would.
func save(t *testing.T, m hypervisor.Machine, dir string, diff bool, memPath string) *snapshot.File {
	t.Helper()
	f := &snapshot.File{Header: snapshot.Header{Backend: Name, EmberVersion: "test"}}
	start := time.Now()
	if err := m.(hypervisor.Snapshotter).SaveSnapshot(context.Background(), hypervisor.SaveRequest{MemPath: memPath, Diff: diff}, f); err != nil {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	t.Logf("SaveSnapshot (diff %v) took %v", diff, time.Since(start).Round(time.Millisecond))
	statePath := filepath.Join(dir, "state")
	if err := snapshot.Write(statePath, f); err != nil {
		t.Fatal(err)
	}
	loaded, err := snapshot.Load(statePath, Name)
	if err != nil {
		t.Fatal(err)
	}
	return loaded
}

// restoreVM builds a machine from a snapshot, with its own console.
func restoreVM(t *testing.T, spec *hypervisor.Spec, f *snapshot.File, memPath string) *guestVM {
	return restoreVMWith(t, spec, f, hypervisor.RestoreRequest{MemPath: memPath})
}

// uffdHandler starts a page-fault handler serving memPath's pages to one
// machine restored with mem_backend Uffd, and returns the request naming
// its socket. The handler is this test binary run again (see TestMain):
// in this process it could starve, as a thread that faults on guest RAM
// from Go code keeps its P until the fault is served. When the test ends
// it checks the handler filled some pages, not all.
func uffdHandler(t *testing.T, memPath string, memBytes uint64) hypervisor.RestoreRequest {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "uffd.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false) // the handler listens on it from now on
	defer ln.Close()
	lf, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), uffdHandlerEnv+"="+memPath)
	cmd.ExtraFiles = []*os.File{lf}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The machine's Close (an earlier cleanup) ends the connection.
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("page-fault handler: %v\n%s", err, out.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("page-fault handler still running 30 s after the VM closed\n%s", out.String())
		}
		m := regexp.MustCompile(`uffd-handler copied (\d+) faults (\d+)`).FindStringSubmatch(out.String())
		if m == nil {
			t.Errorf("page-fault handler printed no stats:\n%s", out.String())
			return
		}
		copied, _ := strconv.ParseUint(m[1], 10, 64)
		t.Logf("page-fault handler: filled %s pages for %s faults", m[1], m[2])
		if copied == 0 || copied*4096 >= memBytes {
			t.Errorf("the handler filled %d pages of %d bytes of guest RAM; want some, not all", copied, memBytes)
		}
	})
	return hypervisor.RestoreRequest{MemPath: sock, Uffd: true}
}

// uffdHandlerEnv names the memory file TestUffdHandler serves.
const uffdHandlerEnv = "EMBER_TEST_UFFD_HANDLER"

func TestMain(m *testing.M) {
	if mem := os.Getenv(uffdHandlerEnv); mem != "" {
		os.Exit(runUffdHandler(mem))
	}
	os.Exit(m.Run())
}

// runUffdHandler is uffdHandler's page-fault handler process: it serves
// one connection on the listener it inherits as fd 3, then prints what it
// did.
func runUffdHandler(memPath string) int {
	fail := func(err error) int {
		fmt.Println("uffd-handler:", err)
		return 1
	}
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return fail(err)
	}
	c, err := ln.(*net.UnixListener).AcceptUnix()
	ln.Close()
	if err != nil {
		return fail(err)
	}
	mem, err := os.Open(memPath)
	if err != nil {
		return fail(err)
	}
	defer mem.Close()
	h := uffd.NewHandler(mem)
	if err := h.Serve(context.Background(), c); err != nil {
		return fail(err)
	}
	st := h.Stats()
	fmt.Printf("uffd-handler copied %d faults %d\n", st.Copied, st.Faults)
	return 0
}

// restoreVMWith builds a machine from a snapshot as req asks, with its own
// console.
func restoreVMWith(t *testing.T, spec *hypervisor.Spec, f *snapshot.File, req hypervisor.RestoreRequest) *guestVM {
	t.Helper()
	r, w := io.Pipe()
	con := testguest.NewConsole(r)
	start := time.Now()
	m, err := (&Backend{}).Restore(context.Background(), spec, hypervisor.Env{Console: w, RuntimeDir: t.TempDir()}, f, req)
	if err != nil {
		w.Close()
		t.Fatalf("Restore: %v", err)
	}
	t.Logf("Restore took %v", time.Since(start).Round(time.Millisecond))
	v := &guestVM{m: m, con: con, w: w}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		w.Close()
		if t.Failed() {
			t.Logf("restored guest console tail:\n%s", con.Tail(40))
		}
	})
	return v
}

// TestSnapshot boots the counting guest, snapshots it, restores it into
// new machines (two at once from one memory file) and checks each guest
// continues counting where the snapshot left it, as does the original
// once resumed; then it takes a diff snapshot with dirty-page tracking,
// merges it onto its base and checks that restores too.
func TestSnapshot(t *testing.T) {
	opts := nested.Options{Guest: true, Timeout: 6 * time.Minute, Env: []string{"EMBER_TEST_CONSOLE=" + os.Getenv("EMBER_TEST_CONSOLE")}}
	nested.Run(t, opts, func(t *testing.T, env *nested.Env) {
		g := env.Guest()
		t.Run("Full", func(t *testing.T) { testSnapshotFull(t, g) })
		t.Run("Diff", func(t *testing.T) { testSnapshotDiff(t, g) })
	})
}

func testSnapshotFull(t *testing.T, g testguest.Assets) {
	ctx := context.Background()
	dir := t.TempDir()
	spec := snapSpec(g, false)
	src := newGuestVM(t, spec)
	if err := src.m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	src.waitTick(t, 3, 90*time.Second)
	if err := src.m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	at := src.lastTick()
	memPath := filepath.Join(dir, "mem")
	f := save(t, src.m, dir, false, memPath)
	if fi, err := os.Stat(memPath); err != nil || fi.Size() != int64(spec.MemMiB<<20) {
		t.Fatalf("memory file: %v, size %v", err, fi)
	}

	// Three clones from the one memory file, running at once: two map it,
	// one has its pages filled by a page-fault handler (mem_backend Uffd).
	var clones []*guestVM
	for range 2 {
		clones = append(clones, restoreVM(t, snapSpec(g, false), f, memPath))
	}
	clones = append(clones, restoreVMWith(t, snapSpec(g, false), f, uffdHandler(t, memPath, spec.MemMiB<<20)))
	for i, c := range clones {
		start := time.Now()
		if err := c.m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		got := c.waitTick(t, at, 60*time.Second)
		t.Logf("clone %d: tick %d %v after Start (snapshot at tick %d)", i, got, time.Since(start).Round(time.Millisecond), at)
		if got > at+50 {
			t.Errorf("clone %d counts from %d, the snapshot was at %d: not a continuation", i, got, at)
		}
		if c.con.Len() > 0 && tickLine.MatchString(c.con.Lines()[0]) {
			if first, _ := strconv.Atoi(tickLine.FindStringSubmatch(c.con.Lines()[0])[1]); first <= at-1 {
				t.Errorf("clone %d started counting at %d, before the snapshot's %d", i, first, at)
			}
		}
	}
	for i, c := range clones {
		c.waitTick(t, c.lastTick()+3, 30*time.Second)
		if st := c.m.Exit(); st.Reason != hypervisor.ExitNone {
			t.Errorf("clone %d ended: %v %v", i, st.Reason, st.Err)
		}
	}

	// The original carries on too.
	if err := src.m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	src.waitTick(t, at+3, 30*time.Second)
}

func testSnapshotDiff(t *testing.T, g testguest.Assets) {
	ctx := context.Background()
	dir := t.TempDir()
	src := newGuestVM(t, snapSpec(g, true))
	if err := src.m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	src.waitTick(t, 3, 90*time.Second)
	if err := src.m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	memPath := filepath.Join(dir, "mem")
	save(t, src.m, dir, false, memPath)
	if err := src.m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	src.waitTick(t, src.lastTick()+5, 30*time.Second)
	if err := src.m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	at := src.lastTick()
	// The diff lands on the full snapshot's file, merging into it.
	f := save(t, src.m, dir, true, memPath)
	c := restoreVM(t, snapSpec(g, false), f, memPath)
	if err := c.m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	got := c.waitTick(t, at, 60*time.Second)
	if got > at+50 {
		t.Errorf("restored diff counts from %d, the snapshot was at %d", got, at)
	}
	c.waitTick(t, got+3, 30*time.Second)
}
