package conformance

// The pre-boot/post-boot matrix: every endpoint of Firecracker's swagger
// plus the DELETE routes, asked before and after InstanceStart, on the one
// booted VM the suite shares. The same VM then serves the other post-boot
// checks (errors, metrics, logs, pause/resume) and finally reboots, which
// must end ember with exit code 0.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// bootedVM is the shared VM's fixture.
type bootedVM struct {
	e                          *ember
	c                          *apiClient
	g                          guest
	dir                        string
	scratch, scratch2, missing string
	metricsPath                string
	vmConfigPreBoot            []byte
}

func TestBootedVM(t *testing.T) {
	t.Parallel()
	g := requireGuest(t)
	ns := newNetns(t, "tap0", "tap1")
	dir := t.TempDir()
	vm := &bootedVM{
		g:           g,
		dir:         dir,
		scratch:     scratchFile(t, dir, "scratch.img"),
		scratch2:    scratchFile(t, dir, "scratch2.img"),
		missing:     filepath.Join(dir, "missing.img"),
		metricsPath: filepath.Join(dir, "fc.ndjson"),
	}
	// As the jailer does: start times for api_server.process_startup_time_*.
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		t.Fatal(err)
	}
	vm.e = launch(t, launchOpts{
		args: []string{"--log-path", "fc.log", "--level", "Debug", "--metrics-path", vm.metricsPath,
			"--start-time-us", strconv.FormatInt(now.Nano()/1000, 10), "--start-time-cpu-us", "0", "--parent-cpu-time-us", "1000"},
		netns: ns,
		dir:   dir,
	})
	vm.e.waitLog(lineAPIStarted, startTimeout)
	vm.c = vm.e.client()

	if !t.Run("pre-boot matrix", vm.preBootMatrix) {
		t.Fatal("pre-boot configuration failed; not booting")
	}
	if !t.Run("boot", vm.boot) {
		t.Fatal("the VM did not boot; post-boot checks skipped")
	}
	t.Run("post-boot matrix", vm.postBootMatrix)
	t.Run("post-boot errors", vm.postBootErrors)
	t.Run("pause and resume", vm.pauseResume)
	t.Run("metrics", vm.metrics)
	t.Run("log lines", vm.logLines)
	t.Run("guest reboot ends ember", vm.reboot)
}

func (vm *bootedVM) preBootMatrix(t *testing.T) {
	q := serdeQuote
	cases := []apiCase{
		{"", "GET", "/", "", ok200(instanceInfoFresh)},
		{"", "GET", "/version", "", ok200(`{"firecracker_version":"1.17.0-dev"}`)},
		{"", "GET", "/machine-config", "", ok200(`{"vcpu_count":1,"mem_size_mib":128,"smt":false,"track_dirty_pages":false,"huge_pages":"None"}`)},
		{"", "PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":128}`, ok204()},
		{"", "PATCH", "/machine-config", `{"mem_size_mib":256}`, ok204()},
		{"", "GET", "/machine-config", "", ok200(`{"vcpu_count":1,"mem_size_mib":256,"smt":false,"track_dirty_pages":false,"huge_pages":"None"}`)},
		{"", "GET", "/vm/config", "", ok200("")},
		{"", "PUT", "/cpu-config", `{}`, backendLacks("Configure CPU error: ", "CPU templates")},
		{"", "PUT", "/boot-source", vm.g.bootSourceBody(endWait), ok204()},
		{"", "PUT", "/drives/rootfs", vm.g.rootDriveBody(), ok204()},
		{"", "PUT", "/drives/scratch", `{"drive_id":"scratch","path_on_host":` + q(vm.scratch) + `,"is_root_device":false,"is_read_only":false}`, ok204()},
		{"", "PATCH", "/drives/scratch", `{"drive_id":"scratch","path_on_host":` + q(vm.scratch2) + `}`, bad(notPreBoot)},
		{"", "DELETE", "/drives/scratch", "", bad(notPreBoot)},
		{"", "PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"06:00:00:00:00:01"}`, ok204()},
		{"", "PATCH", "/network-interfaces/eth0", `{"iface_id":"eth0"}`, bad(notPreBoot)},
		{"", "DELETE", "/network-interfaces/eth0", "", bad(notPreBoot)},
		{"", "PUT", "/pmem/pmem0", `{"id":"pmem0","path_on_host":` + q(vm.scratch2) + `}`, backendLacks("Pmem config error: ", "pmem devices")},
		{"", "PATCH", "/pmem/pmem0", `{"id":"pmem0"}`, bad(notPreBoot)},
		{"", "DELETE", "/pmem/pmem0", "", bad(notPreBoot)},
		{"", "PUT", "/vsock", `{"guest_cid":3,"uds_path":` + q(filepath.Join(vm.dir, "v.sock")) + `}`, ok204()},
		{"", "PUT", "/entropy", `{}`, ok204()},
		{"", "PUT", "/balloon", `{"amount_mib":0,"deflate_on_oom":true,"stats_polling_interval_s":1}`, ok204()},
		{"", "GET", "/balloon", "", ok200(`{"amount_mib":0,"deflate_on_oom":true,"stats_polling_interval_s":1,"free_page_hinting":false,"free_page_reporting":false}`)},
		{"", "PATCH", "/balloon", `{"amount_mib":1}`, bad(notPreBoot)},
		{"", "GET", "/balloon/statistics", "", bad(notPreBoot)},
		{"", "PATCH", "/balloon/statistics", `{"stats_polling_interval_s":2}`, bad(notPreBoot)},
		{"", "PATCH", "/balloon/hinting/start", "", bad(notPreBoot)},
		{"", "GET", "/balloon/hinting/status", "", bad(notPreBoot)},
		{"", "PATCH", "/balloon/hinting/stop", "", bad(notPreBoot)},
		{"", "PUT", "/serial", `{}`, ok204()},
		{"", "PUT", "/hotplug/memory", `{"total_size_mib":1024}`, backendLacks("Memory hotplug config error: ", "memory hotplug")},
		{"", "PATCH", "/hotplug/memory", `{"requested_size_mib":512}`, bad(notPreBoot)},
		{"", "GET", "/hotplug/memory", "", bad(notPreBoot)},
		{"", "GET", "/mmds", "", ok200(`{}`)},
		{"PATCH /mmds before any PUT", "PATCH", "/mmds", `{"a":1}`, bad("MMDS error: The MMDS data store is not initialized.")},
		{"", "PUT", "/mmds", `{"a":1}`, ok204()},
		{"", "PATCH", "/mmds", `{"b":2}`, ok204()},
		{"", "GET", "/mmds", "", ok200(`{"a":1,"b":2}`)},
		// Refused, so the VM boots without MMDS (the post-boot matrix checks
		// that case); the V1 deprecation is logged all the same.
		{"", "PUT", "/mmds/config", `{"network_interfaces":["nope"]}`, badDep("MMMDS config error: The list of network interface IDs provided contains at least one ID that does not correspond to any existing network interface.")},
		{"", "PUT", "/logger", `{"level":"Debug"}`, ok204()},
		{"PUT /metrics after --metrics-path", "PUT", "/metrics", `{"metrics_path":` + q(filepath.Join(vm.dir, "m2.ndjson")) + `}`,
			bad("Metrics error: Cannot initialize the metrics system due to bad user input: Reinitialization of metrics not allowed.")},
		{"", "PUT", "/snapshot/create", `{"snapshot_path":"s","mem_file_path":"m"}`, bad(notPreBoot)},
		{"load after boot-specific resources", "PUT", "/snapshot/load", `{"snapshot_path":"s","mem_backend":{"backend_type":"File","backend_path":"m"}}`,
			bad("Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources.")},
		{"", "PATCH", "/vm", `{"state":"Paused"}`, bad(notPreBoot)},
		{"", "PATCH", "/vm", `{"state":"Resumed"}`, bad(notPreBoot)},
		{"FlushMetrics", "PUT", "/actions", `{"action_type":"FlushMetrics"}`, bad(notPreBoot)},
		{"SendCtrlAltDel", "PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`, bad(notPreBoot)},
		{"", "GET", "/", "", ok200(instanceInfoFresh)},
	}
	runCases(t, vm.c, cases)
	if vm.e.exited() {
		t.Fatalf("ember exited during pre-boot configuration")
	}
	if b, err := os.ReadFile(vm.metricsPath); err != nil || len(b) != 0 {
		t.Errorf("metrics before boot: %q, %v; want an empty file (no line until the VM starts)", b, err)
	}
}

func (vm *bootedVM) boot(t *testing.T) {
	vm.vmConfigPreBoot = vm.c.get("/vm/config").body
	start := time.Now()
	ok204().check(t, "InstanceStart", vm.c.action("InstanceStart"))
	if t.Failed() {
		t.FailNow()
	}
	vm.e.waitStdout(markerReady, guestTimeout)
	t.Logf("guest ready %v after InstanceStart", time.Since(start).Round(time.Millisecond))
	ok200(`{"id":"anonymous-instance","state":"Running","vmm_version":"1.17.0-dev","app_name":"Firecracker"}`).
		check(t, "GET / after boot", vm.c.get("/"))
	// The configuration reads back the same before and after boot.
	if got := vm.c.get("/vm/config").body; string(got) != string(vm.vmConfigPreBoot) {
		t.Errorf("GET /vm/config changed across boot:\n pre %s\npost %s", vm.vmConfigPreBoot, got)
	}
	// Firecracker writes one metrics line when the VM starts.
	lines := metricsLines(t, vm.metricsPath)
	if len(lines) != 1 {
		t.Fatalf("metrics after boot: %d lines, want exactly 1", len(lines))
	}
	startup := counter(t, lines[0], "api_server", "process_startup_time_us")
	if startup <= 0 || startup > 30e6 {
		t.Errorf("api_server.process_startup_time_us = %v, want the time from --start-time-us to the API server's start", startup)
	}
	if cpu := counter(t, lines[0], "api_server", "process_startup_time_cpu_us"); cpu <= 1000 || cpu > 30e6 {
		t.Errorf("api_server.process_startup_time_cpu_us = %v, want CPU time plus --parent-cpu-time-us 1000", cpu)
	}
}

func (vm *bootedVM) postBootMatrix(t *testing.T) {
	q := serdeQuote
	const pciOff = "PCI is not enabled"
	running := `{"id":"anonymous-instance","state":"Running","vmm_version":"1.17.0-dev","app_name":"Firecracker"}`
	balloon := `{"amount_mib":%d,"deflate_on_oom":true,"stats_polling_interval_s":%d,"free_page_hinting":false,"free_page_reporting":false}`
	hintingOff := "Balloon update error: Balloon: Attempting to use hinting when not enabled"
	cases := []apiCase{
		{"", "GET", "/", "", ok200(running)},
		{"", "GET", "/version", "", ok200(`{"firecracker_version":"1.17.0-dev"}`)},
		{"", "GET", "/machine-config", "", ok200(`{"vcpu_count":1,"mem_size_mib":256,"smt":false,"track_dirty_pages":false,"huge_pages":"None"}`)},
		{"", "PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":128}`, bad(notPostBoot)},
		{"", "PATCH", "/machine-config", `{"vcpu_count":2}`, bad(notPostBoot)},
		{"", "GET", "/vm/config", "", ok200(string(vm.vmConfigPreBoot))},
		{"", "PUT", "/cpu-config", `{}`, bad(notPostBoot)},
		{"", "PUT", "/boot-source", vm.g.bootSourceBody(endWait), bad(notPostBoot)},
		{"hotplug without PCI", "PUT", "/drives/extra", `{"drive_id":"extra","path_on_host":` + q(vm.scratch2) + `,"is_root_device":false}`, bad(pciOff)},
		{"", "PATCH", "/drives/scratch", `{"drive_id":"scratch","path_on_host":` + q(vm.scratch2) + `}`, ok204()},
		{"unplug without PCI", "DELETE", "/drives/scratch", "", bad(pciOff)},
		{"hotplug without PCI", "PUT", "/network-interfaces/eth1", `{"iface_id":"eth1","host_dev_name":"tap1"}`, bad(pciOff)},
		{"", "PATCH", "/network-interfaces/eth0", `{"iface_id":"eth0"}`, ok204()},
		{"unplug without PCI", "DELETE", "/network-interfaces/eth0", "", bad(pciOff)},
		{"hotplug without PCI", "PUT", "/pmem/pmem0", `{"id":"pmem0","path_on_host":` + q(vm.scratch) + `}`, bad(pciOff)},
		// Firecracker has nothing to do without a rate_limiter and does
		// not look the device up.
		{"PATCH without a rate limiter", "PATCH", "/pmem/pmem0", `{"id":"pmem0"}`, ok204()},
		{"unplug without PCI", "DELETE", "/pmem/pmem0", "", bad(pciOff)},
		{"", "PUT", "/vsock", `{"guest_cid":3,"uds_path":` + q(filepath.Join(vm.dir, "v.sock")) + `}`, bad(notPostBoot)},
		{"", "PUT", "/entropy", `{}`, bad(notPostBoot)},
		{"", "PUT", "/balloon", `{"amount_mib":0,"deflate_on_oom":true}`, bad(notPostBoot)},
		{"", "GET", "/balloon", "", ok200(fmt.Sprintf(balloon, 0, 1))},
		{"", "PATCH", "/balloon", `{"amount_mib":1}`, ok204()},
		{"", "GET", "/balloon", "", ok200(fmt.Sprintf(balloon, 1, 1))},
		{"", "GET", "/balloon/statistics", "", ok200("")},
		{"", "PATCH", "/balloon/statistics", `{"stats_polling_interval_s":2}`, ok204()},
		{"", "GET", "/balloon", "", ok200(fmt.Sprintf(balloon, 1, 2))},
		{"", "PATCH", "/balloon/hinting/start", "", bad(hintingOff)},
		{"", "PATCH", "/balloon/hinting/start", `{"acknowledge_on_stop":false}`, bad(hintingOff)},
		{"", "GET", "/balloon/hinting/status", "", bad(hintingOff)},
		{"", "PATCH", "/balloon/hinting/stop", "", bad(hintingOff)},
		{"", "PUT", "/serial", `{}`, bad(notPostBoot)},
		{"", "PUT", "/hotplug/memory", `{"total_size_mib":1024}`, bad(notPostBoot)},
		{"no virtio-mem device", "PATCH", "/hotplug/memory", `{"requested_size_mib":512}`, bad("Memory hotplug update error: Failed perform action on device: Device not found")},
		{"no virtio-mem device", "GET", "/hotplug/memory", "", bad("Internal VMM error: Failed perform action on device: Device not found")},
		{"no MMDS interface", "PUT", "/mmds", `{"a":1}`, bad("MMDS error: The MMDS data store is not initialized.")},
		{"no MMDS interface", "PATCH", "/mmds", `{"a":1}`, bad("MMDS error: The MMDS data store is not initialized.")},
		{"no MMDS interface", "GET", "/mmds", "", bad("MMDS error: The MMDS data store is not initialized.")},
		{"", "PUT", "/mmds/config", `{"network_interfaces":["eth0"]}`, badDep(notPostBoot)},
		{"", "PUT", "/mmds/config", `{"version":"V2","network_interfaces":["eth0"]}`, bad(notPostBoot)},
		{"", "PUT", "/logger", `{"level":"Debug"}`, bad(notPostBoot)},
		{"", "PUT", "/metrics", `{"metrics_path":` + q(filepath.Join(vm.dir, "m3.ndjson")) + `}`, bad(notPostBoot)},
		{"", "PUT", "/snapshot/load", `{"snapshot_path":"s","mem_backend":{"backend_type":"File","backend_path":"m"}}`, bad(notPostBoot)},
		{"", "PUT", "/actions", `{"action_type":"InstanceStart"}`, bad(notPostBoot)},
		{"", "PUT", "/actions", `{"action_type":"FlushMetrics"}`, ok204()},
		{"", "GET", "/", "", ok200(running)},
	}
	runCases(t, vm.c, cases)

	// Snapshots need a paused VM.
	snap := `{"snapshot_path":` + q(filepath.Join(vm.dir, "snap")) + `,"mem_file_path":` + q(filepath.Join(vm.dir, "mem")) + `}`
	bad("Create snapshot error: Cannot save the microVM state: Operation not allowed: save/restore unavailable while running").
		check(t, "PUT /snapshot/create while running", vm.c.put("/snapshot/create", snap))

	// The PATCHed drive reads back with its new path.
	var cfg struct {
		Drives []struct {
			DriveID    string `json:"drive_id"`
			PathOnHost string `json:"path_on_host"`
		} `json:"drives"`
	}
	if err := json.Unmarshal(vm.c.get("/vm/config").body, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, d := range cfg.Drives {
		if d.DriveID == "scratch" && d.PathOnHost != vm.scratch2 {
			t.Errorf("scratch drive path after PATCH = %q, want %q", d.PathOnHost, vm.scratch2)
		}
	}
	var stats map[string]any
	if err := json.Unmarshal(vm.c.get("/balloon/statistics").body, &stats); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"target_pages", "actual_pages", "target_mib", "actual_mib"} {
		if _, ok := stats[k]; !ok {
			t.Errorf("GET /balloon/statistics lacks %q: %v", k, stats)
		}
	}
	if stats["target_mib"] != float64(1) || stats["target_pages"] != float64(256) {
		t.Errorf("balloon statistics target = %v MiB / %v pages, want 1 / 256", stats["target_mib"], stats["target_pages"])
	}
}

func (vm *bootedVM) postBootErrors(t *testing.T) {
	q := serdeQuote
	verify := " Please verify the request arguments."
	cases := []apiCase{
		{"drive PATCH without fields on a virtio drive", "PATCH", "/drives/scratch", `{"drive_id":"scratch"}`,
			bad("Drive config error: Unable to patch the block device: Block: Running method expected different backend." + verify)},
		{"drive PATCH to a missing file", "PATCH", "/drives/scratch", `{"drive_id":"scratch","path_on_host":"foo.bar"}`,
			bad("Drive config error: Unable to patch the block device: Block: Virtio backend error: Error manipulating the backing file: No such file or directory (os error 2) foo.bar" + verify)},
		{"drive PATCH of an unknown drive", "PATCH", "/drives/nope", `{"drive_id":"nope","path_on_host":` + q(vm.scratch) + `}`,
			bad("Drive config error: Unable to patch the block device: Failed perform action on device: Device not found" + verify)},
		{"drive PATCH cannot change is_read_only", "PATCH", "/drives/scratch", `{"drive_id":"scratch","path_on_host":"foo.bar","is_read_only":true}`,
			serde("unknown field `is_read_only`, expected one of `drive_id`, `path_on_host`, `rate_limiter` at line 1 column 61")},
		{"drive PATCH cannot change io_engine", "PATCH", "/drives/scratch", `{"drive_id":"scratch","path_on_host":"foo.bar","io_engine":"Sync"}`,
			serde("unknown field `io_engine`, expected one of `drive_id`, `path_on_host`, `rate_limiter` at line 1 column 58")},
		{"drive PATCH cannot change is_root_device", "PATCH", "/drives/scratch", `{"drive_id":"scratch","path_on_host":"foo.bar","is_root_device":false}`,
			serde("unknown field `is_root_device`, expected one of `drive_id`, `path_on_host`, `rate_limiter` at line 1 column 63")},
		{"drive PATCH back to the first file", "PATCH", "/drives/scratch", `{"drive_id":"scratch","path_on_host":` + q(vm.scratch) + `}`, ok204()},
		{"net PATCH of an unknown interface", "PATCH", "/network-interfaces/nope", `{"iface_id":"nope"}`,
			bad("Network config error: Unable to update the net device: Failed perform action on device: Device not found")},
		{"net PATCH id mismatch", "PATCH", "/network-interfaces/eth0", `{"iface_id":"eth1"}`,
			bad("The id from the path [eth0] does not match the id from the body [eth1]!")},
		{"net PATCH rate limiter", "PATCH", "/network-interfaces/eth0", `{"iface_id":"eth0","tx_rate_limiter":{"bandwidth":{"size":1000000,"refill_time":100}}}`,
			expectation{status: 400, faultPrefix: "Network config error: Unable to update the net device: ", faultContains: "qemu backend"}},
		{"balloon above guest memory", "PATCH", "/balloon", `{"amount_mib":300}`,
			bad("Balloon update error: Balloon: Requested memory should be less than 300MiB")},
		{"balloon statistics cannot be turned off", "PATCH", "/balloon/statistics", `{"stats_polling_interval_s":0}`,
			bad("Balloon update error: Balloon: Statistics cannot be enabled/disabled after activation.")},
		{"balloon statistics unchanged interval", "PATCH", "/balloon/statistics", `{"stats_polling_interval_s":2}`, ok204()},
		{"", "PATCH", "/vm", `{"state":"Running"}`, serde("unknown variant `Running`, expected `Paused` or `Resumed` at line 1 column 18")},
	}
	runCases(t, vm.c, cases)
}

func (vm *bootedVM) pauseResume(t *testing.T) {
	state := func(s string) expectation {
		return ok200(`{"id":"anonymous-instance","state":"` + s + `","vmm_version":"1.17.0-dev","app_name":"Firecracker"}`)
	}
	cases := []apiCase{
		{"pause", "PATCH", "/vm", `{"state":"Paused"}`, ok204()},
		{"", "GET", "/", "", state("Paused")},
		{"pause again", "PATCH", "/vm", `{"state":"Paused"}`, ok204()},
		{"", "GET", "/", "", state("Paused")},
		{"requests are served while paused", "GET", "/balloon", "", ok200("")},
		// A paused VM can be snapshotted in Firecracker; this backend
		// cannot snapshot at all and must say so.
		{"snapshot while paused", "PUT", "/snapshot/create", `{"snapshot_path":` + serdeQuote(filepath.Join(vm.dir, "snap")) + `,"mem_file_path":` + serdeQuote(filepath.Join(vm.dir, "mem")) + `}`,
			expectation{status: 400, faultPrefix: "Create snapshot error: ", faultContains: "qemu backend"}},
		{"resume", "PATCH", "/vm", `{"state":"Resumed"}`, ok204()},
		{"", "GET", "/", "", state("Running")},
		{"resume again", "PATCH", "/vm", `{"state":"Resumed"}`, ok204()},
		{"", "GET", "/", "", state("Running")},
	}
	runCases(t, vm.c, cases)
	for _, line := range []string{"'pause vm' API request took ", "'resume vm' API request took "} {
		vm.e.waitLog(line, logTimeout)
	}
}

func (vm *bootedVM) logLines(t *testing.T) {
	// Each request's log line is followed by its duration before the next
	// request's (Firecracker logs it after answering: wait for the last).
	vm.c.get("/version")
	waitFor(logTimeout, func() bool {
		lines := vm.e.logLines()
		return strings.Contains(lines[len(lines)-1], "Total previous API call duration")
	})
	lines := vm.e.logLines()
	if !strings.Contains(lines[0], "Running Firecracker v1.17.0-dev") {
		t.Errorf("first log line = %q, want it to say Running Firecracker v1.17.0-dev", lines[0])
	}
	pending, requests, lastRequest := false, 0, ""
	for i, l := range lines {
		switch {
		case strings.Contains(l, "The API server received a "):
			if pending {
				t.Errorf("line %d: a request without a duration line before it: %q", i+1, l)
			}
			pending, lastRequest = true, l
			requests++
		case strings.Contains(l, "Total previous API call duration: "):
			if !pending {
				t.Errorf("line %d: a duration line without a request: %q", i+1, l)
			}
			pending = false
			// Firecracker's harness holds every call but snapshots under
			// 700 ms; booting QEMU under TCG is exempt here too.
			if us := durationUs(t, l); us > 700_000 && !strings.Contains(lastRequest, "InstanceStart") {
				t.Errorf("line %d: API call took %d us, over Firecracker's 700 ms bound: %q", i+1, us, lastRequest)
			}
		}
	}
	if pending {
		t.Errorf("the last request has no duration line")
	}
	if requests < 50 {
		t.Errorf("only %d requests logged; the log misses requests", requests)
	}
	for _, want := range []string{
		lineAPIStarted,
		`The API server received a Put request on "/drives/scratch" with body "{\"drive_id\":\"scratch\",`,
		`The API server received a Get request on "/machine-config".`,
		`The API server received a Put request on "/mmds".`,
		"The request was executed successfully. Status code: 204 No Content.",
		"The request was executed successfully. Status code: 200 OK.",
		"Received Error. Status code: 400 Bad Request. Message: " + notPreBoot,
		"Received Error. Status code: 400 Bad Request. Message: " + notPostBoot,
		"PUT /mmds/config: V1 is deprecated. Use V2 instead.",
		// Parsed by Firecracker's boot-time tests.
		"[anonymous-instance:main] event_start: build microvm for boot",
		"[anonymous-instance:main] event_end: build microvm for boot",
		"[anonymous-instance:main] event_start: boot microvm",
		// The guest kernel is an ELF with a PVH note (Debug level).
		"Kernel loaded using PVH boot protocol",
	} {
		if !vm.e.hasLog(want) {
			t.Errorf("log lacks %q", want)
		}
	}
	// MMDS bodies are never logged.
	for _, l := range lines {
		if strings.Contains(l, `request on "/mmds" with body`) {
			t.Errorf("MMDS body logged: %q", l)
		}
	}
}

// durationUs extracts N from "Total previous API call duration: N us.".
func durationUs(t *testing.T, line string) int {
	t.Helper()
	_, rest, _ := strings.Cut(line, "Total previous API call duration: ")
	var us int
	if _, err := fmt.Sscanf(rest, "%d us.", &us); err != nil || !strings.HasSuffix(rest, " us.") {
		t.Errorf("malformed duration line %q", line)
	}
	return us
}

func (vm *bootedVM) reboot(t *testing.T) {
	before := len(metricsLines(t, vm.metricsPath))
	ok204().check(t, "SendCtrlAltDel", vm.c.action("SendCtrlAltDel"))
	vm.e.wantExit(0, guestTimeout)
	if !vm.e.hasLog("[anonymous-instance:main] Vmm is stopping.") {
		t.Errorf("log lacks \"Vmm is stopping.\"")
	}
	last := vm.e.logLines()[len(vm.e.logLines())-1]
	if !strings.HasSuffix(last, "[anonymous-instance:main] "+lineExitOK) {
		t.Errorf("last log line = %q, want the exit line %q", last, lineExitOK)
	}
	if after := len(metricsLines(t, vm.metricsPath)); after != before+1 {
		t.Errorf("metrics lines: %d before the reboot, %d after; Firecracker writes one at exit", before, after)
	}
	if _, err := os.Lstat(vm.e.sock); err != nil {
		t.Errorf("the API socket was removed at exit (Firecracker leaves it): %v", err)
	}
}
