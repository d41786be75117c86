package balloon

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// TestStateRoundTrip snapshots a running balloon as the kvm backend does
// (device state, then the transport quiesced) and restores both into a new
// device, which keeps its sizes, interval and statistics and takes up the
// statistics buffer the old one held.
func TestStateRoundTrip(t *testing.T) {
	mem := vt.NewMemory(t, memSize)
	cfg := Config{AmountMiB: 4, StatsIntervalS: 1}
	d, _ := New(cfg)
	defer d.Close()
	tr := mmio.New(d, mem, &vt.Interrupt{}, logger.Discard)
	drv := &vt.MMIODriver{Regs: tr, Mem: mem, Alloc: vt.NewAllocator(0x1000, 0x100000)}
	if s, err := drv.Setup(^uint64(0), []uint16{16, 16, 16}); err != nil || s != 0xf {
		t.Fatalf("setup %#x %v", s, err)
	}
	if err := d.SetTarget(2); err != nil {
		t.Fatal(err)
	}
	tr.Write(mmio.ConfigOffset+4, []byte{0, 1, 0, 0}) // actual = 256 pages
	sq := drv.VQs[2]
	sq.Add(vt.R(statsBuf(tagFreeMemory, 1234)))
	drv.Kick(2)
	vt.Wait(t, 5*time.Second, "stats read", func() bool {
		s, _ := d.Stats()
		return s.FreeMemory != nil
	})
	if err := d.SetStatsInterval(7); err != nil {
		t.Fatal(err)
	}
	sq.WaitUsed(t, 1, 2*time.Second) // a new interval returns the buffer at once
	sq.Add(vt.R(statsBuf(tagFreeMemory, 4321)))
	drv.Kick(2)
	vt.Wait(t, 5*time.Second, "second stats", func() bool {
		s, _ := d.Stats()
		return *s.FreeMemory == 4321
	})

	saved := d.SaveState()
	ts, err := tr.Quiesce()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(saved)
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}

	d2, _ := New(cfg)
	defer d2.Close()
	if err := d2.RestoreState(st); err != nil {
		t.Fatal(err)
	}
	tr2 := mmio.New(d2, mem, &vt.Interrupt{}, logger.Discard)
	if err := tr2.Restore(ts); err != nil {
		t.Fatal(err)
	}
	s, err := d2.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.TargetMiB != 2 || s.ActualPages != 256 || s.FreeMemory == nil || *s.FreeMemory != 4321 || d2.StatsInterval() != 7 {
		t.Fatalf("restored stats %+v, interval %d", s, d2.StatsInterval())
	}
	// The held buffer is taken again and returned at the next poll.
	if err := d2.SetStatsInterval(1); err != nil {
		t.Fatal(err)
	}
	sq.WaitUsed(t, 1, 3*time.Second)
	if err := d2.RestoreState(st); !errors.Is(err, ErrState) {
		t.Errorf("restoring a running balloon: %v, want ErrState", err)
	}
}

func TestStateRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		st   State
	}{
		{"version", Config{}, State{Version: 2}},
		{"stats on a balloon without", Config{}, State{Version: StateVersion, StatsIntervalS: 5}},
		{"no stats on a balloon with", Config{StatsIntervalS: 5}, State{Version: StateVersion}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := New(tc.cfg)
			if err := d.RestoreState(tc.st); !errors.Is(err, ErrState) {
				t.Fatalf("error %v, want ErrState", err)
			}
		})
	}
}
