package hypervisor

import (
	"os"

	"github.com/ember-vmm/ember/internal/strictjson"
)

// Spec is the backend-neutral description of one VM, built by the controller
// from the pre-boot configuration at InstanceStart. Devices appear in
// Firecracker's attach order (balloon, drives with the root first, nets,
// pmems, vsock, rng, virtio-mem); a backend that places devices in guest
// address space follows that order.
type Spec struct {
	// ID is the instance id (--id).
	ID string

	VCPUs     uint8
	MemMiB    uint64
	SMT       bool
	HugePages HugePages
	// TrackDirtyPages asks for dirty-page tracking (diff snapshots).
	TrackDirtyPages bool

	Boot Boot

	Drives  []Drive
	Nets    []Net
	Pmems   []Pmem
	Vsock   *Vsock
	Balloon *Balloon
	Entropy *Entropy
	// MemoryHotplug configures a virtio-mem device.
	MemoryHotplug *MemoryHotplug

	// MMDSData is the metadata store the interfaces with MMDS answer from;
	// nil when no interface has MMDS. It is live: PUT and PATCH /mmds after
	// boot change what the guest reads.
	MMDSData MMDSData

	// BootTimer attaches Firecracker's boot-timer MMIO device.
	BootTimer bool
	// PCI asks for the virtio-pci transport (--enable-pci).
	PCI bool
}

// HugePages is the guest memory backing, as machine-config names it.
type HugePages string

// The huge_pages values.
const (
	HugePagesNone        HugePages = "None"
	HugePagesTransparent HugePages = "Transparent"
	HugePages2M          HugePages = "2M"
)

// Boot is the kernel to load and its command line.
type Boot struct {
	KernelPath string
	InitrdPath string // empty: none
	// Cmdline is the user's boot_args (or Firecracker's default) with the
	// backend-independent additions already made (pci=off, the root device);
	// see package bootargs. A backend adds only what depends on where it
	// placed devices (virtio_mmio.device=...), before any " -- ".
	Cmdline string
}

// CacheType is a drive's cache mode.
type CacheType string

// The cache_type values.
const (
	CacheUnsafe    CacheType = "Unsafe"
	CacheWriteback CacheType = "Writeback"
)

// IOEngine is a drive's host I/O engine.
type IOEngine string

// The io_engine values.
const (
	IOSync  IOEngine = "Sync"
	IOAsync IOEngine = "Async"
)

// Drive is a virtio-blk device (or a vhost-user-blk one when Socket is set).
type Drive struct {
	ID         string
	PathOnHost string
	Root       bool
	ReadOnly   bool
	PartUUID   string
	Cache      CacheType
	IOEngine   IOEngine
	// Socket is a vhost-user-blk backend socket; PathOnHost is then empty.
	Socket      string
	RateLimiter *RateLimiter
}

// Net is a virtio-net device on a tap.
type Net struct {
	ID      string
	TapName string
	// Tap is the tap device, opened by the controller at PUT time (as
	// Firecracker does) with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR. The controller
	// owns it; a backend that hands it to another process duplicates it.
	Tap       *os.File
	GuestMAC  string // "" lets the guest pick
	MTU       uint16 // 0: not advertised
	RxLimiter *RateLimiter
	TxLimiter *RateLimiter
	// MMDS is set when the metadata service answers on this interface.
	MMDS *MMDS
}

// MMDSData is read access to the metadata store (package mmds), safe to
// call from device goroutines.
type MMDSData interface {
	Value() strictjson.Value
}

// MMDS is the metadata service configuration of an interface.
type MMDS struct {
	Version    string // "V1" or "V2"
	IPv4       string
	IMDSCompat bool
}

// Pmem is a virtio-pmem device.
type Pmem struct {
	ID          string
	PathOnHost  string
	Root        bool
	ReadOnly    bool
	RateLimiter *RateLimiter
}

// Vsock is a virtio-vsock device with Firecracker's Unix-socket host side.
type Vsock struct {
	GuestCID uint32
	UDSPath  string
	// Device is the device the controller bound at PUT /vsock (uds_path is
	// listening before boot, as on Firecracker); nil when the controller
	// binds nothing (tests). The controller owns it: a backend attaches it
	// and must reset it before unmapping guest RAM, but never closes it.
	Device VsockDevice
}

// VsockDevice is a bound vsock device. The contract names only what every
// backend may ask of it; the device model's own interfaces (virtio queues,
// metrics) belong to packages this one must not import, so a backend that
// runs the model asserts the concrete type it knows (the kvm backend:
// *vsock.Device) and refuses anything else.
type VsockDevice interface {
	GuestCID() uint64
	UDSPath() string
}

// Balloon is a virtio-balloon device.
type Balloon struct {
	AmountMiB             uint32
	DeflateOnOOM          bool
	StatsPollingIntervalS uint16
	FreePageHinting       bool
	FreePageReporting     bool
}

// Entropy is a virtio-rng device.
type Entropy struct {
	RateLimiter *RateLimiter
}

// MemoryHotplug is a virtio-mem device.
type MemoryHotplug struct {
	TotalSizeMiB uint32
	SlotSizeMiB  uint32
	BlockSizeMiB uint32
}

// RateLimiter is a pair of token buckets; a nil bucket is no limit.
type RateLimiter struct {
	Bandwidth *TokenBucket
	Ops       *TokenBucket
}

// TokenBucket is Firecracker's token bucket.
type TokenBucket struct {
	Size         uint64
	OneTimeBurst uint64
	RefillTimeMs uint64
}
