package api

import (
	"fmt"
	"testing"

	"github.com/ember-vmm/ember/internal/metrics"
	"github.com/ember-vmm/ember/internal/vmm"
)

// TestParse checks routing and request errors against Firecracker's
// ParsedRequest: which action a request becomes, or which fault_message it
// gets, in Firecracker's order of checks.
func TestParse(t *testing.T) {
	const serdePrefix = "An error occurred when deserializing the json body of a request: "
	tests := []struct {
		method, path, body string
		want               string // action type name, or "error: <message>"
		deprecation        string
	}{
		{"GET", "/", "", "vmm.GetInstanceInfo", ""},
		{"GET", "", "", "vmm.GetInstanceInfo", ""},
		{"GET", "/version", "", "vmm.GetVersion", ""},
		{"GET", "/vm/config", "", "vmm.GetFullConfig", ""},
		{"GET", "/vm", "", "error: Invalid request method and/or path: GET vm.", ""},
		{"GET", "/vm/other", "", "error: Invalid request method and/or path: GET vm.", ""},
		{"GET", "/machine-config", "", "vmm.GetMachineConfig", ""},
		{"GET", "/machine-config/extra/tokens", "", "vmm.GetMachineConfig", ""},
		{"GET", "/mmds", "", "vmm.GetMMDS", ""},
		{"GET", "/balloon", "", "vmm.GetBalloonConfig", ""},
		{"GET", "/balloon/statistics", "", "vmm.GetBalloonStats", ""},
		{"GET", "/balloon/hinting/status", "", "vmm.GetHintingStatus", ""},
		{"GET", "/balloon/hinting", "", "error: Unrecognized GET request path `/hinting/`.", ""},
		{"GET", "/balloon/hinting/x", "", "error: Unrecognized GET request path `/hinting/x`.", ""},
		{"GET", "/balloon/foo", "", "error: Unrecognized GET request path `foo`.", ""},
		{"GET", "/hotplug/memory", "", "vmm.GetMemoryHotplugStatus", ""},
		{"GET", "/ember/state", "", "vmm.GetEmberState", ""},
		{"GET", "/foo", "", "error: Invalid request method and/or path: GET foo.", ""},
		{"GET", "/", "{}", "error: GET request cannot have a body.", ""},
		{"GET", "/machine-config", "{}", "error: GET request cannot have a body.", ""},
		{"PUT", "/boot-source", "", "error: Empty PUT request.", ""},
		{"PUT", "/nothing", "", "error: Empty PUT request.", ""},
		{"PATCH", "/boot-source", "{}", "error: Invalid request method and/or path: PATCH boot-source.", ""},
		{"PATCH", "/logger", "{}", "error: Invalid request method and/or path: PATCH logger.", ""},
		{"PATCH", "/machine-config", "", "error: Empty PATCH request.", ""},
		{"PATCH", "/machine-config", "{}", "error: Empty PATCH request.", ""},
		{"PATCH", "/machine-config", `{"vcpu_count":2}`, "vmm.UpdateMachineConfig", ""},
		{"PATCH", "/machine-config", `{"cpu_template":"T2"}`, "vmm.UpdateMachineConfig", "PATCH /machine-config: cpu_template field is deprecated."},
		{"PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":256}`, "vmm.UpdateMachineConfig", ""},
		{"PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":256,"cpu_template":"None"}`, "vmm.UpdateMachineConfig", "PUT /machine-config: cpu_template field is deprecated."},
		{"PUT", "/machine-config", `{"mem_size_mib": 128}`, "error: " + serdePrefix + "missing field `vcpu_count` at line 1 column 21.", ""},
		{"PUT", "/machine-config", `{"vcpu_count":"2","mem_size_mib":128}`, "error: " + serdePrefix + `invalid type: string "2", expected u8 at line 1 column 17.`, ""},
		{"PUT", "/machine-config", `{"vcpu_count":256,"mem_size_mib":128}`, "error: " + serdePrefix + "invalid value: integer `256`, expected u8 at line 1 column 17.", ""},
		{"PUT", "/actions", `{"action_type":"InstanceStart"}`, "vmm.StartMicroVM", ""},
		{"PUT", "/actions", `{"action_type":"FlushMetrics"}`, "vmm.FlushMetrics", ""},
		{"PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`, "vmm.SendCtrlAltDel", ""},
		{"PUT", "/actions", `{"action_type":"Boot"}`, "error: " + serdePrefix + "unknown variant `Boot`, expected one of `FlushMetrics`, `InstanceStart`, `SendCtrlAltDel` at line 1 column 21.", ""},
		{"PUT", "/drives", `{}`, "error: The ID cannot be empty.", ""},
		{"PUT", "/drives/", `{}`, "error: The ID cannot be empty.", ""},
		{"PUT", "/drives//x", `{}`, "error: The ID cannot be empty.", ""},
		{"PUT", "/drives/a-b", `{}`, "error: API Resource IDs can only contain alphanumeric characters and underscores.", ""},
		{"PUT", "/drives/a/b", `{"drive_id":"a","is_root_device":false,"path_on_host":"/x"}`, "vmm.InsertDrive", ""},
		{"PUT", "/drives/b", `{"drive_id":"a","is_root_device":false,"path_on_host":"/x"}`, "error: The id from the path does not match the id from the body!", ""},
		{"PUT", "/drives/ünï_1", `{"drive_id":"ünï_1","is_root_device":false,"path_on_host":"/x"}`, "vmm.InsertDrive", ""},
		{"PATCH", "/drives/a", `{"drive_id":"a","is_read_only":true}`, "error: " + serdePrefix + "unknown field `is_read_only`, expected one of `drive_id`, `path_on_host`, `rate_limiter` at line 1 column 30.", ""},
		{"PUT", "/network-interfaces/eth0", `{"iface_id":"eth1","host_dev_name":"tap0"}`, "error: The id from the path [eth0] does not match the id from the body [eth1]!", ""},
		{"PATCH", "/network-interfaces/eth0", `{"iface_id":"eth1"}`, "error: The id from the path [eth0] does not match the id from the body [eth1]!", ""},
		{"PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"zz"}`, "error: " + serdePrefix + "The provided MAC address is invalid. at line 1 column 59.", ""},
		{"PUT", "/pmem/p", `{"id":"q","path_on_host":"/x"}`, "error: The id from the path does not match the id from the body!", ""},
		{"PUT", "/mmds", `{"a":1}`, "vmm.PutMMDS", ""},
		{"PUT", "/mmds/config", `{"network_interfaces":[]}`, "vmm.SetMMDSConfig", "PUT /mmds/config: V1 is deprecated. Use V2 instead."},
		{"PUT", "/mmds/config", `{"version":"V2","network_interfaces":[]}`, "vmm.SetMMDSConfig", ""},
		{"PUT", "/mmds/config", `{"version":"foo","network_interfaces":[]}`, "error: " + serdePrefix + "unknown variant `foo`, expected `V1` or `V2` at line 1 column 16.", ""},
		{"PUT", "/mmds/foo", `{}`, "error: Unrecognized PUT request path `foo`.", ""},
		{"PATCH", "/mmds", `{"a":null}`, "vmm.PatchMMDS", ""},
		{"PUT", "/vsock", `{"guest_cid":3,"uds_path":"v.sock","vsock_id":"x"}`, "vmm.SetVsock", "PUT /vsock: vsock_id field is deprecated."},
		{"PUT", "/snapshot", `{}`, "error: Missing snapshot operation type.", ""},
		{"PUT", "/snapshot/x", `{}`, "error: Invalid request method and/or path: PUT /snapshot/x.", ""},
		{"PUT", "/snapshot/create", `{"snapshot_path":"s","mem_file_path":"m"}`, "vmm.CreateSnapshot", ""},
		{"PUT", "/snapshot/load", `{"snapshot_path":"s"}`, "error: " + serdePrefix + "missing field: either `mem_backend` or `mem_file_path` is required.", ""},
		{"PUT", "/snapshot/load", `{"snapshot_path":"s","mem_file_path":"m","mem_backend":{"backend_type":"File","backend_path":"m"}}`, "error: " + serdePrefix + "too many fields: either `mem_backend` or `mem_file_path` exclusively is required.", ""},
		{"PUT", "/snapshot/load", `{"snapshot_path":"s","mem_file_path":"m"}`, "vmm.LoadSnapshot", "PUT /snapshot/load: mem_file_path and enable_diff_snapshots fields are deprecated."},
		{"PATCH", "/vm", `{"state":"Paused"}`, "vmm.Pause", ""},
		{"PATCH", "/vm", `{"state":"Resumed"}`, "vmm.Resume", ""},
		{"PATCH", "/balloon", `{"amount_mib":1}`, "vmm.UpdateBalloon", ""},
		{"PATCH", "/balloon/anything", `{"amount_mib":1}`, "vmm.UpdateBalloon", ""},
		{"PATCH", "/balloon/statistics", `{"stats_polling_interval_s":1}`, "vmm.UpdateBalloonStats", ""},
		{"PATCH", "/balloon/statistics", "", "error: Empty PATCH request.", ""},
		{"PATCH", "/balloon/hinting/start", "", "vmm.StartHinting", ""},
		{"PATCH", "/balloon/hinting/stop", "", "vmm.StopHinting", ""},
		{"PATCH", "/balloon/hinting/go", "", "error: Unrecognized PATCH request path `/hinting/go`.", ""},
		{"PATCH", "/balloon", "", "error: Empty PATCH request.", ""},
		{"DELETE", "/drives/a", "", "vmm.HotUnplug", ""},
		{"DELETE", "/drives", "", "error: The ID cannot be empty.", ""},
		{"DELETE", "/drives/a", "{}", "error: Empty Delete request.", ""},
		{"DELETE", "/boot-source", "", "error: Invalid request method and/or path: DELETE boot-source.", ""},
		{"PUT", "/hotplug/memory", `{"total_size_mib":1024}`, "vmm.SetMemoryHotplug", ""},
		{"PATCH", "/hotplug/memory", `{"requested_size_mib":512}`, "vmm.UpdateMemoryHotplug", ""},
		{"PUT", "/hotplug/cpu", `{}`, "error: Invalid request method and/or path: PUT hotplug.", ""},
		{"PUT", "/logger", `{"level":"WARNING"}`, "vmm.ConfigureLogger", ""},
		{"PUT", "/logger", `{"level":"loud"}`, "error: " + serdePrefix + "Invalid LevelFilter at line 1 column 16.", ""},
		{"PUT", "/metrics", `{"metrics_path":"m","unknown":1}`, "vmm.ConfigureMetrics", ""},
		{"PUT", "/serial", `{"serial_out_path":"s"}`, "vmm.ConfigureSerial", ""},
		{"PUT", "/entropy", `{}`, "vmm.SetEntropy", ""},
		{"PUT", "/balloon", `{"amount_mib":1,"deflate_on_oom":true}`, "vmm.SetBalloon", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.body, func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			p, err := parse(tt.method, tt.path, body, metrics.New())
			got := ""
			if err != nil {
				got = "error: " + err.msg
			} else {
				got = fmt.Sprintf("%T", p.action)
			}
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if err == nil && p.deprecation != tt.deprecation {
				t.Errorf("deprecation = %q, want %q", p.deprecation, tt.deprecation)
			}
		})
	}
}

var _ vmm.Action = vmm.GetVersion{}
