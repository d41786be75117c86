// Command ember is a microVM monitor with Firecracker's command line, API
// and behaviour, running VMs on pluggable backends (QEMU today).
//
// The startup order, the log lines and the exit codes are Firecracker's:
// logger, "Running Firecracker v...", signal handling, metrics, the API
// socket ("API server started."), then the VM configured through the API or
// from --config-file. The process ends with the VM's exit code after the
// guest resets (0) or the engine fails (1), logging Firecracker's exit line.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/api"
	_ "github.com/ember-vmm/ember/internal/backend/kvm"  // registers the kvm backend
	_ "github.com/ember-vmm/ember/internal/backend/qemu" // registers the qemu backend
	"github.com/ember-vmm/ember/internal/cli"
	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/metrics"
	"github.com/ember-vmm/ember/internal/microhttp"
	"github.com/ember-vmm/ember/internal/seccomp"
	"github.com/ember-vmm/ember/internal/snapshot"
	"github.com/ember-vmm/ember/internal/strictjson"
	"github.com/ember-vmm/ember/internal/syserr"
	"github.com/ember-vmm/ember/internal/tap"
	"github.com/ember-vmm/ember/internal/virtio/vsock"
	"github.com/ember-vmm/ember/internal/vmconfig"
	"github.com/ember-vmm/ember/internal/vmm"
)

func main() {
	processStart := time.Now()
	opts, exit := cli.Parse(os.Args[1:])
	if exit != nil {
		exit.Emit(os.Stdout, os.Stderr)
		exit.Terminate()
		return
	}
	os.Exit(run(opts, processStart))
}

// failure is how a run ends with an error: the message logged, the Rust
// Debug form printed on stderr as "Error: ...", and the exit code.
type failure struct {
	msg, debug string
	code       int
}

func (f *failure) Error() string { return f.msg }

func run(opts *cli.Options, processStart time.Time) int {
	if opts.Given("describe-snapshot") {
		return describeSnapshot(opts.DescribeSnapshot)
	}
	lg := logger.New(opts.ID, os.Stdout)
	mainLog := lg.Thread("main")
	defer lg.Close()

	code, sig, quiet := runWithLogger(opts, lg, processStart)
	if quiet {
		// Firecracker's signal handlers _exit without the exit line.
		return code
	}
	if sig != 0 {
		// Firecracker does not handle SIGTERM/SIGINT: the process dies by the
		// signal. ember has cleaned up first and now dies the same way.
		cli.DieBySignal(sig)
		return 128 + int(sig)
	}
	if code == cli.ExitOK {
		mainLog.Infof("Firecracker exiting successfully. exit_code=0")
	} else {
		mainLog.Errorf("Firecracker exiting with error. exit_code=%d", code)
	}
	return code
}

func runWithLogger(opts *cli.Options, lg *logger.Logger, processStart time.Time) (code int, sig syscall.Signal, quiet bool) {
	mainLog := lg.Thread("main")
	fail := func(f *failure) (int, syscall.Signal, bool) {
		mainLog.Errorf("%s", f.msg)
		fmt.Fprintf(os.Stderr, "Error: %s\n", f.debug)
		return f.code, 0, false
	}

	lc := logger.Config{Module: nilIfEmpty(opts.Module)}
	if opts.Given("log-path") {
		lc.Path = &opts.LogPath
	}
	lvl := opts.Level
	lc.Level = &lvl
	if opts.ShowLevel {
		lc.ShowLevel = &opts.ShowLevel
	}
	if opts.ShowLogOrigin {
		lc.ShowLogOrigin = &opts.ShowLogOrigin
	}
	if err := lg.Update(lc); err != nil {
		msg := "Failed to open target file: " + syserr.Display(err)
		return fail(&failure{msg: "Could not initialize logger: " + msg, debug: "LoggerInitialization(LoggerUpdateError(" + syserr.Debug(err) + "))", code: cli.ExitGenericError})
	}
	mainLog.Infof("Running Firecracker v%s", cli.FirecrackerVersion)

	m := metrics.New()
	signals := watchSignals(mainLog, m)
	defer signal.Stop(signals.ch)

	if opts.Given("metrics-path") {
		f, err := logger.OpenTarget(opts.MetricsPath)
		if err == nil {
			err = m.Init(f, false, opts.ID, nil)
		}
		if err != nil {
			msg := "Cannot initialize the metrics system due to bad user input: " + syserr.Display(err)
			return fail(&failure{msg: "Could not initialize metrics: " + msg, debug: "MetricsInitialization(InitializationFailure(" + rustDebug(syserr.Display(err)) + "))", code: cli.ExitGenericError})
		}
	}
	if opts.Given("seccomp-filter") {
		if _, err := os.Stat(opts.SeccompFilter); err != nil {
			msg := "Filter file open error: " + syserr.Display(err)
			return fail(&failure{msg: "Seccomp error: " + msg, debug: "SeccompFilter(" + rustDebug(msg) + ")", code: cli.ExitGenericError})
		}
		mainLog.Warnf("Custom seccomp filters are not applied by ember; see docs/reliability.md.")
	}

	var configJSON, metadataJSON []byte
	if opts.Given("config-file") {
		b, err := os.ReadFile(opts.ConfigFile)
		if err != nil {
			abort(mainLog, "Unable to open or read from the configuration file: "+syserr.Display(err))
		}
		configJSON = b
	}
	if opts.Given("metadata") {
		b, err := os.ReadFile(opts.Metadata)
		if err != nil {
			abort(mainLog, "Unable to open or read from the mmds content file: "+syserr.Display(err))
		}
		metadataJSON = b
	}

	prefix, debugPrefix := "RunWithApiError error: ", "RunWithApi"
	if opts.NoAPI {
		prefix, debugPrefix = "RunWithoutApiError error: ", "RunWithoutApiError"
	}

	// machineUp runs once the VM is built (see vmm.Config.MachineUp).
	var machineUp func() error
	backend, err := selectBackend(opts, mainLog)
	if err != nil {
		return fail(&failure{msg: prefix + err.Error(), debug: debugPrefix + "(" + rustDebug(err.Error()) + ")", code: cli.ExitGenericError})
	}
	if !opts.NoSeccomp {
		// One deny-list for the whole process (see internal/seccomp for why
		// not Firecracker's per-thread allow-lists). The kvm backend runs the
		// VM in this process and never starts a program, and it loads
		// snapshots with mem_backend Uffd; the qemu backend still has to
		// exec QEMU, which inherits the filter.
		kvm := backend.Name() == "kvm"
		err := seccomp.Apply(seccomp.Policy{DenyExec: kvm, AllowUserfaultfd: kvm})
		if errors.Is(err, seccomp.ErrUnsupported) {
			mainLog.Warnf("No seccomp filter for this architecture; running unconfined.")
		} else if err == nil && !kvm {
			// Once QEMU runs, this process starts no other program.
			machineUp = seccomp.DenyExecFromNow
		} else if err != nil {
			msg := "Seccomp filter installation failed: " + err.Error()
			return fail(&failure{msg: "Seccomp error: " + msg, debug: "SeccompFilter(" + rustDebug(msg) + ")", code: cli.ExitGenericError})
		}
	}

	runtimeDir, err := os.MkdirTemp("", "ember-"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return fail(&failure{msg: prefix + err.Error(), debug: debugPrefix + "(" + rustDebug(err.Error()) + ")", code: cli.ExitGenericError})
	}
	defer os.RemoveAll(runtimeDir)
	atAbort = append(atAbort, func() { os.RemoveAll(runtimeDir) })

	res := vmconfig.NewResources(backend.Name(), backend.Capabilities(), tap.Open, int(opts.MMDSLimit()))
	res.Log = mainLog
	res.BindVsock = func(c vmconfig.VsockDeviceConfig) (vmconfig.BoundVsock, error) {
		d, err := vsock.New(vsock.Config{GuestCID: uint64(c.GuestCID), UDSPath: c.UDSPath, Log: lg.Thread("fc_vmm")})
		if err != nil {
			return nil, err
		}
		return d, nil
	}
	res.BootTimer, res.PCI = opts.BootTimer, opts.EnablePCI
	ctrl := vmm.New(vmm.Config{
		ID:             opts.ID,
		Version:        cli.FirecrackerVersion,
		Backend:        backend,
		BackendOptions: backendOptions(opts),
		Logger:         lg,
		Metrics:        m,
		Resources:      res,
		Stdout:         os.Stdout,
		Stdin:          os.Stdin,
		RuntimeDir:     runtimeDir,
		MachineUp:      machineUp,
	})
	atAbort = append(atAbort, ctrl.Shutdown)
	defer func() {
		ctrl.Shutdown()
		if sig != 0 {
			// Firecracker dies of SIGTERM/SIGINT without a last metrics line.
			return
		}
		if err := ctrl.FlushMetrics(); err != nil {
			mainLog.Errorf("Failed to write metrics: %s", err)
		}
	}()

	var server *microhttp.Server
	serveDone := make(chan error, 1)
	if !opts.NoAPI {
		// Firecracker's socket gets what the umask leaves of 0777; ember
		// also takes group and other access away, so only the owner (and
		// root) can connect. The umask is narrowed only around the bind, so
		// the socket is never reachable with a wider mode.
		oldMask := unix.Umask(0o077)
		unix.Umask(oldMask | 0o077)
		ln, err := microhttp.Listen(opts.APISock)
		unix.Umask(oldMask)
		if err != nil {
			if errors.Is(err, unix.EADDRINUSE) {
				msg := "Failed to open the API socket at: " + opts.APISock + ". Check that it is not already used."
				return fail(&failure{msg: prefix + msg, debug: "RunWithApi(FailedToBindSocket(" + rustDebug(opts.APISock) + "))", code: cli.ExitGenericError})
			}
			msg := "Failed to bind and run the HTTP server: IO error: " + syserr.Display(err)
			return fail(&failure{msg: prefix + msg, debug: "RunWithApi(FailedToBindAndRunHttpServer(IOError(" + syserr.Debug(err) + ")))", code: cli.ExitGenericError})
		}
		mainLog.Infof("Listening on API socket (%s).", rustDebug(opts.APISock))
		maxPayload := int64(opts.HTTPAPIMaxPayloadSize)
		if maxPayload == 0 {
			maxPayload = -1 // an explicit 0 is a limit of zero, not the default
		}
		server = microhttp.NewServer(ln, microhttp.Config{MaxPayload: maxPayload})
		apiLog := lg.Thread("fc_api")
		h := api.NewHandler(ctrl, apiLog, m)
		go func() { serveDone <- server.Serve(context.Background(), h) }()
		apiLog.Infof("API server started.")
		reportStartup(m, opts)
		defer func() {
			// Close, then wait for the loop to push out answers already
			// queued (a fatal request's 400 goes out before the exit).
			server.Close()
			select {
			case <-serveDone:
			case <-time.After(2 * time.Second):
			}
		}()
	}

	if metadataJSON != nil && configJSON == nil {
		if err := ctrl.PutMetadata(metadataJSON); err != nil {
			if errors.Is(err, vmm.ErrMetadata) {
				abort(mainLog, err.Error())
			}
			msg := "Failed to build MicroVM: Populating MMDS from file failed: " + err.Error() + ".."
			return fail(&failure{msg: prefix + msg, debug: debugPrefix + "(BuildMicroVmError(PopulateMmds(" + rustDebug(err.Error()) + ")))", code: cli.ExitGenericError})
		}
	}
	if configJSON != nil {
		if err := ctrl.BootFromConfig(context.Background(), configJSON, metadataJSON); err != nil {
			if errors.Is(err, vmm.ErrMetadata) {
				abort(mainLog, err.Error())
			}
			msg := "Failed to build MicroVM from Json: " + err.Error()
			if opts.NoAPI {
				msg = "Failed to build MicroVM from Json: " + err.Error()
			}
			return fail(&failure{msg: prefix + msg, debug: debugPrefix + "(BuildFromJson(" + rustDebug(err.Error()) + "))", code: cli.ExitGenericError})
		}
	}

	select {
	case e := <-ctrl.Exited():
		if e.Code == vmm.ExitOK {
			return cli.ExitOK, 0, false
		}
		if e.Message != "" {
			return fail(&failure{msg: prefix + e.Message, debug: debugPrefix + "(" + e.Debug + ")", code: e.Code})
		}
		what := "MicroVM stopped with an error: GenericError"
		debug := "RunWithApi(MicroVMStoppedWithError(GenericError))"
		if opts.NoAPI {
			what, debug = "MicroVMStopped without an error: GenericError", "RunWithoutApiError(Shutdown(GenericError))"
		}
		return fail(&failure{msg: prefix + what, debug: debug, code: e.Code})
	case s := <-signals.fatal:
		return s.code, s.sig, s.sig == 0
	case err := <-serveDone:
		msg := "API server failed: " + err.Error()
		return fail(&failure{msg: prefix + msg, debug: debugPrefix + "(" + rustDebug(msg) + ")", code: cli.ExitGenericError})
	}
}

// selectBackend resolves --backend: auto takes the built-in kvm backend where
// it can run and qemu otherwise; a forced backend that cannot run is an error.
func selectBackend(opts *cli.Options, log logger.Log) (hypervisor.Backend, error) {
	name := opts.Backend
	if name == "auto" {
		name = "qemu"
		if b, ok := hypervisor.Lookup("kvm"); ok && b.Available(backendOptions(opts)) == nil {
			name = "kvm"
		}
	}
	b, ok := hypervisor.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("The %s backend is not built into this ember binary.", name)
	}
	if err := b.Available(backendOptions(opts)); err != nil {
		if opts.Backend != "auto" {
			return nil, err // a forced backend that cannot run is an error, never a fallback
		}
		log.Warnf("%s", err)
	}
	if opts.Backend == "auto" {
		log.Infof("Using the %s backend.", name)
	}
	return b, nil
}

// reportStartup fills api_server.process_startup_time_us from the jailer's
// --start-time-us and friends, as Firecracker does when they are given.
func reportStartup(m *metrics.Metrics, opts *cli.Options) {
	if opts.StartTimeUs != nil {
		m.ReportStartTime(*opts.StartTimeUs)
	}
	if opts.StartTimeCPUUs != nil {
		var parent uint64
		if opts.ParentCPUTimeUs != nil {
			parent = *opts.ParentCPUTimeUs
		}
		m.ReportCPUStartTime(*opts.StartTimeCPUUs, parent)
	}
}

// atAbort holds what must be released before an abort, which skips
// deferred calls.
var atAbort []func()

// abort ends the process as Firecracker's panic does (SIGABRT), after one
// clear line on stderr, releasing what ember created first.
func abort(log logger.Log, msg string) {
	log.Errorf("Firecracker panicked: %s", msg)
	fmt.Fprintln(os.Stderr, msg)
	for i := len(atAbort) - 1; i >= 0; i-- {
		atAbort[i]()
	}
	(&cli.Exit{Abort: true, Code: cli.ExitAborted}).Terminate()
}

// describeSnapshot is --describe-snapshot: the state file's version on
// stdout ("v11.0.0"), or Firecracker's error: the message in the log (on
// stdout, no logger being configured yet), the Rust Debug form on stderr.
// Like Firecracker it describes files of any version and backend.
func describeSnapshot(path string) int {
	version, err := snapshot.Describe(path)
	if err == nil {
		ex := &cli.Exit{Code: cli.ExitOK, Stdout: version + "\n"}
		ex.Emit(os.Stdout, os.Stderr)
		return ex.Code
	}
	// Firecracker's SnapshotError variants: Debug form and Display text.
	custom := func(kind, msg string) (string, string) {
		return "Io(Custom { kind: " + kind + ", error: " + rustDebug(msg) + " })", "IO Error: " + msg
	}
	var debug, display string
	var openErr *snapshot.OpenError
	var ioErr *snapshot.IOError
	var magicErr *snapshot.MagicError
	switch {
	case errors.As(err, &openErr):
		debug = "OpenSnapshot(" + syserr.Debug(openErr.Err) + ")"
		display = "Unable to open snapshot state file: " + syserr.Display(openErr.Err)
	case errors.Is(err, snapshot.ErrTooShort):
		debug, display = custom("UnexpectedEof", snapshot.ErrTooShort.Error())
	case errors.As(err, &ioErr):
		debug, display = "Io("+syserr.Debug(ioErr.Err)+")", "IO Error: "+syserr.Display(ioErr.Err)
	case errors.Is(err, snapshot.ErrTooLarge):
		debug = "SizeLimitExceeded(" + strconv.Itoa(snapshot.MaxSize) + ")"
		display = "Snapshot size exceeds limit of " + strconv.Itoa(snapshot.MaxSize) + " bytes"
	case errors.As(err, &magicErr):
		debug = "InvalidMagic(" + strconv.FormatUint(magicErr.Magic, 10) + ")"
		display = magicErr.Error()
	case errors.Is(err, snapshot.ErrCRC):
		debug, display = "Crc64", err.Error()
	default:
		// A checksummed file whose structure is wrong: Firecracker would
		// fail to decode it; say what is wrong.
		debug, display = custom("InvalidData", err.Error())
	}
	if openErr == nil {
		debug = "SnapshotVersion(" + debug + ")"
		display = "Invalid data format version of snapshot file: " + display
	}
	ex := &cli.Exit{Code: cli.ExitGenericError, Log: "When printing Snapshot Data format: " + display,
		Stderr: "Error: PrintSnapshotDataFormat(" + debug + ")\n"}
	ex.Emit(os.Stdout, os.Stderr)
	return ex.Code
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func rustDebug(s string) string { return strictjson.RustDebugString(s) }

// backendOptions are the backend settings from ember's own flags.
func backendOptions(opts *cli.Options) map[string]string {
	return map[string]string{"qemu-binary": opts.QEMUBinary, "qemu-accel": accelOption(opts.Accel)}
}

// accelOption maps --accel to the qemu backend's option ("" lets it choose).
func accelOption(a string) string {
	if a == "auto" {
		return ""
	}
	return a
}
