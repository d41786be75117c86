package conformance

import (
	"flag"
	"os"
	"testing"

	"github.com/ember-vmm/ember/internal/testember"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from ember's answers")

// emberBin is the ember binary built once for the whole run.
var emberBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testember.Main(m, &emberBin))
}

// repoRoot is the module root.
func repoRoot() (string, error) { return testember.RepoRoot() }
