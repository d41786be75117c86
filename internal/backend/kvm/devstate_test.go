//go:build linux

package kvm

import (
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/legacy"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/snapshot"
	"github.com/ember-vmm/ember/internal/virtio/balloon"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	"github.com/ember-vmm/ember/internal/virtio/rng"
)

type nopIRQ struct{}

func (nopIRQ) Signal() error { return nil }

func TestDecodeRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		decode func([]byte) error
		in     string
	}{
		{"machine version", decodeM, `{"version":2,"vcpus":1}`},
		{"machine vcpus", decodeM, `{"version":1,"vcpus":0}`},
		{"machine too many vcpus", decodeM, `{"version":1,"vcpus":1000}`},
		{"machine empty device name", decodeM, `{"version":1,"vcpus":1,"devices":[""]}`},
		{"machine unknown field", decodeM, `{"version":1,"vcpus":1,"extra":1}`},
		{"machine trailing data", decodeM, `{"version":1,"vcpus":1} {}`},
		{"machine not JSON", decodeM, `{"version":1,`},
		{"virtio version", decodeV, `{"version":7,"transport":{}}`},
		{"virtio too many queues", decodeV, `{"version":1,"transport":{"queues":[` + repeat(`{}`, maxQueues+1) + `]}}`},
		{"virtio wrong type", decodeV, `{"version":1,"transport":{"status":"on"}}`},
		{"serial unknown field", func(b []byte) error { _, err := decodeSerialState(b); return err }, `{"version":1,"baud":9600}`},
		{"i8042 not an object", func(b []byte) error { _, err := decodeI8042State(b); return err }, `[]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.decode([]byte(tc.in)); !errors.Is(err, errState) {
				t.Fatalf("error %v, want errState", err)
			}
		})
	}
	if _, err := decodeMachineState(make([]byte, maxDeviceSection+1)); !errors.Is(err, errState) {
		t.Errorf("oversized section: %v", err)
	}
}

func decodeM(b []byte) error { _, err := decodeMachineState(b); return err }
func decodeV(b []byte) error { _, err := decodeVirtioState(b); return err }

func repeat(s string, n int) string {
	out := s
	for i := 1; i < n; i++ {
		out += "," + s
	}
	return out
}

func TestCheckLayout(t *testing.T) {
	layout := []guestmem.Region{{GPA: 0, Size: 0x10000}, {GPA: 0x100000, Size: 0x2000}}
	good := []snapshot.Region{{GPA: 0, Size: 0x10000}, {GPA: 0x100000, Size: 0x2000}}
	for _, tc := range []struct {
		name    string
		regions []snapshot.Region
		size    uint64
		ok      bool
	}{
		{"same", good, 0x12000, true},
		{"fewer regions", good[:1], 0x10000, false},
		{"other address", []snapshot.Region{good[0], {GPA: 0x200000, Size: 0x2000}}, 0x12000, false},
		{"other size", []snapshot.Region{good[0], {GPA: 0x100000, Size: 0x1000}}, 0x11000, false},
		{"size disagrees", good, 0x13000, false},
	} {
		r := &restoreData{file: &snapshot.File{Header: snapshot.Header{Regions: tc.regions, MemSize: tc.size}}}
		if err := r.checkLayout(layout); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// FuzzDeviceState feeds arbitrary bytes to every device-state decoder and
// loads what decodes into real device models: an error or a loaded
// device, never a panic.
func FuzzDeviceState(f *testing.F) {
	mem, err := guestmem.New([]guestmem.Region{{GPA: 0, Size: 1 << 20}}, guestmem.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { mem.Close() })
	seed := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	bal := balloon.State{Version: balloon.StateVersion, TargetPages: 256, StatsIntervalS: 1}
	f.Add(seed(virtioState{Version: 1, Transport: mmio.State{Version: 1, DeviceType: 4, Status: 15, Active: true,
		Queues: []mmio.QueueState{{MaxSize: 256, Size: 16, Ready: true, DescTable: 0x1000, AvailRing: 0x2000, UsedRing: 0x3000, NextAvail: 5, NextUsed: 5}}}}))
	f.Add(seed(virtioState{Version: 1, Balloon: &bal, Transport: mmio.State{Version: 1, DeviceType: 5, Status: 3,
		Queues: []mmio.QueueState{{MaxSize: 256}, {MaxSize: 256}, {MaxSize: 256}}}}))
	f.Add(seed(machineState{Version: 1, VCPUs: 2, Devices: []string{"balloon", "block/rootfs", "rng"}}))
	f.Add(seed(legacy.SerialState{Version: 1, IER: 3, RX: []byte("abc")}))
	f.Add(seed(legacy.I8042State{Version: 1, Buf: []byte{0xfa}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := decodeMachineState(b); err == nil && (s.VCPUs < 1 || len(s.Devices) > maxVirtioDevices) {
			t.Fatalf("accepted %+v", s)
		}
		if s, err := decodeSerialState(b); err == nil {
			legacy.NewSerial(io.Discard, nopIRQ{}).RestoreState(s)
		}
		if s, err := decodeI8042State(b); err == nil {
			legacy.NewI8042(func() {}, nopIRQ{}).RestoreState(s)
		}
		s, err := decodeVirtioState(b)
		if err != nil {
			return
		}
		r := rng.New(rng.Config{Log: logger.Discard})
		defer r.Close()
		tr := mmio.New(r, mem, nopIRQ{}, logger.Discard)
		tr.Restore(s.Transport)
		if s.Balloon != nil {
			d, err := balloon.New(balloon.Config{StatsIntervalS: 1, Log: logger.Discard})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			d.RestoreState(*s.Balloon)
			bt := mmio.New(d, mem, nopIRQ{}, logger.Discard)
			bt.Restore(s.Transport)
		}
	})
}
