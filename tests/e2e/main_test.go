package e2e

import (
	"os"
	"testing"

	"github.com/ember-vmm/ember/internal/nested"
	"github.com/ember-vmm/ember/internal/testember"
)

// emberBin is the ember binary built once for the whole run.
var emberBin string

func TestMain(m *testing.M) {
	if nested.Inside() {
		// Inside L1 the binary is shipped (TestKVM sets emberBin) and
		// there is no go tool to build one.
		os.Exit(m.Run())
	}
	os.Exit(testember.Main(m, &emberBin))
}
