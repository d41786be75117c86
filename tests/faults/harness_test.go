package faults

import (
	"testing"

	"github.com/ember-vmm/ember/internal/testember"
)

// ember is one ember process started by a test, driven through
// testember's harness.
type ember struct{ *testember.Process }

// startEmber starts emberBin as o says and waits until its API serves. The
// process (and anything it left running) is ended when the test finishes.
func startEmber(t *testing.T, o testember.Options) *ember {
	t.Helper()
	o.Bin = emberBin
	return &ember{testember.Start(t, o)}
}

// addTap creates a persistent tap called name in network namespace ns; the
// namespace's deletion removes it.
func addTap(t *testing.T, ns, name string) {
	t.Helper()
	testember.IP(t, "-n", ns, "tuntap", "add", "dev", name, "mode", "tap")
}
