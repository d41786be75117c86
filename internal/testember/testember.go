// Package testember helps test suites that run the real ember binary: it
// builds cmd/ember once per test binary and decodes how a process ended.
// It is imported by tests only.
package testember

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
)

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

// Main builds ember into a temporary directory, sets *bin to its path, runs
// the tests and removes the directory. Use it as TestMain's body:
// os.Exit(testember.Main(m, &emberBin)).
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
	build := exec.Command("go", "build", "-o", *bin, "./cmd/ember")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "testember: go build ./cmd/ember: %v\n%s", err, out)
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
