package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ember-vmm/ember/internal/testember"
)

// emberBin is the ember binary the tests run.
var emberBin string

// raceBuild says ember was built with -race: its stderr is checked for
// race reports after every test.
var raceBuild bool

func TestMain(m *testing.M) {
	raceBuild = os.Getenv("EMBER_FAULTS_RACE") == "1"
	if bin := os.Getenv("EMBER_FAULTS_BIN"); bin != "" {
		emberBin = bin
		os.Exit(m.Run())
	}
	if !raceBuild {
		os.Exit(testember.Main(m, &emberBin))
	}
	os.Exit(raceMain(m))
}

// raceMain is testember.Main with the race detector (which needs cgo).
func raceMain(m *testing.M) int {
	root, err := testember.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "ember-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	emberBin = filepath.Join(dir, "ember")
	build := exec.Command("go", "build", "-race", "-o", emberBin, "./cmd/ember")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build -race ./cmd/ember: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}
