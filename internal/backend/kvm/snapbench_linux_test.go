//go:build linux && amd64

package kvm

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/nested"
)

// TestSnapshotBench (EMBER_BENCH=1) measures, for the counting test guest
// on this backend: a cold boot (Create and Start to the guest's first
// counter tick), creating a full snapshot of it, and a restore (Restore and
// Start to the restored guest's next tick). It logs one line per round
// and the medians; docs/benchmarks.md records them.
func TestSnapshotBench(t *testing.T) {
	if os.Getenv("EMBER_BENCH") == "" {
		t.Skip("SKIPPED: a benchmark; set EMBER_BENCH=1 to run it")
	}
	nested.Run(t, nested.Options{Guest: true, Timeout: 15 * time.Minute, Env: []string{"EMBER_BENCH=1"}}, func(t *testing.T, env *nested.Env) {
		g := env.Guest()
		ctx := context.Background()
		var boot, create, restoreCall, restoreRun []time.Duration
		for round := 0; round < 3; round++ {
			dir := t.TempDir()
			start := time.Now()
			src := newGuestVM(t, snapSpec(g, false))
			if err := src.m.Start(ctx); err != nil {
				t.Fatal(err)
			}
			src.waitTick(t, 0, 120*time.Second)
			boot = append(boot, time.Since(start))
			src.waitTick(t, 3, 30*time.Second)
			if err := src.m.Pause(ctx); err != nil {
				t.Fatal(err)
			}
			at := src.lastTick()
			mem := filepath.Join(dir, "mem")
			start = time.Now()
			f := save(t, src.m, dir, false, mem)
			create = append(create, time.Since(start))
			src.m.Close()

			start = time.Now()
			c := restoreVM(t, snapSpec(g, false), f, mem)
			restoreCall = append(restoreCall, time.Since(start))
			if err := c.m.Start(ctx); err != nil {
				t.Fatal(err)
			}
			c.waitTick(t, at, 60*time.Second)
			restoreRun = append(restoreRun, time.Since(start))
			c.m.Close()
			t.Logf("round %d: cold boot to first tick %v, snapshot create %v, Restore %v, Restore+Start to next tick %v",
				round, boot[round].Round(time.Millisecond), create[round].Round(time.Millisecond),
				restoreCall[round].Round(time.Millisecond), restoreRun[round].Round(time.Millisecond))
		}
		t.Logf("EMBER-SNAPSHOT-BENCH nested=%v medians: cold boot to first tick %v, create (full, 128 MiB) %v, Restore %v, restore to next tick %v",
			env.Nested, median(boot), median(create), median(restoreCall), median(restoreRun))
	})
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2].Round(time.Millisecond)
}
