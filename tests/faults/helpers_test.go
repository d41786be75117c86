package faults

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testember"
)

// faultMessage is the fault_message of a Firecracker error body.
func faultMessage(body string) string {
	var f struct {
		FaultMessage string `json:"fault_message"`
	}
	json.Unmarshal([]byte(body), &f)
	return f.FaultMessage
}

// fdCount is the number of open file descriptors of pid.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("fds of %d: %v", pid, err)
	}
	return len(ents)
}

// threadCount is the number of threads of pid.
func threadCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	return len(ents)
}

// tmpfs mounts a tmpfs of size bytes on a fresh directory and unmounts it
// when the test ends.
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING: mounting a small tmpfs to fill needs root, so the disk-full behaviour is NOT tested")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		// Lazily: a file still open in a process the test could not
		// end must not leave the mount behind.
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file into dir until the file system is full and returns
// its path; removing it frees the space.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
			}
			break
		}
	}
	// A byte-sized write must fail too (no partial block left).
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			break
		}
	}
	return p
}

// leftovers is what one ember process leaves behind.
type leftovers struct {
	procs []int    // descendants still running
	dirs  []string // runtime directories
	taps  []string // taps ember created that still exist
}

func (l leftovers) empty() bool { return len(l.procs)+len(l.dirs)+len(l.taps) == 0 }

// assertClean waits briefly for ember's descendants (as listed while it
// ran) to disappear, then fails the test for anything left behind: a
// process, a runtime directory, or a tap in ns named in createdTaps. It
// also scans /proc for any QEMU whose command line names ember's runtime
// directory, in case one was reparented away before desc was taken.
func assertClean(t *testing.T, e *ember, desc []int, runtimeDir, ns string, createdTaps ...string) {
	t.Helper()
	var l leftovers
	l.procs = testember.WaitGone(desc, testember.GoneTimeout)
	l.dirs, _ = testember.RuntimeDirs(e.PID)
	for _, tap := range createdTaps {
		if testember.LinkExists(t, ns, tap) {
			l.taps = append(l.taps, tap)
		}
	}
	if runtimeDir != "" {
		l.procs = append(l.procs, procsNaming(runtimeDir)...)
	}
	if !l.empty() {
		t.Errorf("ember (pid %d) left behind: processes %v, runtime directories %v, taps %v", e.PID, l.procs, l.dirs, l.taps)
	}
}

// procsNaming lists live processes whose command line contains s.
func procsNaming(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, ent := range ents {
		var pid int
		if _, err := fmt.Sscanf(ent.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) && testember.Alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// runtimeDir returns ember's runtime directory, waiting briefly for it.
func (e *ember) runtimeDir() string {
	e.T.Helper()
	deadline := time.Now().Add(testember.GoneTimeout)
	for {
		if dirs, _ := testember.RuntimeDirs(e.PID); len(dirs) == 1 {
			return dirs[0]
		}
		if time.Now().After(deadline) {
			e.T.Fatalf("ember (pid %d) has no single runtime directory", e.PID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustRun runs a command and fails the test on error.
func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
