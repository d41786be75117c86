package conformance

// The command line: informational flags, argument errors and their exit
// codes, --config-file (with and without the API), --metadata, log lines
// harnesses wait for, and PUT /logger moving the log.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// logLineRE is Firecracker's log line prefix: local time with nanoseconds,
// then [instance:thread] (optionally :LEVEL and :file:line).
var logLineRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9} \[[^\]]+\] `)

func TestCmdlineInfoFlags(t *testing.T) {
	t.Parallel()
	const exitLine = "[anonymous-instance:main] " + lineExitOK + "\n"
	cases := []struct {
		name   string
		args   []string
		stdout string // exact start of stdout
	}{
		{"version", []string{"--version"}, "Firecracker v1.17.0-dev\n\n"},
		{"version after other flags", []string{"--id", "x1", "--version"}, "Firecracker v1.17.0-dev\n\n"},
		{"version wins over a bad flag", []string{"--bogus", "--version"}, "Firecracker v1.17.0-dev\n\n"},
		{"help", []string{"--help"}, "Firecracker v1.17.0-dev\n\noptional arguments:\n"},
		{"short help", []string{"-h"}, "Firecracker v1.17.0-dev\n\noptional arguments:\n"},
		{"snapshot version", []string{"--snapshot-version"}, "v11.0.0\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := launch(t, launchOpts{args: tc.args})
			e.wantExit(0, exitTimeout)
			out := e.stdout.String()
			if !strings.HasPrefix(out, tc.stdout) {
				t.Errorf("stdout = %q, want it to start with %q", out, tc.stdout)
			}
			if !strings.HasSuffix(out, exitLine) {
				t.Errorf("stdout = %q, want it to end with the log line %q", out, exitLine)
			}
			if e.stderr.String() != "" {
				t.Errorf("stderr = %q, want nothing", e.stderr.String())
			}
			if tc.name == "help" {
				for _, line := range []string{
					`  --api-sock <api-sock>                                     Path to unix domain socket used by the API. [default: "/run/firecracker.socket"]`,
					`  --boot-timer                                              Whether or not to load boot timer device for logging elapsed time since InstanceStart command.`,
					`  --config-file <config-file>                               Path to a file that contains the microVM configuration in JSON format.`,
					`  --http-api-max-payload-size <http-api-max-payload-size>   Http API request payload max size, in bytes. [default: "51200"]`,
					`  --id <id>                                                 MicroVM unique identifier. [default: "anonymous-instance"]`,
					`  --no-api                                                  Optional parameter which allows starting and using a microVM without an active API socket.`,
					`  --version                                                 Print the binary version number.`,
				} {
					if !strings.Contains(out, "\n"+line+"\n") {
						t.Errorf("help lacks the line %q", line)
					}
				}
			}
		})
	}
}

func TestCmdlineBadArgs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		args   []string
		code   int
		log    string
		stderr string
	}{
		{"unknown flag", []string{"--bogus"}, 153,
			"Arguments parsing error: Found argument 'bogus' which wasn't expected, or isn't valid in this context.",
			`Error: ParseArguments(UnexpectedArgument("bogus"))`},
		{"positional argument", []string{"foo"}, 153,
			"Arguments parsing error: Found argument 'foo' which wasn't expected, or isn't valid in this context.",
			`Error: ParseArguments(UnexpectedArgument("foo"))`},
		{"missing value", []string{"--api-sock"}, 153,
			"Arguments parsing error: The argument 'api-sock' requires a value, but none was supplied.",
			`Error: ParseArguments(MissingValue("api-sock"))`},
		{"value that is a flag", []string{"--id", "--level", "Info"}, 153,
			"Arguments parsing error: The argument 'id' requires a value, but none was supplied.",
			`Error: ParseArguments(MissingValue("id"))`},
		{"duplicate", []string{"--id", "a", "--id", "b"}, 153,
			"Arguments parsing error: The argument 'id' was provided more than once.",
			`Error: ParseArguments(DuplicateArgument("id"))`},
		{"no-api without config-file", []string{"--no-api"}, 153,
			"Arguments parsing error: Argument 'config-file' required, but not found.",
			`Error: ParseArguments(MissingArgument("config-file"))`},
		{"forbidden pair", []string{"--no-seccomp", "--seccomp-filter", "x"}, 153,
			"Arguments parsing error: Argument 'seccomp-filter' cannot be used together with argument 'no-seccomp'.",
			`Error: ParseArguments(ForbiddenArgument("no-seccomp", "seccomp-filter"))`},
		{"bad level", []string{"--level", "foo"}, 152,
			"Invalid value for logger level: Failed to parse string to level filter: foo.Possible values: [Error, Warning, Info, Debug]",
			`Error: InvalidLogLevel(LevelFilterFromStrError("foo"))`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := launch(t, launchOpts{args: tc.args})
			e.wantExit(tc.code, exitTimeout)
			if !e.hasLog(tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, e.logText())
			}
			if want := "Firecracker exiting with error. exit_code=" + strconv.Itoa(tc.code); !e.hasLog(want) {
				t.Errorf("log lacks %q", want)
			}
			if got := e.stderr.String(); got != tc.stderr+"\n" {
				t.Errorf("stderr = %q, want %q", got, tc.stderr+"\n")
			}
		})
	}
}

func TestCmdlineUnopenableTargets(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "no", "such", "file")
	const enoent = `Os { code: 2, kind: NotFound, message: "No such file or directory" }`
	cases := []struct {
		name, flag, log, stderr string
	}{
		{"log path", "--log-path",
			"Could not initialize logger: Failed to open target file: No such file or directory (os error 2)",
			"Error: LoggerInitialization(LoggerUpdateError(" + enoent + "))"},
		{"metrics path", "--metrics-path",
			"Could not initialize metrics: Cannot initialize the metrics system due to bad user input: No such file or directory (os error 2)",
			`Error: MetricsInitialization(InitializationFailure("No such file or directory (os error 2)"))`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := launch(t, launchOpts{args: []string{tc.flag, missing}})
			e.wantExit(1, exitTimeout)
			if !strings.Contains(e.stdout.String(), tc.log) {
				t.Errorf("stdout lacks %q:\n%s", tc.log, e.stdout.String())
			}
			if got := e.stderr.String(); got != tc.stderr+"\n" {
				t.Errorf("stderr = %q, want %q", got, tc.stderr+"\n")
			}
		})
	}
}

func TestCmdlineLogFormat(t *testing.T) {
	t.Parallel()
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		e := startEmber(t)
		e.client().get("/")
		line := e.waitLog("The API server received a Get request on \"/\".", logTimeout)
		if !logLineRE.MatchString(line) || !strings.Contains(line, " [anonymous-instance:fc_api] ") {
			t.Errorf("log line %q is not in Firecracker's format", line)
		}
		first := e.logLines()[0]
		if !logLineRE.MatchString(first) || !strings.HasSuffix(first, " [anonymous-instance:main] Running Firecracker v1.17.0-dev") {
			t.Errorf("first log line = %q", first)
		}
		// Info level: no debug lines.
		if e.hasLog("Total previous API call duration") {
			t.Errorf("debug lines logged at the default level")
		}
		if want := `[anonymous-instance:main] Listening on API socket ("` + e.sock + `").`; !e.hasLog(want) {
			t.Errorf("log lacks %q", want)
		}
		// Bodies are logged as Rust's Debug renders a str; CPU templates
		// only at Debug level.
		c := e.client()
		c.put("/boot-source", "{\"kernel_image_path\":\n\"\u00e9\u200b\\\"x\"}")
		c.put("/cpu-config", `{}`)
		for _, want := range []string{
			`The API server received a Put request on "/boot-source" with body "{\"kernel_image_path\":\n\"` + "\u00e9" + `\u{200b}\\\"x\"}".`,
			`The API server received a Put request on "/cpu-config". To view the CPU template received by the API, configure log-level to DEBUG.`,
		} {
			e.waitLog(want, logTimeout)
		}
	})
	t.Run("id, level and origin", func(t *testing.T) {
		t.Parallel()
		e := startEmber(t, "--id", "vm-42", "--show-level", "--show-log-origin", "--level", "debug")
		c := e.client()
		ok200(`{"id":"vm-42","state":"Not started","vmm_version":"1.17.0-dev","app_name":"Firecracker"}`).check(t, "GET /", c.get("/"))
		for i := 0; i < 5; i++ {
			c.get("/version")
		}
		first := e.logLines()[0]
		if !regexp.MustCompile(` \[vm-42:main:INFO:[^:\]]+:\d+\] Running Firecracker v1\.17\.0-dev$`).MatchString(first) {
			t.Errorf("first log line = %q, want [vm-42:main:INFO:<file>:<line>]", first)
		}
		// Every request gets its duration line at Debug.
		ok := waitFor(logTimeout, func() bool {
			return strings.Count(e.logText(), "Total previous API call duration: ") == 6
		})
		if !ok {
			t.Errorf("%d duration lines for 6 requests", strings.Count(e.logText(), "Total previous API call duration: "))
		}
		if !regexp.MustCompile(`\[vm-42:fc_api:DEBUG:[^\]]+\] Total previous API call duration: \d+ us\.\n`).MatchString(e.logText()) {
			t.Errorf("duration line not in Firecracker's format:\n%s", e.logText())
		}
	})
}

func TestCmdlineLoggerNewPath(t *testing.T) {
	t.Parallel()
	e := startEmber(t, "--level", "Debug")
	c := e.client()
	path := filepath.Join(t.TempDir(), "new.log")
	// Omitting level resets it to Info, as Firecracker does.
	ok204().check(t, "PUT /logger", c.put("/logger", `{"log_path":`+serdeQuote(path)+`}`))
	c.get("/version")
	ok := waitFor(logTimeout, func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), `The API server received a Get request on "/version".`)
	})
	if !ok {
		b, _ := os.ReadFile(path)
		t.Fatalf("the new log file lacks the request line:\n%s", b)
	}
	if strings.Contains(e.stdout.String(), `request on "/version"`) {
		t.Errorf("request logged to stdout after the logger moved")
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "Total previous API call duration") {
		t.Errorf("debug lines in the new log: the level should have reset to Info:\n%s", b)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !logLineRE.MatchString(l) {
			t.Errorf("log line %q is not in Firecracker's format", l)
		}
	}
}

// vmConfigFile is a complete configuration in the canonical form GET
// /vm/config gives back (Firecracker's tests/framework/vm_config.json with
// this test's guest).
func vmConfigFile(g guest, end string) map[string]any {
	return map[string]any{
		"boot-source": map[string]any{"kernel_image_path": g.kernel, "boot_args": bootArgs(end), "initrd_path": g.initrd},
		"drives": []any{map[string]any{
			"drive_id": "rootfs", "partuuid": nil, "is_root_device": true, "cache_type": "Unsafe", "is_read_only": false,
			"path_on_host": g.rootfs, "io_engine": "Sync", "rate_limiter": nil, "socket": nil,
		}},
		"machine-config":     map[string]any{"vcpu_count": float64(2), "mem_size_mib": float64(256), "smt": false, "track_dirty_pages": false, "huge_pages": "None"},
		"cpu-config":         nil,
		"balloon":            nil,
		"network-interfaces": []any{},
		"vsock":              nil,
		"logger":             nil,
		"metrics":            nil,
		"mmds-config":        nil,
		"entropy":            nil,
		"pmem":               []any{},
		"memory-hotplug":     nil,
	}
}

func writeJSON(t testing.TB, dir, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name, b)
}

func TestCmdlineConfigFileWithAPI(t *testing.T) {
	t.Parallel()
	g := requireGuest(t)
	dir := t.TempDir()
	cfg := vmConfigFile(g, endWait)
	path := writeJSON(t, dir, "vm_config.json", cfg)
	e := startEmber(t, "--config-file", path)
	e.waitLog("Successfully started microvm that was configured from one single json", guestTimeout)
	c := e.client()
	ok200(`{"id":"anonymous-instance","state":"Running","vmm_version":"1.17.0-dev","app_name":"Firecracker"}`).check(t, "GET /", c.get("/"))
	// Firecracker's test_config_start_with_api: the configuration reads
	// back as the file.
	var got map[string]any
	getJSON(t, c, "/vm/config", &got)
	if !reflect.DeepEqual(got, cfg) {
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(cfg)
		t.Errorf("GET /vm/config after --config-file:\n got %s\nwant %s", gb, wb)
	}
	bad(notPostBoot).check(t, "InstanceStart", c.action("InstanceStart"))
	e.waitStdout(markerReady, guestTimeout)
	ok204().check(t, "SendCtrlAltDel", c.action("SendCtrlAltDel"))
	e.wantExit(0, guestTimeout)
}

func TestCmdlineConfigFileNoAPI(t *testing.T) {
	t.Parallel()
	g := requireGuest(t)
	dir := t.TempDir()
	ns := newNetns(t, "tap0")
	cfg := vmConfigFile(g, endReboot)
	// Firecracker's vm_config_network.json: a network interface, and an
	// unknown top-level key, which the config file ignores.
	cfg["network-interfaces"] = []any{map[string]any{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:00:00:00:01"}}
	cfg["not-a-section"] = true
	metrics := filepath.Join(dir, "metrics.ndjson")
	cfg["metrics"] = map[string]any{"metrics_path": metrics, "emit_id": true, "properties": map[string]string{"team": "ember", "env": "ci"}}
	path := writeJSON(t, dir, "vm_config.json", cfg)
	sock := filepath.Join(dir, "never.sock")
	e := launch(t, launchOpts{args: []string{"--id", "vm-noapi", "--no-api", "--api-sock", sock, "--config-file", path}, dir: dir, netns: ns})
	// The guest reboots once ready, which ends Firecracker with 0.
	e.wantExit(0, guestTimeout)
	for _, want := range []string{"Successfully started microvm that was configured from one single json", lineExitOK} {
		if !e.hasLog(want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if e.hasLog(lineAPIStarted) {
		t.Errorf("the API server started with --no-api")
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Errorf("--no-api created the API socket %s", sock)
	}
	// One metrics line at boot, one at exit (Firecracker's test_shut_down),
	// each carrying the id and the properties right after the timestamp.
	b, err := os.ReadFile(metrics)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2 {
		t.Errorf("%d metrics lines, want 2 (boot and exit)", len(lines))
	}
	prefix := regexp.MustCompile(`^\{"utc_timestamp_ms":\d+,"id":"vm-noapi","properties":\{"env":"ci","team":"ember"\},"api_server":\{`)
	for i, l := range lines {
		if !prefix.MatchString(l) {
			t.Errorf("metrics line %d starts %.120q, want %s", i+1, l, prefix)
		}
	}
}

func TestCmdlineBootTimer(t *testing.T) {
	t.Parallel()
	// A real kernel: InstanceStart checks the image before the backend.
	g := requireGuest(t)
	e := startEmber(t, "--boot-timer")
	c := e.client()
	c.mustOK("PUT", "/boot-source", `{"kernel_image_path":`+serdeQuote(g.kernel)+`}`)
	// The backend cannot attach the boot timer: a failed start, not fatal.
	backendLacks("Start microvm error: ", "the boot timer device").check(t, "InstanceStart", c.action("InstanceStart"))
	ok200(instanceInfoFresh).check(t, "GET / after the failed start", c.get("/"))
}

func TestGuestPoweroffKeepsRunning(t *testing.T) {
	t.Parallel()
	// Without ACPI power-off, Firecracker does not end when the guest
	// powers off; only a reset (reboot) does.
	g := requireGuest(t)
	e := startEmber(t)
	c := e.client()
	c.mustOK("PUT", "/boot-source", g.bootSourceBody(testguest.EndPoweroff))
	c.mustOK("PUT", "/drives/rootfs", g.rootDriveBody())
	c.mustOK("PUT", "/actions", `{"action_type":"InstanceStart"}`)
	e.waitStdout(markerReady, guestTimeout)
	e.waitStdout("reboot: Power down", guestTimeout)
	time.Sleep(2 * time.Second)
	if e.exited() {
		code, sig := e.waitExit(0)
		t.Fatalf("ember ended (code %d, signal %v) after the guest powered off", code, sig)
	}
	ok200(`{"id":"anonymous-instance","state":"Running","vmm_version":"1.17.0-dev","app_name":"Firecracker"}`).check(t, "GET / after poweroff", c.get("/"))

	// SIGTERM: Firecracker does not handle it and dies of it; ember must
	// die the same way and leave no QEMU behind.
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, sig := e.waitExit(exitTimeout); sig != syscall.SIGTERM {
		t.Errorf("after SIGTERM: exit code %d, signal %v; want death by SIGTERM", code, sig)
	}
	if _, err := os.Lstat(e.sock); err != nil {
		t.Errorf("the API socket was removed: %v", err)
	}
	if !waitFor(exitTimeout, func() bool { return len(processesUsing(g.rootfs)) == 0 }) {
		t.Errorf("processes still use the guest's disk after ember died: %v", processesUsing(g.rootfs))
	}
}

// processesUsing lists the pids whose command line mentions s.
func processesUsing(s string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, ent.Name())
		}
	}
	return pids
}

func TestCmdlineConfigFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	kernel := writeFile(t, dir, "vmlinux", []byte("k"))
	rootfs := scratchFile(t, dir, "rootfs.ext4")
	base := func() map[string]any {
		return map[string]any{
			"boot-source": map[string]any{"kernel_image_path": kernel},
			"drives":      []any{map[string]any{"drive_id": "rootfs", "is_root_device": true, "path_on_host": rootfs}},
		}
	}
	noVcpu := base()
	noVcpu["machine-config"] = map[string]any{"mem_size_mib": 128}
	noKernel := base()
	noKernel["boot-source"] = map[string]any{"kernel_image_path": filepath.Join(dir, "missing")}
	noDrives := base()
	delete(noDrives, "drives")
	cases := []struct {
		name string
		cfg  map[string]any
		args []string
		log  string
	}{
		// Firecracker's test_config_bad_machine_config.
		{"missing vcpu_count, no API", noVcpu, []string{"--no-api"},
			"Configuration for VMM from one single json failed: Invalid JSON: missing field `vcpu_count`"},
		{"missing kernel, with API", noKernel, nil,
			"Failed to build MicroVM from Json: Configuration for VMM from one single json failed: Boot source error: The kernel file cannot be opened: No such file or directory (os error 2)"},
		{"drives are required", noDrives, []string{"--no-api"},
			"Configuration for VMM from one single json failed: Invalid JSON: missing field `drives`"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeJSON(t, t.TempDir(), "cfg"+strconv.Itoa(i)+".json", tc.cfg)
			e := launch(t, launchOpts{args: append(tc.args, "--config-file", path)})
			e.wantExit(1, exitTimeout)
			if !e.hasLog(tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, e.logText())
			}
			if !e.hasLog("Firecracker exiting with error. exit_code=1") {
				t.Errorf("log lacks the exit line")
			}
		})
	}
	t.Run("unreadable file", func(t *testing.T) {
		t.Parallel()
		e := launch(t, launchOpts{args: []string{"--config-file", filepath.Join(dir, "none.json")}})
		if code, sig := e.waitExit(exitTimeout); sig != syscall.SIGABRT {
			t.Errorf("exit code %d, signal %v; Firecracker panics (SIGABRT)", code, sig)
		}
		if !e.hasLog("Unable to open or read from the configuration file") {
			t.Errorf("log lacks the panic message:\n%s", e.logText())
		}
	})
}

func TestCmdlineMetadata(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := writeFile(t, dir, "metadata.json", []byte(`{
    "latest": {"meta-data": "Lorem ipsum", "user-data": "u 1 2 3"},
    "2016-09-02": {"meta-data": "old"},
    "2019-08-01": {"some-data": {"field2": [1,2,3,4], "field1": "val1"}}
}
`))
	invalid := writeFile(t, dir, "invalid.json", []byte("{\n  \"latest\": {\n    \"meta-data\": \"x\"\n\n"))
	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		e := startEmber(t, "--metadata", good)
		e.waitLog("Successfully added metadata to mmds from file", logTimeout)
		c := e.client()
		ok200(instanceInfoFresh).check(t, "GET /", c.get("/"))
		ok200(`{"2016-09-02":{"meta-data":"old"},"2019-08-01":{"some-data":{"field1":"val1","field2":[1,2,3,4]}},"latest":{"meta-data":"Lorem ipsum","user-data":"u 1 2 3"}}`).
			check(t, "GET /mmds", c.get("/mmds"))
		// The store is initialized: PATCH works at once.
		ok204().check(t, "PATCH /mmds", c.patch("/mmds", `{"latest":{"user-data":null}}`))
	})
	t.Run("invalid JSON", func(t *testing.T) {
		t.Parallel()
		e := launch(t, launchOpts{args: []string{"--metadata", invalid}})
		if code, sig := e.waitExit(exitTimeout); sig != syscall.SIGABRT {
			t.Errorf("exit code %d, signal %v; Firecracker panics (SIGABRT)", code, sig)
		}
		for _, want := range []string{"MMDS error: metadata provided not valid json", "EOF while parsing an object"} {
			if !e.hasLog(want) {
				t.Errorf("log lacks %q:\n%s", want, e.logText())
			}
		}
	})
	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		e := launch(t, launchOpts{args: []string{"--metadata", filepath.Join(dir, "none.json")}})
		if code, sig := e.waitExit(exitTimeout); sig != syscall.SIGABRT {
			t.Errorf("exit code %d, signal %v; Firecracker panics (SIGABRT)", code, sig)
		}
		for _, want := range []string{"Unable to open or read from the mmds content file", "No such file or directory"} {
			if !e.hasLog(want) {
				t.Errorf("log lacks %q:\n%s", want, e.logText())
			}
		}
	})
	for _, tc := range []struct{ name, flag string }{
		{"over --mmds-size-limit", "--mmds-size-limit"},
		{"over the payload limit, the default MMDS limit", "--http-api-max-payload-size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := launch(t, launchOpts{args: []string{tc.flag, "30", "--metadata", good}})
			e.wantExit(1, exitTimeout)
			if want := "Populating MMDS from file failed: The MMDS patch request doesn't fit."; !e.hasLog(want) {
				t.Errorf("log lacks %q:\n%s", want, e.logText())
			}
		})
	}
}
