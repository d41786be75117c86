package conformance

// Firecracker's error texts, request by request: serde's messages with
// their line/column, the configuration rules of each resource, routing
// errors and resource ids. Each table runs on its own fresh process, in
// order (later rows may depend on earlier ones).

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// col returns the 1-based column where token ends in body: where serde
// reports an error about that token.
func col(t testing.TB, body, token string) int {
	t.Helper()
	i := strings.Index(body, token)
	if i < 0 {
		t.Fatalf("%q not in %q", token, body)
	}
	return i + len(token)
}

const machineFields = "`vcpu_count`, `mem_size_mib`, `smt`, `cpu_template`, `track_dirty_pages`, `huge_pages`"

func TestErrorsMachineConfig(t *testing.T) {
	t.Parallel()
	e := startEmber(t)
	const vcpuRule = "Machine config error: The number of vCPUs must be greater than 0, less than 32 and must be 1 or an even number if SMT is enabled."
	const memRule = "Machine config error: The memory size (MiB) is either 0, or not a multiple of the configured page size."
	cases := []apiCase{
		// Bodies as Python's json.dumps writes them, as in Firecracker's tests.
		{"missing vcpu_count", "PUT", "/machine-config", `{"mem_size_mib": 128}`, serde("missing field `vcpu_count` at line 1 column 21")},
		{"missing mem_size_mib", "PUT", "/machine-config", `{"vcpu_count": 2}`, serde("missing field `mem_size_mib` at line 1 column 17")},
		{"string for u8", "PUT", "/machine-config", `{"vcpu_count": "2", "mem_size_mib": 128}`, serde(`invalid type: string "2", expected u8 at line 1 column 18`)},
		{"u8 overflow", "PUT", "/machine-config", `{"vcpu_count": 256, "mem_size_mib": 128}`, serde("invalid value: integer `256`, expected u8 at line 1 column 18")},
		{"negative u8", "PUT", "/machine-config", `{"vcpu_count": -1, "mem_size_mib": 128}`, serde("invalid value: integer `-1`, expected u8 at line 1 column 17")},
		{"float for u8", "PUT", "/machine-config", `{"vcpu_count": 1.5, "mem_size_mib": 128}`, serde("invalid type: floating point `1.5`, expected u8 at line 1 column 18")},
		{"null for u8", "PUT", "/machine-config", `{"vcpu_count": null, "mem_size_mib": 128}`, serde("invalid type: null, expected u8 at line 1 column 19")},
		{"usize overflow", "PUT", "/machine-config", `{"vcpu_count": 2, "mem_size_mib": 18446744073709551616}`,
			serde("invalid type: floating point `1.8446744073709552e+19`, expected usize at line 1 column 54")},
		{"unknown field", "PUT", "/machine-config", `{"vcpu_count": 2, "mem_size_mib": 128, "foo": 1}`,
			serde("unknown field `foo`, expected one of " + machineFields + " at line 1 column 44")},
		{"duplicate field", "PUT", "/machine-config", `{"vcpu_count": 2, "mem_size_mib": 128, "vcpu_count": 3}`, serde("duplicate field `vcpu_count` at line 1 column 51")},
		{"string for bool", "PUT", "/machine-config", `{"vcpu_count": 2, "mem_size_mib": 128, "smt": "true"}`, serde(`invalid type: string "true", expected a boolean at line 1 column 52`)},
		{"unknown huge_pages", "PUT", "/machine-config", `{"vcpu_count": 2, "mem_size_mib": 128, "huge_pages": "1G"}`,
			serde("unknown variant `1G`, expected one of `None`, `Transparent`, `2M` at line 1 column 57")},
		{"unknown cpu_template", "PUT", "/machine-config", `{"vcpu_count": 2, "mem_size_mib": 128, "cpu_template": "c3"}`,
			serde("unknown variant `c3`, expected one of `C3`, `T2`, `T2S`, `None`, `T2CL`, `T2A` at line 1 column 59")},
		{"trailing characters", "PUT", "/machine-config", `{"vcpu_count": 2, "mem_size_mib": 128} x`, serde("trailing characters at line 1 column 40")},
		{"not an object", "PUT", "/machine-config", `[2]`, serde("invalid length 1, expected struct MachineConfig with 6 elements at line 1 column 3")},
		{"zero vCPUs", "PUT", "/machine-config", `{"vcpu_count":0,"mem_size_mib":128}`, bad(vcpuRule)},
		{"33 vCPUs", "PUT", "/machine-config", `{"vcpu_count":33,"mem_size_mib":128}`, bad(vcpuRule)},
		{"odd vCPUs with SMT", "PUT", "/machine-config", `{"vcpu_count":3,"mem_size_mib":128,"smt":true}`, bad(vcpuRule)},
		{"even vCPUs with SMT", "PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":128,"smt":true}`, ok204()},
		{"zero memory", "PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":0}`, bad(memRule)},
		{"odd memory with 2M pages", "PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":129,"huge_pages":"2M"}`, bad(memRule)},
		{"odd memory with THP", "PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":129,"huge_pages":"Transparent"}`, bad(memRule)},
		{"failed PUTs changed nothing", "GET", "/machine-config", "", ok200(`{"vcpu_count":2,"mem_size_mib":128,"smt":true,"track_dirty_pages":false,"huge_pages":"None"}`)},
		{"empty PATCH", "PATCH", "/machine-config", `{}`, bad("Empty PATCH request.")},
		{"PATCH zero memory", "PATCH", "/machine-config", `{"mem_size_mib":0}`, bad(memRule)},
		{"PATCH odd vCPUs keeps SMT", "PATCH", "/machine-config", `{"vcpu_count":3}`, bad(vcpuRule)},
		{"PATCH unknown field", "PATCH", "/machine-config", `{"is_read_only": true}`, serde("unknown field `is_read_only`, expected one of " + machineFields + " at line 1 column 15")},
		{"PATCH smt off", "PATCH", "/machine-config", `{"smt":false}`, ok204()},
		{"PUT resets omitted fields", "PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":256}`, ok204()},
		{"", "GET", "/machine-config", "", ok200(`{"vcpu_count":1,"mem_size_mib":256,"smt":false,"track_dirty_pages":false,"huge_pages":"None"}`)},
		{"deprecated cpu_template on PUT", "PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":256,"cpu_template":"None"}`, expectation{status: 204, deprecation: true}},
		{"deprecated cpu_template on PATCH", "PATCH", "/machine-config", `{"cpu_template":"None"}`, expectation{status: 204, deprecation: true}},
		{"static template on this backend", "PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":256,"cpu_template":"T2"}`,
			expectation{status: 400, fault: "Machine config error: The qemu backend does not support CPU templates.", deprecation: true}},
		{"balloon for the next rows", "PUT", "/balloon", `{"amount_mib":64,"deflate_on_oom":false}`, ok204()},
		{"memory below the balloon", "PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":32}`,
			bad("Machine config error: The memory size (MiB) is smaller than the previously set balloon device target size.")},
		{"PATCH memory below the balloon", "PATCH", "/machine-config", `{"mem_size_mib":63}`,
			bad("Machine config error: The memory size (MiB) is smaller than the previously set balloon device target size.")},
		{"memory equal to the balloon", "PATCH", "/machine-config", `{"mem_size_mib":64}`, ok204()},
	}
	runCases(t, e.client(), cases)
	for _, line := range []string{"PUT /machine-config: cpu_template field is deprecated.", "PATCH /machine-config: cpu_template field is deprecated."} {
		e.waitLog(line, logTimeout)
	}
}

func TestErrorsBootSource(t *testing.T) {
	t.Parallel()
	e := startEmber(t)
	dir := t.TempDir()
	kernel := writeFile(t, dir, "vmlinux", []byte("not really a kernel"))
	q := serdeQuote
	cases := []apiCase{
		{"missing kernel", "PUT", "/boot-source", `{"kernel_image_path":"foo.bar"}`,
			bad("Boot source error: The kernel file cannot be opened: No such file or directory (os error 2)")},
		{"kernel is a directory", "PUT", "/boot-source", `{"kernel_image_path":` + q(dir) + `}`, ok204()},
		{"missing initrd", "PUT", "/boot-source", `{"kernel_image_path":` + q(kernel) + `,"initrd_path":"foo.bar"}`,
			bad("Boot source error: The initrd file cannot be opened due to invalid path or invalid permissions. No such file or directory (os error 2)")},
		{"kernel is checked first", "PUT", "/boot-source", `{"kernel_image_path":"foo.bar","initrd_path":"foo.bar"}`,
			bad("Boot source error: The kernel file cannot be opened: No such file or directory (os error 2)")},
		// Firecracker (linux-loader's Cmdline::try_from) checks only the
		// length of the boot arguments when they are given.
		{"non-printable boot args are not checked", "PUT", "/boot-source", `{"kernel_image_path":` + q(kernel) + `,"boot_args":"console=ttyS0\u0001"}`, ok204()},
		{"boot args at the limit", "PUT", "/boot-source", `{"kernel_image_path":` + q(kernel) + `,"boot_args":"` + strings.Repeat("a", 2047) + `"}`, ok204()},
		{"surrounding spaces do not count", "PUT", "/boot-source", `{"kernel_image_path":` + q(kernel) + `,"boot_args":"  ` + strings.Repeat("a", 2047) + `  "}`, ok204()},
		{"boot args over the limit", "PUT", "/boot-source", `{"kernel_image_path":` + q(kernel) + `,"boot_args":"` + strings.Repeat("a", 2048) + `"}`,
			bad("Boot source error: The kernel command line is invalid: Invalid cmdline capacity provided.")},
		{"missing field", "PUT", "/boot-source", `{"boot_args":"x"}`, serde("missing field `kernel_image_path` at line 1 column 17")},
		{"wrong type", "PUT", "/boot-source", `{"kernel_image_path": 5}`, serde("invalid type: integer `5`, expected a string at line 1 column 23")},
		{"unknown field", "PUT", "/boot-source", `{"kernel_image_path": "/k", "initrd": "x"}`,
			serde("unknown field `initrd`, expected one of `kernel_image_path`, `initrd_path`, `boot_args` at line 1 column 36")},
		{"invalid escape", "PUT", "/boot-source", `{"kernel_image_path": "a\qb"}`, serde("invalid escape at line 1 column 26")},
		{"lone surrogate", "PUT", "/boot-source", `{"kernel_image_path": "\udc00"}`, serde("lone leading surrogate in hex escape at line 1 column 29")},
		{"good", "PUT", "/boot-source", `{"kernel_image_path":` + q(kernel) + `,"boot_args":"console=ttyS0"}`, ok204()},
		{"", "PATCH", "/boot-source", `{"kernel_image_path":` + q(kernel) + `}`, bad("Invalid request method and/or path: PATCH boot-source.")},
	}
	runCases(t, e.client(), cases)
	var cfg struct {
		BootSource map[string]any `json:"boot-source"`
	}
	getJSON(t, e.client(), "/vm/config", &cfg)
	if cfg.BootSource["boot_args"] != "console=ttyS0" || cfg.BootSource["initrd_path"] != nil || cfg.BootSource["kernel_image_path"] != kernel {
		t.Errorf("boot-source after the last good PUT = %v", cfg.BootSource)
	}
}

const driveFields = "`drive_id`, `partuuid`, `is_root_device`, `cache_type`, `is_read_only`, `path_on_host`, `rate_limiter`, `io_engine`, `socket`"

func TestErrorsDrives(t *testing.T) {
	t.Parallel()
	e := startEmber(t)
	dir := t.TempDir()
	img := scratchFile(t, dir, "a.img")
	missing := filepath.Join(dir, "nope", "x.img")
	q := serdeQuote
	drive := func(id string, root bool, extra string) string {
		return fmt.Sprintf(`{"drive_id":%s,"is_root_device":%v,"path_on_host":%s%s}`, q(id), root, q(img), extra)
	}
	unknown := drive("x", false, `,"foo":1`)
	async := drive("x", false, `,"io_engine":"async"`)
	cache := drive("x", false, `,"cache_type":"Bogus"`)
	noRoot := `{"drive_id":"x","path_on_host":` + q(img) + `}`
	cases := []apiCase{
		{"root drive", "PUT", "/drives/rootfs", drive("rootfs", true, ""), ok204()},
		{"second root", "PUT", "/drives/other", drive("other", true, ""), bad("Drive config error: A root block device already exists!")},
		{"replacing the root", "PUT", "/drives/rootfs", drive("rootfs", true, `,"is_read_only":true`), ok204()},
		{"id mismatch", "PUT", "/drives/a", drive("b", false, ""), bad("The id from the path does not match the id from the body!")},
		{"missing file", "PUT", "/drives/x", `{"drive_id":"x","is_root_device":false,"path_on_host":` + q(missing) + `}`,
			bad("Drive config error: Unable to create the virtio block device: Virtio backend error: Error manipulating the backing file: No such file or directory (os error 2) " + missing)},
		{"directory", "PUT", "/drives/x", `{"drive_id":"x","is_root_device":false,"path_on_host":` + q(dir) + `}`,
			bad("Drive config error: Unable to create the virtio block device: Virtio backend error: Error manipulating the backing file: Is a directory (os error 21) " + dir)},
		{"neither path nor socket", "PUT", "/drives/x", `{"drive_id":"x","is_root_device":false}`,
			bad("Drive config error: Unable to create the virtio block device: Invalid block config.")},
		{"path and socket", "PUT", "/drives/x", drive("x", false, `,"socket":"/tmp/vhost.sock"`),
			bad("Drive config error: Unable to create the virtio block device: Invalid block config.")},
		{"unknown field", "PUT", "/drives/x", unknown, serde(fmt.Sprintf("unknown field `foo`, expected one of %s at line 1 column %d", driveFields, col(t, unknown, `"foo"`)))},
		{"missing is_root_device", "PUT", "/drives/x", noRoot, serde(fmt.Sprintf("missing field `is_root_device` at line 1 column %d", len(noRoot)))},
		{"unknown io_engine", "PUT", "/drives/x", async, serde(fmt.Sprintf("unknown variant `async`, expected `Async` or `Sync` at line 1 column %d", col(t, async, `"async"`)))},
		{"unknown cache_type", "PUT", "/drives/x", cache, serde(fmt.Sprintf("unknown variant `Bogus`, expected `Unsafe` or `Writeback` at line 1 column %d", col(t, cache, `"Bogus"`)))},
		{"empty rate limiter is no rate limiter", "PUT", "/drives/x", drive("x", false, `,"rate_limiter":{}`), ok204()},
		{"rate limiter", "PUT", "/drives/y", drive("y", false, `,"rate_limiter":{"bandwidth":{"size":1000000,"refill_time":100}}`), ok204()},
		{"unknown rate limiter field", "PUT", "/drives/y", `{"drive_id":"y","is_root_device":false,"rate_limiter":{"bandwidth":{"size":1,"refill_time":2},"opz":null}}`,
			serde("unknown field `opz`, expected `bandwidth` or `ops` at line 1 column 99")},
		{"token bucket without refill_time", "PUT", "/drives/y", `{"drive_id":"y","is_root_device":false,"rate_limiter":{"ops":{"size":1}}}`,
			serde("missing field `refill_time` at line 1 column 71")},
		{"PATCH is_read_only", "PATCH", "/drives/x", `{"drive_id":"x","is_read_only":true}`,
			serde("unknown field `is_read_only`, expected one of `drive_id`, `path_on_host`, `rate_limiter` at line 1 column 30")},
		{"PATCH id mismatch", "PATCH", "/drives/x", `{"drive_id":"y"}`, bad("The id from the path does not match the id from the body!")},
		{"PATCH before boot", "PATCH", "/drives/x", `{"drive_id":"x","path_on_host":"foo.bar"}`, bad(notPreBoot)},
		{"DELETE before boot", "DELETE", "/drives/x", "", bad(notPreBoot)},
	}
	runCases(t, e.client(), cases)

	// Moving the root: demote it, then promote another drive, which goes
	// first.
	runCases(t, e.client(), []apiCase{
		{"demote the root", "PUT", "/drives/rootfs", drive("rootfs", false, ""), ok204()},
		{"promote x", "PUT", "/drives/x", drive("x", true, ""), ok204()},
		{"a new drive goes last", "PUT", "/drives/y", drive("y", false, ""), ok204()},
	})
	var order struct {
		Drives []struct {
			ID   string `json:"drive_id"`
			Root bool   `json:"is_root_device"`
		} `json:"drives"`
	}
	getJSON(t, e.client(), "/vm/config", &order)
	var ids []string
	for _, d := range order.Drives {
		ids = append(ids, fmt.Sprintf("%s:%v", d.ID, d.Root))
	}
	if got := strings.Join(ids, ","); got != "x:true,rootfs:false,y:false" {
		t.Errorf("drive order after moving the root = %s, want x:true,rootfs:false,y:false", got)
	}
	// Restore the state the checks below expect.
	runCases(t, e.client(), []apiCase{
		{"", "PUT", "/drives/x", drive("x", false, ""), ok204()},
		{"", "PUT", "/drives/rootfs", drive("rootfs", true, `,"is_read_only":true`), ok204()},
		{"", "PUT", "/drives/y", drive("y", false, ""), ok204()},
	})

	// The root drive is listed first whatever the insertion order.
	var cfg struct {
		Drives []map[string]any `json:"drives"`
	}
	getJSON(t, e.client(), "/vm/config", &cfg)
	if len(cfg.Drives) != 3 || cfg.Drives[0]["drive_id"] != "rootfs" || cfg.Drives[1]["drive_id"] != "x" {
		t.Errorf("drives = %v, want rootfs, x, y", cfg.Drives)
	}
	want := `{"drive_id":"rootfs","partuuid":null,"is_root_device":true,"cache_type":"Unsafe","is_read_only":true,"path_on_host":` + q(img) + `,"rate_limiter":null,"io_engine":"Sync","socket":null}`
	if r := e.client().get("/vm/config"); !strings.Contains(string(r.body), `"drives":[`+want+`,`) {
		t.Errorf("root drive as echoed: %s\nwant %s", r.body, want)
	}
}

func TestErrorsNets(t *testing.T) {
	t.Parallel()
	ns := newNetns(t, "tap1", "tap2", "tap3")
	e := startEmberIn(t, ns)
	net := func(id, tap, mac string) string {
		return fmt.Sprintf(`{"iface_id":%q,"host_dev_name":%q,"guest_mac":%q}`, id, tap, mac)
	}
	// Firecracker is a musl binary: its io errors carry musl's strerror texts.
	const busy = "Network config error: Could not create the network device: Open tap device failed: Error while creating ifreq structure: Resource busy (os error 16). Invalid TUN/TAP Backend provided by tap2. Check our documentation on setting up the network devices."
	cases := []apiCase{
		// Firecracker's test_net_api_put_update_pre_boot, step by step.
		{"first", "PUT", "/network-interfaces/1", net("1", "tap1", "06:00:00:00:00:01"), ok204()},
		{"second", "PUT", "/network-interfaces/2", net("2", "tap2", "07:00:00:00:00:01"), ok204()},
		{"duplicate MAC", "PUT", "/network-interfaces/2", net("2", "tap2", "06:00:00:00:00:01"), bad("Network config error: The MAC address is already in use: 06:00:00:00:00:01")},
		{"new MAC", "PUT", "/network-interfaces/2", net("2", "tap2", "08:00:00:00:00:01"), ok204()},
		{"tap in use", "PUT", "/network-interfaces/1", net("1", "tap2", "06:00:00:00:00:01"), bad(busy)},
		// The failed update removed interface 1, so its MAC is free.
		{"third takes the freed MAC", "PUT", "/network-interfaces/3", net("3", "tap3", "06:00:00:00:00:01"), ok204()},
		{"id mismatch", "PUT", "/network-interfaces/a", net("b", "tap1", "06:00:00:00:00:09"), bad("The id from the path [a] does not match the id from the body [b]!")},
		{"invalid MAC", "PUT", "/network-interfaces/eth0", `{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:00:00:00:0z"}`,
			serde("The provided MAC address is invalid. at line 1 column 79")},
		{"MTU too small", "PUT", "/network-interfaces/4", `{"iface_id":"4","host_dev_name":"tap1","mtu":67}`,
			bad("Network config error: Could not create the network device: MTU 67 is out of range [68, 65535]")},
		{"tap name too long", "PUT", "/network-interfaces/4", `{"iface_id":"4","host_dev_name":"tap0123456789abcd"}`,
			bad("Network config error: Could not create the network device: Open tap device failed: Invalid interface name")},
		{"missing host_dev_name", "PUT", "/network-interfaces/4", `{"iface_id":"4"}`, serde("missing field `host_dev_name` at line 1 column 16")},
		{"a missing tap is created, as root", "PUT", "/network-interfaces/5", `{"iface_id":"5","host_dev_name":"newtap5"}`, ok204()},
		{"rate limiter", "PUT", "/network-interfaces/6", `{"iface_id":"6","host_dev_name":"tap1","tx_rate_limiter":{"bandwidth":{"size":1000000,"refill_time":100}}}`, ok204()},
		{"PATCH before boot", "PATCH", "/network-interfaces/2", `{"iface_id":"2"}`, bad(notPreBoot)},
		{"PATCH id mismatch", "PATCH", "/network-interfaces/2", `{"iface_id":"3"}`, bad("The id from the path [2] does not match the id from the body [3]!")},
		{"PATCH unknown field", "PATCH", "/network-interfaces/2", `{"iface_id":"2","mtu":1500}`,
			serde("unknown field `mtu`, expected one of `iface_id`, `rx_rate_limiter`, `tx_rate_limiter` at line 1 column 21")},
	}
	runCases(t, e.client(), cases)
	var cfg struct {
		Nets []map[string]any `json:"network-interfaces"`
	}
	getJSON(t, e.client(), "/vm/config", &cfg)
	var ids []string
	for _, n := range cfg.Nets {
		ids = append(ids, fmt.Sprint(n["iface_id"]))
	}
	if strings.Join(ids, ",") != "2,3,5,6" {
		t.Errorf("interfaces after the table = %v, want [2 3 5 6]", ids)
	}
}

func TestErrorsMMDS(t *testing.T) {
	t.Parallel()
	e := startEmber(t, "--mmds-size-limit", "100")
	const overflow = "MMDS limit exceeded error: The MMDS patch request doesn't fit."
	fits := `{"k":"` + strings.Repeat("x", 92) + `"}`
	over := `{"k":"` + strings.Repeat("x", 93) + `"}`
	if len(fits) != 100 || len(over) != 101 {
		t.Fatalf("sizes %d/%d", len(fits), len(over))
	}
	cases := []apiCase{
		{"empty store", "GET", "/mmds", "", ok200(`{}`)},
		{"PATCH before PUT", "PATCH", "/mmds", `{"a":1}`, bad("MMDS error: The MMDS data store is not initialized.")},
		{"PUT over the limit", "PUT", "/mmds", over, tooLarge(overflow)},
		{"still not initialized", "PATCH", "/mmds", `{"a":1}`, bad("MMDS error: The MMDS data store is not initialized.")},
		{"PUT at the limit", "PUT", "/mmds", fits, ok204()},
		{"", "PUT", "/mmds", `{"b":1,"a":{"d":1,"c":2}}`, ok204()},
		{"keys come back sorted", "GET", "/mmds", "", ok200(`{"a":{"c":2,"d":1},"b":1}`)},
		{"PATCH over the limit", "PATCH", "/mmds", `{"z":"` + strings.Repeat("y", 100) + `"}`, tooLarge(overflow)},
		{"a failed PATCH changes nothing", "GET", "/mmds", "", ok200(`{"a":{"c":2,"d":1},"b":1}`)},
		{"merge patch", "PATCH", "/mmds", `{"a":{"c":null,"e":[1,2]},"b":null}`, ok204()},
		{"", "GET", "/mmds", "", ok200(`{"a":{"d":1,"e":[1,2]}}`)},
		{"any JSON value", "PUT", "/mmds", `"just a string"`, ok204()},
		{"", "GET", "/mmds", "", ok200(`"just a string"`)},
		{"null store reads as {}", "PUT", "/mmds", `null`, ok204()},
		{"", "GET", "/mmds", "", ok200(`{}`)},
		{"bad JSON", "PUT", "/mmds", `[1 2]`, serde("expected `,` or `]` at line 1 column 4")},
		{"unknown sub-path", "PUT", "/mmds/foo", `{}`, bad("Unrecognized PUT request path `foo`.")},
		{"PATCH needs a body", "PATCH", "/mmds", "", bad("Empty PATCH request.")},
	}
	runCases(t, e.client(), cases)
	e.waitLog("Received Error. Status code: 413 Payload too large. Message: "+overflow, logTimeout)
}

func TestErrorsMMDSConfig(t *testing.T) {
	t.Parallel()
	ns := newNetns(t, "tap0")
	e := startEmberIn(t, ns)
	const prefix = "MMMDS config error: "
	const unknownIface = prefix + "The list of network interface IDs provided contains at least one ID that does not correspond to any existing network interface."
	cases := []apiCase{
		// Firecracker's test_api_mmds_config.
		{"empty list", "PUT", "/mmds/config", `{"network_interfaces":[]}`, badDep(prefix + "The list of network interface IDs that allow forwarding MMDS requests is empty.")},
		{"no interfaces yet", "PUT", "/mmds/config", `{"network_interfaces":["foo"]}`, badDep(unknownIface)},
		{"", "PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"06:00:00:00:00:01"}`, ok204()},
		{"one unknown interface", "PUT", "/mmds/config", `{"network_interfaces":["eth0","foo"]}`, badDep(unknownIface)},
		{"unknown version", "PUT", "/mmds/config", `{"version":"foo","network_interfaces":["eth0"]}`, serde("unknown variant `foo`, expected `V1` or `V2` at line 1 column 16")},
		{"address not link-local", "PUT", "/mmds/config", `{"network_interfaces":["eth0"],"ipv4_address":"10.0.0.1"}`, badDep(prefix + "The MMDS IPv4 address is not link local.")},
		{"address checked before interfaces", "PUT", "/mmds/config", `{"version":"V2","network_interfaces":[],"ipv4_address":"10.0.0.1"}`, bad(prefix + "The MMDS IPv4 address is not link local.")},
		{"bad address syntax", "PUT", "/mmds/config", `{"network_interfaces":["eth0"],"ipv4_address":"169.254.169.300"}`, serde("invalid IPv4 address syntax at line 1 column 63")},
		{"missing interface list", "PUT", "/mmds/config", `{"version":"V2"}`, serde("missing field `network_interfaces` at line 1 column 16")},
		{"valid V2", "PUT", "/mmds/config", `{"version":"V2","network_interfaces":["eth0"],"ipv4_address":"169.254.169.250","imds_compat":true}`, ok204()},
		{"valid V1 replaces it", "PUT", "/mmds/config", `{"network_interfaces":["eth0"]}`, expectation{status: 204, deprecation: true}},
		{"", "GET", "/vm/config", "", ok200("")},
	}
	runCases(t, e.client(), cases)
	var cfg map[string]any
	getJSON(t, e.client(), "/vm/config", &cfg)
	if got, want := fmt.Sprint(cfg["mmds-config"]), "map[imds_compat:false ipv4_address:169.254.169.254 network_interfaces:[eth0] version:V1]"; got != want {
		t.Errorf("mmds-config = %s, want %s", got, want)
	}
	e.waitLog("PUT /mmds/config: V1 is deprecated. Use V2 instead.", logTimeout)
}

func TestErrorsOtherDevices(t *testing.T) {
	t.Parallel()
	e := startEmber(t)
	dir := t.TempDir()
	img := scratchFile(t, dir, "a.img")
	q := serdeQuote
	const hotplug = "Memory hotplug config error: "
	cases := []apiCase{
		{"vsock without uds_path", "PUT", "/vsock", `{"guest_cid":3}`, serde("missing field `uds_path` at line 1 column 15")},
		{"vsock unknown field", "PUT", "/vsock", `{"guest_cid":3,"uds_path":"v.sock","x":1}`,
			serde("unknown field `x`, expected one of `vsock_id`, `guest_cid`, `uds_path` at line 1 column 38")},
		{"vsock negative cid", "PUT", "/vsock", `{"guest_cid":-3,"uds_path":"v.sock"}`, serde("invalid value: integer `-3`, expected u32 at line 1 column 15")},
		{"vsock on this backend", "PUT", "/vsock", `{"guest_cid":3,"uds_path":"v.sock"}`, ok204()},
		// The deprecated vsock_id marks the answer; a re-PUT unlinks the
		// socket the first bound and binds it again.
		{"deprecated vsock_id", "PUT", "/vsock", `{"vsock_id":"vsock1","guest_cid":3,"uds_path":"v.sock"}`, expectation{status: 204, deprecation: true}},
		{"entropy unknown field", "PUT", "/entropy", `{"foo":1}`, serde("unknown field `foo`, expected `rate_limiter` at line 1 column 6")},
		{"entropy twice", "PUT", "/entropy", `{}`, ok204()},
		{"", "PUT", "/entropy", `{"rate_limiter":{}}`, ok204()},
		{"serial unknown field", "PUT", "/serial", `{"foo":1}`, serde("unknown field `foo`, expected `serial_out_path` or `rate_limiter` at line 1 column 6")},
		{"serial path is opened at boot, not now", "PUT", "/serial", `{"serial_out_path":` + q(filepath.Join(dir, "no", "serial.log")) + `}`, ok204()},
		{"pmem without path", "PUT", "/pmem/pmem", `{"id":"pmem"}`, serde("missing field `path_on_host` at line 1 column 13")},
		{"pmem unknown field", "PUT", "/pmem/p", `{"id":"p","path_on_host":"x","foo":1}`,
			serde("unknown field `foo`, expected one of `id`, `path_on_host`, `root_device`, `read_only`, `rate_limiter` at line 1 column 34")},
		{"pmem id mismatch", "PUT", "/pmem/a", `{"id":"b","path_on_host":"x"}`, bad("The id from the path does not match the id from the body!")},
		{"pmem PATCH unknown field", "PATCH", "/pmem/p", `{"id":"p","path_on_host":"foo"}`,
			serde("unknown field `path_on_host`, expected `id` or `rate_limiter` at line 1 column 24")},
		{"pmem PATCH id mismatch", "PATCH", "/pmem/p", `{"id":"q"}`, bad("The id from the path does not match the id from the body!")},
		{"", "PUT", "/drives/rootfs", `{"drive_id":"rootfs","is_root_device":true,"path_on_host":` + q(img) + `}`, ok204()},
		// Firecracker's test_pmem_api: its rules come before any device.
		{"pmem root beside a block root", "PUT", "/pmem/pmem", `{"id":"pmem","path_on_host":` + q(img) + `,"root_device":true}`,
			bad("Pmem config error: Attempt to add pmem as a root device while the root device defined as a block device")},
		{"pmem on this backend", "PUT", "/pmem/pmem", `{"id":"pmem","path_on_host":` + q(img) + `}`, backendLacks("Pmem config error: ", "pmem devices")},
		{"block too small", "PUT", "/hotplug/memory", `{"total_size_mib":1024,"block_size_mib":1}`, bad(hotplug + "Block size must not be lower than 2 MiB")},
		{"block not a power of 2", "PUT", "/hotplug/memory", `{"total_size_mib":1024,"block_size_mib":6}`, bad(hotplug + "Block size must be a power of 2")},
		{"slot too small", "PUT", "/hotplug/memory", `{"total_size_mib":1024,"slot_size_mib":64}`, bad(hotplug + "Slot size must not be lower than 128 MiB")},
		{"slot not a multiple of block", "PUT", "/hotplug/memory", `{"total_size_mib":1024,"block_size_mib":256,"slot_size_mib":384}`,
			bad(hotplug + "Slot size must be a multiple of block size (256 MiB)")},
		{"total below slot", "PUT", "/hotplug/memory", `{"total_size_mib":100}`, bad(hotplug + "Total size must not be lower than slot size (128 MiB)")},
		{"total not a multiple of slot", "PUT", "/hotplug/memory", `{"total_size_mib":200}`, bad(hotplug + "Total size must be a multiple of slot size (128 MiB)")},
		{"hotplug unknown field", "PUT", "/hotplug/memory", `{"total_size_mib":1024,"x":1}`,
			serde("unknown field `x`, expected one of `total_size_mib`, `block_size_mib`, `slot_size_mib` at line 1 column 26")},
		{"hotplug on this backend", "PUT", "/hotplug/memory", `{"total_size_mib":1024}`, backendLacks(hotplug, "memory hotplug")},
		{"hotplug PATCH before boot", "PATCH", "/hotplug/memory", `{"requested_size_mib":512}`, bad(notPreBoot)},
		{"hotplug PATCH unknown field", "PATCH", "/hotplug/memory", `{"requested":512}`,
			serde("unknown field `requested`, expected `requested_size_mib` at line 1 column 12")},
	}
	runCases(t, e.client(), cases)
	e.waitLog("PUT /vsock: vsock_id field is deprecated.", logTimeout)
}

func TestErrorsBalloon(t *testing.T) {
	t.Parallel()
	e := startEmber(t)
	cases := []apiCase{
		// Firecracker's test_api_balloon, before boot.
		{"no balloon", "GET", "/balloon", "", bad("Balloon config error: No balloon device found.")},
		{"PATCH before boot", "PATCH", "/balloon", `{"amount_mib":0}`, bad(notPreBoot)},
		{"", "PUT", "/balloon", `{"amount_mib":1,"deflate_on_oom":true}`, ok204()},
		{"replace", "PUT", "/balloon", `{"amount_mib":0,"deflate_on_oom":false,"stats_polling_interval_s":5}`, ok204()},
		{"", "GET", "/balloon", "", ok200(`{"amount_mib":0,"deflate_on_oom":false,"stats_polling_interval_s":5,"free_page_hinting":false,"free_page_reporting":false}`)},
		{"more than guest memory", "PUT", "/balloon", `{"amount_mib":1024,"deflate_on_oom":false,"stats_polling_interval_s":5}`, bad("Balloon config error: Amount of pages requested is too large.")},
		{"missing deflate_on_oom", "PUT", "/balloon", `{"amount_mib":1}`, serde("missing field `deflate_on_oom` at line 1 column 16")},
		{"negative amount", "PUT", "/balloon", `{"amount_mib":-1,"deflate_on_oom":true}`, serde("invalid value: integer `-1`, expected u32 at line 1 column 16")},
		{"u16 overflow", "PUT", "/balloon", `{"amount_mib":1,"deflate_on_oom":true,"stats_polling_interval_s":70000}`, serde("invalid value: integer `70000`, expected u16 at line 1 column 70")},
		{"free page hinting on this backend", "PUT", "/balloon", `{"amount_mib":1,"deflate_on_oom":true,"free_page_hinting":true}`,
			backendLacks("Balloon config error: ", "free page hinting")},
		{"free page reporting", "PUT", "/balloon", `{"amount_mib":2,"deflate_on_oom":true,"free_page_reporting":true}`, ok204()},
		{"", "GET", "/balloon", "", ok200(`{"amount_mib":2,"deflate_on_oom":true,"stats_polling_interval_s":0,"free_page_hinting":false,"free_page_reporting":true}`)},
		{"", "PATCH", "/balloon/statistics", `{"stats_polling_interval_s":1}`, bad(notPreBoot)},
		{"", "GET", "/balloon/foo", "", bad("Unrecognized GET request path `foo`.")},
		{"", "GET", "/balloon/hinting/foo", "", bad("Unrecognized GET request path `/hinting/foo`.")},
		{"", "GET", "/balloon/hinting", "", bad("Unrecognized GET request path `/hinting/`.")},
		{"", "PATCH", "/balloon/hinting/foo", "", bad("Unrecognized PATCH request path `/hinting/foo`.")},
		{"", "PATCH", "/balloon/hinting", "", bad("Unrecognized PATCH request path `/hinting/`.")},
		{"bad hinting body", "PATCH", "/balloon/hinting/start", `{"acknowledge_on_stop":"x"}`, serde(`invalid type: string "x", expected a boolean at line 1 column 26`)},
		{"", "PATCH", "/balloon", "", bad("Empty PATCH request.")},
		{"unknown field", "PATCH", "/balloon", `{"amount_mib":1,"x":2}`, serde("unknown field `x`, expected `amount_mib` at line 1 column 19")},
	}
	runCases(t, e.client(), cases)
}

func TestErrorsMetrics(t *testing.T) {
	t.Parallel()
	e := startEmber(t)
	dir := t.TempDir()
	q := serdeQuote
	good := filepath.Join(dir, "metrics.ndjson")
	cases := []apiCase{
		{"unopenable path", "PUT", "/metrics", `{"metrics_path":` + q(filepath.Join(dir, "no", "m")) + `}`,
			bad("Metrics error: Cannot initialize the metrics system due to bad user input: No such file or directory (os error 2)")},
		{"missing path", "PUT", "/metrics", `{}`, serde("missing field `metrics_path` at line 1 column 2")},
		{"wrong property type", "PUT", "/metrics", `{"metrics_path": "/m", "properties": {"a": 1}}`, serde("invalid type: integer `1`, expected a string at line 1 column 44")},
		{"unknown fields are accepted", "PUT", "/metrics", `{"metrics_path":` + q(good) + `,"foo":1}`, ok204()},
		{"second init", "PUT", "/metrics", `{"metrics_path":` + q(good) + `}`,
			bad("Metrics error: Cannot initialize the metrics system due to bad user input: Reinitialization of metrics not allowed.")},
		{"FlushMetrics before boot", "PUT", "/actions", `{"action_type":"FlushMetrics"}`, bad(notPreBoot)},
	}
	runCases(t, e.client(), cases)
}

func TestErrorsLogger(t *testing.T) {
	t.Parallel()
	e := startEmber(t)
	dir := t.TempDir()
	cases := []apiCase{
		{"unopenable path", "PUT", "/logger", `{"log_path":` + serdeQuote(filepath.Join(dir, "no", "log")) + `}`,
			bad("Logger error: Failed to open target file: No such file or directory (os error 2)")},
		{"bad level", "PUT", "/logger", `{"level": "bogus"}`, serde("Invalid LevelFilter at line 1 column 18")},
		{"level type", "PUT", "/logger", `{"level": 3}`, serde("invalid type: integer `3`, expected a string at line 1 column 11")},
		{"unknown field", "PUT", "/logger", `{"foo":1}`,
			serde("unknown field `foo`, expected one of `log_path`, `level`, `show_level`, `show_log_origin`, `module` at line 1 column 6")},
		{"levels are case-insensitive", "PUT", "/logger", `{"level":"WARNING"}`, ok204()},
		{"", "PUT", "/logger", `{"level":"debug","show_level":true,"show_log_origin":true,"module":"api"}`, ok204()},
		{"again: the logger is reconfigurable", "PUT", "/logger", `{"level":"Info","show_level":false,"show_log_origin":false}`, ok204()},
		{"", "PATCH", "/logger", `{"level":"Error"}`, bad("Invalid request method and/or path: PATCH logger.")},
	}
	runCases(t, e.client(), cases)
}

func TestErrorsSnapshotLoad(t *testing.T) {
	t.Parallel()
	t.Run("field errors, then a failed load ends the process", func(t *testing.T) {
		t.Parallel()
		e := startEmber(t)
		cases := []apiCase{
			// Firecracker's test_negative_snapshot_load_api.
			{"both memory sources", "PUT", "/snapshot/load", `{"snapshot_path":"foo","mem_backend":{"backend_type":"File","backend_path":"bar"},"mem_file_path":"bar"}`,
				serde("too many fields: either `mem_backend` or `mem_file_path` exclusively is required")},
			{"no backend_type", "PUT", "/snapshot/load", `{"snapshot_path":"foo","mem_backend":{"backend_path":"bar"}}`, serde("missing field `backend_type` at line 1 column 59")},
			{"no backend_path", "PUT", "/snapshot/load", `{"snapshot_path":"foo","mem_backend":{"backend_type":"File"}}`, serde("missing field `backend_path` at line 1 column 60")},
			{"unknown backend_type", "PUT", "/snapshot/load", `{"snapshot_path":"foo","mem_backend":{"backend_type":"foo","backend_path":"bar"}}`,
				serde("unknown variant `foo`, expected `File` or `Uffd` at line 1 column 58")},
			{"no snapshot_path", "PUT", "/snapshot/load", `{"mem_backend":{"backend_type":"File","backend_path":"bar"}}`, serde("missing field `snapshot_path` at line 1 column 60")},
			{"no memory source", "PUT", "/snapshot/load", `{"snapshot_path":"foo"}`, serde("missing field: either `mem_backend` or `mem_file_path` is required")},
			{"no operation", "PUT", "/snapshot", `{}`, bad("Missing snapshot operation type.")},
			{"unknown operation", "PUT", "/snapshot/foo", `{}`, bad("Invalid request method and/or path: PUT /snapshot/foo.")},
			{"still serving", "GET", "/", "", ok200(instanceInfoFresh)},
			// Syntactically valid: the load itself fails, and that is fatal.
			{"deprecated mem_file_path", "PUT", "/snapshot/load", `{"snapshot_path":"foo","mem_file_path":"bar"}`,
				expectation{status: 400, faultPrefix: "Load snapshot error: ", deprecation: true}},
		}
		runCases(t, e.client(), cases)
		e.waitLog("PUT /snapshot/load: mem_file_path and enable_diff_snapshots fields are deprecated.", logTimeout)
		e.wantExit(1, 5*time.Second)
		if !e.hasLog("Firecracker exiting with error. exit_code=1") {
			t.Errorf("no exit line in the log")
		}
	})
	t.Run("logger, metrics, serial and MMDS data keep the snapshot path open", func(t *testing.T) {
		t.Parallel()
		e := startEmber(t)
		dir := t.TempDir()
		c := e.client()
		c.mustOK("PUT", "/logger", `{"level":"Info"}`)
		c.mustOK("PUT", "/metrics", `{"metrics_path":`+serdeQuote(filepath.Join(dir, "m"))+`}`)
		c.mustOK("PUT", "/serial", `{}`)
		c.mustOK("PUT", "/mmds", `{"a":1}`)
		c.put("/cpu-config", `{}`) // whatever this backend answers, it is not a boot resource
		r := c.put("/snapshot/load", `{"snapshot_path":"foo","mem_backend":{"backend_type":"File","backend_path":"bar"}}`)
		expectation{status: 400, faultPrefix: "Load snapshot error: "}.check(t, "PUT /snapshot/load", r)
		if strings.Contains(r.fault(), "boot-specific") {
			t.Errorf("load refused for boot-specific resources that were never configured: %s", r.fault())
		}
		e.wantExit(1, 5*time.Second)
	})
	t.Run("a failed boot-resource PUT still closes the snapshot path", func(t *testing.T) {
		t.Parallel()
		e := startEmber(t)
		cases := []apiCase{
			{"failing drive", "PUT", "/drives/x", `{"drive_id":"x","is_root_device":false,"path_on_host":"/nonexistent/x"}`, expectation{status: 400, faultPrefix: "Drive config error: "}},
			{"refused, not fatal", "PUT", "/snapshot/load", `{"snapshot_path":"foo","mem_backend":{"backend_type":"File","backend_path":"bar"}}`,
				bad("Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources.")},
			{"still serving", "GET", "/", "", ok200(instanceInfoFresh)},
		}
		runCases(t, e.client(), cases)
	})
}

func TestErrorsInstanceStart(t *testing.T) {
	t.Parallel()
	e := startEmber(t)
	dir := t.TempDir()
	notKernel := scratchFile(t, dir, "zeros.img")
	cases := []apiCase{
		{"no kernel", "PUT", "/actions", `{"action_type":"InstanceStart"}`, bad("Start microvm error: Cannot start microvm without kernel configuration.")},
		{"", "PUT", "/boot-source", `{"kernel_image_path":` + serdeQuote(notKernel) + `}`, ok204()},
		// Neither ELF nor bzImage: Firecracker's loader refuses it, and a
		// failed start is not fatal.
		{"a file that is no kernel", "PUT", "/actions", `{"action_type":"InstanceStart"}`,
			expectation{status: 400, faultPrefix: "Start microvm error: System configuration error: Cannot load kernel due to invalid memory configuration or invalid kernel image: "}},
		{"still not started", "GET", "/", "", ok200(instanceInfoFresh)},
		{"still configurable", "PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":128}`, ok204()},
	}
	runCases(t, e.client(), cases)
}

func TestErrorsRouting(t *testing.T) {
	t.Parallel()
	e := startEmber(t)
	dir := t.TempDir()
	img := scratchFile(t, dir, "a.img")
	kernel := writeFile(t, dir, "vmlinux", []byte("k"))
	q := serdeQuote
	const badID = "API Resource IDs can only contain alphanumeric characters and underscores."
	const emptyID = "The ID cannot be empty."
	drive := func(id string) string {
		return `{"drive_id":` + q(id) + `,"is_root_device":false,"path_on_host":` + q(img) + `}`
	}
	cases := []apiCase{
		{"", "PATCH", "/boot-source", `{"kernel_image_path":"x"}`, bad("Invalid request method and/or path: PATCH boot-source.")},
		{"", "GET", "/foo", "", bad("Invalid request method and/or path: GET foo.")},
		{"", "GET", "/vm", "", bad("Invalid request method and/or path: GET vm.")},
		{"", "GET", "/vm/foo", "", bad("Invalid request method and/or path: GET vm.")},
		{"", "GET", "/hotplug", "", bad("Invalid request method and/or path: GET hotplug.")},
		{"", "PUT", "/hotplug", `{"total_size_mib":1}`, bad("Invalid request method and/or path: PUT hotplug.")},
		{"", "PUT", "/foo", `{}`, bad("Invalid request method and/or path: PUT foo.")},
		{"", "DELETE", "/machine-config", "", bad("Invalid request method and/or path: DELETE machine-config.")},
		{"", "DELETE", "/", "", bad("Invalid request method and/or path: DELETE .")},
		{"GET with a body", "GET", "/", `{}`, bad("GET request cannot have a body.")},
		{"GET with a body, unknown path", "GET", "/foo", `{}`, bad("GET request cannot have a body.")},
		{"PUT without a body", "PUT", "/actions", "", bad("Empty PUT request.")},
		{"PUT without a body, unknown path", "PUT", "/foo", "", bad("Empty PUT request.")},
		{"PUT without a body, no id", "PUT", "/drives", "", bad("Empty PUT request.")},
		{"PATCH without a body", "PATCH", "/vm", "", bad("Empty PATCH request.")},
		{"PATCH without a body, unknown path", "PATCH", "/foo", "", bad("Empty PATCH request.")},
		{"DELETE with a body", "DELETE", "/drives/x", `{}`, bad("Empty Delete request.")},
		{"DELETE with a body, unknown path", "DELETE", "/foo", `{}`, bad("Empty Delete request.")},
		{"unknown action", "PUT", "/actions", `{"action_type":"Foo"}`,
			serde("unknown variant `Foo`, expected one of `FlushMetrics`, `InstanceStart`, `SendCtrlAltDel` at line 1 column 20")},
		{"unknown action field", "PUT", "/actions", `{"action_type":"InstanceStart","x":1}`, serde("unknown field `x`, expected `action_type` at line 1 column 34")},
		{"no action", "PUT", "/actions", `{}`, serde("missing field `action_type` at line 1 column 2")},
		{"unknown VM state", "PATCH", "/vm", `{"state":"Foo"}`, serde("unknown variant `Foo`, expected `Paused` or `Resumed` at line 1 column 14")},
		{"hyphen in a drive id", "PUT", "/drives/a-b", drive("a-b"), bad(badID)},
		{"hyphen in an interface id", "PUT", "/network-interfaces/eth-0", `{"iface_id":"eth-0","host_dev_name":"tap0"}`, bad(badID)},
		{"dot in a pmem id", "PUT", "/pmem/p.1", `{"id":"p.1","path_on_host":"x"}`, bad(badID)},
		{"id checked before the body", "PATCH", "/drives/a-b", `not json`, bad(badID)},
		{"id checked on DELETE", "DELETE", "/drives/a-b", "", bad(badID)},
		{"percent-encoding is not decoded", "PUT", "/drives/a%2Db", drive("a-b"), bad(badID)},
		{"no drive id", "PUT", "/drives", drive("x"), bad(emptyID)},
		{"empty drive id", "PUT", "/drives/", drive("x"), bad(emptyID)},
		{"empty id before a slash", "PUT", "/drives//x", drive("x"), bad(emptyID)},
		{"no interface id", "PUT", "/network-interfaces", `{"iface_id":"x","host_dev_name":"tap0"}`, bad(emptyID)},
		{"no pmem id", "PUT", "/pmem", `{"id":"x","path_on_host":"x"}`, bad(emptyID)},
		{"PATCH no id", "PATCH", "/drives", `{"drive_id":"x"}`, bad(emptyID)},
		{"DELETE no id", "DELETE", "/drives", "", bad(emptyID)},
		{"DELETE no interface id", "DELETE", "/network-interfaces/", "", bad(emptyID)},
		{"slash ends the id", "PUT", "/drives/a/b", drive("a/b"), bad("The id from the path does not match the id from the body!")},
		{"extra path tokens are ignored", "PUT", "/drives/a/b", drive("a"), ok204()},
		{"trailing slash", "PUT", "/drives/c/", drive("c"), ok204()},
		{"underscore", "PUT", "/drives/d_1", drive("d_1"), ok204()},
		{"Unicode letters are alphanumeric", "PUT", "/drives/\u00fcber", drive("\u00fcber"), ok204()},
		{"extra tokens after a resource", "PUT", "/boot-source/extra", `{"kernel_image_path":` + q(kernel) + `}`, ok204()},
		{"leading slashes", "GET", "//machine-config", "", ok200("")},
	}
	runCases(t, e.client(), cases)
}

// getJSON GETs path and decodes the body.
func getJSON(t testing.TB, c *apiClient, path string, v any) {
	t.Helper()
	r := c.get(path)
	if r.status != 200 {
		t.Fatalf("GET %s: %s", path, r)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, r.body)
	}
}
