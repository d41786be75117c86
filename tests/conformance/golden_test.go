package conformance

// Golden answers: what a fresh process reports, and the full /vm/config
// after configuring everything this backend accepts. Paths that vary from
// run to run are replaced by placeholders before comparing. -update
// rewrites the files from ember's answers (review the diff against
// Firecracker's behaviour before committing).

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkGolden compares got with testdata/name after replacing the given
// strings (longest first) by placeholders.
func checkGolden(t *testing.T, name string, got []byte, replace map[string]string) {
	t.Helper()
	olds := make([]string, 0, len(replace))
	for old := range replace {
		olds = append(olds, old)
	}
	// Longer paths first, so a directory never eats part of a file path.
	for i := range olds {
		for j := i + 1; j < len(olds); j++ {
			if len(olds[j]) > len(olds[i]) {
				olds[i], olds[j] = olds[j], olds[i]
			}
		}
	}
	for _, old := range olds {
		got = bytes.ReplaceAll(got, []byte(old), []byte(replace[old]))
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if want = bytes.TrimSuffix(want, []byte("\n")); !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n got %s\nwant %s", name, got, want)
	}
}

func TestGoldenFreshProcess(t *testing.T) {
	t.Parallel()
	e := startEmber(t)
	c := e.client()
	for _, g := range []struct{ path, file string }{
		{"/", "fresh-instance-info.json"},
		{"/machine-config", "fresh-machine-config.json"},
		{"/vm/config", "fresh-vm-config.json"},
		{"/version", "fresh-version.json"},
	} {
		r := c.get(g.path)
		if r.status != 200 {
			t.Errorf("GET %s: %s", g.path, r)
			continue
		}
		// The whole answer is fixed: check the bytes around the body too.
		if want := jsonAnswer(200, string(r.body), false); string(r.raw) != want {
			t.Errorf("GET %s: %s, want %q", g.path, r, want)
		}
		checkGolden(t, g.file, r.body, nil)
	}
	// Firecracker warns on every pre-boot GET /vm/config.
	e.waitLog("[anonymous-instance:main] If the VM was restored from snapshot, boot-source, machine-config.smt, and machine-config.cpu_template will all be empty.", logTimeout)
}

func TestGoldenFullConfig(t *testing.T) {
	t.Parallel()
	ns := newNetns(t, "tap0")
	e := startEmberIn(t, ns)
	c := e.client()
	dir := t.TempDir()
	kernel := writeFile(t, dir, "vmlinux", []byte("kernel"))
	initrd := writeFile(t, dir, "initrd.img", []byte("initrd"))
	rootfs := scratchFile(t, dir, "rootfs.ext4")
	data := scratchFile(t, dir, "data.img")
	q := serdeQuote
	cases := []apiCase{
		{"", "PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":256,"smt":false,"track_dirty_pages":false,"huge_pages":"None"}`, ok204()},
		{"no static template", "PATCH", "/machine-config", `{"cpu_template":"None"}`, expectation{status: 204, deprecation: true}},
		{"", "PUT", "/boot-source", `{"kernel_image_path":` + q(kernel) + `,"initrd_path":` + q(initrd) + `,"boot_args":"console=ttyS0 reboot=k panic=1"}`, ok204()},
		{"data drive first", "PUT", "/drives/data", `{"drive_id":"data","is_root_device":false,"cache_type":"Writeback","is_read_only":false,"path_on_host":` + q(data) + `,"io_engine":"Async"}`, ok204()},
		{"root drive second", "PUT", "/drives/rootfs", `{"drive_id":"rootfs","partuuid":"0eaa91a0-01","is_root_device":true,"is_read_only":true,"path_on_host":` + q(rootfs) + `}`, ok204()},
		{"", "PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"06:00:00:00:00:01","mtu":1400}`, ok204()},
		{"", "PUT", "/balloon", `{"amount_mib":1,"deflate_on_oom":true,"stats_polling_interval_s":1,"free_page_reporting":true}`, ok204()},
		{"", "PUT", "/entropy", `{}`, ok204()},
		{"serial is never shown", "PUT", "/serial", `{"serial_out_path":` + q(filepath.Join(dir, "serial.log")) + `}`, ok204()},
		{"logger is never shown", "PUT", "/logger", `{"level":"Info"}`, ok204()},
		{"metrics are never shown", "PUT", "/metrics", `{"metrics_path":` + q(filepath.Join(dir, "metrics.ndjson")) + `}`, ok204()},
		{"MMDS data alone makes no mmds-config", "PUT", "/mmds", `{"a":1}`, ok204()},
		// What this backend lacks is refused, naming it.
		{"", "PUT", "/vsock", `{"guest_cid":15,"uds_path":"vsock.sock"}`, ok204()},
		{"", "PUT", "/mmds/config", `{"version":"V2","ipv4_address":"169.254.169.250","network_interfaces":["eth0"],"imds_compat":true}`, ok204()},
		{"", "PUT", "/pmem/pmem", `{"id":"pmem","path_on_host":` + q(data) + `,"root_device":false,"read_only":false}`, backendLacks("Pmem config error: ", "pmem devices")},
		{"", "PUT", "/hotplug/memory", `{"total_size_mib":1024,"block_size_mib":128,"slot_size_mib":1024}`, backendLacks("Memory hotplug config error: ", "memory hotplug")},
		{"", "PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":256,"cpu_template":"C3"}`,
			expectation{status: 400, fault: "Machine config error: The qemu backend does not support CPU templates.", deprecation: true}},
		{"", "PATCH", "/machine-config", `{"track_dirty_pages":true}`, ok204()},
		{"", "PUT", "/entropy", `{"rate_limiter":{"bandwidth":{"size":1000,"refill_time":100}}}`, ok204()},
		{"", "PUT", "/serial", `{"rate_limiter":{"size":1000,"refill_time":100}}`,
			expectation{status: 400, faultContains: "The qemu backend does not support a rate limiter on the serial console."}},
		{"", "PUT", "/balloon", `{"amount_mib":1,"deflate_on_oom":true,"free_page_hinting":true}`, backendLacks("Balloon config error: ", "free page hinting")},
	}
	runCases(t, c, cases)
	r := c.get("/vm/config")
	if r.status != 200 {
		t.Fatalf("GET /vm/config: %s", r)
	}
	checkGolden(t, "full-vm-config.json", r.body, map[string]string{dir: "$DIR"})
	if strings.Contains(string(r.body), "serial") {
		t.Errorf("/vm/config shows the serial configuration: %s", r.body)
	}
}
