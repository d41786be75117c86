//go:build linux

package kvm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ember-vmm/ember/internal/legacy"
	"github.com/ember-vmm/ember/internal/virtio/balloon"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	"github.com/ember-vmm/ember/internal/virtio/net"
	"github.com/ember-vmm/ember/internal/virtio/vsock"
)

// The kvm backend's snapshot sections. Device sections are named by the
// device: "kvm/device/serial", "kvm/device/i8042", "kvm/device/balloon",
// "kvm/device/block/<drive id>", "kvm/device/net/<iface id>",
// "kvm/device/vsock", "kvm/device/rng". Each is JSON carrying its own
// layout version; everything read back is bounds-checked, and a hostile
// section gives an error wrapping errState, never a panic.
const (
	sectionMachine      = "kvm/machine"
	sectionCPU          = "kvm/cpu" // raw: package kvmstate's encoding
	sectionDevicePrefix = "kvm/device/"
	deviceSerial        = "serial"
	deviceI8042         = "i8042"
)

// Layout versions of the sections this file defines.
const (
	machineStateVersion = 1
	virtioStateVersion  = 1
)

// Bounds on decoded state: far above any machine ember builds.
const (
	maxDeviceSection = 1 << 20
	maxVirtioDevices = 64
	maxDeviceName    = 200
	maxQueues        = 64
	maxVCPUs         = 256
)

// errState means a snapshot's kvm sections are malformed or do not fit
// the machine the configuration describes.
var errState = errors.New("invalid kvm snapshot state")

// machineState is the machine's own section: what the rest must fit.
type machineState struct {
	Version int `json:"version"`
	VCPUs   int `json:"vcpus"`
	// Devices names the virtio devices in slot order.
	Devices []string `json:"devices"`
}

// virtioState is one virtio device's section.
type virtioState struct {
	Version   int            `json:"version"`
	Transport mmio.State     `json:"transport"`
	Net       *net.State     `json:"net,omitempty"`
	Balloon   *balloon.State `json:"balloon,omitempty"`
	// Vsock is absent in snapshots from before it was kept; the device
	// then hands out host ports from the first.
	Vsock *vsock.State `json:"vsock,omitempty"`
}

// decodeStrict decodes exactly one JSON value of at most
// maxDeviceSection bytes into v, refusing unknown fields.
func decodeStrict(b []byte, v any) error {
	if len(b) > maxDeviceSection {
		return fmt.Errorf("%w: section of %d bytes", errState, len(b))
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", errState, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the JSON value", errState)
	}
	return nil
}

func decodeMachineState(b []byte) (*machineState, error) {
	var s machineState
	if err := decodeStrict(b, &s); err != nil {
		return nil, err
	}
	switch {
	case s.Version != machineStateVersion:
		return nil, fmt.Errorf("%w: machine layout version %d, this ember reads %d", errState, s.Version, machineStateVersion)
	case s.VCPUs < 1 || s.VCPUs > maxVCPUs:
		return nil, fmt.Errorf("%w: %d vCPUs", errState, s.VCPUs)
	case len(s.Devices) > maxVirtioDevices:
		return nil, fmt.Errorf("%w: %d virtio devices", errState, len(s.Devices))
	}
	for _, n := range s.Devices {
		if n == "" || len(n) > maxDeviceName {
			return nil, fmt.Errorf("%w: device name %.40q", errState, n)
		}
	}
	return &s, nil
}

func decodeVirtioState(b []byte) (*virtioState, error) {
	var s virtioState
	if err := decodeStrict(b, &s); err != nil {
		return nil, err
	}
	switch {
	case s.Version != virtioStateVersion:
		return nil, fmt.Errorf("%w: virtio device layout version %d, this ember reads %d", errState, s.Version, virtioStateVersion)
	case len(s.Transport.Queues) > maxQueues:
		return nil, fmt.Errorf("%w: %d queues", errState, len(s.Transport.Queues))
	}
	return &s, nil
}

func decodeSerialState(b []byte) (legacy.SerialState, error) {
	var s legacy.SerialState
	err := decodeStrict(b, &s)
	return s, err
}

func decodeI8042State(b []byte) (legacy.I8042State, error) {
	var s legacy.I8042State
	err := decodeStrict(b, &s)
	return s, err
}
