//go:build linux

package kvm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// APIVersion is the only KVM API version there has ever been a stable ABI
// for; Open refuses any other.
const APIVersion = 12

// DevicePath is where the KVM system device lives.
const DevicePath = "/dev/kvm"

// closeFD closes fd once; the sentinel -1 marks a closed descriptor.
func closeFD(fd *int) error {
	if *fd < 0 {
		return nil
	}
	err := unix.Close(*fd)
	*fd = -1
	if err != nil {
		return fmt.Errorf("kvm: close: %w", err)
	}
	return nil
}

// System is an open /dev/kvm.
type System struct {
	fd int
}

// Open opens /dev/kvm and checks its API version.
func Open() (*System, error) { return OpenPath(DevicePath) }

// OpenPath opens the KVM system device at path (read-write, close-on-exec)
// and checks that it speaks API version 12.
func OpenPath(path string) (*System, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: open %s: %w", path, err)
	}
	s := &System{fd: fd}
	v, err := s.APIVersion()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("kvm: %s: %w", path, err)
	}
	if v != APIVersion {
		s.Close()
		return nil, fmt.Errorf("kvm: %s: %w: %d (want %d)", path, ErrAPIVersion, v, APIVersion)
	}
	return s, nil
}

// Fd returns the descriptor, or -1 once closed.
func (s *System) Fd() int { return s.fd }

// Close closes the device. VMs created from it stay usable.
func (s *System) Close() error { return closeFD(&s.fd) }

func (s *System) check() error {
	if s.fd < 0 {
		return ErrClosed
	}
	return nil
}

// APIVersion returns KVM_GET_API_VERSION.
func (s *System) APIVersion() (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	return ioctl(s.fd, "KVM_GET_API_VERSION", kvmGetAPIVersion, 0)
}

// CheckExtension returns KVM_CHECK_EXTENSION for c: 0 when absent, else
// a positive, capability-specific value.
func (s *System) CheckExtension(c Cap) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	return ioctl(s.fd, "KVM_CHECK_EXTENSION", kvmCheckExtension, uintptr(c))
}

// VCPUMmapSize returns the size of the region each vCPU's fd maps: the
// kvm_run struct followed by the PIO data page and others.
func (s *System) VCPUMmapSize() (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	return ioctl(s.fd, "KVM_GET_VCPU_MMAP_SIZE", kvmGetVCPUMmapSize, 0)
}

// CreateVM creates a VM of the default machine type (0).
func (s *System) CreateVM() (*VM, error) { return s.CreateVMWithType(0) }

// CreateVMWithType creates a VM with the given machine type (an arch's
// encoding, e.g. the IPA size on arm64).
func (s *System) CreateVMWithType(machineType uintptr) (*VM, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	size, err := s.VCPUMmapSize()
	if err != nil {
		return nil, err
	}
	// The kernel fails this with EINTR when a signal is pending while it
	// sets up the VM's mm notifier (nothing is created), and the Go
	// runtime's preemption signal makes that happen; retry a few times, as
	// other VMMs do, rather than fail a VM start on it.
	var fd int
	for try := 0; ; try++ {
		fd, err = ioctl(s.fd, "KVM_CREATE_VM", kvmCreateVM, machineType)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EINTR) || try == 16 {
			return nil, err
		}
	}
	return &VM{fd: fd, runSize: size}, nil
}
