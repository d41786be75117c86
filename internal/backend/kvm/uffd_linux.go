//go:build linux

package kvm

import (
	"context"
	"fmt"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/uffd"
)

// uffdSupported: loads with mem_backend Uffd work here.
const uffdSupported = true

// uffdFailed prefixes the errors of a load with mem_backend Uffd, as
// Firecracker words them.
const uffdFailed = "Failed to load guest memory: Error creating guest memory from uffd: "

// handToUffd registers guest RAM (mapped empty) with a userfaultfd and
// hands it, with the regions' layout in the memory file, to the page-fault
// handler listening at path, as Firecracker does. From then on every first
// touch of a page, by the guest, by KVM or by ember, waits for the handler
// to fill it.
func (m *machine) handToUffd(ctx context.Context, path string) error {
	page := uint64(guestmem.PageSize)
	if m.spec.HugePages == hypervisor.HugePages2M {
		page = 2 << 20
	}
	var maps []uffd.Mapping
	var off uint64
	for _, r := range m.mem.Regions() {
		host, err := m.mem.HostAddress(r.GPA)
		if err != nil {
			return err
		}
		maps = append(maps, uffd.Mapping{
			BaseHostVirtAddr: uint64(host), Size: r.Size, Offset: off,
			PageSize: page, PageSizeKiB: page,
		})
		off += r.Size
	}
	f, err := uffd.Register(maps)
	if err != nil {
		return fmt.Errorf("%s%w", uffdFailed, err)
	}
	conn, err := uffd.Handshake(ctx, path, maps, f)
	if err != nil {
		f.Close()
		return fmt.Errorf("%s%w", uffdFailed, err)
	}
	m.uffd, m.uffdConn = f, conn
	m.log.Debugf("snapshot load: guest memory (%d regions) handed to the page-fault handler at %s", len(maps), path)
	return nil
}

// closeUffd ends the handler's connection once guest RAM is gone.
func (m *machine) closeUffd() {
	if m.uffdConn != nil {
		m.uffdConn.Close()
	}
	if m.uffd != nil {
		m.uffd.Close()
	}
}
