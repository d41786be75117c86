// Package hypervisor is the contract between ember's controller and the
// engines that run a VM (the built-in kvm VMM, QEMU).
//
// The controller turns the accumulated Firecracker configuration into one
// Spec and hands it to a Backend. A Backend reports what it can do as a
// Capabilities value before anything is built, so unsupported requests are
// refused up front with ErrNotSupported rather than silently ignored. The
// core Machine interface is small; runtime features a backend may or may not
// have (balloon, drive updates, Ctrl-Alt-Del, ...) are optional interfaces
// discovered by type assertion.
//
// Invariants: a Spec is complete and validated when it reaches a backend (the
// controller owns Firecracker's rules); a Machine owns every process, file and
// socket it creates and releases all of them in Close, whether or not the VM
// ever ran.
package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/metrics"
)

// ErrNotSupported is returned (wrapped) when a backend lacks a capability.
var ErrNotSupported = errors.New("not supported")

// ErrUnavailable is returned (wrapped) by Backend.Available when the backend
// cannot run on this host.
var ErrUnavailable = errors.New("backend unavailable")

// UnsupportedError is a request for a capability a backend lacks. It
// matches ErrNotSupported with errors.Is.
type UnsupportedError struct {
	Backend    string
	Capability string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("The %s backend does not support %s.", e.Backend, e.Capability)
}

// Is makes errors.Is(err, ErrNotSupported) true.
func (e *UnsupportedError) Is(target error) bool { return target == ErrNotSupported }

// Unsupported builds the error a backend or the controller returns for a
// missing capability; its text names the backend and the capability.
func Unsupported(backend, capability string) error {
	return &UnsupportedError{Backend: backend, Capability: capability}
}

// Capabilities says which Firecracker features a backend implements. The
// controller consults it before accepting a configuration.
type Capabilities struct {
	Vsock              bool
	MMDS               bool
	NetRateLimiter     bool
	BlockRateLimiter   bool
	EntropyRateLimiter bool
	SerialRateLimiter  bool
	Snapshot           bool
	DiffSnapshot       bool
	SnapshotUffd       bool // loads with mem_backend Uffd
	Balloon            bool
	BalloonStats       bool
	FreePageHinting    bool
	FreePageReporting  bool
	Entropy            bool
	Pmem               bool
	MemoryHotplug      bool
	HugePages          bool
	CPUTemplates       bool
	BootTimer          bool
	PCI                bool
	VhostUserBlock     bool
	AsyncIO            bool
	DrivePathUpdate    bool
	SendCtrlAltDel     bool
	TrackDirtyPages    bool
}

// Backend is a registered VM engine.
type Backend interface {
	// Name is the value of --backend that selects it ("kvm", "qemu").
	Name() string
	// Available returns nil if the backend can run here with these
	// options (Env.Options), or an error matching ErrUnavailable that says
	// why not.
	Available(options map[string]string) error
	// Capabilities reports what the backend implements.
	Capabilities() Capabilities
	// Create builds the VM described by spec, with its vCPUs not yet running.
	// A failed Create leaves nothing behind.
	Create(ctx context.Context, spec *Spec, env Env) (Machine, error)
}

// Env is what a backend gets from the process around it.
type Env struct {
	// Log is the logger for backend messages (thread "main"; backends name
	// their own threads with Log.Thread).
	Log logger.Log
	// Console receives the guest's serial output. Writes to it never block:
	// the controller wraps the real sink.
	Console io.Writer
	// ConsoleIn, if not nil, is read for the guest's serial input.
	ConsoleIn io.Reader
	// RuntimeDir is a private directory for sockets and temporary files the
	// backend needs; the controller removes it when the process ends.
	RuntimeDir string
	// Options are backend-specific settings from the command line
	// (for example "qemu-binary").
	Options map[string]string
	// Metrics, if not nil, are the process's metrics, where device models
	// count what Firecracker's devices count (mmds, rate limiter events).
	Metrics *metrics.Metrics
}

// Machine is a built VM.
type Machine interface {
	// Start runs the vCPUs for the first time; it returns once the guest is
	// running.
	Start(ctx context.Context) error
	// Pause stops all vCPUs; it returns once none is executing guest code.
	// Pausing a paused machine is not an error.
	Pause(ctx context.Context) error
	// Resume continues a paused machine. Resuming a running one is not an error.
	Resume(ctx context.Context) error
	// Done is closed when the VM has ended; Exit then says how.
	Done() <-chan struct{}
	// Exit returns how the VM ended; only meaningful after Done is closed.
	Exit() ExitStatus
	// Close stops the VM if it still runs and releases everything it holds.
	// It is safe to call more than once.
	Close() error
}

// ExitReason classifies how a VM ended.
type ExitReason int

const (
	// ExitNone: the VM has not ended.
	ExitNone ExitReason = iota
	// ExitReset: the guest reset the machine (reboot=k, i8042 0xFE); ember
	// exits 0, as Firecracker does.
	ExitReset
	// ExitError: the engine failed (QEMU died, KVM internal error, ...);
	// ember exits 1.
	ExitError
	// ExitStopped: Close was called.
	ExitStopped
)

// String names the reason for logs.
func (r ExitReason) String() string {
	switch r {
	case ExitNone:
		return "none"
	case ExitReset:
		return "guest reset"
	case ExitError:
		return "error"
	case ExitStopped:
		return "stopped"
	}
	return fmt.Sprintf("ExitReason(%d)", int(r))
}

// ExitStatus says how a VM ended.
type ExitStatus struct {
	Reason ExitReason
	// Err describes an ExitError.
	Err error
}

// Optional runtime features. The controller checks Capabilities first and
// then asserts the interface; a backend claiming a capability implements its
// interface.

// CtrlAltDeler injects Ctrl+Alt+Del through the i8042.
type CtrlAltDeler interface {
	SendCtrlAltDel(ctx context.Context) error
}

// DriveUpdater swaps a drive's backing file after boot; the guest sees the
// new size.
type DriveUpdater interface {
	UpdateDrive(ctx context.Context, driveID, pathOnHost string) error
}

// Ballooner drives a virtio-balloon device after boot.
type Ballooner interface {
	SetBalloonTarget(ctx context.Context, amountMiB uint32) error
	SetBalloonStatsInterval(ctx context.Context, seconds uint16) error
	BalloonStats(ctx context.Context) (BalloonStats, error)
}

// BalloonStats is the guest-reported balloon state. Optional figures are
// nil when the guest has not reported them.
type BalloonStats struct {
	TargetPages  uint32
	ActualPages  uint32
	TargetMiB    uint32
	ActualMiB    uint32
	SwapIn       *uint64
	SwapOut      *uint64
	MajorFaults  *uint64
	MinorFaults  *uint64
	FreeMemory   *uint64
	TotalMemory  *uint64
	AvailMemory  *uint64
	DiskCaches   *uint64
	HugetlbAlloc *uint64
	HugetlbFail  *uint64
	OOMKill      *uint64
	AllocStall   *uint64
	AsyncScan    *uint64
	DirectScan   *uint64
	AsyncReclaim *uint64
	DirectReclam *uint64
}

// MemoryHotplugger resizes virtio-mem memory after boot.
type MemoryHotplugger interface {
	SetHotplugSize(ctx context.Context, requestedMiB uint32) error
	HotplugStatus(ctx context.Context) (HotplugStatus, error)
}

// HotplugStatus is the state of the virtio-mem device.
type HotplugStatus struct {
	TotalSizeMiB     uint32
	SlotSizeMiB      uint32
	BlockSizeMiB     uint32
	PluggedSizeMiB   uint32
	RequestedSizeMiB uint32
}

var (
	regMu    sync.Mutex
	registry = map[string]Backend{}
)

// Register makes a backend selectable by name. It panics on a duplicate name,
// which is a programming error.
func Register(b Backend) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[b.Name()]; dup {
		panic("hypervisor: backend registered twice: " + b.Name())
	}
	registry[b.Name()] = b
}

// Lookup returns the backend registered under name.
func Lookup(name string) (Backend, bool) {
	regMu.Lock()
	defer regMu.Unlock()
	b, ok := registry[name]
	return b, ok
}

// Names returns the registered backend names, sorted.
func Names() []string {
	regMu.Lock()
	defer regMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DeviceStatser reports cumulative device counters, which the controller
// turns into the per-flush deltas of Firecracker's block_<id>, net_<id> and
// vsock metrics.
type DeviceStatser interface {
	DeviceStats(ctx context.Context) (DeviceStats, error)
}

// DeviceStats holds cumulative counters by device id.
type DeviceStats struct {
	Block map[string]BlockStats
	Net   map[string]NetStats
	// Vsock is nil when the VM has no vsock device.
	Vsock *VsockStats
}

// VsockStats are the vsock device's running totals, one per field of
// Firecracker's "vsock" metrics section.
type VsockStats struct {
	ActivateFails     uint64
	CfgFails          uint64
	RxQueueEventFails uint64
	TxQueueEventFails uint64
	EvQueueEventFails uint64
	MuxerEventFails   uint64
	ConnEventFails    uint64
	RxQueueEventCount uint64
	TxQueueEventCount uint64
	RxBytesCount      uint64
	TxBytesCount      uint64
	RxPacketsCount    uint64
	TxPacketsCount    uint64
	ConnsAdded        uint64
	ConnsKilled       uint64
	ConnsRemoved      uint64
	KillqResync       uint64
	TxFlushFails      uint64
	TxWriteFails      uint64
	RxReadFails       uint64
}

// BlockStats counts a drive's guest I/O.
type BlockStats struct {
	ReadBytes, WriteBytes, ReadCount, WriteCount, FlushCount uint64
}

// NetStats counts a network interface's traffic as the guest sees it: Rx is
// what the guest received.
type NetStats struct {
	RxBytes, RxPackets, TxBytes, TxPackets uint64
	// RxThrottled and TxThrottled count frames a rate limiter held back;
	// RxLimiterEvents and TxLimiterEvents the limiter waits that ended.
	RxThrottled, TxThrottled, RxLimiterEvents, TxLimiterEvents uint64
}

// UnavailableError says why a backend cannot run on this host. It matches
// ErrUnavailable with errors.Is.
type UnavailableError struct {
	Backend string
	Reason  string
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("The %s backend cannot run here: %s", e.Backend, e.Reason)
}

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }
