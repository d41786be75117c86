package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// emberBin is the ember binary built once for the whole run.
var emberBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err == nil {
		_, err = os.Stat(filepath.Join(root, "go.mod"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: module root not found:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "ember-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	emberBin = filepath.Join(dir, "ember")
	build := exec.Command("go", "build", "-o", emberBin, "./cmd/ember")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/ember: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}
