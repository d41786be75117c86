//go:build linux && !amd64

package kvm

import (
	"context"
	"errors"

	"github.com/ember-vmm/ember/internal/guestmem"
)

// The built-in VMM knows only x86-64 guests so far.

type archState struct{}

var errArch = errors.New("the kvm backend supports only x86-64 hosts so far")

func archCheckHost() error                               { return unavailable(errArch.Error()) }
func archMemoryLayout(uint64) ([]guestmem.Region, error) { return nil, errArch }
func (m *machine) archSetupVM() error                    { return errArch }
func (m *machine) archLegacyDevices() error              { return errArch }
func archVirtioSlot(int) (virtioSlot, error)             { return virtioSlot{}, errArch }
func (m *machine) archLoad() error                       { return errArch }
func (m *machine) archConfigureVCPU(*vcpu) error         { return errArch }

func (m *machine) archSaveCPU(context.Context) ([]byte, error) { return nil, errArch }
func (m *machine) archRestoreCPU([]byte) error                 { return errArch }
