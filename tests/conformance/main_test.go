package conformance

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from ember's answers")

// emberBin is the ember binary built once for the whole run.
var emberBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "ember-conformance-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	emberBin = filepath.Join(dir, "ember")
	build := exec.Command("go", "build", "-o", emberBin, "./cmd/ember")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "conformance: go build ./cmd/ember: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// repoRoot is the module root: the test runs in tests/conformance.
func repoRoot() (string, error) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("module root not found from %s: %w", root, err)
	}
	return root, nil
}
