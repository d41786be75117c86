//go:build linux

package qemu

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/snapshot"
	"github.com/ember-vmm/ember/internal/testguest"
)

// markerScript keeps a random marker in a tmpfs file (guest RAM) and
// prints it on every tick of its own counter, with a second one it writes
// at tick 50.
const markerScript = `echo "m$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')" > /tmp/m1
(i=0; while :; do i=$((i+1)); [ $i = ` + lateTick + ` ] && echo "m$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')" > /tmp/m2
echo "EMBER-GUEST: count $i $(cat /tmp/m1) $(cat /tmp/m2 2>/dev/null)"; sleep 0.1; done) </dev/null &`

// snapBootTimeout bounds a boot to the guest's counter. The snapshot
// tests run one at a time (each starts several emulated guests, and a
// loaded 2-core host boots one in up to half a minute), with room to spare.
const snapBootTimeout = 2 * bootTimeout

// lateTick is when the guest writes its second marker.
const lateTick = "50"

var countRe = regexp.MustCompile(`EMBER-GUEST: count (\d+) (m[0-9a-f]+) ?(\S*)`)

type count struct {
	n       int
	m1, m2  string
	matched bool
}

func lastCount(s string) count {
	all := countRe.FindAllStringSubmatch(s, -1)
	if len(all) == 0 {
		return count{}
	}
	m := all[len(all)-1]
	var n int
	fmt.Sscan(m[1], &n)
	return count{n, m[2], m[3], true}
}

func firstCount(s string) count {
	m := countRe.FindStringSubmatch(s)
	if m == nil {
		return count{}
	}
	var n int
	fmt.Sscan(m[1], &n)
	return count{n, m[2], m[3], true}
}

// waitCount waits for a count line past n.
func (v *vm) waitCount(t *testing.T, n int, timeout time.Duration) count {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c := lastCount(v.con.lines()); c.matched && c.n > n {
			return c
		}
		select {
		case <-v.con.notify:
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("the guest never counted past %d within %v; console:\n%s", n, timeout, v.con.tail())
	return count{}
}

// save pauses v and writes a snapshot to dir; it returns the state file's
// path and the last count before the pause.
func (v *vm) save(t *testing.T, state, mem string, diff bool) count {
	t.Helper()
	ctx := ctxT(t)
	if err := v.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // output already in flight
	last := lastCount(v.con.lines())
	f := &snapshot.File{Header: snapshot.Header{EmberVersion: "test", Backend: Name}}
	start := time.Now()
	if err := v.Machine.(hypervisor.Snapshotter).SaveSnapshot(ctx, hypervisor.SaveRequest{MemPath: mem, Diff: diff}, f); err != nil {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	if err := snapshot.Write(state, f); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot (diff %v) in %v", diff, time.Since(start).Round(time.Millisecond))
	return last
}

// restore builds a machine from a snapshot and starts it.
func restore(t *testing.T, spec *hypervisor.Spec, state, mem string) *vm {
	t.Helper()
	f, err := snapshot.Load(state, Name)
	if err != nil {
		t.Fatal(err)
	}
	con := newConsole()
	log, logBuf := testLog()
	ctx := ctxT(t)
	start := time.Now()
	m, err := (&Backend{}).Restore(ctx, spec, hypervisor.Env{Log: log, Console: con, RuntimeDir: t.TempDir()}, f, hypervisor.RestoreRequest{MemPath: mem})
	if err != nil {
		t.Fatalf("Restore: %v\n%s", err, logBuf)
	}
	v := &vm{Machine: m, con: con, log: logBuf}
	t.Cleanup(func() {
		m.Close()
		if t.Failed() {
			t.Logf("restored VM's log:\n%s", logBuf)
		}
	})
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("restored and running in %v", time.Since(start).Round(time.Millisecond))
	return v
}

// checkContinues checks that a restored guest counts on from the saved
// tick with the saved markers.
func checkContinues(t *testing.T, v *vm, saved count) {
	t.Helper()
	c := v.waitCount(t, saved.n+5, bootTimeout)
	first := firstCount(v.con.lines())
	if first.n <= saved.n-5 || first.n > saved.n+20 {
		t.Errorf("the restored guest's first count is %d; it was saved at %d", first.n, saved.n)
	}
	if c.m1 != saved.m1 || c.m2 != saved.m2 {
		t.Errorf("restored markers %q %q, saved %q %q", c.m1, c.m2, saved.m1, saved.m2)
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func snapSpec(t *testing.T) *hypervisor.Spec {
	return baseSpec(t, script(markerScript), "ember.end=wait")
}

// TestSnapshotRestore saves a running guest, resumes it, and restores the
// snapshot into a new QEMU: both go on counting with the same RAM.
func TestSnapshotRestore(t *testing.T) {
	spec := snapSpec(t)
	v := create(t, spec)
	v.waitCount(t, 5, snapBootTimeout)
	dir := t.TempDir()
	state, mem := filepath.Join(dir, "vm.snap"), filepath.Join(dir, "vm.mem")
	saved := v.save(t, state, mem, false)
	fi, err := os.Stat(mem)
	if err != nil || fi.Size() != int64(spec.MemMiB<<20) {
		t.Fatalf("memory file: %v, size %v", err, fi)
	}
	// A second snapshot of the same pause (QEMU will not migrate twice
	// before the guest runs) holds the same state and memory.
	again := filepath.Join(dir, "again.mem")
	v.save(t, filepath.Join(dir, "again.snap"), again, false)
	if a, b := fileSum(t, mem), fileSum(t, again); a != b {
		t.Errorf("two snapshots of one pause differ in memory (%s, %s)", a, b)
	}
	// The source resumes from postmigrate.
	if err := v.Resume(ctxT(t)); err != nil {
		t.Fatalf("Resume after the snapshot: %v", err)
	}
	v.waitCount(t, saved.n+5, 30*time.Second)
	v.Close()

	r := restore(t, snapSpec(t), state, mem)
	checkContinues(t, r, saved)
	// A restored guest can be snapshotted and restored again.
	state2, mem2 := filepath.Join(dir, "vm2.snap"), filepath.Join(dir, "vm2.mem")
	saved2 := r.save(t, state2, mem2, false)
	if b, _ := os.ReadFile(state2); len(b) > 1<<20 {
		t.Errorf("the second state file holds %d bytes: guest RAM got into it", len(b))
	}
	r.Close()
	checkContinues(t, restore(t, snapSpec(t), state2, mem2), saved2)
}

// TestSnapshotClones restores one snapshot into three VMs at once; the
// memory file is never written.
func TestSnapshotClones(t *testing.T) {
	v := create(t, snapSpec(t))
	v.waitCount(t, 5, snapBootTimeout)
	dir := t.TempDir()
	state, mem := filepath.Join(dir, "vm.snap"), filepath.Join(dir, "vm.mem")
	saved := v.save(t, state, mem, false)
	v.Close()
	before, _ := os.Stat(mem)
	var wg sync.WaitGroup
	clones := make([]*vm, 3)
	for i := range clones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clones[i] = restore(t, snapSpec(t), state, mem)
		}()
	}
	wg.Wait()
	for _, c := range clones {
		if c == nil {
			t.FailNow()
		}
		checkContinues(t, c, saved)
	}
	if after, _ := os.Stat(mem); !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the memory file was modified by the clones")
	}
}

// TestSnapshotDiff merges a diff snapshot onto its full base and restores
// the result: RAM the guest wrote after the base (its second marker) is
// there, and so is RAM from before it.
func TestSnapshotDiff(t *testing.T) {
	for _, tracked := range []bool{false, true} {
		t.Run(map[bool]string{false: "resident", true: "tracked"}[tracked], func(t *testing.T) {
			testSnapshotDiff(t, tracked)
		})
	}
}

// testSnapshotDiff: a Diff merged onto its base restores, with
// track_dirty_pages or without; with it, a Diff of a guest unchanged since
// the last snapshot holds no page, where without it holds every page the
// guest ever touched.
func testSnapshotDiff(t *testing.T, tracked bool) {
	spec := snapSpec(t)
	spec.TrackDirtyPages = tracked
	v := create(t, spec)
	v.waitCount(t, 5, snapBootTimeout)
	dir := t.TempDir()
	base, diff := filepath.Join(dir, "base.snap"), filepath.Join(dir, "diff.snap")
	mem := filepath.Join(dir, "vm.mem")
	b := v.save(t, base, mem, false)
	if b.m2 != "" {
		t.Fatalf("the base was taken at count %d, after the guest wrote its second marker (host too slow?)", b.n)
	}
	if err := v.Resume(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var late int
	fmt.Sscan(lateTick, &late)
	v.waitCount(t, late+2, 60*time.Second)
	fi, _ := os.Stat(mem)
	saved := v.save(t, diff, mem, true)
	if saved.m2 == "" {
		t.Fatalf("no second marker at count %d", saved.n)
	}
	if fi2, _ := os.Stat(mem); !os.SameFile(fi, fi2) {
		t.Errorf("the diff replaced the memory file instead of merging into it")
	}
	// Still paused: nothing changed since that Diff.
	again := filepath.Join(dir, "again.mem")
	f := &snapshot.File{Header: snapshot.Header{EmberVersion: "test", Backend: Name}}
	if err := v.Machine.(hypervisor.Snapshotter).SaveSnapshot(ctxT(t), hypervisor.SaveRequest{MemPath: again, Diff: true}, f); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(again)
	if err != nil {
		t.Fatal(err)
	}
	held := statBlocks(st) * 512
	t.Logf("a second Diff of the same pause holds %d KiB", held>>10)
	if tracked && held != 0 {
		t.Errorf("with track_dirty_pages, a Diff of an unchanged guest holds %d bytes; want none", held)
	}
	if !tracked && held < 1<<20 {
		t.Errorf("without track_dirty_pages, a Diff holds %d bytes; want every page the guest touched (MiBs)", held)
	}
	v.Close()
	checkContinues(t, restore(t, spec, diff, mem), saved)
}

// TestSnapshotRefusals: what cannot be saved says why, and a failed save
// leaves no memory file.
func TestSnapshotRefusals(t *testing.T) {
	spec := snapSpec(t)
	spec.HugePages = hypervisor.HugePagesTransparent
	if thpMode() == "never" {
		t.Skip("SKIPPING: transparent huge pages are disabled on this host")
	}
	v := create(t, spec)
	err := v.Machine.(hypervisor.Snapshotter).SaveSnapshot(ctxT(t), hypervisor.SaveRequest{MemPath: filepath.Join(t.TempDir(), "m")}, &snapshot.File{})
	if !errors.Is(err, hypervisor.ErrNotSupported) || !strings.Contains(err.Error(), "Transparent") {
		t.Errorf("snapshot of a THP guest: %v", err)
	}

	v2 := create(t, snapSpec(t))
	v2.waitCount(t, 2, snapBootTimeout)
	ctx := ctxT(t)
	snap := v2.Machine.(hypervisor.Snapshotter)
	if err := snap.SaveSnapshot(ctx, hypervisor.SaveRequest{MemPath: filepath.Join(t.TempDir(), "m")}, &snapshot.File{}); err == nil || !strings.Contains(err.Error(), "pause") {
		t.Errorf("snapshot of a running VM: %v", err)
	}
	if err := v2.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "no-such-dir", "vm.mem")
	if err := snap.SaveSnapshot(ctx, hypervisor.SaveRequest{MemPath: bad}, &snapshot.File{}); err == nil {
		t.Errorf("snapshot into a missing directory succeeded")
	}
	if _, err := os.Stat(bad); err == nil {
		t.Errorf("a failed snapshot left %s", bad)
	}
	// The machine survives the failure and resumes.
	if err := v2.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	v2.waitCount(t, lastCount(v2.con.lines()).n+3, 30*time.Second)
}

// TestRestoreRefusals: a memory file that does not fit, a missing one and
// a spec that does not match fail cleanly, leaving no QEMU behind.
func TestRestoreRefusals(t *testing.T) {
	v := create(t, snapSpec(t))
	v.waitCount(t, 2, snapBootTimeout)
	dir := t.TempDir()
	state, mem := filepath.Join(dir, "vm.snap"), filepath.Join(dir, "vm.mem")
	v.save(t, state, mem, false)
	v.Close()
	f, err := snapshot.Load(state, Name)
	if err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.mem")
	if err := os.WriteFile(short, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	bigger := snapSpec(t)
	bigger.MemMiB *= 2
	corrupt := *f
	corrupt.Sections = append([]snapshot.Section(nil), f.Sections...)
	for i, s := range corrupt.Sections {
		if s.Name == sectionMigration {
			// Cut inside the device sections: the stream's tail is a
			// description QEMU's loader never reads.
			corrupt.Sections[i].Data = append([]byte(nil), s.Data[:len(s.Data)/8]...)
		}
	}
	tests := []struct {
		name string
		spec *hypervisor.Spec
		f    *snapshot.File
		mem  string
		want string
	}{
		{"missing memory file", snapSpec(t), f, filepath.Join(dir, "none"), "cannot open the memory file"},
		{"short memory file", snapSpec(t), f, short, "holds 4096 bytes"},
		{"other memory size", bigger, f, mem, "memory layout"},
		{"corrupt device state", snapSpec(t), &corrupt, mem, "could not load the device state"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, _ := testLog()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			m, err := (&Backend{}).Restore(ctx, tc.spec, hypervisor.Env{Log: log, RuntimeDir: t.TempDir()}, tc.f, hypervisor.RestoreRequest{MemPath: tc.mem})
			if err == nil {
				m.Close()
				t.Fatal("Restore succeeded")
			}
			t.Logf("%v", err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

// TestSnapshotHugePages2M saves a guest on 2 MiB huge pages and restores
// it onto huge pages again, if the host has free ones for two guests.
func TestSnapshotHugePages2M(t *testing.T) {
	requireQEMU(t)
	spec := snapSpec(t)
	spec.HugePages = hypervisor.HugePages2M
	if free, err := hugePagesFree(); err != nil || free < spec.MemMiB {
		t.Skipf("SKIPPING: the host has %d free 2 MiB huge pages, the test needs %d (%v)", free, spec.MemMiB, err)
	}
	v := create(t, spec)
	v.waitCount(t, 5, snapBootTimeout)
	dir := t.TempDir()
	state, mem := filepath.Join(dir, "vm.snap"), filepath.Join(dir, "vm.mem")
	saved := v.save(t, state, mem, false)
	v.Close()
	spec2 := snapSpec(t)
	spec2.HugePages = hypervisor.HugePages2M
	r := restore(t, spec2, state, mem)
	checkContinues(t, r, saved)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", r.pid()))
	if err == nil && !regexp.MustCompile(`(Shared|Private)_Hugetlb:\s+[1-9]`).Match(b) {
		t.Errorf("restored guest RAM is not on huge pages:\n%s", b)
	}
}

// TestSnapshotWithDrive snapshots a guest on a root drive that writes
// and syncs a file on every tick. The source resumes and goes on writing
// (QEMU reactivates the drive it left inactive after the snapshot), and a
// restore onto a copy of the image does too (an inactive drive would hang
// the sync and stop the count).
func TestSnapshotWithDrive(t *testing.T) {
	root := testguest.RootfsCopy(t)
	driveSpec := func(path string) *hypervisor.Spec {
		s := baseSpec(t, "root=/dev/vda rw", script(markerScript+"\n"+
			`(while :; do date > /tick; sync; sleep 0.2; done) </dev/null &`), "ember.end=wait")
		s.Drives = []hypervisor.Drive{{ID: "rootfs", PathOnHost: path, Root: true, Cache: hypervisor.CacheWriteback}}
		return s
	}
	v := create(t, driveSpec(root))
	v.waitCount(t, 5, snapBootTimeout)
	dir := t.TempDir()
	state, mem := filepath.Join(dir, "vm.snap"), filepath.Join(dir, "vm.mem")
	saved := v.save(t, state, mem, false)
	// The paused source has flushed its disk: a copy is the snapshot's.
	root2 := filepath.Join(dir, "rootfs2.ext4")
	if out, err := exec.Command("cp", "--sparse=always", root, root2).CombinedOutput(); err != nil {
		t.Fatalf("copying the image: %v: %s", err, out)
	}
	writes := func(path string) {
		t.Helper()
		before, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if fi, err := os.Stat(path); err == nil && fi.ModTime().After(before.ModTime()) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the guest wrote nothing to %s", path)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if err := v.Resume(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	v.waitCount(t, saved.n+3, 30*time.Second)
	writes(root)
	v.Close()
	r := restore(t, driveSpec(root2), state, mem)
	checkContinues(t, r, saved)
	writes(root2)
}
