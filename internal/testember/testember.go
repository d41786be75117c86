// Package testember runs the real ember binary for the suites that drive
// it from outside (tests/e2e, tests/faults, tests/conformance,
// tests/badrequests): it builds cmd/ember once per test binary, with the
// race detector when EMBER_RACE=1, starts ember processes and talks to
// them as a Firecracker client does (Process), and finds what they leave
// running. It is imported by tests only.
//
// Invariants: every Process is ended, with whatever it left running and
// its runtime directories, when its test finishes; a test whose ember
// printed a race report on stderr fails.
package testember

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// RaceEnv is the knob that builds ember with -race: set to 1, Main builds
// a race-detecting ember (cgo, linked statically) and a race report on an
// ember's stderr fails the test that started it.
const RaceEnv = "EMBER_RACE"

// raceMarker opens every report the race detector prints.
const raceMarker = "WARNING: DATA RACE"

// Race reports whether EMBER_RACE=1 asks for a race-built ember.
func Race() bool { return os.Getenv(RaceEnv) == "1" }

// CheckRace fails t when stderr, what ember process pid printed there,
// holds a race report. Only a race-built ember prints one, so the check
// runs whatever the build.
func CheckRace(t testing.TB, pid int, stderr string) {
	t.Helper()
	if strings.Contains(stderr, raceMarker) {
		t.Errorf("ember (pid %d) reported a data race on its stderr (%q)", pid, raceMarker)
	}
}

// RepoRoot returns the module root, found from this file's location.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("testember: cannot locate the source")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("testember: module root not found: %w", err)
	}
	return root, nil
}

// Main builds ember into a temporary directory (with -race when Race()),
// sets *bin to its path, runs the tests and removes the directory. Use it
// as TestMain's body: os.Exit(testember.Main(m, &emberBin)).
func Main(m *testing.M, bin *string) int {
	root, err := RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "ember-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testember:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	*bin = filepath.Join(dir, "ember")
	args, cgo := []string{"build", "-o", *bin}, "CGO_ENABLED=0"
	if Race() {
		// The race detector's runtime needs cgo; linked statically (with
		// Go's own resolver and user lookup, so no glibc NSS is needed)
		// the binary still runs where only static ones do, as in
		// tests/e2e's L1 VM.
		args = append(args, "-race", "-tags", "netgo,osusergo", "-ldflags", "-linkmode=external -extldflags=-static")
		cgo = "CGO_ENABLED=1"
		fmt.Fprintf(os.Stderr, "testember: %s=1: ember is built with -race; a race report on its stderr fails the test\n", RaceEnv)
	}
	build := exec.Command("go", append(args, "./cmd/ember")...)
	build.Dir = root
	build.Env = append(os.Environ(), cgo)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "testember: go %s: %v\n%s", strings.Join(build.Args[1:], " "), err, out)
		return 1
	}
	return m.Run()
}

// ExitStatus returns a finished process's exit code, or -1 and the signal
// that killed it.
func ExitStatus(state *os.ProcessState) (int, syscall.Signal) {
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1, ws.Signal()
	}
	return state.ExitCode(), 0
}
