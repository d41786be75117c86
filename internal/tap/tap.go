// Package tap opens Linux tap network devices the way Firecracker does:
// /dev/net/tun opened non-blocking and close-on-exec, attached to the named
// interface with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR (creating it if it does not
// exist), with a 12-byte virtio-net header and offloads off until a guest
// driver negotiates them.
//
// Errors are *Error values: their text is Firecracker's TapError text, and
// they wrap the errno, so syserr.Display renders the OS part exactly as
// Firecracker's clients see it ("Resource busy (os error 16)").
package tap

import (
	"errors"
	"fmt"

	"github.com/ember-vmm/ember/internal/syserr"
)

// VnetHdrSize is the virtio-net header length with VIRTIO_F_VERSION_1
// (struct virtio_net_hdr_v1), which every ember device negotiates.
const VnetHdrSize = 12

// Offload flags for SetOffload (linux/if_tun.h TUN_F_*).
const (
	OffloadCsum   uint32 = 0x01
	OffloadTSO4   uint32 = 0x02
	OffloadTSO6   uint32 = 0x04
	OffloadTSOECN uint32 = 0x08
	OffloadUFO    uint32 = 0x10
)

// maxNameLen is IFNAMSIZ less the terminating NUL.
const maxNameLen = 15

// ErrInvalidName is wrapped by the *Error for a name the kernel cannot take.
var ErrInvalidName = errors.New("invalid interface name")

// ErrUnsupported is returned where tap devices do not exist (not Linux).
var ErrUnsupported = errors.New("tap devices are only available on Linux")

// Op names the step that failed.
type Op int

// The steps of opening a tap, in order.
const (
	OpOpenTun Op = iota + 1
	OpInvalidName
	OpSetIff
	OpSetOffload
	OpSetVnetHdrSize
)

// Error is a failure to open or configure a tap.
type Error struct {
	Op   Op
	Name string // the interface name asked for
	Err  error  // the errno, or ErrInvalidName
}

// Error returns Firecracker's text for the failure.
func (e *Error) Error() string {
	os := syserr.Display(e.Err)
	switch e.Op {
	case OpOpenTun:
		return "Couldn't open /dev/net/tun: " + os
	case OpInvalidName:
		return "Invalid interface name"
	case OpSetIff:
		return fmt.Sprintf("Error while creating ifreq structure: %s. Invalid TUN/TAP Backend provided by %s. Check our documentation on setting up the network devices.", os, e.Name)
	case OpSetOffload:
		return "Error while setting the offload flags: " + os
	case OpSetVnetHdrSize:
		return "Error while setting size of the vnet header: " + os
	}
	return "tap " + e.Name + ": " + os
}

func (e *Error) Unwrap() error { return e.Err }
