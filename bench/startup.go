package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// startupResult holds, per side (0 ember, 1 bare net/http server), the
// wall time from fork/exec to the "API server started." line and the
// process's CPU time, both in ms.
type startupResult struct {
	wall, cpu [2][]float64
	schedCPU  [2][]float64 // cross-check: the threads' run time at the ready line
	// trueWall and trueCPU time /bin/true from fork/exec to exit: the
	// floor any process start pays on this machine.
	trueWall, trueCPU []float64
	emberSize         int64
	bareAPISize       int64
}

// runStartup starts each server many times, alternating, and times each
// start to its ready line. CPU time is the child's rusage (utime+stime)
// after it is killed the moment it is ready, so it covers the start-up and
// nothing else of note.
func (e *env) runStartup(ctx context.Context) (*startupResult, error) {
	dir := filepath.Join(e.tmp, "startup")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	res := &startupResult{}
	if st, err := os.Stat(e.emberBin); err == nil {
		res.emberSize = st.Size()
	}
	if st, err := os.Stat(e.bareBin); err == nil {
		res.bareAPISize = st.Size()
	}
	bins := [2]string{e.emberBin, e.bareBin}
	// One unmeasured start each, so both binaries are in the page cache.
	for r := -1; r < e.cfg.startupRounds; r++ {
		for s := range 2 {
			sock := filepath.Join(dir, fmt.Sprintf("s%d-%d.sock", r+1, s))
			p, err := startProc(fmt.Sprintf("server %d", s), []string{bins[s], "--api-sock", sock}, dir, nil)
			if err != nil {
				return nil, err
			}
			wctx, cancel := context.WithTimeout(ctx, apiReadyTimeout)
			ln, err := p.out.wait(wctx, 0, lineAPIStarted)
			cancel()
			sched := schedCPU(p.pid)
			p.stop(false) // SIGKILL at once: nothing after ready is counted
			os.Remove(sock)
			if s == 0 {
				removeRuntimeDirs(p.pid)
			}
			if err != nil {
				return nil, fmt.Errorf("%s did not start: %w", bins[s], err)
			}
			if r < 0 {
				continue
			}
			res.wall[s] = append(res.wall[s], msOf(ln.at.Sub(p.started)))
			res.cpu[s] = append(res.cpu[s], msOf(p.cpuTime()))
			if sched > 0 {
				res.schedCPU[s] = append(res.schedCPU[s], msOf(sched))
			}
		}
		if r >= 0 {
			if wall, cpu, ok := timeTrue(dir); ok {
				res.trueWall = append(res.trueWall, msOf(wall))
				res.trueCPU = append(res.trueCPU, msOf(cpu))
			}
		}
	}
	e.progress("startup: %d rounds done", e.cfg.startupRounds)
	return res, nil
}

// timeTrue runs /bin/true once and times it to its exit.
func timeTrue(dir string) (wall, cpu time.Duration, ok bool) {
	p, err := startProc("true", []string{"/bin/true"}, dir, nil)
	if err != nil {
		return 0, 0, false
	}
	<-p.done
	wall = time.Since(p.started)
	p.stop(false)
	return wall, p.cpuTime(), p.state != nil && p.state.Success()
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// schedCPU sums the run time of every thread of pid (schedstat's first
// field, in ns); 0 when unavailable.
func schedCPU(pid int) time.Duration {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			sum += time.Duration(v)
		}
	}
	return sum
}

// removeRuntimeDirs removes what a SIGKILLed ember left in the temporary
// directory (<tmp>/ember-<pid>-*).
func removeRuntimeDirs(pid int) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("ember-%d-*", pid)))
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}
