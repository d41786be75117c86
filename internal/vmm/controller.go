// Package vmm is ember's controller: the one owner of the VM's state.
//
// Before boot it applies API actions to a vmconfig.Resources (the pending
// configuration). InstanceStart turns that into a hypervisor.Spec and hands
// it to the backend; a failed start leaves the configuration as it was, so
// it can be fixed and retried, as in Firecracker. After boot it routes
// runtime actions to the machine. Actions are strictly serialized, like
// Firecracker's single VMM thread. The controller records every state change
// and the last error, and reports through Exited when the process should
// end and with which code.
package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/kernelimage"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/metrics"
	"github.com/ember-vmm/ember/internal/syserr"
	"github.com/ember-vmm/ember/internal/vmconfig"
)

// Errors of the pre-boot/post-boot matrix, with Firecracker's texts.
var (
	ErrNotSupportedPreBoot  = errors.New("The requested operation is not supported before starting the microVM.")
	ErrNotSupportedPostBoot = errors.New("The requested operation is not supported after starting the microVM.")
	ErrDeviceNotFound       = errors.New("Failed perform action on device: Device not found")
	ErrPCINotEnabled        = errors.New("PCI is not enabled")
)

// State is the VM's state as GET / reports it.
type State int

// The states.
const (
	NotStarted State = iota
	Running
	Paused
)

func (s State) String() string {
	switch s {
	case Running:
		return "Running"
	case Paused:
		return "Paused"
	}
	return "Not started"
}

// Exit tells the process to end.
type Exit struct {
	Code   int
	Reason string
	// Message and Debug, when set, are a fatal API error's log text and
	// Rust Debug form ("Failed to build MicroVM: Loading snapshot failed..",
	// "BuildMicroVmError(Restore)"), for the process's last lines.
	Message, Debug string
}

// The process exit codes the controller asks for (Firecracker's FcExitCode).
const (
	ExitOK           = 0
	ExitGenericError = 1
)

// Config wires a controller.
type Config struct {
	ID             string
	Version        string // the Firecracker version ember reports
	Backend        hypervisor.Backend
	BackendOptions map[string]string
	Logger         *logger.Logger
	Metrics        *metrics.Metrics
	Resources      *vmconfig.Resources
	// Stdout and Stdin are the guest console when no serial_out_path is set.
	Stdout, Stdin *os.File
	// RuntimeDir is a private directory for the backend's sockets.
	RuntimeDir string
	// MetricsInterval is the periodic flush interval (60 s in Firecracker).
	MetricsInterval time.Duration
	// Now is the clock; tests may replace it.
	Now func() time.Time
	// MachineUp, if set, is called once the machine is built (booted or
	// restored), when every process the backend starts is running: the
	// process starts no program after it. An error is logged.
	MachineUp func() error
}

// Controller owns the VM.
type Controller struct {
	cfg Config
	log logger.Log
	res *vmconfig.Resources

	mu       sync.Mutex // serializes actions and guards everything below
	state    State
	bootPath bool
	machine  hypervisor.Machine
	console  *consoleSink
	started  time.Time
	history  []StateChange
	lastErr  *TimedError
	ended    *Ended
	stopTick chan struct{}
	closing  bool // Shutdown has begun; the machine's end is expected
	// pendingStart: the machine was restored from a snapshot and has not
	// run yet; the first resume starts it.
	pendingStart bool
	// lastStats are the device counters already turned into metrics.
	lastStats hypervisor.DeviceStats

	exitOnce sync.Once
	exit     chan Exit
}

// StateChange is one entry of the state history.
type StateChange struct {
	Time   string `json:"time"` // RFC 3339, UTC
	State  string `json:"state"`
	Reason string `json:"reason"`
}

// TimedError is the last error an action returned.
type TimedError struct {
	Time    string `json:"time"`
	Action  string `json:"action"`
	Message string `json:"message"`
}

// Ended says how the VM ended.
type Ended struct {
	Time     string `json:"time"`
	Reason   string `json:"reason"`
	ExitCode int    `json:"exit_code"`
}

// New returns a controller for a VM not yet started.
func New(cfg Config) *Controller {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MetricsInterval == 0 {
		cfg.MetricsInterval = 60 * time.Second
	}
	c := &Controller{
		cfg:  cfg,
		log:  cfg.Logger.Thread("main"),
		res:  cfg.Resources,
		exit: make(chan Exit, 1),
	}
	c.record(NotStarted.String(), "process started")
	return c
}

// Exited delivers one value when the process should end.
func (c *Controller) Exited() <-chan Exit { return c.exit }

func (c *Controller) requestExit(e Exit) {
	c.exitOnce.Do(func() { c.exit <- e })
}

func (c *Controller) record(state, reason string) {
	c.history = append(c.history, StateChange{Time: c.stamp(), State: state, Reason: reason})
}

func (c *Controller) stamp() string { return c.cfg.Now().UTC().Format(time.RFC3339Nano) }

// State returns the current state.
func (c *Controller) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Handle applies one action and returns the data to answer with (nil for
// 204). Errors carry Firecracker's fault_message text.
func (c *Controller) Handle(ctx context.Context, a Action) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var (
		data any
		err  error
	)
	switch a.(type) {
	case GetInstanceInfo:
		return c.instanceInfo(), nil
	case GetVersion:
		return versionBody{c.cfg.Version}, nil
	case GetEmberState:
		return c.emberState(), nil
	}
	if c.state == NotStarted {
		data, err = c.preBoot(ctx, a)
	} else {
		data, err = c.runtime(ctx, a)
	}
	if err != nil {
		c.lastErr = &TimedError{Time: c.stamp(), Action: fmt.Sprintf("%T", a)[len("vmm."):], Message: err.Error()}
	}
	return data, err
}

// bootResource finishes an action that configures a boot-specific
// resource: afterwards, even if it failed, a snapshot load is refused.
func (c *Controller) bootResource(prefix string, err error) error {
	c.bootPath = true
	return wrap(prefix, err)
}

// wrap prefixes an error the way Firecracker's VmmActionError does, keeping
// it matchable with errors.Is.
func wrap(prefix string, err error) error {
	if err == nil {
		return nil
	}
	return &prefixed{prefix: prefix, err: err}
}

type prefixed struct {
	prefix string
	err    error
}

func (p *prefixed) Error() string { return p.prefix + ": " + p.err.Error() }
func (p *prefixed) Unwrap() error { return p.err }

func (c *Controller) preBoot(ctx context.Context, a Action) (any, error) {
	r := c.res
	switch a := a.(type) {
	case GetFullConfig:
		c.log.Warnf("If the VM was restored from snapshot, boot-source, machine-config.smt, and machine-config.cpu_template will all be empty.")
		return r.FullConfig(), nil
	case GetMachineConfig:
		return r.Machine, nil
	case GetMMDS:
		return MMDSValue{r.MMDS().Value()}, nil
	case GetBalloonConfig:
		b, err := r.Balloon()
		if err != nil {
			return nil, wrap("Balloon config error", err)
		}
		return b, nil
	case ConfigureBootSource:
		return nil, c.bootResource("Boot source error", r.SetBootSource(a.Config))
	case ConfigureLogger:
		return nil, wrap("Logger error", c.configureLogger(a.Config))
	case ConfigureMetrics:
		return nil, wrap("Metrics error", c.configureMetrics(a.Config))
	case ConfigureSerial:
		return nil, r.SetSerial(a.Config)
	case PutCPUConfig:
		return nil, wrap("Configure CPU error", r.SetCustomCPUTemplate())
	case UpdateMachineConfig:
		return nil, c.bootResource("Machine config error", r.UpdateMachineConfig(&a.Update))
	case InsertDrive:
		return nil, c.bootResource("Drive config error", r.SetDrive(a.Config))
	case InsertNet:
		return nil, c.bootResource("Network config error", r.SetNet(a.Config))
	case InsertPmem:
		return nil, c.bootResource("Pmem config error", r.SetPmem(a.Config))
	case SetVsock:
		return nil, c.bootResource("Vsock config error", r.SetVsock(a.Config))
	case SetEntropy:
		return nil, c.bootResource("Entropy config error", r.SetEntropy(a.Config))
	case SetBalloon:
		return nil, c.bootResource("Balloon config error", r.SetBalloon(a.Config))
	case SetMemoryHotplug:
		return nil, c.bootResource("Memory hotplug config error", r.SetMemoryHotplug(a.Config))
	case PutMMDS:
		return nil, mmdsError(r.MMDS().Put(a.Value))
	case PatchMMDS:
		return nil, mmdsError(r.MMDS().Patch(a.Value))
	case SetMMDSConfig:
		return nil, c.bootResource("MMMDS config error", r.SetMMDSConfig(a.Config, c.cfg.ID))
	case LoadSnapshot:
		return nil, wrap("Load snapshot error", c.loadSnapshot(ctx, a.Params))
	case StartMicroVM:
		return nil, wrap("Start microvm error", c.start(ctx))
	case CreateSnapshot, FlushMetrics, Pause, Resume, GetBalloonStats, GetMemoryHotplugStatus,
		UpdateBalloon, UpdateBalloonStats, UpdateDrive, UpdateMemoryHotplug, UpdateNet, UpdatePmem,
		StartHinting, GetHintingStatus, StopHinting, HotUnplug, SendCtrlAltDel:
		return nil, ErrNotSupportedPreBoot
	}
	return nil, fmt.Errorf("unknown action %T", a)
}

func (c *Controller) runtime(ctx context.Context, a Action) (any, error) {
	r := c.res
	switch a := a.(type) {
	case GetFullConfig:
		return r.FullConfig(), nil
	case GetMachineConfig:
		return r.Machine, nil
	case GetMMDS:
		s := c.runtimeMMDS()
		if s == nil {
			return nil, wrap("MMDS error", errMMDSNotInitialized)
		}
		return MMDSValue{s.Value()}, nil
	case PutMMDS:
		s := c.runtimeMMDS()
		if s == nil {
			return nil, wrap("MMDS error", errMMDSNotInitialized)
		}
		return nil, mmdsError(s.Put(a.Value))
	case PatchMMDS:
		s := c.runtimeMMDS()
		if s == nil {
			return nil, wrap("MMDS error", errMMDSNotInitialized)
		}
		return nil, mmdsError(s.Patch(a.Value))
	case FlushMetrics:
		if err := c.flushMetrics(false); err != nil {
			return nil, wrap("Internal VMM error", wrap("Metrics error", err))
		}
		return nil, nil
	case Pause:
		return nil, c.pause(ctx)
	case Resume:
		return nil, c.resume(ctx)
	case SendCtrlAltDel:
		cad, ok := c.machine.(hypervisor.CtrlAltDeler)
		if !ok || !r.Caps.SendCtrlAltDel {
			return nil, wrap("Internal VMM error", errors.New("Operation not supported on this VM type"))
		}
		return nil, wrap("Internal VMM error", cad.SendCtrlAltDel(ctx))
	case GetBalloonConfig:
		b, err := r.Balloon()
		if err != nil {
			return nil, wrap("Internal VMM error", ErrDeviceNotFound)
		}
		return b, nil
	case GetBalloonStats:
		return c.balloonStats(ctx)
	case UpdateBalloon:
		return nil, wrap("Balloon update error", c.updateBalloon(ctx, a.Config.AmountMiB))
	case UpdateBalloonStats:
		return nil, wrap("Balloon update error", c.updateBalloonStats(ctx, a.Config.StatsPollingIntervalS))
	case StartHinting, StopHinting, GetHintingStatus:
		if _, err := r.Balloon(); err != nil {
			return nil, wrap("Balloon update error", ErrDeviceNotFound)
		}
		return nil, wrap("Balloon update error", errors.New("Balloon: Attempting to use hinting when not enabled"))
	case UpdateDrive:
		return nil, wrap("Drive config error", c.updateDrive(ctx, a.Config))
	case UpdateNet:
		return nil, wrap("Network config error", c.updateNet(ctx, a.Config))
	case UpdatePmem:
		return nil, wrap("Pmem config error", c.updatePmem(a.Config))
	case InsertDrive, InsertNet, InsertPmem, HotUnplug:
		if !r.PCI {
			return nil, ErrPCINotEnabled
		}
		return nil, wrap("Internal VMM error", hypervisor.Unsupported(r.Backend, "device hotplug"))
	case GetMemoryHotplugStatus:
		if r.MemoryHotplug() == nil {
			return nil, wrap("Internal VMM error", ErrDeviceNotFound)
		}
		return nil, wrap("Internal VMM error", hypervisor.Unsupported(r.Backend, "memory hotplug"))
	case UpdateMemoryHotplug:
		if r.MemoryHotplug() == nil {
			return nil, wrap("Memory hotplug update error", ErrDeviceNotFound)
		}
		return nil, wrap("Memory hotplug update error", hypervisor.Unsupported(r.Backend, "memory hotplug"))
	case CreateSnapshot:
		return nil, wrap("Create snapshot error", c.createSnapshot(ctx, a.Params))
	case ConfigureBootSource, ConfigureLogger, ConfigureMetrics, ConfigureSerial, LoadSnapshot,
		PutCPUConfig, SetBalloon, SetVsock, SetMMDSConfig, SetEntropy, SetMemoryHotplug,
		StartMicroVM, UpdateMachineConfig:
		return nil, ErrNotSupportedPostBoot
	}
	return nil, fmt.Errorf("unknown action %T", a)
}

type versionBody struct {
	FirecrackerVersion string `json:"firecracker_version"`
}

func (c *Controller) instanceInfo() vmconfig.InstanceInfo {
	return vmconfig.InstanceInfo{
		ID:         c.cfg.ID,
		State:      c.state.String(),
		VMMVersion: c.cfg.Version,
		AppName:    "Firecracker",
	}
}

// EmberState is the answer of GET /ember/state: ember's own view of the VM.
type EmberState struct {
	State     string        `json:"state"`
	Backend   string        `json:"backend"`
	History   []StateChange `json:"history"`
	LastError *TimedError   `json:"last_error"`
	Ended     *Ended        `json:"ended"`
}

func (c *Controller) emberState() EmberState {
	return EmberState{
		State:     c.state.String(),
		Backend:   c.res.Backend,
		History:   append([]StateChange(nil), c.history...),
		LastError: c.lastErr,
		Ended:     c.ended,
	}
}

func (c *Controller) configureLogger(cfg vmconfig.LoggerConfig) error {
	var u logger.Config
	if cfg.LogPath != nil {
		p := string(*cfg.LogPath)
		u.Path = &p
	}
	if cfg.Level != nil {
		l := cfg.Level.Level()
		u.Level = &l
	}
	u.ShowLevel, u.ShowLogOrigin, u.Module = cfg.ShowLevel, cfg.ShowLogOrigin, cfg.Module
	if err := c.cfg.Logger.Update(u); err != nil {
		return fmt.Errorf("Failed to open target file: %s", syserr.Display(err))
	}
	return nil
}

func (c *Controller) configureMetrics(cfg vmconfig.MetricsConfig) error {
	const prefix = "Cannot initialize the metrics system due to bad user input: "
	if c.cfg.Metrics.Initialized() {
		return errors.New(prefix + metrics.ErrReinit.Error())
	}
	f, err := logger.OpenTarget(string(cfg.MetricsPath))
	if err != nil {
		return errors.New(prefix + syserr.Display(err))
	}
	if err := c.cfg.Metrics.Init(f, cfg.EmitID, c.cfg.ID, cfg.Properties); err != nil {
		f.Close()
		return errors.New(prefix + err.Error())
	}
	return nil
}

var errMMDSNotInitialized = errors.New("The MMDS data store is not initialized.")

// runtimeMMDS is the store after boot: only if an interface serves MMDS.
func (c *Controller) runtimeMMDS() mmdsStore {
	if c.res.MMDSConfig() == nil {
		return nil
	}
	return c.res.MMDSIfInitialized()
}

// start builds and boots the VM (InstanceStart).
func (c *Controller) start(ctx context.Context) error {
	c.log.Debugf("event_start: build microvm for boot")
	spec, err := c.res.Spec(c.cfg.ID)
	if err != nil {
		return err
	}
	kernel, err := inspectKernel(spec.Boot.KernelPath)
	if err != nil {
		return err
	}
	env, console, err := c.machineEnv()
	if err != nil {
		return err
	}
	m, err := c.cfg.Backend.Create(ctx, spec, env)
	if err != nil {
		console.Close()
		return err
	}
	c.log.Debugf("Kernel loaded using %s", kernel.Protocol())
	c.log.Debugf("event_end: build microvm for boot")
	c.log.Debugf("event_start: boot microvm")
	if err := m.Start(ctx); err != nil {
		m.Close()
		console.Close()
		return err
	}
	c.log.Debugf("event_end: boot microvm")
	c.machine, c.console = m, console
	c.state = Running
	c.record(Running.String(), "InstanceStart")
	c.machineUp(spec)
	return nil
}

// machineEnv opens the guest console and builds what a backend gets from
// the process.
func (c *Controller) machineEnv() (hypervisor.Env, *consoleSink, error) {
	console, err := c.openConsole()
	if err != nil {
		return hypervisor.Env{}, nil, err
	}
	env := hypervisor.Env{
		Log:        c.log,
		Console:    console,
		RuntimeDir: c.cfg.RuntimeDir,
		Options:    c.cfg.BackendOptions,
		Metrics:    c.cfg.Metrics,
	}
	if console.stdin && c.cfg.Stdin != nil {
		env.ConsoleIn = c.cfg.Stdin
	}
	return env, console, nil
}

// machineUp starts what runs beside a built machine (booted or restored):
// the device metrics, the first metrics line, the periodic flush and the
// watch for its end.
func (c *Controller) machineUp(spec *hypervisor.Spec) {
	c.started = c.cfg.Now()
	for _, d := range spec.Drives {
		c.cfg.Metrics.Block(d.ID)
	}
	for _, n := range spec.Nets {
		c.cfg.Metrics.Net(n.ID)
	}
	if err := c.flushMetrics(false); err != nil {
		c.log.Errorf("Failed to write metrics: %s", err)
	}
	c.stopTick = make(chan struct{})
	go c.tickMetrics(c.stopTick)
	go c.watch(c.machine)
	if c.cfg.MachineUp != nil {
		if err := c.cfg.MachineUp(); err != nil {
			c.log.Errorf("After the machine started: %v", err)
		}
	}
}

// flushMetrics writes a metrics line, first folding in the log lines the
// logger could not write (logger.missed_log_count).
func (c *Controller) flushMetrics(periodic bool) error {
	c.cfg.Metrics.Logger.MissedLogCount.Add(c.cfg.Logger.MissedCount())
	c.collectDeviceStats()
	if periodic {
		return c.cfg.Metrics.FlushPeriodic()
	}
	return c.cfg.Metrics.Flush()
}

// collectDeviceStats adds what the backend's devices did since the last
// flush to the block_<id> and net_<id> metrics.
func (c *Controller) collectDeviceStats() {
	ds, ok := c.machine.(hypervisor.DeviceStatser)
	if !ok || c.ended != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := ds.DeviceStats(ctx)
	if err != nil {
		return
	}
	delta := func(now, before uint64) uint64 {
		if now < before {
			return now // the counter restarted (a drive's file was replaced)
		}
		return now - before
	}
	for id, b := range st.Block {
		p := c.lastStats.Block[id]
		m := c.cfg.Metrics.Block(id)
		m.ReadBytes.Add(delta(b.ReadBytes, p.ReadBytes))
		m.WriteBytes.Add(delta(b.WriteBytes, p.WriteBytes))
		m.ReadCount.Add(delta(b.ReadCount, p.ReadCount))
		m.WriteCount.Add(delta(b.WriteCount, p.WriteCount))
		m.FlushCount.Add(delta(b.FlushCount, p.FlushCount))
	}
	for id, n := range st.Net {
		p := c.lastStats.Net[id]
		m := c.cfg.Metrics.Net(id)
		m.RxBytesCount.Add(delta(n.RxBytes, p.RxBytes))
		m.RxPacketsCount.Add(delta(n.RxPackets, p.RxPackets))
		m.RxCount.Add(delta(n.RxPackets, p.RxPackets))
		m.TxBytesCount.Add(delta(n.TxBytes, p.TxBytes))
		m.TxPacketsCount.Add(delta(n.TxPackets, p.TxPackets))
		m.TxCount.Add(delta(n.TxPackets, p.TxPackets))
		m.RxRateLimiterThrottled.Add(delta(n.RxThrottled, p.RxThrottled))
		m.TxRateLimiterThrottled.Add(delta(n.TxThrottled, p.TxThrottled))
		m.RxEventRateLimiterCount.Add(delta(n.RxLimiterEvents, p.RxLimiterEvents))
		m.TxRateLimiterEventCount.Add(delta(n.TxLimiterEvents, p.TxLimiterEvents))
	}
	if v := st.Vsock; v != nil {
		var p hypervisor.VsockStats
		if c.lastStats.Vsock != nil {
			p = *c.lastStats.Vsock
		}
		m := &c.cfg.Metrics.Vsock
		for _, f := range []struct {
			c          *metrics.Counter
			now, since uint64
		}{
			{&m.ActivateFails, v.ActivateFails, p.ActivateFails},
			{&m.CfgFails, v.CfgFails, p.CfgFails},
			{&m.RxQueueEventFails, v.RxQueueEventFails, p.RxQueueEventFails},
			{&m.TxQueueEventFails, v.TxQueueEventFails, p.TxQueueEventFails},
			{&m.EvQueueEventFails, v.EvQueueEventFails, p.EvQueueEventFails},
			{&m.MuxerEventFails, v.MuxerEventFails, p.MuxerEventFails},
			{&m.ConnEventFails, v.ConnEventFails, p.ConnEventFails},
			{&m.RxQueueEventCount, v.RxQueueEventCount, p.RxQueueEventCount},
			{&m.TxQueueEventCount, v.TxQueueEventCount, p.TxQueueEventCount},
			{&m.RxBytesCount, v.RxBytesCount, p.RxBytesCount},
			{&m.TxBytesCount, v.TxBytesCount, p.TxBytesCount},
			{&m.RxPacketsCount, v.RxPacketsCount, p.RxPacketsCount},
			{&m.TxPacketsCount, v.TxPacketsCount, p.TxPacketsCount},
			{&m.ConnsAdded, v.ConnsAdded, p.ConnsAdded},
			{&m.ConnsKilled, v.ConnsKilled, p.ConnsKilled},
			{&m.ConnsRemoved, v.ConnsRemoved, p.ConnsRemoved},
			{&m.KillqResync, v.KillqResync, p.KillqResync},
			{&m.TxFlushFails, v.TxFlushFails, p.TxFlushFails},
			{&m.TxWriteFails, v.TxWriteFails, p.TxWriteFails},
			{&m.RxReadFails, v.RxReadFails, p.RxReadFails},
		} {
			f.c.Add(delta(f.now, f.since))
		}
	}
	c.lastStats = st
}

// FlushMetrics writes a metrics line now (at exit).
func (c *Controller) FlushMetrics() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushMetrics(false)
}

// inspectKernel checks the kernel image as Firecracker's loader does, so a
// file that is not a bootable kernel fails InstanceStart with its message
// whatever the backend.
func inspectKernel(path string) (*kernelimage.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errors.New("System configuration error: Cannot copy kernel file fd")
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, errors.New("System configuration error: Cannot copy kernel file fd")
	}
	info, err := kernelimage.Inspect(f, st.Size())
	var le *kernelimage.LoaderError
	switch {
	case errors.As(err, &le):
		return nil, errors.New("System configuration error: Cannot load kernel due to invalid memory configuration or invalid kernel image: " + le.Error())
	case err != nil:
		return nil, errors.New("System configuration error: " + err.Error())
	}
	return info, nil
}

// tickMetrics flushes metrics periodically; like Firecracker's timer it
// does not fire while the VM is paused.
func (c *Controller) tickMetrics(stop <-chan struct{}) {
	t := time.NewTicker(c.cfg.MetricsInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			c.mu.Lock()
			if c.state == Running {
				c.flushMetrics(true)
			}
			c.mu.Unlock()
		}
	}
}

// watch waits for the machine to end and turns that into the process exit.
func (c *Controller) watch(m hypervisor.Machine) {
	<-m.Done()
	st := m.Exit()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.machine != m || c.ended != nil || c.closing {
		return
	}
	code, reason := ExitOK, st.Reason.String()
	switch st.Reason {
	case hypervisor.ExitReset:
		c.log.Infof("Vmm is stopping.")
	default:
		code = ExitGenericError
		if st.Err != nil {
			reason = st.Err.Error()
		}
		c.log.Errorf("The microVM ended unexpectedly: %s", reason)
	}
	c.ended = &Ended{Time: c.stamp(), Reason: reason, ExitCode: code}
	c.record("Exited", reason)
	c.requestExit(Exit{Code: code, Reason: reason})
}

func (c *Controller) pause(ctx context.Context) error {
	start := time.Now()
	if !c.pendingStart {
		if err := c.machine.Pause(ctx); err != nil {
			return wrap("Internal VMM error", err)
		}
	}
	c.state = Paused
	c.record(Paused.String(), "PATCH /vm Paused")
	us := uint64(time.Since(start).Microseconds())
	c.cfg.Metrics.Latencies.VMMPauseVM.Set(us)
	c.log.Infof("'pause vm' VMM action took %d us.", us)
	return nil
}

func (c *Controller) resume(ctx context.Context) error {
	start := time.Now()
	if c.pendingStart {
		if err := c.machine.Start(ctx); err != nil {
			return wrap("Internal VMM error", err)
		}
		c.pendingStart = false
	} else if err := c.machine.Resume(ctx); err != nil {
		return wrap("Internal VMM error", err)
	}
	c.state = Running
	c.record(Running.String(), "PATCH /vm Resumed")
	us := uint64(time.Since(start).Microseconds())
	c.cfg.Metrics.Latencies.VMMResumeVM.Set(us)
	c.log.Infof("'resume vm' VMM action took %d us.", us)
	return nil
}

func (c *Controller) ballooner() (hypervisor.Ballooner, error) {
	if _, err := c.res.Balloon(); err != nil {
		return nil, ErrDeviceNotFound
	}
	b, ok := c.machine.(hypervisor.Ballooner)
	if !ok {
		return nil, hypervisor.Unsupported(c.res.Backend, "the balloon device")
	}
	return b, nil
}

func (c *Controller) balloonStats(ctx context.Context) (any, error) {
	b, err := c.ballooner()
	if err != nil {
		return nil, wrap("Internal VMM error", err)
	}
	cfg, _ := c.res.Balloon()
	if cfg.StatsPollingIntervalS == 0 {
		return nil, wrap("Internal VMM error", errors.New("Balloon: Received stats query when stats are disabled."))
	}
	st, err := b.BalloonStats(ctx)
	if err != nil {
		return nil, wrap("Internal VMM error", wrap("Balloon", err))
	}
	return vmconfig.BalloonStats{
		TargetPages: st.TargetPages, ActualPages: st.ActualPages, TargetMiB: st.TargetMiB, ActualMiB: st.ActualMiB,
		SwapIn: st.SwapIn, SwapOut: st.SwapOut, MajorFaults: st.MajorFaults, MinorFaults: st.MinorFaults,
		FreeMemory: st.FreeMemory, TotalMemory: st.TotalMemory, AvailableMemory: st.AvailMemory,
		DiskCaches: st.DiskCaches, HugetlbAllocations: st.HugetlbAlloc, HugetlbFailures: st.HugetlbFail,
		OOMKill: st.OOMKill, AllocStall: st.AllocStall, AsyncScan: st.AsyncScan, DirectScan: st.DirectScan,
		AsyncReclaim: st.AsyncReclaim, DirectReclaim: st.DirectReclam,
	}, nil
}

func (c *Controller) updateBalloon(ctx context.Context, amountMiB uint32) error {
	b, err := c.ballooner()
	if err != nil {
		return err
	}
	if uint64(amountMiB) > uint64(c.res.Machine.MemSizeMiB) {
		return fmt.Errorf("Balloon: Requested memory should be less than %dMiB", amountMiB)
	}
	if err := b.SetBalloonTarget(ctx, amountMiB); err != nil {
		return wrap("Balloon", err)
	}
	c.res.UpdateBalloonAmount(amountMiB)
	return nil
}

func (c *Controller) updateBalloonStats(ctx context.Context, interval uint16) error {
	b, err := c.ballooner()
	if err != nil {
		return err
	}
	cfg, _ := c.res.Balloon()
	if cfg.StatsPollingIntervalS == interval {
		return nil
	}
	if cfg.StatsPollingIntervalS == 0 || interval == 0 {
		return errors.New("Balloon: Statistics cannot be enabled/disabled after activation.")
	}
	if err := b.SetBalloonStatsInterval(ctx, interval); err != nil {
		return wrap("Balloon", err)
	}
	c.res.UpdateBalloonStatsInterval(interval)
	return nil
}

func (c *Controller) updateDrive(ctx context.Context, u vmconfig.BlockDeviceUpdateConfig) error {
	const suffix = " Please verify the request arguments."
	d, ok := c.res.Drive(u.DriveID)
	if !ok {
		return errors.New("Unable to patch the block device: " + ErrDeviceNotFound.Error() + suffix)
	}
	if u.PathOnHost == nil && u.RateLimiter == nil {
		if d.Socket == nil {
			return errors.New("Unable to patch the block device: Block: Running method expected different backend." + suffix)
		}
		return errors.New("Unable to patch the block device: " + hypervisor.Unsupported(c.res.Backend, "vhost-user block devices").Error() + suffix)
	}
	if u.PathOnHost != nil {
		if d.Socket != nil {
			return errors.New("Unable to patch the block device: Block: Running method expected different backend." + suffix)
		}
		if err := c.res.CheckDrivePath(*u.PathOnHost, d.IsReadOnly != nil && *d.IsReadOnly); err != nil {
			return errors.New("Unable to patch the block device: Block: " + err.Error() + suffix)
		}
		up, ok := c.machine.(hypervisor.DriveUpdater)
		if !ok || !c.res.Caps.DrivePathUpdate {
			return errors.New("Unable to patch the block device: " + hypervisor.Unsupported(c.res.Backend, "changing a drive's backing file").Error() + suffix)
		}
		if err := up.UpdateDrive(ctx, u.DriveID, *u.PathOnHost); err != nil {
			return errors.New("Unable to patch the block device: " + err.Error() + suffix)
		}
		c.res.SetDrivePath(u.DriveID, *u.PathOnHost)
		c.cfg.Metrics.Block(u.DriveID).UpdateCount.Inc()
	}
	if u.RateLimiter != nil {
		up, ok := c.machine.(rateLimiterUpdater)
		if !ok || !c.res.Caps.BlockRateLimiter {
			return errors.New("Unable to patch the block device: " + hypervisor.Unsupported(c.res.Backend, "rate limiters on drives").Error() + suffix)
		}
		if err := up.UpdateDriveRateLimiter(ctx, u.DriveID, u.RateLimiter); err != nil {
			return errors.New("Unable to patch the block device: " + err.Error() + suffix)
		}
	}
	return nil
}

// rateLimiterUpdater is a machine whose devices' rate limiters change while
// the guest runs (PATCH /drives, PATCH /network-interfaces). A nil limiter,
// or a nil bucket in one, keeps what the device has.
type rateLimiterUpdater interface {
	UpdateDriveRateLimiter(ctx context.Context, driveID string, rl *vmconfig.RateLimiterConfig) error
	UpdateNetRateLimiters(ctx context.Context, ifaceID string, rx, tx *vmconfig.RateLimiterConfig) error
}

func (c *Controller) updateNet(ctx context.Context, u vmconfig.NetworkInterfaceUpdateConfig) error {
	if !c.res.HasNet(u.IfaceID) {
		return errors.New("Unable to update the net device: " + ErrDeviceNotFound.Error())
	}
	if u.RxRateLimiter == nil && u.TxRateLimiter == nil {
		return nil
	}
	up, ok := c.machine.(rateLimiterUpdater)
	if !ok || !c.res.Caps.NetRateLimiter {
		return errors.New("Unable to update the net device: " + hypervisor.Unsupported(c.res.Backend, "rate limiters on network interfaces").Error())
	}
	if err := up.UpdateNetRateLimiters(ctx, u.IfaceID, u.RxRateLimiter, u.TxRateLimiter); err != nil {
		return errors.New("Unable to update the net device: " + err.Error())
	}
	return nil
}

func (c *Controller) updatePmem(u vmconfig.PmemDeviceUpdateConfig) error {
	if u.RateLimiter == nil {
		return nil
	}
	return errors.New("Unable to patch the pmem device: " + ErrDeviceNotFound.Error() + " Please verify the request arguments.")
}

// Shutdown stops the VM (if any), flushes metrics and releases everything
// the controller holds. It is called once, when the process ends.
func (c *Controller) Shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	if c.stopTick != nil {
		close(c.stopTick)
		c.stopTick = nil
	}
	if c.machine != nil {
		c.machine.Close()
	}
	if c.console != nil {
		c.console.Close()
	}
	c.res.Close()
}
