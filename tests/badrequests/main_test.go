package badrequests

import (
	"os"
	"testing"

	"github.com/ember-vmm/ember/internal/testember"
)

// emberBin is the ember binary built once for the whole run.
var emberBin string

func TestMain(m *testing.M) {
	os.Exit(testember.Main(m, &emberBin))
}
