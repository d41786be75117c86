package metrics

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

// The expected layout of a line, written down independently of the section
// types: the leaf names are those Firecracker's metrics schema requires (and,
// having additionalProperties false, the only ones it allows), in the order
// Firecracker's serializer writes them. "x{}" stands for a latency object
// x.{min_us,max_us,sum_us}.
var (
	blockLeaves = `activate_fails cfg_fails no_avail_buffer event_fails execute_fails
		invalid_reqs_count flush_count queue_event_count rate_limiter_event_count
		update_count update_fails read_bytes write_bytes read_count write_count
		read_agg{} write_agg{} rate_limiter_throttled_events io_engine_throttled_events
		remaining_reqs_count`
	netLeaves = `activate_fails cfg_fails no_rx_avail_buffer no_tx_avail_buffer event_fails
		rx_queue_event_count rx_event_rate_limiter_count rx_rate_limiter_throttled
		rx_tap_event_count rx_bytes_count rx_packets_count rx_fails rx_count
		tap_read_fails tap_write_fails tap_write_agg{} tx_bytes_count tx_malformed_frames
		tx_fails tx_count tx_packets_count tx_queue_event_count tx_rate_limiter_event_count
		tx_rate_limiter_throttled tx_spoofed_mac_count tx_remaining_reqs_count`
	pmemLeaves = `activate_fails cfg_fails event_fails queue_event_count
		rate_limiter_throttled_events rate_limiter_event_count`
	vhostUserLeaves = `activate_fails cfg_fails init_time_us activate_time_us config_change_time_us`

	before = [][2]string{ // sections before the block devices
		{"api_server", "process_startup_time_us process_startup_time_cpu_us"},
		{"balloon", `activate_fails inflate_count stats_updates_count stats_update_fails
			deflate_count event_fails free_page_report_count free_page_report_freed
			free_page_report_fails free_page_hint_count free_page_hint_freed free_page_hint_fails`},
	}
	legacy = [][2]string{
		{"deprecated_api", "deprecated_http_api_calls"},
		{"get_api_requests", "instance_info_count machine_cfg_count mmds_count vmm_version_count hotplug_memory_count"},
		{"i8042", "error_count missed_read_count missed_write_count read_count reset_count write_count"},
	}
	rtcSection = [2]string{"rtc", "error_count missed_read_count missed_write_count"}
	middle     = [][2]string{
		{"uart", "error_count flush_count missed_read_count missed_write_count read_count write_count rate_limiter_dropped_bytes"},
		{"latencies_us", `full_create_snapshot diff_create_snapshot load_snapshot pause_vm resume_vm
			vmm_full_create_snapshot vmm_diff_create_snapshot vmm_load_snapshot vmm_pause_vm vmm_resume_vm`},
		{"logger", "missed_metrics_count metrics_fails missed_log_count rate_limited_log_count"},
		{"mmds", `rx_accepted rx_accepted_err rx_accepted_unusual rx_bad_eth rx_invalid_token
			rx_no_token rx_count tx_bytes tx_count tx_errors tx_frames connections_created
			connections_destroyed`},
	}
	afterNet = [][2]string{
		{"patch_api_requests", `drive_count drive_fails network_count network_fails machine_cfg_count
			machine_cfg_fails mmds_count mmds_fails hotplug_memory_count hotplug_memory_fails
			pmem_count pmem_fails`},
		{"put_api_requests", `actions_count actions_fails boot_source_count boot_source_fails
			drive_count drive_fails logger_count logger_fails machine_cfg_count machine_cfg_fails
			cpu_cfg_count cpu_cfg_fails metrics_count metrics_fails network_count network_fails
			mmds_count mmds_fails vsock_count vsock_fails pmem_count pmem_fails serial_count
			serial_fails hotplug_memory_count hotplug_memory_fails`},
		{"seccomp", "num_faults"},
		{"vcpu", `exit_io_in exit_io_out exit_mmio_read exit_mmio_write failures kvmclock_ctrl_fails
			exit_io_in_agg{} exit_io_out_agg{} exit_mmio_read_agg{} exit_mmio_write_agg{}`},
		{"vmm", "panic_count"},
		{"signals", "sigbus sigsegv sigxfsz sigxcpu sigpipe sighup sigill"},
		{"vsock", `activate_fails cfg_fails rx_queue_event_fails tx_queue_event_fails
			ev_queue_event_fails muxer_event_fails conn_event_fails rx_queue_event_count
			tx_queue_event_count rx_bytes_count tx_bytes_count rx_packets_count tx_packets_count
			conns_added conns_killed conns_removed killq_resync tx_flush_fails tx_write_fails
			rx_read_fails`},
		{"entropy", `activate_fails entropy_event_fails entropy_event_count entropy_bytes
			host_rng_fails entropy_rate_limiter_throttled rate_limiter_event_count`},
	}
	tail = [][2]string{
		{"interrupts", "triggers config_updates"},
		{"memory_hotplug", `activate_fails queue_event_fails queue_event_count plug_agg{}
			plug_count plug_bytes plug_fails unplug_agg{} unplug_count unplug_bytes unplug_fails
			unplug_discard_fails unplug_all_agg{} unplug_all_count unplug_all_fails state_agg{}
			state_count state_fails`},
	}
)

// devs names the registered devices of a line.
type devs struct {
	rtc                           bool
	blocks, nets, pmems, vhostBlk []string
}

// wantPaths returns every leaf path of a line, in order, with the optional
// header fields given as literal paths.
func wantPaths(d devs, header ...string) []string {
	out := []string{"utc_timestamp_ms"}
	out = append(out, header...)
	add := func(sec, leaves string) {
		for _, l := range strings.Fields(leaves) {
			if name, ok := strings.CutSuffix(l, "{}"); ok {
				for _, s := range []string{"min_us", "max_us", "sum_us"} {
					out = append(out, sec+"."+name+"."+s)
				}
				continue
			}
			out = append(out, sec+"."+l)
		}
	}
	addAll := func(secs [][2]string) {
		for _, s := range secs {
			add(s[0], s[1])
		}
	}
	addAll(before)
	for _, id := range d.blocks {
		add("block_"+id, blockLeaves)
	}
	add("block", blockLeaves)
	addAll(legacy)
	if d.rtc {
		add(rtcSection[0], rtcSection[1])
	}
	addAll(middle)
	for _, id := range d.nets {
		add("net_"+id, netLeaves)
	}
	add("net", netLeaves)
	addAll(afterNet)
	for _, id := range d.pmems {
		add("pmem_"+id, pmemLeaves)
	}
	add("pmem", pmemLeaves)
	for _, id := range d.vhostBlk {
		add("vhost_user_block_"+id, vhostUserLeaves)
	}
	addAll(tail)
	return out
}

// leaves parses a line and returns its leaf paths in order with their
// values; numbers are checked to be non-negative integers, strings are
// allowed only for "id" and properties values.
func leaves(t *testing.T, line []byte) (paths []string, values map[string]string) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	values = map[string]string{}
	var walk func(prefix string) error
	walk = func(prefix string) error {
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key := tok.(string)
			path := key
			if prefix != "" {
				path = prefix + "." + key
			}
			if _, dup := values[path]; dup {
				return fmt.Errorf("duplicate key %q", path)
			}
			tok, err = dec.Token()
			if err != nil {
				return err
			}
			switch v := tok.(type) {
			case json.Delim:
				if v != '{' {
					return fmt.Errorf("%s: unexpected %v", path, v)
				}
				n := len(paths)
				if err := walk(path); err != nil {
					return err
				}
				if _, err := dec.Token(); err != nil { // '}'
					return err
				}
				if path == "properties" && len(paths) == n {
					values[path] = "{}" // an empty map still shows
					paths = append(paths, path)
				}
			case json.Number:
				if strings.ContainsAny(v.String(), "-.eE") {
					return fmt.Errorf("%s: %s is not a non-negative integer", path, v)
				}
				values[path] = v.String()
				paths = append(paths, path)
			case string:
				if path != "id" && !strings.HasPrefix(path, "properties.") {
					return fmt.Errorf("%s: unexpected string %q", path, v)
				}
				values[path] = v
				paths = append(paths, path)
			default:
				return fmt.Errorf("%s: unexpected %T", path, tok)
			}
		}
		return nil
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("line does not start an object: %v %v\n%s", tok, err, line)
	}
	if err := walk(""); err != nil {
		t.Fatalf("%v\n%s", err, line)
	}
	if _, err := dec.Token(); err != nil {
		t.Fatalf("line does not end its object: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("trailing data after the object: %v", err)
	}
	return paths, values
}

func diffPaths(t *testing.T, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for i := 0; i < len(got) || i < len(want); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Fatalf("key %d: got %q, want %q (got %d keys, want %d)", i, g, w, len(got), len(want))
		}
	}
}

func TestKeysAndOrder(t *testing.T) {
	tests := []struct {
		name  string
		rtc   bool
		setup func(m *Metrics)
		d     devs
	}{
		{name: "no devices", d: devs{}},
		{
			name:  "one drive one nic",
			setup: func(m *Metrics) { m.Block("rootfs"); m.Net("eth0") },
			d:     devs{blocks: []string{"rootfs"}, nets: []string{"eth0"}},
		},
		{name: "rtc on arm64", rtc: true, d: devs{rtc: true}},
		{
			name: "devices sorted by id in byte order",
			setup: func(m *Metrics) {
				for _, id := range []string{"scratch", "Root", "a_1", "a"} {
					m.Block(id)
				}
				m.Net("eth1")
				m.Net("eth0")
				m.Pmem("pm1")
				m.Pmem("pm0")
				m.VhostUserBlock("vub")
				m.Block("Root") // again: no second section
			},
			d: devs{
				blocks:   []string{"Root", "a", "a_1", "scratch"},
				nets:     []string{"eth0", "eth1"},
				pmems:    []string{"pm0", "pm1"},
				vhostBlk: []string{"vub"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(WithRTC(tt.rtc))
			if tt.setup != nil {
				tt.setup(m)
			}
			got, _ := leaves(t, m.Line())
			diffPaths(t, got, wantPaths(tt.d))
		})
	}
}

func TestSectionPlans(t *testing.T) {
	// Every section's keys are distinct (New would have panicked on a bad plan).
	for _, p := range New(WithRTC(true)).parts {
		s, ok := p.(*section)
		if !ok {
			continue // a device family; its plan is checked below
		}
		seen := map[string]bool{}
		for _, l := range s.leaves {
			if seen[l.key] {
				t.Errorf("section %s repeats %s", s.key, l.key)
			}
			seen[l.key] = true
		}
	}
	for _, typ := range []any{&BlockDeviceMetrics{}, &NetDeviceMetrics{}, &PmemDeviceMetrics{}, &VhostUserBlockMetrics{}} {
		if _, err := planOf(reflectElem(typ)); err != nil {
			t.Errorf("planOf(%T): %v", typ, err)
		}
	}

	type noTag struct{ A Counter }
	type badType struct {
		A uint64 `metric:"a"`
	}
	for _, typ := range []any{&noTag{}, &badType{}, new(int)} {
		if _, err := planOf(reflectElem(typ)); err == nil {
			t.Errorf("planOf(%T) accepted an invalid section", typ)
		}
	}
}
