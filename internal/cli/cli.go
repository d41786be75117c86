// Package cli parses ember's command line, which is Firecracker's command line
// plus a few flags of ember's own.
//
// Invariants:
//   - Every Firecracker flag keeps its name, default, validation, message,
//     output stream and exit code; ember's flags (--backend, --qemu-binary,
//     --accel) never change what a Firecracker flag means.
//   - The syntax is Firecracker's: "--name value" or "--flag" only (no "=",
//     no short options except -h); "--help", "-h" and "--version" anywhere
//     before a bare "--" short-circuit parsing; arguments after the first bare
//     "--" are ignored.
//   - Checks run in Firecracker's order, so when several things are wrong the
//     same one is reported.
//   - Parse never exits the process and never panics; it returns what to do
//     as an *Exit, which Emit and Terminate carry out.
package cli

import (
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/ember-vmm/ember/internal/logger"
)

// FirecrackerVersion is the Firecracker version ember reports (--version,
// --help, GET /version, the "Running Firecracker" log line).
const FirecrackerVersion = "1.17.0-dev"

// SnapshotVersion is the snapshot data format version --snapshot-version
// prints, without its leading "v".
const SnapshotVersion = "11.0.0"

// Defaults, as Firecracker has them.
const (
	DefaultAPISock               = "/run/firecracker.socket"
	DefaultHTTPAPIMaxPayloadSize = 51200
)

// Defaults of ember's own flags.
const (
	DefaultBackend    = "auto"
	DefaultQEMUBinary = "qemu-system-x86_64"
	DefaultAccel      = "auto"
)

// Backends and Accels list the accepted values of --backend and --accel.
var (
	Backends = []string{"auto", "kvm", "qemu"}
	Accels   = []string{"auto", "kvm", "hvf", "tcg"}
)

// Options is the parsed command line.
//
// A string option that was not given is "", but so is one given as "": as
// in Firecracker, `--config-file ""` names a config file that fails to open,
// not an absent one. Use Given to tell them apart.
type Options struct {
	APISock    string // --api-sock
	ID         string // --id, validated as Firecracker does
	ConfigFile string // --config-file, "" if not given
	NoAPI      bool   // --no-api (implies Given("config-file"))
	Metadata   string // --metadata, "" if not given

	LogPath       string       // --log-path, "" if not given
	Level         logger.Level // --level, logger.DefaultLevel if not given
	LevelSet      bool         // --level was given
	Module        string       // --module, "" if not given
	ShowLevel     bool         // --show-level
	ShowLogOrigin bool         // --show-log-origin

	MetricsPath   string // --metrics-path, "" if not given
	SeccompFilter string // --seccomp-filter, "" if not given
	NoSeccomp     bool   // --no-seccomp (never with Given("seccomp-filter"))
	BootTimer     bool   // --boot-timer
	EnablePCI     bool   // --enable-pci

	// HTTPAPIMaxPayloadSize is --http-api-max-payload-size in bytes; a usize
	// in Firecracker, which is 64 bits wide on every host ember runs on.
	HTTPAPIMaxPayloadSize uint64
	// MMDSSizeLimit is --mmds-size-limit in bytes; nil means "same as
	// HTTPAPIMaxPayloadSize" (see MMDSLimit).
	MMDSSizeLimit *uint64

	// The jailer's timing flags. As in Firecracker they are read only when
	// the API runs: with NoAPI they stay nil whatever was given.
	StartTimeUs, StartTimeCPUUs, ParentCPUTimeUs *uint64

	// DescribeSnapshot is --describe-snapshot: when Given, the caller prints
	// the version of that snapshot state file and exits; Parse has then
	// skipped every later check (--id, --level, the numbers), as Firecracker
	// does, so the other fields hold unvalidated defaults.
	DescribeSnapshot string

	Backend    string // --backend: auto, kvm or qemu
	QEMUBinary string // --qemu-binary: path, or a name looked up on PATH
	Accel      string // --accel: auto, kvm, hvf or tcg (qemu backend only)

	given map[string]string
}

// Given reports whether the flag with this name (without "--") was on the
// command line, even with an empty value.
func (o *Options) Given(name string) bool {
	_, ok := o.given[name]
	return ok
}

// MMDSLimit returns the MMDS data store limit in effect: --mmds-size-limit,
// or the API payload limit when it was not given.
func (o *Options) MMDSLimit() uint64 {
	if o.MMDSSizeLimit != nil {
		return *o.MMDSSizeLimit
	}
	return o.HTTPAPIMaxPayloadSize
}

// argSpec describes one command line argument.
type argSpec struct {
	name     string
	value    bool   // takes a value; otherwise a presence flag
	def      string // default value, shown in --help when hasDef
	hasDef   bool
	help     string
	requires string // another flag that must be present with this one
	forbids  string // another flag that must not be present with this one
}

// flags is the parser's table. --help lists it sorted by name, as
// Firecracker's parser does, so its order here does not matter.
var flags = []argSpec{
	{name: "api-sock", value: true, def: DefaultAPISock, hasDef: true,
		help: "Path to unix domain socket used by the API."},
	{name: "id", value: true, def: logger.DefaultInstanceID, hasDef: true,
		help: "MicroVM unique identifier."},
	{name: "seccomp-filter", value: true, forbids: "no-seccomp",
		help: "Optional parameter which allows specifying the path to a custom seccomp filter. For advanced users."},
	{name: "no-seccomp", forbids: "seccomp-filter",
		help: "Optional parameter which allows starting and using a microVM without seccomp filtering. Not recommended."},
	{name: "start-time-us", value: true,
		help: "Process start time (wall clock, microseconds). This parameter is optional."},
	{name: "start-time-cpu-us", value: true,
		help: "Process start CPU time (wall clock, microseconds). This parameter is optional."},
	{name: "parent-cpu-time-us", value: true,
		help: "Parent process CPU time (wall clock, microseconds). This parameter is optional."},
	{name: "config-file", value: true,
		help: "Path to a file that contains the microVM configuration in JSON format."},
	{name: "metadata", value: true,
		help: "Path to a file that contains metadata in JSON format to add to the mmds."},
	{name: "no-api", requires: "config-file",
		help: "Optional parameter which allows starting and using a microVM without an active API socket."},
	{name: "log-path", value: true,
		help: "Path to a fifo or a file used for configuring the logger on startup."},
	{name: "level", value: true, help: "Set the logger level."},
	{name: "module", value: true, help: "Set the logger module filter."},
	{name: "show-level", help: "Whether or not to output the level in the logs."},
	{name: "show-log-origin",
		help: "Whether or not to include the file path and line number of the log's origin."},
	{name: "metrics-path", value: true,
		help: "Path to a fifo or a file used for configuring the metrics on startup."},
	{name: "boot-timer",
		help: "Whether or not to load boot timer device for logging elapsed time since InstanceStart command."},
	{name: "version", help: "Print the binary version number."},
	{name: "snapshot-version", help: "Print the supported data format version."},
	{name: "describe-snapshot", value: true,
		help: "Print the data format version of the provided snapshot state file."},
	{name: "http-api-max-payload-size", value: true, def: "51200", hasDef: true,
		help: "Http API request payload max size, in bytes."},
	{name: "mmds-size-limit", value: true, help: "Mmds data store limit, in bytes."},
	{name: "enable-pci", help: "Enables PCIe support."},

	// ember's own.
	{name: "backend", value: true, def: DefaultBackend, hasDef: true,
		help: "Engine that runs the microVM: kvm (built-in), qemu, or auto to pick one this host supports."},
	{name: "qemu-binary", value: true, def: DefaultQEMUBinary, hasDef: true,
		help: "QEMU executable the qemu backend runs; a name without a slash is looked up on PATH."},
	{name: "accel", value: true, def: DefaultAccel, hasDef: true,
		help: "Accelerator the qemu backend asks QEMU for: kvm, hvf, tcg, or auto for the fastest available."},
}

// helpFlag is the entry Firecracker's parser adds to its table when --help or
// -h is given, so --help lists itself.
var helpFlag = argSpec{name: "help", help: "Show the help message."}

func lookup(name string) (argSpec, bool) {
	for _, f := range flags {
		if f.name == name {
			return f, true
		}
	}
	return argSpec{}, false
}

// Parse parses args (without argv[0]). It returns either the Options to run
// with, or an *Exit saying what to print and how the process ends: for
// --help, --version and --snapshot-version, and for every command line error
// Firecracker detects before it starts its API server or microVM.
// --describe-snapshot is returned as an option, not handled here.
//
// One order differs from Firecracker's: it validates the numeric flags only
// after opening the log and metrics targets, loading seccomp filters and
// reading the config and metadata files; Parse validates them up front, so
// when one of those later steps would also fail, ember reports the number.
func Parse(args []string) (*Options, *Exit) {
	// Firecracker reads its arguments as Unicode strings and aborts on the
	// first that is not, wherever it is.
	for _, a := range args {
		if !utf8.ValidString(a) {
			return nil, abortExit(logger.DefaultInstanceID,
				"Command line argument is not valid Unicode: "+rustDebugStr(a),
				"called `Result::unwrap()` on an `Err` value: "+rustDebugStr(a))
		}
	}
	if i := slices.Index(args, "--"); i >= 0 {
		args = args[:i]
	}
	if slices.Contains(args, "--help") || slices.Contains(args, "-h") {
		return nil, &Exit{Code: ExitOK, Stdout: versionBanner() + Help() + "\n", logID: logger.DefaultInstanceID}
	}
	if slices.Contains(args, "--version") {
		return nil, &Exit{Code: ExitOK, Stdout: versionBanner(), logID: logger.DefaultInstanceID}
	}

	given, err := scan(args)
	if err != nil {
		return nil, err.exit()
	}
	if err := checkOwn(given); err != nil {
		return nil, err.exit()
	}
	if _, ok := given["snapshot-version"]; ok {
		return nil, &Exit{Code: ExitOK, Stdout: "v" + SnapshotVersion + "\n", logID: logger.DefaultInstanceID}
	}

	o := &Options{
		APISock:               DefaultAPISock,
		ID:                    logger.DefaultInstanceID,
		Level:                 logger.DefaultLevel,
		HTTPAPIMaxPayloadSize: DefaultHTTPAPIMaxPayloadSize,
		Backend:               DefaultBackend,
		QEMUBinary:            DefaultQEMUBinary,
		Accel:                 DefaultAccel,
		given:                 given,
	}
	str := func(dst *string, name string) {
		if v, ok := given[name]; ok {
			*dst = v
		}
	}
	present := func(name string) bool { _, ok := given[name]; return ok }
	str(&o.APISock, "api-sock")
	str(&o.ID, "id")
	str(&o.ConfigFile, "config-file")
	str(&o.Metadata, "metadata")
	str(&o.LogPath, "log-path")
	str(&o.Module, "module")
	str(&o.MetricsPath, "metrics-path")
	str(&o.SeccompFilter, "seccomp-filter")
	str(&o.DescribeSnapshot, "describe-snapshot")
	str(&o.Backend, "backend")
	str(&o.QEMUBinary, "qemu-binary")
	str(&o.Accel, "accel")
	o.Backend, o.Accel = strings.ToLower(o.Backend), strings.ToLower(o.Accel)
	o.NoAPI = present("no-api")
	o.ShowLevel = present("show-level")
	o.ShowLogOrigin = present("show-log-origin")
	o.NoSeccomp = present("no-seccomp")
	o.BootTimer = present("boot-timer")
	o.EnablePCI = present("enable-pci")
	if present("describe-snapshot") {
		return o, nil
	}

	if e := validateInstanceID(o.ID); e != nil {
		return nil, abortExit(logger.DefaultInstanceID,
			"Invalid instance ID: "+e.Error(),
			"Invalid instance ID: "+e.debug())
	}
	// From here on Firecracker's log lines carry the instance id.
	if v, ok := given["level"]; ok {
		lv, err := logger.ParseLevel(v)
		if err != nil {
			return nil, &Exit{
				Code: ExitBadConfiguration,
				Log: "Invalid value for logger level: Failed to parse string to level filter: " + v +
					".Possible values: [Error, Warning, Info, Debug]",
				Stderr: "Error: InvalidLogLevel(LevelFilterFromStrError(" + rustDebugStr(v) + "))\n",
				logID:  o.ID,
			}
		}
		o.Level, o.LevelSet = lv, true
	}

	// Firecracker reads the numbers only after setting up logging, metrics
	// and seccomp and reading the config files; each bad one aborts it.
	num := func(name, typ string) (*uint64, *Exit) {
		v, ok := given[name]
		if !ok {
			return nil, nil
		}
		n, perr := parseRustUint(v)
		if perr != nil {
			msg := "'" + name + "' parameter expected to be of '" + typ + "' type."
			return nil, abortExit(o.ID, msg+": "+perr.Error(), msg+": "+perr.debug())
		}
		return &n, nil
	}
	n, ex := num("http-api-max-payload-size", "usize")
	if ex != nil {
		return nil, ex
	}
	if n != nil {
		o.HTTPAPIMaxPayloadSize = *n
	}
	if o.MMDSSizeLimit, ex = num("mmds-size-limit", "usize"); ex != nil {
		return nil, ex
	}
	if !o.NoAPI {
		for _, t := range []struct {
			dst  **uint64
			name string
		}{
			{&o.StartTimeUs, "start-time-us"},
			{&o.StartTimeCPUUs, "start-time-cpu-us"},
			{&o.ParentCPUTimeUs, "parent-cpu-time-us"},
		} {
			if *t.dst, ex = num(t.name, "u64"); ex != nil {
				return nil, ex
			}
		}
	}
	return o, nil
}

// scan walks args as Firecracker's parser does: each must be a known
// "--name", given at most once, followed by its value when it takes one;
// then every given flag's requires/forbids rule is checked, in name order.
// It returns the given flags with their values ("" for presence flags).
func scan(args []string) (map[string]string, *argError) {
	given := make(map[string]string)
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			return nil, &argError{kind: errUnexpected, a: a}
		}
		f, ok := lookup(name)
		if !ok {
			return nil, &argError{kind: errUnexpected, a: name}
		}
		if _, dup := given[name]; dup {
			return nil, &argError{kind: errDuplicate, a: name}
		}
		v := ""
		if f.value {
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "--") {
				return nil, &argError{kind: errMissingValue, a: name}
			}
			i++
			v = args[i]
		}
		given[name] = v
	}
	for _, f := range sortedFlags(false) {
		if _, ok := given[f.name]; !ok {
			continue
		}
		// Firecracker looks for the other flag among the raw arguments; a
		// value can never look like a flag, so the given set is equivalent.
		if f.requires != "" {
			if _, ok := given[f.requires]; !ok {
				return nil, &argError{kind: errMissingArgument, a: f.requires}
			}
		}
		if f.forbids != "" {
			if _, ok := given[f.forbids]; ok {
				return nil, &argError{kind: errForbidden, a: f.name, b: f.forbids}
			}
		}
	}
	return given, nil
}

// checkOwn validates the values of ember's own flags. Their errors are
// argument errors, reported like Firecracker's.
func checkOwn(given map[string]string) *argError {
	for _, c := range []struct {
		name    string
		allowed []string
	}{{"backend", Backends}, {"accel", Accels}} {
		if v, ok := given[c.name]; ok && !slices.Contains(c.allowed, strings.ToLower(v)) {
			return &argError{kind: errInvalidValue, a: c.name, b: v, allowed: c.allowed}
		}
	}
	if v, ok := given["qemu-binary"]; ok && v == "" {
		return &argError{kind: errInvalidValue, a: "qemu-binary", b: v}
	}
	// The built-in KVM engine accelerates with KVM only.
	if strings.EqualFold(given["backend"], "kvm") {
		if v, ok := given["accel"]; ok && !strings.EqualFold(v, "auto") && !strings.EqualFold(v, "kvm") {
			return &argError{kind: errConflict, a: "backend", b: "kvm", c: "accel", d: v}
		}
	}
	return nil
}

func versionBanner() string { return "Firecracker v" + FirecrackerVersion + "\n\n" }

// sortedFlags returns the flag table sorted by name (byte order), optionally
// with the --help entry.
func sortedFlags(withHelp bool) []argSpec {
	fs := slices.Clone(flags)
	if withHelp {
		fs = append(fs, helpFlag)
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].name < fs[j].name })
	return fs
}

// Help returns the argument list --help prints after the version banner,
// without a trailing newline: "optional arguments:" and one line per flag,
// names padded to the longest, as Firecracker formats it.
func Help() string {
	fs := sortedFlags(true)
	names := make([]string, len(fs))
	width := 0
	for i, f := range fs {
		if f.value {
			names[i] = "  --" + f.name + " <" + f.name + ">"
		} else {
			names[i] = "  --" + f.name
		}
		width = max(width, len(names[i]))
	}
	var b strings.Builder
	b.WriteString("optional arguments:")
	for i, f := range fs {
		b.WriteByte('\n')
		b.WriteString(names[i])
		b.WriteString(strings.Repeat(" ", width-len(names[i])))
		b.WriteString("   ")
		b.WriteString(f.help)
		if f.hasDef {
			b.WriteString(` [default: "` + f.def + `"]`)
		}
	}
	return b.String()
}
