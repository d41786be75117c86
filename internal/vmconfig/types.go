// Package vmconfig is Firecracker's configuration model: the request bodies
// of the API and of --config-file, their validation with Firecracker's error
// texts, and Resources, the pre-boot accumulator that InstanceStart turns
// into a hypervisor.Spec.
//
// Field tags follow package strictjson: `json` names a key; a pointer is an
// optional value (absent or null); a non-pointer is required unless tagged
// `serde:"default"`; structs refuse unknown keys unless their blank field says
// allow_unknown. The declaration order of fields is the order Firecracker
// serializes them in, so echoed configuration is byte-identical.
package vmconfig

import (
	"runtime"

	"github.com/ember-vmm/ember/internal/strictjson"
)

// HugePages is the guest memory page configuration.
type HugePages string

// The huge_pages values.
const (
	HugePagesNone        HugePages = "None"
	HugePagesTransparent HugePages = "Transparent"
	HugePages2M          HugePages = "2M"
)

// SerdeVariants lists the accepted values.
func (HugePages) SerdeVariants() []string { return []string{"None", "Transparent", "2M"} }

// StaticCPUTemplate is a deprecated named CPU template.
type StaticCPUTemplate string

// SerdeVariants lists the accepted values in the order Firecracker's
// enum declares them for this architecture, which is the order its
// "unknown variant" error lists them in.
func (StaticCPUTemplate) SerdeVariants() []string {
	if runtime.GOARCH == "arm64" {
		return []string{"V1N1", "None"}
	}
	return []string{"C3", "T2", "T2S", "None", "T2CL", "T2A"}
}

// MachineConfig is the body of PUT /machine-config and its GET answer.
type MachineConfig struct {
	_               struct{}           `serde:"name=MachineConfig"`
	VCPUCount       uint8              `json:"vcpu_count"`
	MemSizeMiB      strictjson.Usize   `json:"mem_size_mib"`
	SMT             bool               `json:"smt" serde:"default"`
	CPUTemplate     *StaticCPUTemplate `json:"cpu_template" serde:"default,skip_if_none"`
	TrackDirtyPages bool               `json:"track_dirty_pages" serde:"default"`
	HugePages       HugePages          `json:"huge_pages" serde:"default"`
}

// DefaultMachineConfig is the machine before any configuration.
func DefaultMachineConfig() MachineConfig {
	return MachineConfig{VCPUCount: 1, MemSizeMiB: 128, HugePages: HugePagesNone}
}

// MachineConfigUpdate is the body of PATCH /machine-config; PUT is turned
// into one with every field set but cpu_template.
type MachineConfigUpdate struct {
	_               struct{}           `serde:"name=MachineConfigUpdate"`
	VCPUCount       *uint8             `json:"vcpu_count" serde:"default"`
	MemSizeMiB      *strictjson.Usize  `json:"mem_size_mib" serde:"default"`
	SMT             *bool              `json:"smt" serde:"default"`
	CPUTemplate     *StaticCPUTemplate `json:"cpu_template" serde:"default"`
	TrackDirtyPages *bool              `json:"track_dirty_pages" serde:"default"`
	HugePages       *HugePages         `json:"huge_pages" serde:"default"`
}

// Empty reports whether the update changes nothing.
func (u *MachineConfigUpdate) Empty() bool {
	return u.VCPUCount == nil && u.MemSizeMiB == nil && u.SMT == nil && u.CPUTemplate == nil &&
		u.TrackDirtyPages == nil && u.HugePages == nil
}

// BootSourceConfig is the body of PUT /boot-source.
type BootSourceConfig struct {
	_               struct{} `serde:"name=BootSourceConfig"`
	KernelImagePath string   `json:"kernel_image_path"`
	InitrdPath      *string  `json:"initrd_path"`
	BootArgs        *string  `json:"boot_args"`
}

// TokenBucketConfig is one token bucket. Firecracker accepts unknown keys here.
type TokenBucketConfig struct {
	_            struct{} `serde:"name=TokenBucketConfig,allow_unknown"`
	Size         uint64   `json:"size"`
	OneTimeBurst *uint64  `json:"one_time_burst"`
	RefillTime   uint64   `json:"refill_time"`
}

// Enabled reports whether the bucket limits anything (a zero size or refill
// time disables it).
func (b *TokenBucketConfig) Enabled() bool { return b != nil && b.Size != 0 && b.RefillTime != 0 }

// normalize returns the bucket as Firecracker echoes it: nil when disabled,
// one_time_burst null when zero.
func (b *TokenBucketConfig) normalize() *TokenBucketConfig {
	if !b.Enabled() {
		return nil
	}
	n := TokenBucketConfig{Size: b.Size, RefillTime: b.RefillTime}
	if b.OneTimeBurst != nil && *b.OneTimeBurst != 0 {
		v := *b.OneTimeBurst
		n.OneTimeBurst = &v
	}
	return &n
}

// RateLimiterConfig is a pair of buckets.
type RateLimiterConfig struct {
	_         struct{}           `serde:"name=RateLimiterConfig"`
	Bandwidth *TokenBucketConfig `json:"bandwidth"`
	Ops       *TokenBucketConfig `json:"ops"`
}

// Normalize returns the limiter as Firecracker echoes it: nil unless a
// bucket is enabled.
func (r *RateLimiterConfig) Normalize() *RateLimiterConfig {
	if r == nil {
		return nil
	}
	n := RateLimiterConfig{Bandwidth: r.Bandwidth.normalize(), Ops: r.Ops.normalize()}
	if n.Bandwidth == nil && n.Ops == nil {
		return nil
	}
	return &n
}

// Merge applies an update the way PATCH does: an absent bucket is left
// unchanged, a present one replaces (a disabled one removes).
func (r *RateLimiterConfig) Merge(u *RateLimiterConfig) *RateLimiterConfig {
	if u == nil {
		return r
	}
	var n RateLimiterConfig
	if r != nil {
		n = *r
	}
	if u.Bandwidth != nil {
		n.Bandwidth = u.Bandwidth
	}
	if u.Ops != nil {
		n.Ops = u.Ops
	}
	return n.Normalize()
}

// CacheType is a drive's cache mode.
type CacheType string

// The cache_type values.
const (
	CacheUnsafe    CacheType = "Unsafe"
	CacheWriteback CacheType = "Writeback"
)

// SerdeVariants lists the accepted values.
func (CacheType) SerdeVariants() []string { return []string{"Unsafe", "Writeback"} }

// IOEngine is a drive's I/O engine.
type IOEngine string

// The io_engine values.
const (
	IOEngineAsync IOEngine = "Async"
	IOEngineSync  IOEngine = "Sync"
)

// SerdeVariants lists the accepted values.
func (IOEngine) SerdeVariants() []string { return []string{"Async", "Sync"} }

// BlockDeviceConfig is the body of PUT /drives/{id} and a drive in /vm/config.
type BlockDeviceConfig struct {
	_            struct{}           `serde:"name=BlockDeviceConfig"`
	DriveID      string             `json:"drive_id"`
	PartUUID     *string            `json:"partuuid"`
	IsRootDevice bool               `json:"is_root_device"`
	CacheType    CacheType          `json:"cache_type" serde:"default"`
	IsReadOnly   *bool              `json:"is_read_only"`
	PathOnHost   *string            `json:"path_on_host"`
	RateLimiter  *RateLimiterConfig `json:"rate_limiter"`
	IOEngine     *IOEngine          `json:"io_engine"`
	Socket       *string            `json:"socket"`
}

// BlockDeviceUpdateConfig is the body of PATCH /drives/{id}.
type BlockDeviceUpdateConfig struct {
	_           struct{}           `serde:"name=BlockDeviceUpdateConfig"`
	DriveID     string             `json:"drive_id"`
	PathOnHost  *string            `json:"path_on_host"`
	RateLimiter *RateLimiterConfig `json:"rate_limiter"`
}

// NetworkInterfaceConfig is the body of PUT /network-interfaces/{id}.
type NetworkInterfaceConfig struct {
	_             struct{}           `serde:"name=NetworkInterfaceConfig"`
	IfaceID       string             `json:"iface_id"`
	HostDevName   string             `json:"host_dev_name"`
	GuestMAC      *MACAddr           `json:"guest_mac"`
	MTU           *uint16            `json:"mtu"`
	RxRateLimiter *RateLimiterConfig `json:"rx_rate_limiter"`
	TxRateLimiter *RateLimiterConfig `json:"tx_rate_limiter"`
}

// NetworkInterfaceUpdateConfig is the body of PATCH /network-interfaces/{id}.
type NetworkInterfaceUpdateConfig struct {
	_             struct{}           `serde:"name=NetworkInterfaceUpdateConfig"`
	IfaceID       string             `json:"iface_id"`
	RxRateLimiter *RateLimiterConfig `json:"rx_rate_limiter"`
	TxRateLimiter *RateLimiterConfig `json:"tx_rate_limiter"`
}

// VsockDeviceConfig is the body of PUT /vsock.
type VsockDeviceConfig struct {
	_        struct{} `serde:"name=VsockDeviceConfig"`
	VsockID  *string  `json:"vsock_id" serde:"skip_if_none"`
	GuestCID uint32   `json:"guest_cid"`
	UDSPath  string   `json:"uds_path"`
}

// BalloonDeviceConfig is the body of PUT /balloon and its GET answer.
type BalloonDeviceConfig struct {
	_                     struct{} `serde:"name=BalloonDeviceConfig"`
	AmountMiB             uint32   `json:"amount_mib"`
	DeflateOnOOM          bool     `json:"deflate_on_oom"`
	StatsPollingIntervalS uint16   `json:"stats_polling_interval_s" serde:"default"`
	FreePageHinting       bool     `json:"free_page_hinting" serde:"default"`
	FreePageReporting     bool     `json:"free_page_reporting" serde:"default"`
}

// BalloonUpdateConfig is the body of PATCH /balloon.
type BalloonUpdateConfig struct {
	_         struct{} `serde:"name=BalloonUpdateConfig"`
	AmountMiB uint32   `json:"amount_mib"`
}

// BalloonUpdateStatsConfig is the body of PATCH /balloon/statistics.
type BalloonUpdateStatsConfig struct {
	_                     struct{} `serde:"name=BalloonUpdateStatsConfig"`
	StatsPollingIntervalS uint16   `json:"stats_polling_interval_s"`
}

// StartHintingCmd is the optional body of PATCH /balloon/hinting/start.
type StartHintingCmd struct {
	_                 struct{} `serde:"name=StartHintingCmd,allow_unknown"`
	AcknowledgeOnStop bool     `json:"acknowledge_on_stop" serde:"default"`
}

// BalloonStats is the answer of GET /balloon/statistics.
type BalloonStats struct {
	TargetPages        uint32  `json:"target_pages"`
	ActualPages        uint32  `json:"actual_pages"`
	TargetMiB          uint32  `json:"target_mib"`
	ActualMiB          uint32  `json:"actual_mib"`
	SwapIn             *uint64 `json:"swap_in" serde:"skip_if_none"`
	SwapOut            *uint64 `json:"swap_out" serde:"skip_if_none"`
	MajorFaults        *uint64 `json:"major_faults" serde:"skip_if_none"`
	MinorFaults        *uint64 `json:"minor_faults" serde:"skip_if_none"`
	FreeMemory         *uint64 `json:"free_memory" serde:"skip_if_none"`
	TotalMemory        *uint64 `json:"total_memory" serde:"skip_if_none"`
	AvailableMemory    *uint64 `json:"available_memory" serde:"skip_if_none"`
	DiskCaches         *uint64 `json:"disk_caches" serde:"skip_if_none"`
	HugetlbAllocations *uint64 `json:"hugetlb_allocations" serde:"skip_if_none"`
	HugetlbFailures    *uint64 `json:"hugetlb_failures" serde:"skip_if_none"`
	OOMKill            *uint64 `json:"oom_kill" serde:"skip_if_none"`
	AllocStall         *uint64 `json:"alloc_stall" serde:"skip_if_none"`
	AsyncScan          *uint64 `json:"async_scan" serde:"skip_if_none"`
	DirectScan         *uint64 `json:"direct_scan" serde:"skip_if_none"`
	AsyncReclaim       *uint64 `json:"async_reclaim" serde:"skip_if_none"`
	DirectReclaim      *uint64 `json:"direct_reclaim" serde:"skip_if_none"`
}

// HintingStatus is the answer of GET /balloon/hinting/status.
type HintingStatus struct {
	HostCmd  uint32  `json:"host_cmd"`
	GuestCmd *uint32 `json:"guest_cmd"`
}

// EntropyDeviceConfig is the body of PUT /entropy.
type EntropyDeviceConfig struct {
	_           struct{}           `serde:"name=EntropyDeviceConfig"`
	RateLimiter *RateLimiterConfig `json:"rate_limiter"`
}

// PmemConfig is the body of PUT /pmem/{id}.
type PmemConfig struct {
	_           struct{}           `serde:"name=PmemConfig"`
	ID          string             `json:"id"`
	PathOnHost  string             `json:"path_on_host"`
	RootDevice  bool               `json:"root_device" serde:"default"`
	ReadOnly    bool               `json:"read_only" serde:"default"`
	RateLimiter *RateLimiterConfig `json:"rate_limiter"`
}

// PmemDeviceUpdateConfig is the body of PATCH /pmem/{id}.
type PmemDeviceUpdateConfig struct {
	_           struct{}           `serde:"name=PmemDeviceUpdateConfig"`
	ID          string             `json:"id"`
	RateLimiter *RateLimiterConfig `json:"rate_limiter"`
}

// MemoryHotplugConfig is the body of PUT /hotplug/memory.
type MemoryHotplugConfig struct {
	_            struct{} `serde:"name=MemoryHotplugConfig"`
	TotalSizeMiB uint32   `json:"total_size_mib"`
	BlockSizeMiB uint32   `json:"block_size_mib" serde:"default"`
	SlotSizeMiB  uint32   `json:"slot_size_mib" serde:"default"`
}

// The virtio-mem defaults.
const (
	DefaultBlockSizeMiB = 2
	DefaultSlotSizeMiB  = 128
)

// MemoryHotplugSizeUpdate is the body of PATCH /hotplug/memory.
type MemoryHotplugSizeUpdate struct {
	_                struct{} `serde:"name=MemoryHotplugSizeUpdate"`
	RequestedSizeMiB uint32   `json:"requested_size_mib"`
}

// MemoryHotplugStatus is the answer of GET /hotplug/memory.
type MemoryHotplugStatus struct {
	TotalSizeMiB     uint32 `json:"total_size_mib"`
	SlotSizeMiB      uint32 `json:"slot_size_mib"`
	BlockSizeMiB     uint32 `json:"block_size_mib"`
	PluggedSizeMiB   uint32 `json:"plugged_size_mib"`
	RequestedSizeMiB uint32 `json:"requested_size_mib"`
}

// LoggerConfig is the body of PUT /logger.
type LoggerConfig struct {
	_             struct{}     `serde:"name=LoggerConfig"`
	LogPath       *PathBuf     `json:"log_path"`
	Level         *LevelFilter `json:"level"`
	ShowLevel     *bool        `json:"show_level"`
	ShowLogOrigin *bool        `json:"show_log_origin"`
	Module        *string      `json:"module"`
}

// MetricsConfig is the body of PUT /metrics. Firecracker accepts unknown keys here.
type MetricsConfig struct {
	_           struct{}          `serde:"name=MetricsConfig,allow_unknown"`
	MetricsPath PathBuf           `json:"metrics_path"`
	EmitID      bool              `json:"emit_id" serde:"default"`
	Properties  map[string]string `json:"properties" serde:"default,skip_if_none"`
}

// SerialConfig is the body of PUT /serial.
type SerialConfig struct {
	_             struct{}           `serde:"name=SerialConfig"`
	SerialOutPath *PathBuf           `json:"serial_out_path"`
	RateLimiter   *TokenBucketConfig `json:"rate_limiter"`
}

// MMDSVersion is the metadata service version.
type MMDSVersion string

// The MMDS versions.
const (
	MMDSV1 MMDSVersion = "V1"
	MMDSV2 MMDSVersion = "V2"
)

// SerdeVariants lists the accepted values.
func (MMDSVersion) SerdeVariants() []string { return []string{"V1", "V2"} }

// MMDSConfig is the body of PUT /mmds/config.
type MMDSConfig struct {
	_                 struct{}    `serde:"name=MmdsConfig"`
	Version           MMDSVersion `json:"version" serde:"default"`
	NetworkInterfaces []string    `json:"network_interfaces"`
	IPv4Address       *IPv4Addr   `json:"ipv4_address"`
	IMDSCompat        bool        `json:"imds_compat" serde:"default"`
}

// SnapshotType is Full or Diff.
type SnapshotType string

// The snapshot types.
const (
	SnapshotDiff SnapshotType = "Diff"
	SnapshotFull SnapshotType = "Full"
)

// SerdeVariants lists the accepted values.
func (SnapshotType) SerdeVariants() []string { return []string{"Diff", "Full"} }

// CreateSnapshotParams is the body of PUT /snapshot/create.
type CreateSnapshotParams struct {
	_            struct{}     `serde:"name=CreateSnapshotParams"`
	SnapshotType SnapshotType `json:"snapshot_type" serde:"default"`
	SnapshotPath PathBuf      `json:"snapshot_path"`
	MemFilePath  PathBuf      `json:"mem_file_path"`
}

// MemBackendType says how a loaded snapshot's memory is provided.
type MemBackendType string

// The mem_backend types.
const (
	MemBackendFile MemBackendType = "File"
	MemBackendUffd MemBackendType = "Uffd"
)

// SerdeVariants lists the accepted values.
func (MemBackendType) SerdeVariants() []string { return []string{"File", "Uffd"} }

// MemBackendConfig is the mem_backend of a snapshot load.
type MemBackendConfig struct {
	_           struct{}       `serde:"name=MemBackendConfig"`
	BackendPath PathBuf        `json:"backend_path"`
	BackendType MemBackendType `json:"backend_type"`
}

// NetworkOverride swaps a tap at snapshot load. Unknown keys are accepted.
type NetworkOverride struct {
	_           struct{} `serde:"name=NetworkOverride,allow_unknown"`
	IfaceID     string   `json:"iface_id"`
	HostDevName string   `json:"host_dev_name"`
}

// VsockOverride swaps the vsock socket at snapshot load. Unknown keys are accepted.
type VsockOverride struct {
	_       struct{} `serde:"name=VsockOverride,allow_unknown"`
	UDSPath string   `json:"uds_path"`
}

// SnapshotLoadHugePages selects the huge pages of a restored VM.
type SnapshotLoadHugePages string

// SerdeVariants lists the accepted values.
func (SnapshotLoadHugePages) SerdeVariants() []string {
	return []string{"Snapshot", "None", "Transparent", "2M"}
}

// LoadSnapshotConfig is the body of PUT /snapshot/load.
type LoadSnapshotConfig struct {
	_                   struct{}              `serde:"name=LoadSnapshotConfig"`
	SnapshotPath        PathBuf               `json:"snapshot_path"`
	MemFilePath         *PathBuf              `json:"mem_file_path"`
	MemBackend          *MemBackendConfig     `json:"mem_backend"`
	EnableDiffSnapshots bool                  `json:"enable_diff_snapshots" serde:"default"`
	TrackDirtyPages     bool                  `json:"track_dirty_pages" serde:"default"`
	ResumeVM            bool                  `json:"resume_vm" serde:"default"`
	NetworkOverrides    []NetworkOverride     `json:"network_overrides" serde:"default"`
	VsockOverride       *VsockOverride        `json:"vsock_override"`
	ClockRealtime       bool                  `json:"clock_realtime" serde:"default"`
	HugePages           SnapshotLoadHugePages `json:"huge_pages" serde:"default"`
}

// VMStateName is the state PATCH /vm asks for.
type VMStateName string

// SerdeVariants lists the accepted values.
func (VMStateName) SerdeVariants() []string { return []string{"Paused", "Resumed"} }

// VMState is the body of PATCH /vm.
type VMState struct {
	_     struct{}    `serde:"name=Vm"`
	State VMStateName `json:"state"`
}

// ActionType is the action of PUT /actions.
type ActionType string

// SerdeVariants lists the accepted values.
func (ActionType) SerdeVariants() []string {
	return []string{"FlushMetrics", "InstanceStart", "SendCtrlAltDel"}
}

// ActionBody is the body of PUT /actions.
type ActionBody struct {
	_          struct{}   `serde:"name=ActionBody"`
	ActionType ActionType `json:"action_type"`
}

// InstanceInfo is the answer of GET /.
type InstanceInfo struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	VMMVersion string `json:"vmm_version"`
	AppName    string `json:"app_name"`
}

// VMMConfig is the --config-file schema and the answer of GET /vm/config.
// Unknown top-level keys are ignored, as Firecracker does.
type VMMConfig struct {
	_                 struct{}                 `serde:"name=VmmConfig,allow_unknown"`
	Balloon           *BalloonDeviceConfig     `json:"balloon"`
	Drives            []BlockDeviceConfig      `json:"drives"`
	BootSource        BootSourceConfig         `json:"boot-source"`
	CPUConfig         *CPUConfigOrPath         `json:"cpu-config"`
	Logger            *LoggerConfig            `json:"logger"`
	MachineConfig     *MachineConfig           `json:"machine-config"`
	Metrics           *MetricsConfig           `json:"metrics"`
	MMDSConfig        *MMDSConfig              `json:"mmds-config"`
	NetworkInterfaces []NetworkInterfaceConfig `json:"network-interfaces" serde:"default"`
	Vsock             *VsockDeviceConfig       `json:"vsock"`
	Entropy           *EntropyDeviceConfig     `json:"entropy"`
	Pmem              []PmemConfig             `json:"pmem" serde:"default"`
	MemoryHotplug     *MemoryHotplugConfig     `json:"memory-hotplug"`
}

// LoadSnapshotParams is a snapshot load request after the API's checks:
// exactly one memory source, deprecated fields folded in.
type LoadSnapshotParams struct {
	SnapshotPath     string
	MemBackend       MemBackendConfig
	TrackDirtyPages  bool
	ResumeVM         bool
	NetworkOverrides []NetworkOverride
	VsockOverride    *VsockOverride
	ClockRealtime    bool
	HugePages        SnapshotLoadHugePages
}
