//go:build !linux

package kvm

import (
	"context"

	"github.com/ember-vmm/ember/internal/hypervisor"
)

// Available reports that KVM exists only on Linux.
func (*Backend) Available(map[string]string) error {
	return unavailable("KVM exists only on Linux")
}

// Create refuses: KVM exists only on Linux.
func (*Backend) Create(context.Context, *hypervisor.Spec, hypervisor.Env) (hypervisor.Machine, error) {
	return nil, unavailable("KVM exists only on Linux")
}

// uffdSupported: userfaultfd exists only on Linux.
const uffdSupported = false
