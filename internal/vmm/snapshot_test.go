package vmm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/snapshot"
	"github.com/ember-vmm/ember/internal/strictjson"
	"github.com/ember-vmm/ember/internal/vmconfig"
)

// snapBackend is fakeBackend with snapshots: its machines write a small
// memory file and one section; Restore records what it was given.
type snapBackend struct {
	fakeBackend
	restoreSpecs []*hypervisor.Spec
	restoreReqs  []hypervisor.RestoreRequest
	restored     []*snapMachine
}

type snapMachine struct{ *fakeMachine }

func (m snapMachine) SaveSnapshot(_ context.Context, req hypervisor.SaveRequest, f *snapshot.File) error {
	if err := os.WriteFile(req.MemPath, []byte("guest memory"), 0o600); err != nil {
		return err
	}
	f.MemSize = 4096
	f.Regions = []snapshot.Region{{GPA: 0, Size: 4096}}
	return f.AddJSON("fake", map[string]bool{"diff": req.Diff})
}

func (b *snapBackend) Create(ctx context.Context, s *hypervisor.Spec, env hypervisor.Env) (hypervisor.Machine, error) {
	m, err := b.fakeBackend.Create(ctx, s, env)
	if err != nil {
		return nil, err
	}
	return snapMachine{m.(*fakeMachine)}, nil
}

func (b *snapBackend) Restore(_ context.Context, s *hypervisor.Spec, _ hypervisor.Env, f *snapshot.File, req hypervisor.RestoreRequest) (hypervisor.Machine, error) {
	var saved map[string]bool
	if err := f.JSON("fake", &saved); err != nil {
		return nil, err
	}
	b.restoreSpecs = append(b.restoreSpecs, s)
	b.restoreReqs = append(b.restoreReqs, req)
	m := snapMachine{&fakeMachine{done: make(chan struct{})}}
	b.restored = append(b.restored, &m)
	return m, nil
}

var snapCaps = hypervisor.Capabilities{Snapshot: true, TrackDirtyPages: true}

// bootedForSnapshot returns a controller whose (fake) VM runs with two
// vCPUs and 256 MiB.
func bootedForSnapshot(t *testing.T) (*Controller, *snapBackend) {
	t.Helper()
	b := &snapBackend{fakeBackend: fakeBackend{caps: snapCaps}}
	c := newTestController(t, &b.fakeBackend)
	c.cfg.Backend = b
	args := "console=ttyS0 reboot=k"
	mustDo(t, c, UpdateMachineConfig{Update: vmconfig.UpdateFromPut(vmconfig.MachineConfig{VCPUCount: 2, MemSizeMiB: 256, HugePages: vmconfig.HugePagesNone})})
	mustDo(t, c, ConfigureBootSource{Config: vmconfig.BootSourceConfig{KernelImagePath: kernelFile(t), BootArgs: &args}})
	mustDo(t, c, StartMicroVM{})
	return c, b
}

func mustDo(t *testing.T, c *Controller, a Action) any {
	t.Helper()
	v, err := c.Handle(context.Background(), a)
	if err != nil {
		t.Fatalf("%T: %v", a, err)
	}
	return v
}

// savedSnapshot boots a (fake) VM, pauses it and snapshots it.
func savedSnapshot(t *testing.T) (state, mem string) {
	t.Helper()
	c, _ := bootedForSnapshot(t)
	dir := t.TempDir()
	state, mem = filepath.Join(dir, "s"), filepath.Join(dir, "m")
	mustDo(t, c, Pause{})
	mustDo(t, c, CreateSnapshot{Params: vmconfig.CreateSnapshotParams{SnapshotPath: vmconfig.PathBuf(state), MemFilePath: vmconfig.PathBuf(mem)}})
	return state, mem
}

func freshController(t *testing.T) (*Controller, *snapBackend) {
	b := &snapBackend{fakeBackend: fakeBackend{caps: snapCaps}}
	c := newTestController(t, &b.fakeBackend)
	c.cfg.Backend = b
	return c, b
}

func TestSnapshotRoundTrip(t *testing.T) {
	c, _ := bootedForSnapshot(t)
	dir := t.TempDir()
	state, mem := filepath.Join(dir, "vm.snap"), filepath.Join(dir, "vm.mem")
	create := CreateSnapshot{Params: vmconfig.CreateSnapshotParams{SnapshotPath: vmconfig.PathBuf(state), MemFilePath: vmconfig.PathBuf(mem), SnapshotType: vmconfig.SnapshotFull}}
	_, err := do(t, c, create)
	if want := "Create snapshot error: " + errSaveRunning.Error(); err == nil || err.Error() != want {
		t.Fatalf("create while running: %v, want %q", err, want)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("a refused create left %s behind (%v)", state, err)
	}
	mustDo(t, c, Pause{})
	mustDo(t, c, create)
	if v, err := snapshot.Describe(state); err != nil || v != "v"+snapshot.Version {
		t.Fatalf("describe: %q, %v", v, err)
	}

	d, b := freshController(t)
	load := LoadSnapshot{Params: vmconfig.LoadSnapshotParams{SnapshotPath: state,
		MemBackend: vmconfig.MemBackendConfig{BackendPath: vmconfig.PathBuf(mem), BackendType: vmconfig.MemBackendFile}, TrackDirtyPages: true,
		ClockRealtime: true}}
	mustDo(t, d, load)
	if d.State() != Paused {
		t.Fatalf("state after load: %v, want Paused", d.State())
	}
	if len(b.restoreSpecs) != 1 {
		t.Fatalf("Restore called %d times", len(b.restoreSpecs))
	}
	s := b.restoreSpecs[0]
	if s.VCPUs != 2 || s.MemMiB != 256 || !s.TrackDirtyPages || !strings.HasPrefix(s.Boot.Cmdline, "console=ttyS0 reboot=k") {
		t.Errorf("restored spec: %d vCPUs, %d MiB, dirty %v, cmdline %q", s.VCPUs, s.MemMiB, s.TrackDirtyPages, s.Boot.Cmdline)
	}
	if r := b.restoreReqs[0]; r.MemPath != mem || !r.ClockRealtime {
		t.Errorf("restore request %+v, want memory path %q and clock_realtime", r, mem)
	}
	cfg := mustDo(t, d, GetFullConfig{}).(vmconfig.VMMConfig)
	if cfg.MachineConfig.VCPUCount != 2 || cfg.BootSource.BootArgs == nil || *cfg.BootSource.BootArgs != "console=ttyS0 reboot=k" {
		t.Errorf("GET /vm/config after load: %+v", cfg)
	}
	m := b.restored[0]
	if m.started {
		t.Fatal("the restored machine ran before any resume")
	}
	mustDo(t, d, Pause{}) // paused already: fine, and still not started
	mustDo(t, d, Resume{})
	if !m.started || d.State() != Running {
		t.Fatalf("after resume: started %v, state %v", m.started, d.State())
	}
	if _, err := do(t, d, load); err == nil {
		t.Fatal("a second load after the VM runs was accepted")
	}
}

func TestSnapshotLoadResumeVM(t *testing.T) {
	state, mem := savedSnapshot(t)
	d, b := freshController(t)
	mustDo(t, d, LoadSnapshot{Params: vmconfig.LoadSnapshotParams{SnapshotPath: state, ResumeVM: true,
		MemBackend: vmconfig.MemBackendConfig{BackendPath: vmconfig.PathBuf(mem), BackendType: vmconfig.MemBackendFile}}})
	if !b.restored[0].started || d.State() != Running {
		t.Fatalf("resume_vm: started %v, state %v", b.restored[0].started, d.State())
	}
}

// TestSnapshotLoadFailures: each failed load answers Firecracker's text and
// then ends the process (exit code 1).
func TestSnapshotLoadFailures(t *testing.T) {
	state, mem := savedSnapshot(t)
	dir := filepath.Dir(state)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	file := vmconfig.MemBackendConfig{BackendPath: vmconfig.PathBuf(mem), BackendType: vmconfig.MemBackendFile}
	for _, tc := range []struct {
		name string
		p    vmconfig.LoadSnapshotParams
		want string
	}{
		{"missing", vmconfig.LoadSnapshotParams{SnapshotPath: filepath.Join(dir, "nope"), MemBackend: file},
			"Load snapshot error: Failed to restore from snapshot: Failed to get snapshot state from file: Failed to open snapshot file: No such file or directory (os error 2)"},
		{"empty", vmconfig.LoadSnapshotParams{SnapshotPath: empty, MemBackend: file},
			"Load snapshot error: Failed to restore from snapshot: Failed to get snapshot state from file: Failed to load snapshot state from file: IO Error: File too short to contain CRC"},
		{"unknown iface", vmconfig.LoadSnapshotParams{SnapshotPath: state, MemBackend: file,
			NetworkOverrides: []vmconfig.NetworkOverride{{IfaceID: "eth9", HostDevName: "tap9"}}},
			"Load snapshot error: Failed to restore from snapshot: Failed to get snapshot state from file: Unknown Network Device."},
		{"no vsock", vmconfig.LoadSnapshotParams{SnapshotPath: state, MemBackend: file, VsockOverride: &vmconfig.VsockOverride{UDSPath: "/x"}},
			"Load snapshot error: Failed to restore from snapshot: Failed to get snapshot state from file: Unknown Vsock Device."},
		{"hugetlbfs from file", vmconfig.LoadSnapshotParams{SnapshotPath: state, MemBackend: file, HugePages: "2M"},
			"Load snapshot error: " + errHugetlbFile.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, b := freshController(t)
			_, err := do(t, d, LoadSnapshot{Params: tc.p})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v\nwant %s", err, tc.want)
			}
			select {
			case e := <-d.Exited():
				if e.Code != ExitGenericError {
					t.Errorf("exit code %d, want %d", e.Code, ExitGenericError)
				}
			default:
				t.Error("a failed load did not end the process")
			}
			if len(b.restoreSpecs) != 0 || d.State() != NotStarted {
				t.Errorf("backend reached (%d) or state changed (%v)", len(b.restoreSpecs), d.State())
			}
		})
	}
}

// TestSnapshotOtherBackend: a file from another backend is refused by name.
func TestSnapshotOtherBackend(t *testing.T) {
	state, mem := savedSnapshot(t)
	f, err := snapshot.Read(state)
	if err != nil {
		t.Fatal(err)
	}
	f.Backend = "other"
	if err := snapshot.Write(state, f); err != nil {
		t.Fatal(err)
	}
	d, _ := freshController(t)
	_, err = do(t, d, LoadSnapshot{Params: vmconfig.LoadSnapshotParams{SnapshotPath: state,
		MemBackend: vmconfig.MemBackendConfig{BackendPath: vmconfig.PathBuf(mem), BackendType: vmconfig.MemBackendFile}}})
	if err == nil || !strings.Contains(err.Error(), "other") || !strings.Contains(err.Error(), "fake") {
		t.Fatalf("err = %v, want a refusal naming both backends", err)
	}
}

// TestSnapshotCreateFailureLeavesNoState: a state file that cannot be
// written answers Firecracker's text and leaves nothing at the path.
func TestSnapshotCreateFailureLeavesNoState(t *testing.T) {
	c, _ := bootedForSnapshot(t)
	dir := t.TempDir()
	mustDo(t, c, Pause{})
	state := filepath.Join(dir, "missing-dir", "s")
	_, err := do(t, c, CreateSnapshot{Params: vmconfig.CreateSnapshotParams{SnapshotPath: vmconfig.PathBuf(state), MemFilePath: vmconfig.PathBuf(filepath.Join(dir, "m"))}})
	if want := "Create snapshot error: Cannot perform open on the snapshot backing file: No such file or directory (os error 2)"; err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if c.State() != Paused {
		t.Errorf("state %v after a failed create, want Paused", c.State())
	}
}

// TestSavedConfigRoundTrip: every field of the saved configuration reads
// back as it was written, including those with their own wire forms (a
// MAC address is a string, as the API shows it).
func TestSavedConfigRoundTrip(t *testing.T) {
	mac, err := vmconfig.ParseMAC("06:00:ac:10:00:02")
	if err != nil {
		t.Fatal(err)
	}
	in := vmconfig.VMMConfig{NetworkInterfaces: []vmconfig.NetworkInterfaceConfig{{IfaceID: "eth0", HostDevName: "tap0", GuestMAC: &mac}}}
	b, err := strictjson.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"guest_mac":"06:00:ac:10:00:02"`) {
		t.Errorf("saved configuration: %s", b)
	}
	var out vmconfig.VMMConfig
	if err := strictjson.Unmarshal(b, &out); err != nil {
		t.Fatalf("the saved configuration does not read back: %v\n%s", err, b)
	}
	if len(out.NetworkInterfaces) != 1 || out.NetworkInterfaces[0].GuestMAC == nil || *out.NetworkInterfaces[0].GuestMAC != mac {
		t.Errorf("read back: %+v", out.NetworkInterfaces)
	}
}
