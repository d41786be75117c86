package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ember-vmm/ember/internal/metrics"
	"github.com/ember-vmm/ember/internal/strictjson"
	"github.com/ember-vmm/ember/internal/vmconfig"
	"github.com/ember-vmm/ember/internal/vmm"
)

var fuzzMethods = [...]string{"GET", "PUT", "PATCH", "DELETE"}

// FuzzParse routes an arbitrary method, path and body through the request
// parser every API request goes through, so every endpoint's body decoder
// sees arbitrary bytes. Nothing may panic; a refusal is a 400 with a
// non-empty fault_message that encodes as JSON; a decoding failure carries
// serde's prefix and final period; and an accepted body, encoded again and
// parsed again on the same route, gives the same action (round trip).
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		for i, m := range fuzzMethods {
			if m == s.method {
				f.Add(uint8(i), s.path, []byte(s.body))
			}
		}
	}
	f.Fuzz(func(t *testing.T, method uint8, path string, body []byte) {
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		if !utf8.ValidString(path) {
			// microhttp refuses a target that is not UTF-8 before routing.
			return
		}
		if len(body) == 0 {
			body = nil // no Content-Length, or 0: no body at all
		}
		p, perr := parse(m, path, body, metrics.New())
		if perr != nil {
			checkRefusal(t, perr)
			return
		}
		if p.action == nil {
			t.Fatalf("%s %q: no action and no error", m, path)
		}
		checkRoundTrip(t, m, path, body, p)
	})
}

func checkRefusal(t *testing.T, e *requestError) {
	t.Helper()
	if e.msg == "" || e.debug == "" || !utf8.ValidString(e.msg) {
		t.Fatalf("bad refusal %+v", e)
	}
	const serde = "An error occurred when deserializing the json body of a request: "
	if strings.HasPrefix(e.msg, serde) && (len(e.msg) == len(serde)+1 || !strings.HasSuffix(e.msg, ".")) {
		t.Fatalf("serde refusal %q", e.msg)
	}
	resp := faultResponse(400, e.msg)
	var f struct {
		FaultMessage string `json:"fault_message"`
	}
	if err := json.Unmarshal(resp.Body, &f); err != nil || f.FaultMessage != e.msg || resp.Status != 400 {
		t.Fatalf("fault body %q for %q (%v)", resp.Body, e.msg, err)
	}
}

// checkRoundTrip encodes the decoded body carried by p's action and parses
// it again on the same route: the action must come back equal.
func checkRoundTrip(t *testing.T, method, path string, body []byte, p *parsed) {
	t.Helper()
	var payload any
	switch a := p.action.(type) {
	case vmm.HotUnplug:
		return // no body
	case vmm.UpdateMachineConfig:
		payload = a.Update
		if method == "PUT" {
			// PUT decodes a MachineConfig and turns it into an update.
			var c vmconfig.MachineConfig
			mustDecode(t, body, &c)
			payload = c
		}
	case vmm.LoadSnapshot:
		// The action folds the deprecated fields; re-encode the body type.
		var c vmconfig.LoadSnapshotConfig
		c.HugePages = "Snapshot" // preset as the route does
		mustDecode(t, body, &c)
		payload = c
	case vmm.PutMMDS:
		checkValue(t, a.Value)
		return
	case vmm.PatchMMDS:
		checkValue(t, a.Value)
		return
	default:
		v := reflect.ValueOf(a)
		if v.NumField() == 0 {
			return
		}
		payload = v.Field(0).Interface()
	}
	payload = withDefaults(payload)
	enc, err := strictjson.Marshal(payload)
	if err != nil {
		t.Fatalf("%s %s: encoding %#v: %v", method, path, payload, err)
	}
	p2, perr := parse(method, path, enc, metrics.New())
	if perr != nil {
		t.Fatalf("%s %s: %s decoded, re-encoded as %s, refused: %s", method, path, body, enc, perr.msg)
	}
	if !reflect.DeepEqual(p.action, p2.action) && !floatDrift(enc) {
		t.Fatalf("%s %s: round trip changed the action\nbody %s\nenc  %s\n%#v\n%#v", method, path, body, enc, p.action, p2.action)
	}
}

// withDefaults fills in the defaults Firecracker's serde gives fields a
// body left out where ember's decoding leaves them empty and the
// controller supplies them (huge_pages None, MMDS version V1): an empty
// value is not one of the enum's variants and does not encode.
func withDefaults(payload any) any {
	switch c := payload.(type) {
	case vmconfig.MachineConfig:
		if c.HugePages == "" {
			c.HugePages = vmconfig.HugePagesNone
		}
		return c
	case vmconfig.MMDSConfig:
		if c.Version == "" {
			c.Version = vmconfig.MMDSV1
		}
		return c
	}
	return payload
}

func mustDecode(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := strictjson.Unmarshal(body, v); err != nil {
		t.Fatalf("%s was accepted by the route but does not decode alone: %v", body, err)
	}
}

// checkValue checks that MMDS data survives compaction and re-parsing.
func checkValue(t *testing.T, v strictjson.Value) {
	t.Helper()
	c := v.Compact()
	w, err := strictjson.ParseValue(c)
	if err != nil {
		t.Fatalf("compact form %s does not parse: %v", c, err)
	}
	if !v.Equal(w) && !floatDrift(c) {
		t.Fatalf("round trip changed the value: %s -> %s", c, w.Compact())
	}
}

// floatDrift reports whether enc holds a floating-point number: serde_json's
// default float parser is not correctly rounded, so text -> f64 -> text may
// drift in the last digit, as it does in Firecracker.
func floatDrift(enc []byte) bool {
	return strings.ContainsAny(string(enc), ".eE")
}

// fuzzSeeds cover every route with a valid body and a few broken ones.
var fuzzSeeds = []struct{ method, path, body string }{
	{"GET", "/", ""},
	{"GET", "/machine-config", ""},
	{"GET", "/balloon/hinting/status", ""},
	{"GET", "/", "{}"},
	{"PUT", "/actions", `{"action_type":"InstanceStart"}`},
	{"PUT", "/actions", `{"action_type":"Boot"}`},
	{"PUT", "/balloon", `{"amount_mib":1,"deflate_on_oom":true,"stats_polling_interval_s":5}`},
	{"PUT", "/boot-source", `{"kernel_image_path":"/k","initrd_path":null,"boot_args":"console=ttyS0"}`},
	{"PUT", "/cpu-config", `{"kvm_capabilities":["!56"],"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0b0","flags":0,"modifiers":[{"register":"eax","bitmap":"0bxxxx000000000011111111xxxxxxxxxx"}]}],"msr_modifiers":[{"addr":"0x10a","bitmap":"0b0000000000000000000000000000000000000000000000000000000000000001"}]}`},
	{"PUT", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/r","is_root_device":true,"is_read_only":false,"cache_type":"Writeback","io_engine":"Sync","rate_limiter":{"bandwidth":{"size":1,"refill_time":2,"one_time_burst":3}}}`},
	{"PUT", "/drives/v", `{"drive_id":"v","is_root_device":false,"socket":"/s"}`},
	{"PUT", "/pmem/p", `{"id":"p","path_on_host":"/x","root_device":true,"read_only":true}`},
	{"PUT", "/logger", `{"log_path":"l","level":"Warning","show_level":true,"show_log_origin":false,"module":"m"}`},
	{"PUT", "/serial", `{"serial_out_path":"s","rate_limiter":{"size":10,"refill_time":100}}`},
	{"PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":256,"smt":true,"cpu_template":"T2","track_dirty_pages":true,"huge_pages":"2M"}`},
	{"PUT", "/metrics", `{"metrics_path":"m","emit_id":true,"properties":{"a":"b"}}`},
	{"PUT", "/mmds", `{"latest":{"meta-data":{"x":[1,2.5,-3e7,true,null,"s"]}}}`},
	{"PUT", "/mmds/config", `{"version":"V2","network_interfaces":["eth0"],"ipv4_address":"169.254.169.250","imds_compat":true}`},
	{"PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"06:00:AC:10:00:02","mtu":1500,"rx_rate_limiter":{"ops":{"size":1,"refill_time":1}}}`},
	{"PUT", "/snapshot/create", `{"snapshot_type":"Diff","snapshot_path":"s","mem_file_path":"m"}`},
	{"PUT", "/snapshot/load", `{"snapshot_path":"s","mem_backend":{"backend_type":"Uffd","backend_path":"u"},"resume_vm":true,"network_overrides":[{"iface_id":"eth0","host_dev_name":"tap1"}],"vsock_override":{"uds_path":"v"},"huge_pages":"None"}`},
	{"PUT", "/vsock", `{"vsock_id":"v","guest_cid":3,"uds_path":"v.sock"}`},
	{"PUT", "/entropy", `{"rate_limiter":{"bandwidth":{"size":0,"refill_time":0}}}`},
	{"PUT", "/hotplug/memory", `{"total_size_mib":1024,"block_size_mib":4,"slot_size_mib":256}`},
	{"PATCH", "/balloon", `{"amount_mib":7}`},
	{"PATCH", "/balloon/statistics", `{"stats_polling_interval_s":2}`},
	{"PATCH", "/balloon/hinting/start", `{"acknowledge_on_stop":false}`},
	{"PATCH", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/r2"}`},
	{"PATCH", "/machine-config", `{"mem_size_mib":512}`},
	{"PATCH", "/mmds", `{"a":null,"b":{"c":1}}`},
	{"PATCH", "/network-interfaces/eth0", `{"iface_id":"eth0","tx_rate_limiter":{"bandwidth":{"size":5,"refill_time":5}}}`},
	{"PATCH", "/pmem/p", `{"id":"p","rate_limiter":null}`},
	{"PATCH", "/vm", `{"state":"Paused"}`},
	{"PATCH", "/hotplug/memory", `{"requested_size_mib":256}`},
	{"DELETE", "/drives/rootfs", ""},
	{"PUT", "/machine-config", `{"vcpu_count":"2","mem_size_mib":128}`},
	{"PUT", "/drives/a-b", `{}`},
}
