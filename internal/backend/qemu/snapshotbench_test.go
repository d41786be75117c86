//go:build linux

package qemu

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/snapshot"
)

// TestSnapshotBench (EMBER_BENCH=1; EMBER_BENCH_ROUNDS rounds, default 3)
// measures, on the same 128 MiB guest: a cold boot to the guest's first
// count line, a full snapshot (device state and memory file), a diff
// snapshot right after it, and a restore to the restored guest's first
// count line, with the restore's parts from its debug line.
func TestSnapshotBench(t *testing.T) {
	if os.Getenv("EMBER_BENCH") != "1" {
		t.Skip("SKIPPING the snapshot benchmark: set EMBER_BENCH=1 to run it")
	}
	requireQEMU(t)
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("EMBER_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	var boot, full, diff, state, restoreRun, launch, fill, load, memMiB []float64
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	restoreRe := regexp.MustCompile(`restore: QEMU up with guest memory in (\S+) \(memory file copied in (\S+)\), device state loaded in (\S+)`)
	for r := 0; r < rounds; r++ {
		spec := snapSpec(t)
		start := time.Now()
		v := create(t, spec)
		v.waitCount(t, 0, bootTimeout)
		boot = append(boot, ms(time.Since(start)))
		v.waitCount(t, 10, bootTimeout)

		dir := t.TempDir()
		st, mem := filepath.Join(dir, "vm.snap"), filepath.Join(dir, "vm.mem")
		ctx := ctxT(t)
		if err := v.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		saveOne := func(path string, isDiff bool) time.Duration {
			f := &snapshot.File{Header: snapshot.Header{EmberVersion: "bench", Backend: Name}}
			start := time.Now()
			if err := v.Machine.(hypervisor.Snapshotter).SaveSnapshot(ctx, hypervisor.SaveRequest{MemPath: mem, Diff: isDiff}, f); err != nil {
				t.Fatal(err)
			}
			if err := snapshot.Write(path, f); err != nil {
				t.Fatal(err)
			}
			return time.Since(start)
		}
		full = append(full, ms(saveOne(st, false)))
		diff = append(diff, ms(saveOne(filepath.Join(dir, "diff.snap"), true)))
		fi, _ := os.Stat(st)
		state = append(state, float64(fi.Size())/1024)
		var du struct{ blocks int64 }
		if s, err := os.Stat(mem); err == nil {
			du.blocks = s.Sys().(*syscall.Stat_t).Blocks
		}
		memMiB = append(memMiB, float64(du.blocks*512)/(1<<20))
		v.Close()

		f, err := snapshot.Load(st, Name)
		if err != nil {
			t.Fatal(err)
		}
		con := newConsole()
		log, logBuf := testLog()
		start = time.Now()
		m, err := (&Backend{}).Restore(context.Background(), snapSpec(t), hypervisor.Env{Log: log, Console: con, RuntimeDir: t.TempDir()}, f, hypervisor.RestoreRequest{MemPath: mem})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		rv := &vm{Machine: m, con: con, log: logBuf}
		rv.waitCount(t, 0, bootTimeout)
		restoreRun = append(restoreRun, ms(time.Since(start)))
		if p := restoreRe.FindStringSubmatch(logBuf.String()); p != nil {
			a, _ := time.ParseDuration(p[1])
			b, _ := time.ParseDuration(p[2])
			c, _ := time.ParseDuration(p[3])
			launch, fill, load = append(launch, ms(a)), append(fill, ms(b)), append(load, ms(c))
		}
		m.Close()
	}
	med := func(x []float64) float64 {
		if len(x) == 0 {
			return 0
		}
		s := slices.Clone(x)
		slices.Sort(s)
		return s[len(s)/2]
	}
	t.Logf("qemu snapshot benchmark, %d rounds, 128 MiB guest (median [all], ms):", rounds)
	t.Logf("  cold boot to first count line:      %7.1f %v", med(boot), boot)
	t.Logf("  full snapshot (state + memory):      %7.1f %v", med(full), full)
	t.Logf("  diff snapshot right after:           %7.1f %v", med(diff), diff)
	t.Logf("  restore to first count line:         %7.1f %v", med(restoreRun), restoreRun)
	t.Logf("    QEMU started, RAM filled:          %7.1f %v", med(launch), launch)
	t.Logf("      of which memory file copied:     %7.1f %v", med(fill), fill)
	t.Logf("    device state loaded:               %7.1f %v", med(load), load)
	t.Logf("  state file KiB %.0f, memory file on disk MiB %.1f", med(state), med(memMiB))
}
