// Package virtio is the core of ember's virtio device models: the split
// virtqueue, feature bits, the Device contract between a device model and
// its transport, and the small interfaces through which a device reaches
// guest memory and raises interrupts. One device model serves both CPU
// engines: the kvm backend drives it in process through the virtio-mmio
// transport (package virtio/mmio), the qemu backend later over vhost-user.
//
// # Trust
//
// Everything in guest memory is hostile input. Every index, address and
// length a driver supplies is checked before use; a driver that breaks the
// ring protocol gets an error wrapping ErrBroken, its queue stops, and the
// device asks its transport to mark it DEVICE_NEEDS_RESET. Nothing a guest
// writes can make ember panic, touch memory outside guest RAM, or loop
// without bound: one Pop reads at most MaxChainLen descriptors and a queue
// never yields more chains than its size before the driver publishes more.
//
// # Concurrency
//
// A Queue belongs to one goroutine at a time: the transport configures it
// before activation, the device's worker uses it afterwards. Device methods
// are called by the transport from vCPU threads and must not block for
// long; devices do their queue work on their own goroutines (see Worker).
//
// # Memory ordering
//
// The driver publishes avail.idx after writing descriptors and ring
// entries; the device reads avail.idx with an atomic load before reading
// what it covers. The device writes used elements before publishing
// used.idx with an atomic store. With VIRTIO_F_EVENT_IDX the device writes
// avail_event before re-reading avail.idx, and reads used_event only after
// publishing used.idx. Go's atomics are sequentially consistent, which
// gives every fence the virtio specification asks for.
package virtio

import (
	"errors"
	"fmt"
	"time"
)

// DeviceType is a virtio device id (virtio 1.2 §5).
type DeviceType uint32

// The device types ember implements or reserves.
const (
	TypeNet     DeviceType = 1
	TypeBlock   DeviceType = 2
	TypeConsole DeviceType = 3
	TypeRng     DeviceType = 4
	TypeBalloon DeviceType = 5
	TypeVsock   DeviceType = 19
	TypeMem     DeviceType = 24
	TypePmem    DeviceType = 27
)

// String names the type for logs.
func (t DeviceType) String() string {
	switch t {
	case TypeNet:
		return "net"
	case TypeBlock:
		return "block"
	case TypeConsole:
		return "console"
	case TypeRng:
		return "rng"
	case TypeBalloon:
		return "balloon"
	case TypeVsock:
		return "vsock"
	case TypeMem:
		return "mem"
	case TypePmem:
		return "pmem"
	}
	return fmt.Sprintf("DeviceType(%d)", uint32(t))
}

// Feature bits shared by all device types (virtio 1.2 §6). Device-specific
// bits live with their devices.
const (
	FeatureRingIndirectDesc = 28 // VIRTIO_RING_F_INDIRECT_DESC
	FeatureRingEventIdx     = 29 // VIRTIO_RING_F_EVENT_IDX
	FeatureVersion1         = 32 // VIRTIO_F_VERSION_1
	FeatureAccessPlatform   = 33 // VIRTIO_F_ACCESS_PLATFORM
	FeatureInOrder          = 35 // VIRTIO_F_IN_ORDER
)

// Bit returns the feature mask for a feature bit number.
func Bit(feature uint) uint64 { return 1 << feature }

// Device status bits (virtio 1.2 §2.1).
const (
	StatusAcknowledge      uint32 = 1
	StatusDriver           uint32 = 2
	StatusDriverOK         uint32 = 4
	StatusFeaturesOK       uint32 = 8
	StatusDeviceNeedsReset uint32 = 64
	StatusFailed           uint32 = 128
)

// MaxQueueSize is the queue size ember's devices offer, as Firecracker's.
const MaxQueueSize = 256

// Errors. Those a guest can cause wrap ErrBroken.
var (
	// ErrBroken marks a driver that broke the virtqueue protocol; the queue
	// refuses further work until the device is reset.
	ErrBroken = errors.New("virtio driver broke the queue protocol")
	// ErrQueueConfig is returned by Queue.Activate for a queue the driver
	// set up wrongly (size, alignment, addresses).
	ErrQueueConfig = errors.New("invalid virtqueue configuration")
	// ErrNotActive is returned by device operations that need a driver.
	ErrNotActive = errors.New("Device not activated yet.")
)

// Memory is guest RAM as a device sees it. *guestmem.Memory implements it;
// every method checks bounds and fails for addresses outside RAM.
type Memory interface {
	// Slice returns n bytes at gpa, aliasing guest memory; the range must
	// lie within one RAM region.
	Slice(gpa, n uint64) ([]byte, error)
	ReadAt(p []byte, gpa uint64) error
	WriteAt(p []byte, gpa uint64) error
	// Atomic, naturally aligned accesses for ring indices.
	Load16(gpa uint64) (uint16, error)
	Store16(gpa uint64, v uint16) error
	Load32(gpa uint64) (uint32, error)
	Store32(gpa uint64, v uint32) error
}

// Interrupt is a device's interrupt line. The transport signals it after
// recording why in its interrupt status; the kvm backend implements it with
// an irqfd eventfd (a *kvm.EventFD fits), tests with a counter. Signal
// must not block.
type Interrupt interface {
	Signal() error
}

// Transport is what an active device calls back into. The virtio-mmio
// transport implements it.
type Transport interface {
	// SignalUsed tells the driver that queue q has new used buffers.
	SignalUsed(q int) error
	// ChangeConfig applies update (which changes the device's config space)
	// so that no driver read of the config space sees it half done, then
	// raises a configuration-change interrupt. It must not be called from
	// the device's queue processing (a reset may be waiting for that).
	ChangeConfig(update func()) error
	// NeedsReset reports a fatal error (usually a guest that broke the
	// queue protocol): the device stops, its status gains
	// DEVICE_NEEDS_RESET and the driver is told by a config interrupt.
	NeedsReset(err error)
}

// Activation is what a device gets when its driver sets DRIVER_OK.
type Activation struct {
	Mem Memory
	// Queues holds one entry per queue the device declared; an entry is nil
	// when the driver left that queue disabled. Enabled queues have been
	// checked by Queue.Activate.
	Queues []*Queue
	// Features are the features both sides agreed on.
	Features  uint64
	Transport Transport
}

// Has reports whether feature bit f was negotiated.
func (a *Activation) Has(f uint) bool { return a.Features&Bit(f) != 0 }

// Device is a virtio device model, driven by a transport.
//
// Lifecycle: the transport reads Type, Features and QueueMaxSizes at will,
// reads and writes the config space, calls Activate once the driver sets
// DRIVER_OK, then Notify for every driver notification, and Reset when the
// driver resets the device (after which Activate may come again). All
// methods may be called from vCPU threads and must return promptly.
type Device interface {
	Type() DeviceType
	// Features returns the features the device offers. VERSION_1 is always
	// among them.
	Features() uint64
	// QueueMaxSizes returns the maximum size of each queue; its length is
	// the number of queues.
	QueueMaxSizes() []uint16
	// ReadConfig fills data from the config space at offset; bytes beyond
	// the config space read as zero.
	ReadConfig(offset uint64, data []byte)
	// WriteConfig writes the config space; read-only fields ignore it.
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device. On error the device stays inactive.
	Activate(a Activation) error
	// Notify reports a driver notification for queue q. It must not block:
	// devices hand the work to their own goroutine.
	Notify(q int)
	// Reset stops all use of guest memory and the queues and returns the
	// device to its state before Activate. It returns once nothing of the
	// old activation runs.
	Reset() error
}

// Limiter throttles a device's requests (the seam for Firecracker's token
// bucket rate limiters). Allow reports whether a request of ops operations
// and bytes bytes may proceed now, consuming its budget if so; if not, it
// returns how long to wait before asking again. A nil Limiter allows all.
type Limiter interface {
	Allow(ops, bytes uint64) (ok bool, wait time.Duration)
}
