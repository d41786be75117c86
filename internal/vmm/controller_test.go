package vmm

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/metrics"
	"github.com/ember-vmm/ember/internal/vmconfig"
)

// fakeBackend is a unit-test double of a backend: it records the Spec it was
// given and produces machines whose end the test controls.
type fakeBackend struct {
	caps      hypervisor.Capabilities
	createErr error
	mu        sync.Mutex
	specs     []*hypervisor.Spec
	machines  []*fakeMachine
}

func (b *fakeBackend) Name() string                          { return "fake" }
func (b *fakeBackend) Available(map[string]string) error     { return nil }
func (b *fakeBackend) Capabilities() hypervisor.Capabilities { return b.caps }
func (b *fakeBackend) Create(ctx context.Context, s *hypervisor.Spec, env hypervisor.Env) (hypervisor.Machine, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.specs = append(b.specs, s)
	if b.createErr != nil {
		return nil, b.createErr
	}
	m := &fakeMachine{done: make(chan struct{})}
	b.machines = append(b.machines, m)
	return m, nil
}

type fakeMachine struct {
	mu      sync.Mutex
	paused  bool
	started bool
	closed  bool
	done    chan struct{}
	exit    hypervisor.ExitStatus
	cad     int
}

func (m *fakeMachine) Start(context.Context) error {
	m.mu.Lock()
	m.started = true
	m.mu.Unlock()
	return nil
}
func (m *fakeMachine) Pause(context.Context) error {
	m.mu.Lock()
	m.paused = true
	m.mu.Unlock()
	return nil
}
func (m *fakeMachine) Resume(context.Context) error {
	m.mu.Lock()
	m.paused = false
	m.mu.Unlock()
	return nil
}
func (m *fakeMachine) Done() <-chan struct{}       { return m.done }
func (m *fakeMachine) Exit() hypervisor.ExitStatus { return m.exit }
func (m *fakeMachine) Close() error                { m.mu.Lock(); m.closed = true; m.mu.Unlock(); return nil }
func (m *fakeMachine) SendCtrlAltDel(context.Context) error {
	m.mu.Lock()
	m.cad++
	m.mu.Unlock()
	return nil
}
func (m *fakeMachine) end(r hypervisor.ExitReason, err error) {
	m.exit = hypervisor.ExitStatus{Reason: r, Err: err}
	close(m.done)
}

func newTestController(t *testing.T, b *fakeBackend) *Controller {
	t.Helper()
	res := vmconfig.NewResources("fake", b.caps, nil, 51200)
	return New(Config{
		ID:        "test-vm",
		Version:   "1.17.0-dev",
		Backend:   b,
		Logger:    logger.New("test-vm", os.Stderr),
		Metrics:   metrics.New(),
		Resources: res,
	})
}

// kernelFile writes a file with a bzImage setup header (boot protocol 2.15,
// 64-bit entry): enough for the kernel check; the fake backend runs nothing.
func kernelFile(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8192)
	b[0x1f1] = 4
	binary.LittleEndian.PutUint32(b[0x202:], 0x53726448)
	binary.LittleEndian.PutUint16(b[0x206:], 0x020f)
	b[0x211] = 1
	binary.LittleEndian.PutUint32(b[0x214:], 0x100000)
	binary.LittleEndian.PutUint16(b[0x236:], 1)
	p := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInvalidKernelFailsStart(t *testing.T) {
	b := &fakeBackend{}
	c := newTestController(t, b)
	p := filepath.Join(t.TempDir(), "zeros")
	os.WriteFile(p, make([]byte, 1<<20), 0o644)
	do(t, c, ConfigureBootSource{Config: vmconfig.BootSourceConfig{KernelImagePath: p}})
	_, err := do(t, c, StartMicroVM{})
	want := "Start microvm error: System configuration error: Cannot load kernel due to invalid memory configuration or invalid kernel image: Kernel Loader: failed to load bzImage kernel image: Kernel Loader: Invalid bzImage"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if len(b.specs) != 0 || c.State() != NotStarted {
		t.Fatalf("backend reached (%d specs) or state changed (%v)", len(b.specs), c.State())
	}
}

func do(t *testing.T, c *Controller, a Action) (any, error) {
	t.Helper()
	return c.Handle(context.Background(), a)
}

func TestPreBootPostBootMatrix(t *testing.T) {
	b := &fakeBackend{caps: hypervisor.Capabilities{SendCtrlAltDel: true}}
	c := newTestController(t, b)

	preBootOnlyRejected := []Action{FlushMetrics{}, Pause{}, Resume{}, SendCtrlAltDel{}, GetBalloonStats{},
		UpdateBalloon{}, UpdateDrive{}, UpdateNet{}, CreateSnapshot{}, StopHinting{}, HotUnplug{Kind: "Block", ID: "a"}}
	for _, a := range preBootOnlyRejected {
		if _, err := do(t, c, a); !errors.Is(err, ErrNotSupportedPreBoot) {
			t.Errorf("%T before boot: err = %v, want %v", a, err, ErrNotSupportedPreBoot)
		}
	}
	if _, err := do(t, c, StartMicroVM{}); err == nil || err.Error() != "Start microvm error: Cannot start microvm without kernel configuration." {
		t.Fatalf("start without kernel: %v", err)
	}
	if _, err := do(t, c, ConfigureBootSource{Config: vmconfig.BootSourceConfig{KernelImagePath: kernelFile(t)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := do(t, c, StartMicroVM{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	if got := c.State(); got != Running {
		t.Fatalf("state = %v", got)
	}
	postBootRejected := []Action{ConfigureBootSource{}, ConfigureLogger{}, ConfigureMetrics{}, ConfigureSerial{},
		LoadSnapshot{}, PutCPUConfig{}, SetBalloon{}, SetVsock{}, SetMMDSConfig{}, SetEntropy{},
		SetMemoryHotplug{}, StartMicroVM{}, UpdateMachineConfig{}}
	for _, a := range postBootRejected {
		if _, err := do(t, c, a); !errors.Is(err, ErrNotSupportedPostBoot) {
			t.Errorf("%T after boot: err = %v, want %v", a, err, ErrNotSupportedPostBoot)
		}
	}
	// Pause and resume are idempotent and change the reported state.
	for _, step := range []struct {
		a    Action
		want State
	}{{Pause{}, Paused}, {Pause{}, Paused}, {Resume{}, Running}, {Resume{}, Running}} {
		if _, err := do(t, c, step.a); err != nil {
			t.Fatalf("%T: %v", step.a, err)
		}
		if got := c.State(); got != step.want {
			t.Fatalf("after %T: state = %v, want %v", step.a, got, step.want)
		}
	}
	if _, err := do(t, c, SendCtrlAltDel{}); err != nil || b.machines[0].cad != 1 {
		t.Fatalf("SendCtrlAltDel: err %v, count %d", err, b.machines[0].cad)
	}
	if _, err := do(t, c, InsertDrive{}); !errors.Is(err, ErrPCINotEnabled) {
		t.Errorf("hotplug without PCI: %v", err)
	}
	if _, err := do(t, c, GetMMDS{}); err == nil || err.Error() != "MMDS error: The MMDS data store is not initialized." {
		t.Errorf("GET /mmds after boot without MMDS: %v", err)
	}
}

func TestFailedStartIsRecoverable(t *testing.T) {
	b := &fakeBackend{createErr: errors.New("engine exploded")}
	c := newTestController(t, b)
	do(t, c, ConfigureBootSource{Config: vmconfig.BootSourceConfig{KernelImagePath: kernelFile(t)}})
	_, err := do(t, c, StartMicroVM{})
	if err == nil || err.Error() != "Start microvm error: engine exploded" {
		t.Fatalf("err = %v", err)
	}
	if c.State() != NotStarted {
		t.Fatalf("state after failed start = %v", c.State())
	}
	// The configuration is still there and still accepts changes.
	two := uint8(2)
	if _, err := do(t, c, UpdateMachineConfig{Update: vmconfig.MachineConfigUpdate{VCPUCount: &two}}); err != nil {
		t.Fatal(err)
	}
	b.createErr = nil
	if _, err := do(t, c, StartMicroVM{}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := b.specs[1].VCPUs; got != 2 {
		t.Errorf("retried spec has %d vCPUs, want 2", got)
	}
	st, _ := do(t, c, GetEmberState{})
	es := st.(EmberState)
	if es.LastError == nil || es.LastError.Message != "Start microvm error: engine exploded" {
		t.Errorf("last error = %+v", es.LastError)
	}
	if len(es.History) != 2 || es.History[1].State != "Running" {
		t.Errorf("history = %+v", es.History)
	}
}

func TestSpecCommandLine(t *testing.T) {
	b := &fakeBackend{}
	c := newTestController(t, b)
	args := "console=ttyS0 init=/bin/cat -- /etc/os-release"
	do(t, c, ConfigureBootSource{Config: vmconfig.BootSourceConfig{KernelImagePath: kernelFile(t), BootArgs: &args}})
	disk := filepath.Join(t.TempDir(), "disk")
	os.WriteFile(disk, make([]byte, 4096), 0o644)
	ro := true
	uuid := "0eaa91a0-01"
	for _, d := range []vmconfig.BlockDeviceConfig{
		{DriveID: "data", PathOnHost: &disk},
		{DriveID: "root", PathOnHost: &disk, IsRootDevice: true, IsReadOnly: &ro, PartUUID: &uuid},
	} {
		if _, err := do(t, c, InsertDrive{Config: d}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := do(t, c, StartMicroVM{}); err != nil {
		t.Fatal(err)
	}
	s := b.specs[0]
	want := "console=ttyS0 init=/bin/cat pci=off root=PARTUUID=0eaa91a0-01 ro -- /etc/os-release"
	if s.Boot.Cmdline != want {
		t.Errorf("cmdline = %q\nwant      %q", s.Boot.Cmdline, want)
	}
	if len(s.Drives) != 2 || s.Drives[0].ID != "root" || !s.Drives[0].Root {
		t.Errorf("drives not root-first: %+v", s.Drives)
	}
}

func TestExitCodes(t *testing.T) {
	for _, tt := range []struct {
		reason hypervisor.ExitReason
		err    error
		code   int
	}{
		{hypervisor.ExitReset, nil, ExitOK},
		{hypervisor.ExitError, errors.New("QEMU was killed"), ExitGenericError},
	} {
		b := &fakeBackend{}
		c := newTestController(t, b)
		do(t, c, ConfigureBootSource{Config: vmconfig.BootSourceConfig{KernelImagePath: kernelFile(t)}})
		if _, err := do(t, c, StartMicroVM{}); err != nil {
			t.Fatal(err)
		}
		b.machines[0].end(tt.reason, tt.err)
		select {
		case e := <-c.Exited():
			if e.Code != tt.code {
				t.Errorf("%v: exit code %d, want %d", tt.reason, e.Code, tt.code)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%v: no exit", tt.reason)
		}
		c.Shutdown()
		if !b.machines[0].closed {
			t.Errorf("machine not closed by Shutdown")
		}
	}
}

func TestCapabilityRefusedAtConfiguration(t *testing.T) {
	b := &fakeBackend{} // no capabilities at all
	c := newTestController(t, b)
	_, err := do(t, c, SetVsock{Config: vmconfig.VsockDeviceConfig{GuestCID: 3, UDSPath: "/tmp/v.sock"}})
	if want := "Vsock config error: The fake backend does not support vsock."; err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if !errors.Is(err, hypervisor.ErrNotSupported) {
		t.Errorf("not classified as ErrNotSupported")
	}
	// Validation still comes first: a balloon larger than memory gets
	// Firecracker's own error even on a backend without a balloon.
	_, err = do(t, c, SetBalloon{Config: vmconfig.BalloonDeviceConfig{AmountMiB: 4096}})
	if want := "Balloon config error: Amount of pages requested is too large."; err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestLoadSnapshotAfterBootResources(t *testing.T) {
	b := &fakeBackend{}
	c := newTestController(t, b)
	do(t, c, ConfigureLogger{}) // does not set the boot path
	// Allowed: it gets as far as opening the (empty) snapshot path.
	if _, err := do(t, c, LoadSnapshot{}); err == nil || !strings.Contains(err.Error(), "Failed to open snapshot file") {
		t.Fatalf("load after logger only: %v", err)
	}
	do(t, c, ConfigureBootSource{Config: vmconfig.BootSourceConfig{KernelImagePath: "/nonexistent"}}) // fails, but sets the boot path
	_, err := do(t, c, LoadSnapshot{})
	if want := "Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources."; err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

type lineCounter struct {
	mu sync.Mutex
	n  int
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range p {
		if c == '\n' {
			l.n++
		}
	}
	return len(p), nil
}

func (l *lineCounter) lines() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// TestPeriodicMetrics checks the metrics timer: one line at boot, then one
// per interval, none while paused.
func TestPeriodicMetrics(t *testing.T) {
	b := &fakeBackend{}
	res := vmconfig.NewResources("fake", b.caps, nil, 51200)
	m := metrics.New()
	out := &lineCounter{}
	if err := m.Init(out, false, "", nil); err != nil {
		t.Fatal(err)
	}
	c := New(Config{ID: "vm", Backend: b, Logger: logger.New("vm", os.Stderr), Metrics: m,
		Resources: res, MetricsInterval: 50 * time.Millisecond})
	defer c.Shutdown()
	do(t, c, ConfigureBootSource{Config: vmconfig.BootSourceConfig{KernelImagePath: kernelFile(t)}})
	if _, err := do(t, c, StartMicroVM{}); err != nil {
		t.Fatal(err)
	}
	if n := out.lines(); n != 1 {
		t.Fatalf("%d lines right after boot, want 1", n)
	}
	time.Sleep(180 * time.Millisecond)
	if n := out.lines(); n < 3 {
		t.Fatalf("%d lines after ~3 intervals, want at least 3", n)
	}
	do(t, c, Pause{})
	paused := out.lines()
	time.Sleep(200 * time.Millisecond)
	if n := out.lines(); n != paused {
		t.Fatalf("%d lines written while paused", n-paused)
	}
	do(t, c, Resume{})
	time.Sleep(150 * time.Millisecond)
	if n := out.lines(); n <= paused {
		t.Fatalf("no lines after resume")
	}
}
