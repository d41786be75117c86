package faults

import (
	"os"
	"testing"

	"github.com/ember-vmm/ember/internal/testember"
)

// emberBin is the ember binary the tests run.
var emberBin string

func TestMain(m *testing.M) {
	if bin := os.Getenv("EMBER_FAULTS_BIN"); bin != "" {
		emberBin = bin
		os.Exit(m.Run())
	}
	os.Exit(testember.Main(m, &emberBin))
}
