//go:build !linux

package qemu

import "github.com/ember-vmm/ember/internal/hypervisor"

// tapWatch is Linux's: taps exist only there.
type tapWatch struct{}

func (m *machine) watchTaps(*hypervisor.Spec) *tapWatch { return nil }

func (w *tapWatch) close() {}
