package cli

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/ember-vmm/ember/internal/logger"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func u64(v uint64) *uint64 { return &v }

// defaults returns the Options of an empty command line, written out here
// rather than taken from Parse so the test can catch a wrong default.
func defaults() Options {
	return Options{
		APISock:               "/run/firecracker.socket",
		ID:                    "anonymous-instance",
		Level:                 logger.Info,
		HTTPAPIMaxPayloadSize: 51200,
		Backend:               "auto",
		QEMUBinary:            "qemu-system-x86_64",
		Accel:                 "auto",
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name string
		args []string
		edit func(o *Options)
	}{
		{"no args", nil, func(o *Options) {}},
		{"api-sock", []string{"--api-sock", "/tmp/a.sock"}, func(o *Options) { o.APISock = "/tmp/a.sock" }},
		{"id", []string{"--id", "vm-1"}, func(o *Options) { o.ID = "vm-1" }},
		{"id unicode", []string{"--id", "Ünïcødé-٣"}, func(o *Options) { o.ID = "Ünïcødé-٣" }},
		{"id 64 bytes", []string{"--id", strings.Repeat("a", 64)}, func(o *Options) { o.ID = strings.Repeat("a", 64) }},
		{"config-file", []string{"--config-file", "vm.json"}, func(o *Options) { o.ConfigFile = "vm.json" }},
		{"no-api with config", []string{"--no-api", "--config-file", "c"}, func(o *Options) { o.NoAPI, o.ConfigFile = true, "c" }},
		{"metadata", []string{"--metadata", "m.json"}, func(o *Options) { o.Metadata = "m.json" }},
		{"log-path", []string{"--log-path", "/dev/null"}, func(o *Options) { o.LogPath = "/dev/null" }},
		{"level", []string{"--level", "Debug"}, func(o *Options) { o.Level, o.LevelSet = logger.Debug, true }},
		{"level warning", []string{"--level", "WARNING"}, func(o *Options) { o.Level, o.LevelSet = logger.Warn, true }},
		{"level off", []string{"--level", "off"}, func(o *Options) { o.Level, o.LevelSet = logger.Off, true }},
		{"level trace", []string{"--level", "trace"}, func(o *Options) { o.Level, o.LevelSet = logger.Trace, true }},
		{"module", []string{"--module", "vmm::devices"}, func(o *Options) { o.Module = "vmm::devices" }},
		{"show flags", []string{"--show-level", "--show-log-origin"}, func(o *Options) { o.ShowLevel, o.ShowLogOrigin = true, true }},
		{"metrics-path", []string{"--metrics-path", "m.fifo"}, func(o *Options) { o.MetricsPath = "m.fifo" }},
		{"seccomp-filter", []string{"--seccomp-filter", "f.bpf"}, func(o *Options) { o.SeccompFilter = "f.bpf" }},
		{"no-seccomp", []string{"--no-seccomp"}, func(o *Options) { o.NoSeccomp = true }},
		{"boot-timer", []string{"--boot-timer"}, func(o *Options) { o.BootTimer = true }},
		{"enable-pci", []string{"--enable-pci"}, func(o *Options) { o.EnablePCI = true }},
		{"payload size", []string{"--http-api-max-payload-size", "1024"}, func(o *Options) { o.HTTPAPIMaxPayloadSize = 1024 }},
		{"payload size plus sign", []string{"--http-api-max-payload-size", "+7"}, func(o *Options) { o.HTTPAPIMaxPayloadSize = 7 }},
		{"payload size max u64", []string{"--http-api-max-payload-size", "18446744073709551615"},
			func(o *Options) { o.HTTPAPIMaxPayloadSize = 1<<64 - 1 }},
		{"mmds limit", []string{"--mmds-size-limit", "0"}, func(o *Options) { o.MMDSSizeLimit = u64(0) }},
		{"jailer times", []string{"--start-time-us", "1", "--start-time-cpu-us", "2", "--parent-cpu-time-us", "3"},
			func(o *Options) { o.StartTimeUs, o.StartTimeCPUUs, o.ParentCPUTimeUs = u64(1), u64(2), u64(3) }},
		{"jailer times ignored without api",
			[]string{"--no-api", "--config-file", "c", "--start-time-us", "bad", "--parent-cpu-time-us", "3"},
			func(o *Options) { o.NoAPI, o.ConfigFile = true, "c" }},
		{"backend", []string{"--backend", "qemu"}, func(o *Options) { o.Backend = "qemu" }},
		{"backend case", []string{"--backend", "KVM"}, func(o *Options) { o.Backend = "kvm" }},
		{"qemu-binary", []string{"--qemu-binary", "/opt/q"}, func(o *Options) { o.QEMUBinary = "/opt/q" }},
		{"accel", []string{"--accel", "tcg"}, func(o *Options) { o.Accel = "tcg" }},
		{"kvm backend kvm accel", []string{"--backend", "kvm", "--accel", "kvm"}, func(o *Options) { o.Backend, o.Accel = "kvm", "kvm" }},
		{"value may start with one dash", []string{"--api-sock", "-x"}, func(o *Options) { o.APISock = "-x" }},
		{"empty value", []string{"--module", ""}, func(o *Options) {}},
		{"after separator ignored", []string{"--id", "a", "--", "--bogus", "--help", "x"}, func(o *Options) { o.ID = "a" }},
		{"separator only", []string{"--"}, func(o *Options) {}},
		{"describe-snapshot skips later checks",
			[]string{"--describe-snapshot", "s.vmstate", "--id", "bad_id", "--level", "nope", "--http-api-max-payload-size", "x"},
			func(o *Options) { o.DescribeSnapshot, o.ID = "s.vmstate", "bad_id" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ex := Parse(tt.args)
			if ex != nil {
				t.Fatalf("Parse(%q) = exit %+v, want options", tt.args, *ex)
			}
			want := defaults()
			tt.edit(&want)
			want.given = got.given // compared by TestGiven
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tt.args, *got, want)
			}
		})
	}
}

func TestGiven(t *testing.T) {
	o, ex := Parse([]string{"--config-file", "", "--no-api", "--describe-snapshot", "", "--", "--log-path", "x"})
	if ex != nil {
		t.Fatalf("unexpected exit %+v", *ex)
	}
	for _, name := range []string{"config-file", "no-api", "describe-snapshot"} {
		if !o.Given(name) {
			t.Errorf("Given(%q) = false, want true", name)
		}
	}
	for _, name := range []string{"log-path", "metadata", "id", "bogus"} {
		if o.Given(name) {
			t.Errorf("Given(%q) = true, want false", name)
		}
	}
}

func TestMMDSLimit(t *testing.T) {
	o, _ := Parse([]string{"--http-api-max-payload-size", "500"})
	if got := o.MMDSLimit(); got != 500 {
		t.Errorf("MMDSLimit without --mmds-size-limit = %d, want the payload size 500", got)
	}
	o, _ = Parse([]string{"--http-api-max-payload-size", "500", "--mmds-size-limit", "9"})
	if got := o.MMDSLimit(); got != 9 {
		t.Errorf("MMDSLimit = %d, want 9", got)
	}
}

func TestParseExits(t *testing.T) {
	const more = " \n\nFor more information try --help."
	tests := []struct {
		name   string
		args   []string
		code   int
		abort  bool
		stdout string
		stderr string
		log    string
		logID  string
	}{
		{name: "version", args: []string{"--version"}, stdout: "Firecracker v1.17.0-dev\n\n"},
		{name: "version among bad args", args: []string{"bogus", "--id", "x!", "--version"}, stdout: "Firecracker v1.17.0-dev\n\n"},
		{name: "version as a value", args: []string{"--id", "--version"}, stdout: "Firecracker v1.17.0-dev\n\n"},
		{name: "snapshot-version", args: []string{"--snapshot-version"}, stdout: "v11.0.0\n"},
		{name: "snapshot-version before id check", args: []string{"--snapshot-version", "--id", "a_b", "--level", "x"},
			stdout: "v11.0.0\n"},
		{name: "snapshot-version beats describe", args: []string{"--describe-snapshot", "f", "--snapshot-version"},
			stdout: "v11.0.0\n"},

		{name: "positional", args: []string{"foo"}, code: 153,
			stderr: "Error: ParseArguments(UnexpectedArgument(\"foo\"))\n",
			log:    "Arguments parsing error: Found argument 'foo' which wasn't expected, or isn't valid in this context." + more},
		{name: "short option", args: []string{"-v"}, code: 153,
			stderr: "Error: ParseArguments(UnexpectedArgument(\"-v\"))\n",
			log:    "Arguments parsing error: Found argument '-v' which wasn't expected, or isn't valid in this context." + more},
		{name: "unknown flag", args: []string{"--api-sock", "a", "--bogus"}, code: 153,
			stderr: "Error: ParseArguments(UnexpectedArgument(\"bogus\"))\n",
			log:    "Arguments parsing error: Found argument 'bogus' which wasn't expected, or isn't valid in this context." + more},
		{name: "equals syntax", args: []string{"--id=a"}, code: 153,
			stderr: "Error: ParseArguments(UnexpectedArgument(\"id=a\"))\n",
			log:    "Arguments parsing error: Found argument 'id=a' which wasn't expected, or isn't valid in this context." + more},
		{name: "value to a presence flag", args: []string{"--config-file", "c", "--no-api", "foobar"}, code: 153,
			stderr: "Error: ParseArguments(UnexpectedArgument(\"foobar\"))\n",
			log:    "Arguments parsing error: Found argument 'foobar' which wasn't expected, or isn't valid in this context." + more},
		{name: "quote in unknown", args: []string{"a\"b\\c\td"}, code: 153,
			stderr: "Error: ParseArguments(UnexpectedArgument(\"a\\\"b\\\\c\\td\"))\n",
			log:    "Arguments parsing error: Found argument 'a\"b\\c\td' which wasn't expected, or isn't valid in this context." + more},
		{name: "repeated value flag", args: []string{"--id", "a", "--id", "b"}, code: 153,
			stderr: "Error: ParseArguments(DuplicateArgument(\"id\"))\n",
			log:    "Arguments parsing error: The argument 'id' was provided more than once." + more},
		{name: "repeated presence flag", args: []string{"--boot-timer", "--boot-timer"}, code: 153,
			stderr: "Error: ParseArguments(DuplicateArgument(\"boot-timer\"))\n",
			log:    "Arguments parsing error: The argument 'boot-timer' was provided more than once." + more},
		{name: "missing value at end", args: []string{"--id"}, code: 153,
			stderr: "Error: ParseArguments(MissingValue(\"id\"))\n",
			log:    "Arguments parsing error: The argument 'id' requires a value, but none was supplied." + more},
		{name: "value starting with --", args: []string{"--api-sock", "--id", "bar"}, code: 153,
			stderr: "Error: ParseArguments(MissingValue(\"api-sock\"))\n",
			log:    "Arguments parsing error: The argument 'api-sock' requires a value, but none was supplied." + more},
		{name: "missing value before separator", args: []string{"--describe-snapshot", "--", "x"}, code: 153,
			stderr: "Error: ParseArguments(MissingValue(\"describe-snapshot\"))\n",
			log:    "Arguments parsing error: The argument 'describe-snapshot' requires a value, but none was supplied." + more},
		{name: "first error wins", args: []string{"--id", "a", "--id", "b", "zzz"}, code: 153,
			stderr: "Error: ParseArguments(DuplicateArgument(\"id\"))\n",
			log:    "Arguments parsing error: The argument 'id' was provided more than once." + more},
		{name: "no-api without config-file", args: []string{"--no-api"}, code: 153,
			stderr: "Error: ParseArguments(MissingArgument(\"config-file\"))\n",
			log:    "Arguments parsing error: Argument 'config-file' required, but not found." + more},
		{name: "seccomp conflict", args: []string{"--seccomp-filter", "0", "--no-seccomp"}, code: 153,
			stderr: "Error: ParseArguments(ForbiddenArgument(\"no-seccomp\", \"seccomp-filter\"))\n",
			log:    "Arguments parsing error: Argument 'seccomp-filter' cannot be used together with argument 'no-seccomp'." + more},
		{name: "seccomp conflict other order", args: []string{"--no-seccomp", "--seccomp-filter", "0"}, code: 153,
			stderr: "Error: ParseArguments(ForbiddenArgument(\"no-seccomp\", \"seccomp-filter\"))\n",
			log:    "Arguments parsing error: Argument 'seccomp-filter' cannot be used together with argument 'no-seccomp'." + more},
		{name: "requires checked before forbids by name", args: []string{"--no-seccomp", "--seccomp-filter", "0", "--no-api"}, code: 153,
			stderr: "Error: ParseArguments(MissingArgument(\"config-file\"))\n",
			log:    "Arguments parsing error: Argument 'config-file' required, but not found." + more},
		{name: "scan errors before requirements", args: []string{"--no-api", "x"}, code: 153,
			stderr: "Error: ParseArguments(UnexpectedArgument(\"x\"))\n",
			log:    "Arguments parsing error: Found argument 'x' which wasn't expected, or isn't valid in this context." + more},
		{name: "parse error beats snapshot-version", args: []string{"--snapshot-version", "--no-api"}, code: 153,
			stderr: "Error: ParseArguments(MissingArgument(\"config-file\"))\n",
			log:    "Arguments parsing error: Argument 'config-file' required, but not found." + more},
		{name: "bad backend", args: []string{"--backend", "xen"}, code: 153,
			stderr: "Error: ParseArguments(InvalidValue(\"backend\", \"xen\"))\n",
			log:    "Arguments parsing error: Invalid value 'xen' for argument 'backend'. Possible values: [auto, kvm, qemu]." + more},
		{name: "bad accel", args: []string{"--accel", "whpx"}, code: 153,
			stderr: "Error: ParseArguments(InvalidValue(\"accel\", \"whpx\"))\n",
			log:    "Arguments parsing error: Invalid value 'whpx' for argument 'accel'. Possible values: [auto, kvm, hvf, tcg]." + more},
		{name: "empty qemu-binary", args: []string{"--qemu-binary", ""}, code: 153,
			stderr: "Error: ParseArguments(InvalidValue(\"qemu-binary\", \"\"))\n",
			log:    "Arguments parsing error: Invalid value '' for argument 'qemu-binary'." + more},
		{name: "kvm backend with tcg", args: []string{"--accel", "tcg", "--backend", "kvm"}, code: 153,
			stderr: "Error: ParseArguments(ConflictingValues(\"backend\", \"kvm\", \"accel\", \"tcg\"))\n",
			log:    "Arguments parsing error: Argument 'accel' with value 'tcg' cannot be used together with argument 'backend' with value 'kvm'." + more},

		{name: "invalid level", args: []string{"--level", "verbose"}, code: 152,
			stderr: "Error: InvalidLogLevel(LevelFilterFromStrError(\"verbose\"))\n",
			log:    "Invalid value for logger level: Failed to parse string to level filter: verbose.Possible values: [Error, Warning, Info, Debug]"},
		{name: "invalid level logs with the id", args: []string{"--id", "vm7", "--level", ""}, code: 152, logID: "vm7",
			stderr: "Error: InvalidLogLevel(LevelFilterFromStrError(\"\"))\n",
			log:    "Invalid value for logger level: Failed to parse string to level filter: .Possible values: [Error, Warning, Info, Debug]"},

		{name: "id bad char", args: []string{"--id", "my_vm"}, code: 134, abort: true,
			stderr: "Invalid instance ID: Invalid char (_) at position 2\n",
			log:    "Firecracker panicked: Invalid instance ID: InvalidChar('_', 2)"},
		{name: "id quote char position in chars", args: []string{"--id", "éé'"}, code: 134, abort: true,
			stderr: "Invalid instance ID: Invalid char (') at position 2\n",
			log:    "Firecracker panicked: Invalid instance ID: InvalidChar('\\'', 2)"},
		{name: "id empty", args: []string{"--id", ""}, code: 134, abort: true,
			stderr: "Invalid instance ID: Invalid len (0);  the length must be between 1 and 64\n",
			log:    "Firecracker panicked: Invalid instance ID: InvalidLen(0, 1, 64)"},
		{name: "id too long in bytes", args: []string{"--id", strings.Repeat("é", 33)}, code: 134, abort: true,
			stderr: "Invalid instance ID: Invalid len (66);  the length must be between 1 and 64\n",
			log:    "Firecracker panicked: Invalid instance ID: InvalidLen(66, 1, 64)"},
		{name: "id checked before level", args: []string{"--level", "bad", "--id", "a.b"}, code: 134, abort: true,
			stderr: "Invalid instance ID: Invalid char (.) at position 1\n",
			log:    "Firecracker panicked: Invalid instance ID: InvalidChar('.', 1)"},
		{name: "payload not a number", args: []string{"--http-api-max-payload-size", "50k"}, code: 134, abort: true,
			stderr: "'http-api-max-payload-size' parameter expected to be of 'usize' type.: invalid digit found in string\n",
			log:    "Firecracker panicked: 'http-api-max-payload-size' parameter expected to be of 'usize' type.: ParseIntError { kind: InvalidDigit }"},
		{name: "payload negative", args: []string{"--http-api-max-payload-size", "-1"}, code: 134, abort: true,
			stderr: "'http-api-max-payload-size' parameter expected to be of 'usize' type.: invalid digit found in string\n",
			log:    "Firecracker panicked: 'http-api-max-payload-size' parameter expected to be of 'usize' type.: ParseIntError { kind: InvalidDigit }"},
		{name: "payload empty", args: []string{"--http-api-max-payload-size", ""}, code: 134, abort: true,
			stderr: "'http-api-max-payload-size' parameter expected to be of 'usize' type.: cannot parse integer from empty string\n",
			log:    "Firecracker panicked: 'http-api-max-payload-size' parameter expected to be of 'usize' type.: ParseIntError { kind: Empty }"},
		{name: "level checked before payload", args: []string{"--http-api-max-payload-size", "x", "--level", "x"}, code: 152,
			stderr: "Error: InvalidLogLevel(LevelFilterFromStrError(\"x\"))\n",
			log:    "Invalid value for logger level: Failed to parse string to level filter: x.Possible values: [Error, Warning, Info, Debug]"},
		{name: "mmds limit overflow", args: []string{"--id", "i", "--mmds-size-limit", "18446744073709551616"}, code: 134, abort: true, logID: "i",
			stderr: "'mmds-size-limit' parameter expected to be of 'usize' type.: number too large to fit in target type\n",
			log:    "Firecracker panicked: 'mmds-size-limit' parameter expected to be of 'usize' type.: ParseIntError { kind: PosOverflow }"},
		{name: "payload checked before mmds limit", args: []string{"--mmds-size-limit", "x", "--http-api-max-payload-size", "y"}, code: 134, abort: true,
			stderr: "'http-api-max-payload-size' parameter expected to be of 'usize' type.: invalid digit found in string\n",
			log:    "Firecracker panicked: 'http-api-max-payload-size' parameter expected to be of 'usize' type.: ParseIntError { kind: InvalidDigit }"},
		{name: "start time", args: []string{"--parent-cpu-time-us", "1", "--start-time-us", "1.5"}, code: 134, abort: true,
			stderr: "'start-time-us' parameter expected to be of 'u64' type.: invalid digit found in string\n",
			log:    "Firecracker panicked: 'start-time-us' parameter expected to be of 'u64' type.: ParseIntError { kind: InvalidDigit }"},
		{name: "parent cpu time", args: []string{"--parent-cpu-time-us", "+"}, code: 134, abort: true,
			stderr: "'parent-cpu-time-us' parameter expected to be of 'u64' type.: invalid digit found in string\n",
			log:    "Firecracker panicked: 'parent-cpu-time-us' parameter expected to be of 'u64' type.: ParseIntError { kind: InvalidDigit }"},
		{name: "invalid utf-8 anywhere", args: []string{"--help", "--", "a\xff"}, code: 134, abort: true,
			stderr: "Command line argument is not valid Unicode: \"a\\xFF\"\n",
			log:    "Firecracker panicked: called `Result::unwrap()` on an `Err` value: \"a\\xFF\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, ex := Parse(tt.args)
			if ex == nil {
				t.Fatalf("Parse(%q) = options %+v, want an exit", tt.args, *o)
			}
			if o != nil {
				t.Errorf("Parse(%q) returned both options and an exit", tt.args)
			}
			logID := tt.logID
			if logID == "" {
				logID = "anonymous-instance"
			}
			want := Exit{Code: tt.code, Stdout: tt.stdout, Stderr: tt.stderr, Log: tt.log, Abort: tt.abort, logID: logID}
			if !reflect.DeepEqual(*ex, want) {
				t.Errorf("Parse(%q)\n got %#v\nwant %#v", tt.args, *ex, want)
			}
		})
	}
}

// TestHelpShortCircuits checks that --help and -h win wherever they appear
// before a bare "--", even over --version and over errors.
func TestHelpShortCircuits(t *testing.T) {
	want := "Firecracker v1.17.0-dev\n\n" + Help() + "\n"
	for _, args := range [][]string{
		{"--help"},
		{"-h"},
		{"--version", "--help"},
		{"bogus", "--id", "-h"},
		{"--id", "--help"},
		{"--no-api", "--level", "nope", "-h", "--", "--version"},
	} {
		o, ex := Parse(args)
		if ex == nil || ex.Stdout != want || ex.Code != 0 || ex.Stderr != "" || ex.Log != "" || ex.Abort {
			t.Errorf("Parse(%q) = %+v, %+v; want the help text with code 0", args, o, ex)
		}
	}
	for _, args := range [][]string{{"--", "--help"}, {"--", "-h"}, {"--", "--version"}} {
		if _, ex := Parse(args); ex != nil {
			t.Errorf("Parse(%q) = exit %+v; arguments after -- must be ignored", args, *ex)
		}
	}
}

func TestGolden(t *testing.T) {
	for _, tt := range []struct {
		file string
		args []string
	}{
		{"help.golden", []string{"--help"}},
		{"version.golden", []string{"--version"}},
		{"snapshot-version.golden", []string{"--snapshot-version"}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			_, ex := Parse(tt.args)
			if ex == nil {
				t.Fatalf("Parse(%q) returned no exit", tt.args)
			}
			path := filepath.Join("testdata", tt.file)
			if *update {
				if err := os.WriteFile(path, []byte(ex.Stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if ex.Stdout != string(want) {
				t.Errorf("stdout of %q differs from %s:\n got %q\nwant %q", tt.args, path, ex.Stdout, want)
			}
		})
	}
}

// TestHelpLayout checks the properties Firecracker's help formatting has,
// independently of the golden file: names sorted, columns aligned, every
// flag listed once, defaults shown.
func TestHelpLayout(t *testing.T) {
	lines := strings.Split(Help(), "\n")
	if lines[0] != "optional arguments:" {
		t.Fatalf("first line %q, want %q", lines[0], "optional arguments:")
	}
	lineRE := regexp.MustCompile(`^  --([a-z0-9-]+)(?: <([a-z0-9-]+)>)?( +)(\S.*)$`)
	var names []string
	col := -1
	for _, l := range lines[1:] {
		m := lineRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("malformed help line %q", l)
		}
		if m[2] != "" && m[2] != m[1] {
			t.Errorf("line %q: placeholder differs from name", l)
		}
		if len(m[3]) < 3 {
			t.Errorf("line %q: fewer than three spaces before the help", l)
		}
		c := len(l) - len(m[4])
		if col >= 0 && c != col {
			t.Errorf("line %q: help starts at column %d, others at %d", l, c, col)
		}
		col = c
		names = append(names, m[1])
	}
	if !slices.IsSorted(names) {
		t.Errorf("help names not sorted: %q", names)
	}
	if len(names) != len(flags)+1 {
		t.Errorf("help lists %d flags, want %d (the table plus --help)", len(names), len(flags)+1)
	}
	for _, f := range []string{"accel", "backend", "qemu-binary", "help", "version", "api-sock"} {
		if !slices.Contains(names, f) {
			t.Errorf("help does not list --%s", f)
		}
	}
	for _, d := range []string{`[default: "/run/firecracker.socket"]`, `[default: "anonymous-instance"]`,
		`[default: "51200"]`, `[default: "auto"]`, `[default: "qemu-system-x86_64"]`} {
		if !strings.Contains(Help(), d) {
			t.Errorf("help lacks %s", d)
		}
	}
}

func TestEmit(t *testing.T) {
	ts := `\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}`
	tests := []struct {
		name             string
		args             []string
		stdoutRE, stderr string
	}{
		{"version", []string{"--version"},
			`^Firecracker v1\.17\.0-dev\n\n` + ts + ` \[anonymous-instance:main\] Firecracker exiting successfully\. exit_code=0\n$`, ""},
		{"arg error", []string{"--nope"},
			`^` + ts + ` \[anonymous-instance:main\] Arguments parsing error: Found argument 'nope' which wasn't expected, or isn't valid in this context\. \n\nFor more information try --help\.\n` +
				ts + ` \[anonymous-instance:main\] Firecracker exiting with error\. exit_code=153\n$`,
			"Error: ParseArguments(UnexpectedArgument(\"nope\"))\n"},
		{"level error uses id", []string{"--id", "vm9", "--level", "x"},
			`^` + ts + ` \[vm9:main\] Invalid value for logger level: .*\n` +
				ts + ` \[vm9:main\] Firecracker exiting with error\. exit_code=152\n$`,
			"Error: InvalidLogLevel(LevelFilterFromStrError(\"x\"))\n"},
		{"abort has no exit line", []string{"--id", "?"},
			`^` + ts + ` \[anonymous-instance:main\] Firecracker panicked: Invalid instance ID: InvalidChar\('\?', 0\)\n$`,
			"Invalid instance ID: Invalid char (?) at position 0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ex := Parse(tt.args)
			if ex == nil {
				t.Fatalf("Parse(%q) returned no exit", tt.args)
			}
			var out, errb bytes.Buffer
			ex.Emit(&out, &errb)
			if !regexp.MustCompile(tt.stdoutRE).MatchString(out.String()) {
				t.Errorf("stdout %q does not match %q", out.String(), tt.stdoutRE)
			}
			if errb.String() != tt.stderr {
				t.Errorf("stderr %q, want %q", errb.String(), tt.stderr)
			}
		})
	}
}

// TestTerminate runs Terminate in a child process and checks how it ends.
func TestTerminate(t *testing.T) {
	if args := os.Getenv("EMBER_CLI_TERMINATE"); args != "" {
		var lim syscall.Rlimit // no core file from the abort case
		_ = syscall.Setrlimit(syscall.RLIMIT_CORE, &lim)
		_, ex := Parse(strings.Fields(args))
		ex.Emit(os.Stdout, os.Stderr)
		ex.Terminate()
		os.Exit(99) // unreachable if Terminate works
	}
	for _, tt := range []struct {
		args       string
		code       int
		signal     syscall.Signal
		stderrLine string
	}{
		{"--version", 0, 0, ""},
		{"--bogus", 153, 0, "Error: ParseArguments(UnexpectedArgument(\"bogus\"))\n"},
		{"--level xyz", 152, 0, "Error: InvalidLogLevel(LevelFilterFromStrError(\"xyz\"))\n"},
		{"--id a_b", -1, syscall.SIGABRT, "Invalid instance ID: Invalid char (_) at position 1\n"},
	} {
		t.Run(tt.args, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestTerminate$")
			cmd.Env = append(os.Environ(), "EMBER_CLI_TERMINATE="+tt.args)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			st := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if tt.signal != 0 {
				if !st.Signaled() || st.Signal() != tt.signal {
					t.Fatalf("child ended with %v (%v), want death by %v", st, err, tt.signal)
				}
			} else if st.Signaled() || st.ExitStatus() != tt.code {
				t.Fatalf("child ended with %v (%v), want exit status %d", st, err, tt.code)
			}
			if stderr.String() != tt.stderrLine {
				t.Errorf("child stderr %q, want %q", stderr.String(), tt.stderrLine)
			}
		})
	}
}
