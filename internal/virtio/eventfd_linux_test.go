//go:build linux

package virtio_test

import (
	"github.com/ember-vmm/ember/internal/kvm"
	"github.com/ember-vmm/ember/internal/legacy"
	"github.com/ember-vmm/ember/internal/virtio"
)

// The kvm backend passes its irqfd eventfds straight in as interrupt lines.
var (
	_ virtio.Interrupt = (*kvm.EventFD)(nil)
	_ legacy.Interrupt = (*kvm.EventFD)(nil)
)
