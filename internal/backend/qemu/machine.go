package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/qmp"
	"github.com/ember-vmm/ember/internal/syserr"
	"github.com/ember-vmm/ember/internal/vmconfig"
)

// ErrEnded is returned (wrapped) by operations on a VM that has ended.
var ErrEnded = errors.New("the VM has ended")

// machine is one QEMU process running one VM.
type machine struct {
	log    logger.Log
	env    hypervisor.Env
	memMiB uint64
	// kernelPath and initrdPath name the boot files in error messages.
	kernelPath, initrdPath string
	plan                   *plan
	balloon                *hypervisor.Balloon
	// taps maps interface ids to tap names, for DeviceStats.
	taps map[string]string
	// resetLog is QEMU's CPU reset log under TCG (nil otherwise).
	resetLog *os.File
	// godevs are the devices ember runs over vhost-user (nil if none).
	godevs *goDevices
	// snap is what snapshots need: guest RAM and the launch's choices.
	snap *snapState
	// tapWatch detaches taps deleted under the guest (nil if none).
	tapWatch *tapWatch

	paused     atomic.Bool
	pendingCAD atomic.Bool // Ctrl+Alt+Del sent while paused, pressed on resume

	cmd      *exec.Cmd
	procDone chan struct{} // closed once QEMU has been reaped
	procErr  error         // cmd.Wait's result, set before procDone closes
	stderr   *stderrLog

	qmp         *qmp.Client
	events      *qmp.Subscription
	console     net.Conn
	consoleDone chan struct{} // closed when the console output pump ends

	started  atomic.Bool
	guestOff atomic.Bool // the guest powered off; QEMU sits paused

	driveMu       sync.Mutex
	driveGen      int
	balloonTarget atomic.Uint32

	exitMu sync.Mutex
	exit   hypervisor.ExitStatus

	supervising bool
	done        chan struct{}
	closeOnce   sync.Once
}

var (
	_ hypervisor.Machine      = (*machine)(nil)
	_ hypervisor.CtrlAltDeler = (*machine)(nil)
	_ hypervisor.DriveUpdater = (*machine)(nil)
	_ hypervisor.Ballooner    = (*machine)(nil)
)

func newMachine(spec *hypervisor.Spec, env hypervisor.Env, p *plan) *machine {
	m := &machine{
		log:         env.Log,
		env:         env,
		memMiB:      spec.MemMiB,
		kernelPath:  spec.Boot.KernelPath,
		initrdPath:  spec.Boot.InitrdPath,
		plan:        p,
		balloon:     spec.Balloon,
		procDone:    make(chan struct{}),
		consoleDone: make(chan struct{}),
		done:        make(chan struct{}),
		stderr:      &stderrLog{log: env.Log},
	}
	if spec.Balloon != nil {
		m.balloonTarget.Store(spec.Balloon.AmountMiB)
	}
	m.taps = map[string]string{}
	for _, n := range spec.Nets {
		m.taps[n.ID] = n.TapName
	}
	return m
}

func (m *machine) reap() {
	m.procErr = m.cmd.Wait()
	close(m.procDone)
}

// connect starts the console pumps and the QMP session. A QEMU that dies
// during the handshake ends it at once rather than at ctx's deadline.
func (m *machine) connect(ctx context.Context, qmpConn, conConn net.Conn) error {
	m.console = conConn
	go m.pumpConsoleOut()
	if m.env.ConsoleIn != nil {
		go m.pumpConsoleIn()
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.procDone:
			cancel()
		case <-hctx.Done():
		}
	}()
	c, err := qmp.New(hctx, qmpConn)
	if err != nil {
		qmpConn.Close()
		return err
	}
	m.qmp = c
	m.events = c.Subscribe()
	return nil
}

// startError explains a failed start: QEMU's own words if it died.
func (m *machine) startError(err error, fdPaths map[string]string) error {
	select {
	case <-m.procDone:
	case <-time.After(2 * time.Second):
		return fmt.Errorf("QEMU did not start: %w", err)
	}
	msg := strings.TrimSpace(m.stderr.tail())
	if msg == "" {
		return fmt.Errorf("QEMU failed to start (%v): %w", m.procErr, err)
	}
	named := false
	for fd, path := range fdPaths {
		if strings.Contains(msg, fd) {
			msg = strings.ReplaceAll(msg, fd, path)
			named = true
		}
	}
	// QEMU's boot loader errors ("invalid kernel header") name no file.
	if !named {
		lower := strings.ToLower(msg)
		switch {
		case strings.Contains(lower, "ram disk") || strings.Contains(lower, "initrd"):
			msg += " (initrd " + m.initrdPath + ")"
		case strings.Contains(lower, "kernel"):
			msg += " (kernel image " + m.kernelPath + ")"
		}
	}
	return fmt.Errorf("QEMU failed to start: %s", msg)
}

// configure applies the initial runtime settings before the guest runs.
func (m *machine) configure(ctx context.Context) error {
	if b := m.balloon; b != nil {
		if b.AmountMiB > 0 {
			if err := m.SetBalloonTarget(ctx, b.AmountMiB); err != nil {
				return err
			}
		}
		if b.StatsPollingIntervalS > 0 {
			if err := m.SetBalloonStatsInterval(ctx, b.StatsPollingIntervalS); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *machine) pumpConsoleOut() {
	defer close(m.consoleDone)
	out := m.env.Console
	if out == nil {
		out = io.Discard
	}
	// Env.Console never blocks, so this loop always drains QEMU's side and
	// the guest's UART never waits on ember.
	buf := make([]byte, 32*1024)
	for {
		n, err := m.console.Read(buf)
		if n > 0 {
			out.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

func (m *machine) pumpConsoleIn() {
	// A reader such as stdin cannot be interrupted; this goroutine ends at
	// the first read after the machine closed.
	io.Copy(m.console, m.env.ConsoleIn)
}

// shutdownEvent is the SHUTDOWN event's payload.
type shutdownEvent struct {
	Guest  bool   `json:"guest"`
	Reason string `json:"reason"`
}

// supervise turns QEMU's events and exit into the Machine's end.
func (m *machine) supervise() {
	events := m.events.C
	for events != nil {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				break
			}
			m.handleEvent(ev)
		case <-m.procDone:
			events = nil
		}
	}
	<-m.procDone
	m.finish(hypervisor.ExitError, m.exitError())
	// Everything the guest printed is delivered before Done.
	select {
	case <-m.consoleDone:
	case <-time.After(2 * time.Second):
	}
	close(m.done)
}

func (m *machine) handleEvent(ev qmp.Event) {
	switch ev.Name {
	case "SHUTDOWN":
		var d shutdownEvent
		json.Unmarshal(ev.Data, &d)
		switch d.Reason {
		case "guest-reset":
			if m.tripleFaulted() {
				// Firecracker ends with an error on a triple fault
				// (KVM_EXIT_SHUTDOWN); only a keyboard-controller reset is clean.
				m.log.Errorf("The guest triple-faulted; stopping QEMU")
				m.finish(hypervisor.ExitError, errors.New("the guest triple-faulted (unhandled shutdown exit)"))
			} else {
				m.log.Infof("The guest reset the machine; stopping QEMU")
				m.finish(hypervisor.ExitReset, nil)
			}
			m.kill()
		case "guest-shutdown":
			// As on Firecracker, a guest that powers off stays a running
			// VM (halted) until ember is told to stop.
			m.guestOff.Store(true)
			m.log.Infof("The guest powered off; the VM keeps running, as Firecracker does")
		case "guest-panic":
			m.finish(hypervisor.ExitError, errors.New("the guest kernel panicked"))
			m.kill()
		default:
			m.log.Debugf("QEMU is shutting down (%s)", d.Reason)
		}
	case "STOP", "RESUME", "RESET":
		m.log.Debugf("QEMU event %s", ev.Name)
	}
}

// exitError describes how QEMU ended on its own.
func (m *machine) exitError() error {
	pid := 0
	if m.cmd != nil && m.cmd.Process != nil {
		pid = m.cmd.Process.Pid
	}
	var how string
	var ee *exec.ExitError
	switch {
	case errors.As(m.procErr, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			how = fmt.Sprintf("was killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
		} else {
			how = fmt.Sprintf("exited with status %d", ee.ExitCode())
		}
	case m.procErr != nil:
		how = "failed: " + m.procErr.Error()
	default:
		how = "exited with status 0"
	}
	err := fmt.Sprintf("QEMU (pid %d) %s", pid, how)
	if t := strings.TrimSpace(m.stderr.tail()); t != "" {
		err += ": " + lastLine(t)
	}
	return errors.New(err)
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// finish records how the VM ended; the first call wins.
func (m *machine) finish(r hypervisor.ExitReason, err error) {
	m.exitMu.Lock()
	defer m.exitMu.Unlock()
	if m.exit.Reason == hypervisor.ExitNone {
		m.exit = hypervisor.ExitStatus{Reason: r, Err: err}
		if r == hypervisor.ExitError {
			m.log.Errorf("The VM ended: %v", err)
		}
	}
}

func (m *machine) kill() {
	if m.cmd != nil && m.cmd.Process != nil {
		m.cmd.Process.Kill()
	}
}

func (m *machine) ended() error {
	select {
	case <-m.done:
		return ErrEnded
	case <-m.procDone:
		return ErrEnded
	default:
	}
	m.exitMu.Lock()
	defer m.exitMu.Unlock()
	if m.exit.Reason != hypervisor.ExitNone {
		return ErrEnded
	}
	return nil
}

func (m *machine) run(ctx context.Context, cmd string, args, reply any) error {
	if err := m.ended(); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	err := m.qmp.Execute(ctx, cmd, args, reply)
	if err != nil && errors.Is(err, qmp.ErrClosed) {
		return fmt.Errorf("%s: %w", cmd, ErrEnded)
	}
	return err
}

// Start lets the vCPUs run for the first time.
func (m *machine) Start(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("the VM was already started")
	}
	if err := m.run(ctx, "cont", nil, nil); err != nil {
		m.started.Store(false)
		return err
	}
	return nil
}

// Pause stops the vCPUs; QMP "stop" returns once none runs guest code.
func (m *machine) Pause(ctx context.Context) error {
	if m.guestOff.Load() {
		return nil // a powered-off guest is halted for good
	}
	if err := m.run(ctx, "stop", nil, nil); err != nil {
		return err
	}
	m.paused.Store(true)
	return nil
}

// Resume continues a paused VM.
func (m *machine) Resume(ctx context.Context) error {
	if m.guestOff.Load() {
		return nil
	}
	if !m.started.Load() {
		return errors.New("the VM was not started")
	}
	if err := m.run(ctx, "cont", nil, nil); err != nil {
		return err
	}
	m.paused.Store(false)
	if m.pendingCAD.Swap(false) {
		return m.pressCtrlAltDel(ctx)
	}
	return nil
}

// SendCtrlAltDel presses Ctrl+Alt+Del on the i8042 keyboard. QEMU drops
// key events while the VM is stopped; Firecracker's i8042 keeps them for
// the guest, so on a paused VM the keys are pressed when it resumes.
func (m *machine) SendCtrlAltDel(ctx context.Context) error {
	if m.paused.Load() {
		m.pendingCAD.Store(true)
		return nil
	}
	return m.pressCtrlAltDel(ctx)
}

func (m *machine) pressCtrlAltDel(ctx context.Context) error {
	key := func(k string) map[string]string { return map[string]string{"type": "qcode", "data": k} }
	return m.run(ctx, "send-key", map[string]any{
		"keys": []any{key("ctrl"), key("alt"), key("delete")},
	}, nil)
}

// tripleFaulted reports whether QEMU's reset log records a triple fault.
func (m *machine) tripleFaulted() bool {
	if m.resetLog == nil {
		return false
	}
	b, err := io.ReadAll(io.NewSectionReader(m.resetLog, 0, 1<<30))
	return err == nil && bytes.Contains(b, []byte("Triple fault"))
}

// Done is closed when the VM has ended.
func (m *machine) Done() <-chan struct{} { return m.done }

// Exit says how the VM ended.
func (m *machine) Exit() hypervisor.ExitStatus {
	m.exitMu.Lock()
	defer m.exitMu.Unlock()
	return m.exit
}

// Close kills QEMU, reaps it and releases the connections. ember keeps no
// sockets on disk for a VM (monitor and console are socket pairs), so there
// is nothing to remove.
func (m *machine) Close() error {
	m.closeOnce.Do(func() {
		m.finish(hypervisor.ExitStopped, nil)
		m.kill()
		if m.cmd != nil {
			<-m.procDone
		}
		if m.qmp != nil {
			m.qmp.Close()
		}
		if m.events != nil {
			m.events.Close()
		}
		if m.console != nil {
			m.console.Close()
		}
		if m.supervising {
			<-m.done
		} else {
			close(m.done)
		}
		// QEMU is gone: the servers have lost their front-end and no guest
		// request is in flight, so the devices can stop.
		m.tapWatch.close()
		m.godevs.close()
		m.snap.close()
		if m.resetLog != nil {
			m.resetLog.Close()
		}
	})
	return nil
}

// UpdateDrive points a drive at a new backing file (or the same path, to
// pick up a new size) and tells the guest the new capacity, as Firecracker
// does. QEMU announces a capacity through a resize of the drive's node
// (to the file's own size, which changes no data but does touch the file's
// mtime); a read-only node cannot be resized, so a read-only drive is
// opened writable for that moment when the file allows it. The guest cannot
// write meanwhile: its device was created read-only and holds no write
// permission.
func (m *machine) UpdateDrive(ctx context.Context, driveID, pathOnHost string) error {
	m.driveMu.Lock()
	defer m.driveMu.Unlock()
	if ok, err := m.godevs.updateDrive(driveID, pathOnHost); ok {
		return err
	}
	idx := -1
	for i, d := range m.plan.drives {
		if d.ID == driveID {
			idx = i
		}
	}
	if idx < 0 {
		return fmt.Errorf("no drive with id %s", driveID)
	}
	d := m.plan.drives[idx]
	writable := true
	f, err := os.OpenFile(pathOnHost, os.O_RDWR, 0)
	if err != nil && d.ReadOnly {
		writable = false
		f, err = os.OpenFile(pathOnHost, os.O_RDONLY, 0)
	}
	if err != nil {
		return fmt.Errorf("cannot open %s: %s", pathOnHost, syserr.Display(err))
	}
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return fmt.Errorf("cannot stat %s: %s", pathOnHost, syserr.Display(err))
	}

	m.driveGen++
	next := d
	next.File = d.Format + "-file" + strconv.Itoa(m.driveGen)
	next.Added = true
	openRO := d.ReadOnly && !writable
	if err := m.run(ctx, "blockdev-add", next.fileNodeRO(pathOnHost, openRO), nil); err != nil {
		return fmt.Errorf("drive %s: opening %s: %w", driveID, pathOnHost, err)
	}
	if err := m.run(ctx, "blockdev-reopen", map[string]any{
		"options": []any{next.formatNodeRO(next.File, openRO)},
	}, nil); err != nil {
		m.run(context.WithoutCancel(ctx), "blockdev-del", map[string]string{"node-name": next.File}, nil)
		return fmt.Errorf("drive %s: switching to %s: %w", driveID, pathOnHost, err)
	}
	m.plan.drives[idx] = next
	if d.Added {
		if err := m.run(ctx, "blockdev-del", map[string]string{"node-name": d.File}, nil); err != nil {
			m.log.Warnf("drive %s: releasing the previous file: %v", driveID, err)
		}
	}
	if openRO {
		m.log.Warnf("drive %s: %s is not writable, so QEMU cannot announce its size; the guest keeps the old capacity", driveID, pathOnHost)
		return nil
	}
	resizeErr := m.run(ctx, "block_resize", map[string]any{"node-name": d.Format, "size": fi.Size()}, nil)
	if d.ReadOnly {
		if err := m.run(context.WithoutCancel(ctx), "blockdev-reopen", map[string]any{
			"options": []any{next.formatNode(next.File), next.fileNode(pathOnHost)},
		}, nil); err != nil {
			return fmt.Errorf("drive %s: making the node read-only again: %w", driveID, err)
		}
	}
	if resizeErr != nil {
		return fmt.Errorf("drive %s: announcing the new size: %w", driveID, resizeErr)
	}
	return nil
}

// SetBalloonTarget sets the balloon's size. Firecracker's amount is the
// balloon size; QEMU's "balloon" takes the guest's target memory size.
func (m *machine) SetBalloonTarget(ctx context.Context, amountMiB uint32) error {
	if m.plan.balloon == "" {
		return errors.New("no balloon device")
	}
	if uint64(amountMiB) > m.memMiB {
		return fmt.Errorf("balloon amount %d MiB exceeds the guest's %d MiB", amountMiB, m.memMiB)
	}
	target := int64(m.memMiB-uint64(amountMiB)) << 20
	if target == 0 {
		target = 4096 // QEMU wants a positive size; one page is all but all of it
	}
	if err := m.run(ctx, "balloon", map[string]int64{"value": target}, nil); err != nil {
		return err
	}
	m.balloonTarget.Store(amountMiB)
	return nil
}

// SetBalloonStatsInterval sets how often the guest reports statistics
// (0 stops the reports).
func (m *machine) SetBalloonStatsInterval(ctx context.Context, seconds uint16) error {
	if m.plan.balloon == "" {
		return errors.New("no balloon device")
	}
	return m.run(ctx, "qom-set", map[string]any{
		"path": m.plan.balloon, "property": "guest-stats-polling-interval", "value": seconds,
	}, nil)
}

// BalloonStats returns the balloon's size and the guest's last report,
// under Firecracker's names.
func (m *machine) BalloonStats(ctx context.Context) (hypervisor.BalloonStats, error) {
	var s hypervisor.BalloonStats
	if m.plan.balloon == "" {
		return s, errors.New("no balloon device")
	}
	var info struct {
		Actual int64 `json:"actual"` // guest memory left, bytes
	}
	if err := m.run(ctx, "query-balloon", nil, &info); err != nil {
		return s, err
	}
	var gs struct {
		Stats map[string]json.Number `json:"stats"`
	}
	if err := m.run(ctx, "qom-get", map[string]string{"path": m.plan.balloon, "property": "guest-stats"}, &gs); err != nil {
		return s, err
	}
	s.TargetMiB = m.balloonTarget.Load()
	s.TargetPages = s.TargetMiB * 256
	if left := uint64(max(info.Actual, 0)) >> 20; left < m.memMiB {
		s.ActualMiB = uint32(m.memMiB - left)
	}
	s.ActualPages = s.ActualMiB * 256
	for qemuName, dst := range map[string]**uint64{
		"stat-swap-in":          &s.SwapIn,
		"stat-swap-out":         &s.SwapOut,
		"stat-major-faults":     &s.MajorFaults,
		"stat-minor-faults":     &s.MinorFaults,
		"stat-free-memory":      &s.FreeMemory,
		"stat-total-memory":     &s.TotalMemory,
		"stat-available-memory": &s.AvailMemory,
		"stat-disk-caches":      &s.DiskCaches,
		"stat-htlb-pgalloc":     &s.HugetlbAlloc,
		"stat-htlb-pgfail":      &s.HugetlbFail,
	} {
		*dst = statValue(gs.Stats[qemuName])
	}
	return s, nil
}

// statValue reads one guest statistic; QEMU reports -1 (as a signed or an
// unsigned 64-bit number) for those the guest never sent.
func statValue(n json.Number) *uint64 {
	if n == "" {
		return nil
	}
	v, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil || v == math.MaxUint64 {
		return nil
	}
	return &v
}

// stderrLog logs QEMU's stderr line by line and keeps its tail for error
// messages.
type stderrLog struct {
	log  logger.Log
	mu   sync.Mutex
	part []byte
	last []byte
}

const stderrTail = 4096

func (s *stderrLog) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = append(s.last, b...)
	if len(s.last) > stderrTail {
		s.last = s.last[len(s.last)-stderrTail:]
	}
	s.part = append(s.part, b...)
	for {
		i := bytes.IndexByte(s.part, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(s.part[:i])); line != "" {
			s.log.Warnf("qemu: %s", line)
		}
		s.part = s.part[i+1:]
	}
	if len(s.part) > stderrTail { // an endless line: log what we have
		s.log.Warnf("qemu: %s", s.part)
		s.part = nil
	}
	return len(b), nil
}

func (s *stderrLog) tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.last)
}

// UpdateDriveRateLimiter changes a drive's rate limiter while the guest
// runs (PATCH /drives); a nil bucket keeps the old one. Only drives that
// booted with a rate limiter run on ember's device, where the limiter
// lives; a drive on QEMU's block layer cannot gain one.
func (m *machine) UpdateDriveRateLimiter(_ context.Context, driveID string, rl *vmconfig.RateLimiterConfig) error {
	if m.godevs.updateDriveLimiter(driveID, rl) {
		return nil
	}
	for _, d := range m.plan.drives {
		if d.ID == driveID {
			// It runs on QEMU's block layer: give it a rate_limiter before
			// InstanceStart to run it on ember's device instead.
			return hypervisor.Unsupported(Name, "adding a rate limiter to a running drive that started without one")
		}
	}
	return fmt.Errorf("no drive with id %s", driveID)
}

// UpdateNetRateLimiters changes an interface's rate limiters while the
// guest runs (PATCH /network-interfaces); a nil limiter or bucket keeps the
// old one. As for drives, only interfaces that booted on ember's device
// (with MMDS or a rate limiter) can be limited.
func (m *machine) UpdateNetRateLimiters(_ context.Context, ifaceID string, rx, tx *vmconfig.RateLimiterConfig) error {
	if m.godevs.updateNetLimiters(ifaceID, rx, tx) {
		return nil
	}
	if _, ok := m.taps[ifaceID]; ok {
		// It runs on QEMU's tap path: give it a rate limiter before
		// InstanceStart to run it on ember's device instead.
		return hypervisor.Unsupported(Name, "adding a rate limiter to a running interface that started without one or MMDS")
	}
	return fmt.Errorf("no network interface with id %s", ifaceID)
}
