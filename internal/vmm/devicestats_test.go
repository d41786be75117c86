package vmm

import (
	"context"
	"testing"

	"github.com/ember-vmm/ember/internal/hypervisor"
)

// statsMachine reports whatever totals the test set.
type statsMachine struct {
	*fakeMachine
	st hypervisor.DeviceStats
}

func (m *statsMachine) DeviceStats(context.Context) (hypervisor.DeviceStats, error) {
	return m.st, nil
}

func TestVsockStatsBecomeDeltas(t *testing.T) {
	c := newTestController(t, &fakeBackend{})
	sm := &statsMachine{fakeMachine: &fakeMachine{done: make(chan struct{})}}
	c.machine = sm
	v := &c.cfg.Metrics.Vsock

	steps := []struct {
		name  string
		stats *hypervisor.VsockStats
		// want are the counters' totals after the collection.
		wantRx, wantConns, wantKilled uint64
	}{
		{"no vsock", nil, 0, 0, 0},
		{"first", &hypervisor.VsockStats{RxBytesCount: 100, ConnsAdded: 2}, 100, 2, 0},
		{"unchanged", &hypervisor.VsockStats{RxBytesCount: 100, ConnsAdded: 2}, 100, 2, 0},
		{"more", &hypervisor.VsockStats{RxBytesCount: 250, ConnsAdded: 5, ConnsKilled: 1}, 250, 5, 1},
	}
	for _, s := range steps {
		sm.st = hypervisor.DeviceStats{Vsock: s.stats}
		c.collectDeviceStats()
		if got := v.RxBytesCount.Count(); got != s.wantRx {
			t.Errorf("%s: rx_bytes_count = %d, want %d", s.name, got, s.wantRx)
		}
		if got := v.ConnsAdded.Count(); got != s.wantConns {
			t.Errorf("%s: conns_added = %d, want %d", s.name, got, s.wantConns)
		}
		if got := v.ConnsKilled.Count(); got != s.wantKilled {
			t.Errorf("%s: conns_killed = %d, want %d", s.name, got, s.wantKilled)
		}
	}
}
