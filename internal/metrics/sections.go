package metrics

// The section types below list their metrics in the order Firecracker writes
// them; the `metric` tag is the JSON key. Every field must be a Counter, a
// Gauge or a LatencyAgg, and every field must carry a tag (checked when a
// Metrics is built and by the tests).

// APIServerMetrics is the "api_server" section: process start-up times.
type APIServerMetrics struct {
	ProcessStartupTimeUs    Gauge `metric:"process_startup_time_us"`
	ProcessStartupTimeCPUUs Gauge `metric:"process_startup_time_cpu_us"`
}

// BalloonMetrics is the "balloon" section.
type BalloonMetrics struct {
	ActivateFails       Counter `metric:"activate_fails"`
	InflateCount        Counter `metric:"inflate_count"`
	StatsUpdatesCount   Counter `metric:"stats_updates_count"`
	StatsUpdateFails    Counter `metric:"stats_update_fails"`
	DeflateCount        Counter `metric:"deflate_count"`
	EventFails          Counter `metric:"event_fails"`
	FreePageReportCount Counter `metric:"free_page_report_count"`
	FreePageReportFreed Counter `metric:"free_page_report_freed"`
	FreePageReportFails Counter `metric:"free_page_report_fails"`
	FreePageHintCount   Counter `metric:"free_page_hint_count"`
	FreePageHintFreed   Counter `metric:"free_page_hint_freed"`
	FreePageHintFails   Counter `metric:"free_page_hint_fails"`
}

// BlockDeviceMetrics is one "block_<drive_id>" section; the "block" section
// is their sum.
type BlockDeviceMetrics struct {
	ActivateFails              Counter    `metric:"activate_fails"`
	CfgFails                   Counter    `metric:"cfg_fails"`
	NoAvailBuffer              Counter    `metric:"no_avail_buffer"`
	EventFails                 Counter    `metric:"event_fails"`
	ExecuteFails               Counter    `metric:"execute_fails"`
	InvalidReqsCount           Counter    `metric:"invalid_reqs_count"`
	FlushCount                 Counter    `metric:"flush_count"`
	QueueEventCount            Counter    `metric:"queue_event_count"`
	RateLimiterEventCount      Counter    `metric:"rate_limiter_event_count"`
	UpdateCount                Counter    `metric:"update_count"`
	UpdateFails                Counter    `metric:"update_fails"`
	ReadBytes                  Counter    `metric:"read_bytes"`
	WriteBytes                 Counter    `metric:"write_bytes"`
	ReadCount                  Counter    `metric:"read_count"`
	WriteCount                 Counter    `metric:"write_count"`
	ReadAgg                    LatencyAgg `metric:"read_agg"`
	WriteAgg                   LatencyAgg `metric:"write_agg"`
	RateLimiterThrottledEvents Counter    `metric:"rate_limiter_throttled_events"`
	IOEngineThrottledEvents    Counter    `metric:"io_engine_throttled_events"`
	RemainingReqsCount         Counter    `metric:"remaining_reqs_count"`
}

// DeprecatedAPIMetrics is the "deprecated_api" section.
type DeprecatedAPIMetrics struct {
	DeprecatedHTTPAPICalls Counter `metric:"deprecated_http_api_calls"`
}

// GetRequestsMetrics is the "get_api_requests" section.
type GetRequestsMetrics struct {
	InstanceInfoCount  Counter `metric:"instance_info_count"`
	MachineCfgCount    Counter `metric:"machine_cfg_count"`
	MMDSCount          Counter `metric:"mmds_count"`
	VMMVersionCount    Counter `metric:"vmm_version_count"`
	HotplugMemoryCount Counter `metric:"hotplug_memory_count"`
}

// I8042Metrics is the "i8042" section.
type I8042Metrics struct {
	ErrorCount       Counter `metric:"error_count"`
	MissedReadCount  Counter `metric:"missed_read_count"`
	MissedWriteCount Counter `metric:"missed_write_count"`
	ReadCount        Counter `metric:"read_count"`
	ResetCount       Counter `metric:"reset_count"`
	WriteCount       Counter `metric:"write_count"`
}

// RTCMetrics is the "rtc" section (PL031), written on arm64 only.
type RTCMetrics struct {
	ErrorCount       Counter `metric:"error_count"`
	MissedReadCount  Counter `metric:"missed_read_count"`
	MissedWriteCount Counter `metric:"missed_write_count"`
}

// UartMetrics is the "uart" section (the serial console).
type UartMetrics struct {
	ErrorCount              Counter `metric:"error_count"`
	FlushCount              Counter `metric:"flush_count"`
	MissedReadCount         Counter `metric:"missed_read_count"`
	MissedWriteCount        Counter `metric:"missed_write_count"`
	ReadCount               Counter `metric:"read_count"`
	WriteCount              Counter `metric:"write_count"`
	RateLimiterDroppedBytes Counter `metric:"rate_limiter_dropped_bytes"`
}

// LatencyMetrics is the "latencies_us" section: the duration of the last
// snapshot, pause and resume operation, at the API and at the VMM level.
type LatencyMetrics struct {
	FullCreateSnapshot    Gauge `metric:"full_create_snapshot"`
	DiffCreateSnapshot    Gauge `metric:"diff_create_snapshot"`
	LoadSnapshot          Gauge `metric:"load_snapshot"`
	PauseVM               Gauge `metric:"pause_vm"`
	ResumeVM              Gauge `metric:"resume_vm"`
	VMMFullCreateSnapshot Gauge `metric:"vmm_full_create_snapshot"`
	VMMDiffCreateSnapshot Gauge `metric:"vmm_diff_create_snapshot"`
	VMMLoadSnapshot       Gauge `metric:"vmm_load_snapshot"`
	VMMPauseVM            Gauge `metric:"vmm_pause_vm"`
	VMMResumeVM           Gauge `metric:"vmm_resume_vm"`
}

// LoggerMetrics is the "logger" section.
type LoggerMetrics struct {
	MissedMetricsCount  Counter `metric:"missed_metrics_count"`
	MetricsFails        Counter `metric:"metrics_fails"`
	MissedLogCount      Counter `metric:"missed_log_count"`
	RateLimitedLogCount Counter `metric:"rate_limited_log_count"`
}

// MMDSMetrics is the "mmds" section.
type MMDSMetrics struct {
	RxAccepted           Counter `metric:"rx_accepted"`
	RxAcceptedErr        Counter `metric:"rx_accepted_err"`
	RxAcceptedUnusual    Counter `metric:"rx_accepted_unusual"`
	RxBadEth             Counter `metric:"rx_bad_eth"`
	RxInvalidToken       Counter `metric:"rx_invalid_token"`
	RxNoToken            Counter `metric:"rx_no_token"`
	RxCount              Counter `metric:"rx_count"`
	TxBytes              Counter `metric:"tx_bytes"`
	TxCount              Counter `metric:"tx_count"`
	TxErrors             Counter `metric:"tx_errors"`
	TxFrames             Counter `metric:"tx_frames"`
	ConnectionsCreated   Counter `metric:"connections_created"`
	ConnectionsDestroyed Counter `metric:"connections_destroyed"`
}

// NetDeviceMetrics is one "net_<iface_id>" section; the "net" section is
// their sum.
type NetDeviceMetrics struct {
	ActivateFails           Counter    `metric:"activate_fails"`
	CfgFails                Counter    `metric:"cfg_fails"`
	NoRxAvailBuffer         Counter    `metric:"no_rx_avail_buffer"`
	NoTxAvailBuffer         Counter    `metric:"no_tx_avail_buffer"`
	EventFails              Counter    `metric:"event_fails"`
	RxQueueEventCount       Counter    `metric:"rx_queue_event_count"`
	RxEventRateLimiterCount Counter    `metric:"rx_event_rate_limiter_count"`
	RxRateLimiterThrottled  Counter    `metric:"rx_rate_limiter_throttled"`
	RxTapEventCount         Counter    `metric:"rx_tap_event_count"`
	RxBytesCount            Counter    `metric:"rx_bytes_count"`
	RxPacketsCount          Counter    `metric:"rx_packets_count"`
	RxFails                 Counter    `metric:"rx_fails"`
	RxCount                 Counter    `metric:"rx_count"`
	TapReadFails            Counter    `metric:"tap_read_fails"`
	TapWriteFails           Counter    `metric:"tap_write_fails"`
	TapWriteAgg             LatencyAgg `metric:"tap_write_agg"`
	TxBytesCount            Counter    `metric:"tx_bytes_count"`
	TxMalformedFrames       Counter    `metric:"tx_malformed_frames"`
	TxFails                 Counter    `metric:"tx_fails"`
	TxCount                 Counter    `metric:"tx_count"`
	TxPacketsCount          Counter    `metric:"tx_packets_count"`
	TxQueueEventCount       Counter    `metric:"tx_queue_event_count"`
	TxRateLimiterEventCount Counter    `metric:"tx_rate_limiter_event_count"`
	TxRateLimiterThrottled  Counter    `metric:"tx_rate_limiter_throttled"`
	TxSpoofedMacCount       Counter    `metric:"tx_spoofed_mac_count"`
	TxRemainingReqsCount    Counter    `metric:"tx_remaining_reqs_count"`
}

// PatchRequestsMetrics is the "patch_api_requests" section.
type PatchRequestsMetrics struct {
	DriveCount         Counter `metric:"drive_count"`
	DriveFails         Counter `metric:"drive_fails"`
	NetworkCount       Counter `metric:"network_count"`
	NetworkFails       Counter `metric:"network_fails"`
	MachineCfgCount    Counter `metric:"machine_cfg_count"`
	MachineCfgFails    Counter `metric:"machine_cfg_fails"`
	MMDSCount          Counter `metric:"mmds_count"`
	MMDSFails          Counter `metric:"mmds_fails"`
	HotplugMemoryCount Counter `metric:"hotplug_memory_count"`
	HotplugMemoryFails Counter `metric:"hotplug_memory_fails"`
	PmemCount          Counter `metric:"pmem_count"`
	PmemFails          Counter `metric:"pmem_fails"`
}

// PutRequestsMetrics is the "put_api_requests" section.
type PutRequestsMetrics struct {
	ActionsCount       Counter `metric:"actions_count"`
	ActionsFails       Counter `metric:"actions_fails"`
	BootSourceCount    Counter `metric:"boot_source_count"`
	BootSourceFails    Counter `metric:"boot_source_fails"`
	DriveCount         Counter `metric:"drive_count"`
	DriveFails         Counter `metric:"drive_fails"`
	LoggerCount        Counter `metric:"logger_count"`
	LoggerFails        Counter `metric:"logger_fails"`
	MachineCfgCount    Counter `metric:"machine_cfg_count"`
	MachineCfgFails    Counter `metric:"machine_cfg_fails"`
	CPUCfgCount        Counter `metric:"cpu_cfg_count"`
	CPUCfgFails        Counter `metric:"cpu_cfg_fails"`
	MetricsCount       Counter `metric:"metrics_count"`
	MetricsFails       Counter `metric:"metrics_fails"`
	NetworkCount       Counter `metric:"network_count"`
	NetworkFails       Counter `metric:"network_fails"`
	MMDSCount          Counter `metric:"mmds_count"`
	MMDSFails          Counter `metric:"mmds_fails"`
	VsockCount         Counter `metric:"vsock_count"`
	VsockFails         Counter `metric:"vsock_fails"`
	PmemCount          Counter `metric:"pmem_count"`
	PmemFails          Counter `metric:"pmem_fails"`
	SerialCount        Counter `metric:"serial_count"`
	SerialFails        Counter `metric:"serial_fails"`
	HotplugMemoryCount Counter `metric:"hotplug_memory_count"`
	HotplugMemoryFails Counter `metric:"hotplug_memory_fails"`
}

// SeccompMetrics is the "seccomp" section.
type SeccompMetrics struct {
	NumFaults Gauge `metric:"num_faults"`
}

// VcpuMetrics is the "vcpu" section, shared by all vCPUs. The *_agg
// latencies time the handling of each exit kind.
type VcpuMetrics struct {
	ExitIOIn          Counter    `metric:"exit_io_in"`
	ExitIOOut         Counter    `metric:"exit_io_out"`
	ExitMMIORead      Counter    `metric:"exit_mmio_read"`
	ExitMMIOWrite     Counter    `metric:"exit_mmio_write"`
	Failures          Counter    `metric:"failures"`
	KVMClockCtrlFails Counter    `metric:"kvmclock_ctrl_fails"`
	ExitIOInAgg       LatencyAgg `metric:"exit_io_in_agg"`
	ExitIOOutAgg      LatencyAgg `metric:"exit_io_out_agg"`
	ExitMMIOReadAgg   LatencyAgg `metric:"exit_mmio_read_agg"`
	ExitMMIOWriteAgg  LatencyAgg `metric:"exit_mmio_write_agg"`
}

// VMMMetrics is the "vmm" section.
type VMMMetrics struct {
	PanicCount Gauge `metric:"panic_count"`
}

// SignalMetrics is the "signals" section. The fatal signals are gauges set
// to 1 by their handler just before the process exits; SIGPIPE, which ember
// survives, is a counter.
type SignalMetrics struct {
	SIGBUS  Gauge   `metric:"sigbus"`
	SIGSEGV Gauge   `metric:"sigsegv"`
	SIGXFSZ Gauge   `metric:"sigxfsz"`
	SIGXCPU Gauge   `metric:"sigxcpu"`
	SIGPIPE Counter `metric:"sigpipe"`
	SIGHUP  Gauge   `metric:"sighup"`
	SIGILL  Gauge   `metric:"sigill"`
}

// VsockMetrics is the "vsock" section.
type VsockMetrics struct {
	ActivateFails     Counter `metric:"activate_fails"`
	CfgFails          Counter `metric:"cfg_fails"`
	RxQueueEventFails Counter `metric:"rx_queue_event_fails"`
	TxQueueEventFails Counter `metric:"tx_queue_event_fails"`
	EvQueueEventFails Counter `metric:"ev_queue_event_fails"`
	MuxerEventFails   Counter `metric:"muxer_event_fails"`
	ConnEventFails    Counter `metric:"conn_event_fails"`
	RxQueueEventCount Counter `metric:"rx_queue_event_count"`
	TxQueueEventCount Counter `metric:"tx_queue_event_count"`
	RxBytesCount      Counter `metric:"rx_bytes_count"`
	TxBytesCount      Counter `metric:"tx_bytes_count"`
	RxPacketsCount    Counter `metric:"rx_packets_count"`
	TxPacketsCount    Counter `metric:"tx_packets_count"`
	ConnsAdded        Counter `metric:"conns_added"`
	ConnsKilled       Counter `metric:"conns_killed"`
	ConnsRemoved      Counter `metric:"conns_removed"`
	KillqResync       Counter `metric:"killq_resync"`
	TxFlushFails      Counter `metric:"tx_flush_fails"`
	TxWriteFails      Counter `metric:"tx_write_fails"`
	RxReadFails       Counter `metric:"rx_read_fails"`
}

// EntropyMetrics is the "entropy" section (virtio-rng).
type EntropyMetrics struct {
	ActivateFails               Counter `metric:"activate_fails"`
	EntropyEventFails           Counter `metric:"entropy_event_fails"`
	EntropyEventCount           Counter `metric:"entropy_event_count"`
	EntropyBytes                Counter `metric:"entropy_bytes"`
	HostRNGFails                Counter `metric:"host_rng_fails"`
	EntropyRateLimiterThrottled Counter `metric:"entropy_rate_limiter_throttled"`
	RateLimiterEventCount       Counter `metric:"rate_limiter_event_count"`
}

// PmemDeviceMetrics is one "pmem_<id>" section; the "pmem" section is their
// sum.
type PmemDeviceMetrics struct {
	ActivateFails              Counter `metric:"activate_fails"`
	CfgFails                   Counter `metric:"cfg_fails"`
	EventFails                 Counter `metric:"event_fails"`
	QueueEventCount            Counter `metric:"queue_event_count"`
	RateLimiterThrottledEvents Counter `metric:"rate_limiter_throttled_events"`
	RateLimiterEventCount      Counter `metric:"rate_limiter_event_count"`
}

// VhostUserBlockMetrics is one "vhost_user_block_<drive_id>" section; there
// is no aggregate.
type VhostUserBlockMetrics struct {
	ActivateFails      Counter `metric:"activate_fails"`
	CfgFails           Counter `metric:"cfg_fails"`
	InitTimeUs         Gauge   `metric:"init_time_us"`
	ActivateTimeUs     Gauge   `metric:"activate_time_us"`
	ConfigChangeTimeUs Gauge   `metric:"config_change_time_us"`
}

// InterruptMetrics is the "interrupts" section.
type InterruptMetrics struct {
	Triggers      Counter `metric:"triggers"`
	ConfigUpdates Counter `metric:"config_updates"`
}

// MemoryHotplugMetrics is the "memory_hotplug" section (virtio-mem).
type MemoryHotplugMetrics struct {
	ActivateFails      Counter    `metric:"activate_fails"`
	QueueEventFails    Counter    `metric:"queue_event_fails"`
	QueueEventCount    Counter    `metric:"queue_event_count"`
	PlugAgg            LatencyAgg `metric:"plug_agg"`
	PlugCount          Counter    `metric:"plug_count"`
	PlugBytes          Counter    `metric:"plug_bytes"`
	PlugFails          Counter    `metric:"plug_fails"`
	UnplugAgg          LatencyAgg `metric:"unplug_agg"`
	UnplugCount        Counter    `metric:"unplug_count"`
	UnplugBytes        Counter    `metric:"unplug_bytes"`
	UnplugFails        Counter    `metric:"unplug_fails"`
	UnplugDiscardFails Counter    `metric:"unplug_discard_fails"`
	UnplugAllAgg       LatencyAgg `metric:"unplug_all_agg"`
	UnplugAllCount     Counter    `metric:"unplug_all_count"`
	UnplugAllFails     Counter    `metric:"unplug_all_fails"`
	StateAgg           LatencyAgg `metric:"state_agg"`
	StateCount         Counter    `metric:"state_count"`
	StateFails         Counter    `metric:"state_fails"`
}
