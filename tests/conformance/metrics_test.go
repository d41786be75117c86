package conformance

// Metrics lines as Firecracker writes them: one compact JSON object per
// line, one at boot, one per FlushMetrics, one at exit; counters are
// per-flush deltas; the key set is Firecracker's, exactly.

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// metricsLines reads the metrics file's complete lines.
func metricsLines(t testing.TB, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read metrics: %v", err)
	}
	var out []map[string]any
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("metrics line is not JSON: %v: %q", err, l)
		}
		out = append(out, m)
	}
	return out
}

// counter returns section.field of a metrics line.
func counter(t testing.TB, m map[string]any, section, field string) float64 {
	t.Helper()
	s, ok := m[section].(map[string]any)
	if !ok {
		t.Fatalf("metrics line lacks section %q", section)
	}
	v, ok := s[field].(float64)
	if !ok {
		t.Fatalf("metrics line lacks %s.%s", section, field)
	}
	return v
}

func (vm *bootedVM) metrics(t *testing.T) {
	flush := func() map[string]any {
		t.Helper()
		n := len(metricsLines(t, vm.metricsPath))
		ok204().check(t, "FlushMetrics", vm.c.action("FlushMetrics"))
		lines := metricsLines(t, vm.metricsPath)
		if len(lines) != n+1 {
			t.Fatalf("FlushMetrics wrote %d lines, want 1", len(lines)-n)
		}
		return lines[len(lines)-1]
	}
	m := flush()
	// Pause and resume (an earlier subtest) record their latencies.
	for _, f := range []string{"pause_vm", "resume_vm", "vmm_pause_vm", "vmm_resume_vm"} {
		if counter(t, m, "latencies_us", f) <= 0 {
			t.Errorf("latencies_us.%s = 0 after a pause and a resume", f)
		}
	}
	// The guest read its root file system since boot.
	var reads float64
	for _, l := range metricsLines(t, vm.metricsPath) {
		reads += counter(t, l, "block_rootfs", "read_count")
	}
	if reads == 0 {
		t.Errorf("block_rootfs.read_count is 0 in every line although the guest booted from it")
	}
	for i := 0; i < 3; i++ {
		vm.c.get("/")
	}
	vm.c.get("/machine-config")
	m = flush()
	if got := counter(t, m, "get_api_requests", "instance_info_count"); got != 3 {
		t.Errorf("get_api_requests.instance_info_count = %v after 3 GET / since the last flush, want 3 (a delta)", got)
	}
	if got := counter(t, m, "get_api_requests", "machine_cfg_count"); got != 1 {
		t.Errorf("get_api_requests.machine_cfg_count = %v, want 1", got)
	}
	m = flush()
	if got := counter(t, m, "get_api_requests", "instance_info_count"); got != 0 {
		t.Errorf("get_api_requests.instance_info_count = %v with no GET / since the last flush, want 0", got)
	}
	checkMetricsKeys(t, m, []string{"block_rootfs", "block_scratch", "net_eth0"})
}

// metricsSchema lists every section and field Firecracker writes on
// x86_64 (tests/host_tools/fcmetrics.py keeps the same list); "_agg"
// fields are {min_us,max_us,sum_us} objects.
var metricsSchema = map[string][]string{
	"api_server": {"process_startup_time_us", "process_startup_time_cpu_us"},
	"balloon": {"activate_fails", "inflate_count", "stats_updates_count", "stats_update_fails", "deflate_count",
		"event_fails", "free_page_report_count", "free_page_report_freed", "free_page_report_fails",
		"free_page_hint_count", "free_page_hint_freed", "free_page_hint_fails"},
	"block":          blockMetrics,
	"deprecated_api": {"deprecated_http_api_calls"},
	"get_api_requests": {"instance_info_count", "machine_cfg_count", "mmds_count", "vmm_version_count",
		"hotplug_memory_count"},
	"i8042": {"error_count", "missed_read_count", "missed_write_count", "read_count", "reset_count", "write_count"},
	"latencies_us": {"full_create_snapshot", "diff_create_snapshot", "load_snapshot", "pause_vm", "resume_vm",
		"vmm_full_create_snapshot", "vmm_diff_create_snapshot", "vmm_load_snapshot", "vmm_pause_vm", "vmm_resume_vm"},
	"logger": {"missed_metrics_count", "metrics_fails", "missed_log_count", "rate_limited_log_count"},
	"mmds": {"rx_accepted", "rx_accepted_err", "rx_accepted_unusual", "rx_bad_eth", "rx_invalid_token",
		"rx_no_token", "rx_count", "tx_bytes", "tx_count", "tx_errors", "tx_frames", "connections_created",
		"connections_destroyed"},
	"net": netMetrics,
	"patch_api_requests": {"drive_count", "drive_fails", "network_count", "network_fails", "machine_cfg_count",
		"machine_cfg_fails", "mmds_count", "mmds_fails", "hotplug_memory_count", "hotplug_memory_fails",
		"pmem_count", "pmem_fails"},
	"put_api_requests": {"actions_count", "actions_fails", "boot_source_count", "boot_source_fails",
		"drive_count", "drive_fails", "logger_count", "logger_fails", "machine_cfg_count", "machine_cfg_fails",
		"cpu_cfg_count", "cpu_cfg_fails", "metrics_count", "metrics_fails", "network_count", "network_fails",
		"mmds_count", "mmds_fails", "vsock_count", "vsock_fails", "pmem_count", "pmem_fails", "serial_count",
		"serial_fails", "hotplug_memory_count", "hotplug_memory_fails"},
	"seccomp": {"num_faults"},
	"vcpu": {"exit_io_in", "exit_io_out", "exit_mmio_read", "exit_mmio_write", "failures", "kvmclock_ctrl_fails",
		"exit_io_in_agg", "exit_io_out_agg", "exit_mmio_read_agg", "exit_mmio_write_agg"},
	"vmm": {"panic_count"},
	"uart": {"error_count", "flush_count", "missed_read_count", "missed_write_count", "read_count", "write_count",
		"rate_limiter_dropped_bytes"},
	"signals": {"sigbus", "sigsegv", "sigxfsz", "sigxcpu", "sigpipe", "sighup", "sigill"},
	"vsock": {"activate_fails", "cfg_fails", "rx_queue_event_fails", "tx_queue_event_fails", "ev_queue_event_fails",
		"muxer_event_fails", "conn_event_fails", "rx_queue_event_count", "tx_queue_event_count", "rx_bytes_count",
		"tx_bytes_count", "rx_packets_count", "tx_packets_count", "conns_added", "conns_killed", "conns_removed",
		"killq_resync", "tx_flush_fails", "tx_write_fails", "rx_read_fails"},
	"entropy": {"activate_fails", "entropy_event_fails", "entropy_event_count", "entropy_bytes", "host_rng_fails",
		"entropy_rate_limiter_throttled", "rate_limiter_event_count"},
	"interrupts": {"triggers", "config_updates"},
	"pmem": {"activate_fails", "cfg_fails", "event_fails", "queue_event_count", "rate_limiter_throttled_events",
		"rate_limiter_event_count"},
	"memory_hotplug": {"activate_fails", "queue_event_fails", "queue_event_count", "plug_count", "plug_bytes",
		"plug_fails", "plug_agg", "unplug_count", "unplug_bytes", "unplug_fails", "unplug_discard_fails",
		"unplug_agg", "state_count", "state_fails", "state_agg", "unplug_all_count", "unplug_all_fails",
		"unplug_all_agg"},
}

var blockMetrics = []string{"activate_fails", "cfg_fails", "no_avail_buffer", "event_fails", "execute_fails",
	"invalid_reqs_count", "flush_count", "queue_event_count", "rate_limiter_event_count", "update_count",
	"update_fails", "read_bytes", "write_bytes", "read_count", "write_count", "rate_limiter_throttled_events",
	"io_engine_throttled_events", "remaining_reqs_count", "read_agg", "write_agg"}

var netMetrics = []string{"activate_fails", "cfg_fails", "no_rx_avail_buffer", "no_tx_avail_buffer", "event_fails",
	"rx_queue_event_count", "rx_event_rate_limiter_count", "rx_rate_limiter_throttled", "rx_tap_event_count",
	"rx_bytes_count", "rx_packets_count", "rx_fails", "rx_count", "tap_read_fails", "tap_write_fails",
	"tx_bytes_count", "tx_malformed_frames", "tx_fails", "tx_count", "tx_packets_count", "tx_queue_event_count",
	"tx_rate_limiter_event_count", "tx_rate_limiter_throttled", "tx_spoofed_mac_count", "tx_remaining_reqs_count",
	"tap_write_agg"}

// checkMetricsKeys compares a metrics line's key set with Firecracker's:
// every section and field present, nothing else; devices add per-device
// sections (block_<id>, net_<id>).
func checkMetricsKeys(t *testing.T, m map[string]any, deviceSections []string) {
	t.Helper()
	want := map[string][]string{}
	for k, v := range metricsSchema {
		want[k] = v
	}
	for _, s := range deviceSections {
		switch {
		case strings.HasPrefix(s, "block_"):
			want[s] = blockMetrics
		case strings.HasPrefix(s, "net_"):
			want[s] = netMetrics
		}
	}
	ts, ok := m["utc_timestamp_ms"].(float64)
	if !ok {
		t.Errorf("metrics line lacks utc_timestamp_ms")
	} else if d := math.Abs(ts - float64(time.Now().UnixMilli())); d > 60_000 {
		t.Errorf("utc_timestamp_ms = %v is %v ms away from now", ts, d)
	}
	var extra []string
	for k := range m {
		if k == "utc_timestamp_ms" {
			continue
		}
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("metrics line has sections Firecracker does not write: %v", extra)
	}
	for section, fields := range want {
		got, ok := m[section].(map[string]any)
		if !ok {
			t.Errorf("metrics line lacks section %q", section)
			continue
		}
		for _, f := range fields {
			v, ok := got[f]
			if !ok {
				t.Errorf("metrics %s lacks %q", section, f)
				continue
			}
			if strings.HasSuffix(f, "_agg") {
				agg, ok := v.(map[string]any)
				if !ok || len(agg) != 3 || agg["min_us"] == nil || agg["max_us"] == nil || agg["sum_us"] == nil {
					t.Errorf("metrics %s.%s = %v, want {min_us,max_us,sum_us}", section, f, v)
				}
			} else if _, ok := v.(float64); !ok {
				t.Errorf("metrics %s.%s = %v, want a number", section, f, v)
			}
		}
		for f := range got {
			if !slices.Contains(fields, f) {
				t.Errorf("metrics %s has %q, which Firecracker does not write", section, f)
			}
		}
	}
}
