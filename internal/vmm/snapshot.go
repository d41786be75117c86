package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/snapshot"
	"github.com/ember-vmm/ember/internal/strictjson"
	"github.com/ember-vmm/ember/internal/syserr"
	"github.com/ember-vmm/ember/internal/vmconfig"
)

// The controller's part of a state file: the configuration the VM was
// built from, as GET /vm/config shows it, so a load rebuilds the same
// devices (re-opening drives and taps by name, re-binding the vsock
// socket, as Firecracker does) and answers GET /vm/config with the saved
// configuration. The MMDS data store, the logger, metrics and serial
// configuration are not saved, as in Firecracker.
const vmmSection = "vmm"

// vmmLayout is the version of savedVM's layout.
const vmmLayout = 1

type savedVM struct {
	Layout int             `json:"layout"`
	Config json.RawMessage `json:"config"`
}

// Firecracker's texts for the errors of a load.
const (
	restoreFailed = "Failed to restore from snapshot: "
	stateFailed   = restoreFailed + "Failed to get snapshot state from file: "
	buildFailed   = restoreFailed + "Failed to build microVM from snapshot: "
	memoryFailed  = restoreFailed + "Failed to load guest memory: "
)

var (
	errUnknownNet   = errors.New(stateFailed + "Unknown Network Device.")
	errUnknownVsock = errors.New(stateFailed + "Unknown Vsock Device.")
	errHugetlbFile  = errors.New(memoryFailed + "Error creating guest memory from file: Cannot restore hugetlbfs backed snapshot by mapping the memory file. Please use uffd.")
	errSaveRunning  = errors.New("Cannot save the microVM state: Operation not allowed: save/restore unavailable while running")
)

func (c *Controller) createSnapshot(ctx context.Context, p vmconfig.CreateSnapshotParams) error {
	diff := p.SnapshotType == vmconfig.SnapshotDiff
	if diff {
		c.log.Warnf("Virtual machine diff snapshots is in development preview.")
	}
	if c.state != Paused {
		return errSaveRunning
	}
	s, ok := c.machine.(hypervisor.Snapshotter)
	if !ok || !c.res.Caps.Snapshot || diff && !c.res.Caps.DiffSnapshot {
		what := "snapshots"
		if diff {
			what = "diff snapshots"
		}
		return hypervisor.Unsupported(c.res.Backend, what)
	}
	start := time.Now()
	cfg, err := strictjson.Marshal(c.res.FullConfig())
	if err != nil {
		return fmt.Errorf("Cannot serialize the microVM state: %w", err)
	}
	f := &snapshot.File{Header: snapshot.Header{EmberVersion: c.cfg.Version, Backend: c.res.Backend}}
	if err := f.AddJSON(vmmSection, savedVM{Layout: vmmLayout, Config: cfg}); err != nil {
		return fmt.Errorf("Cannot serialize the microVM state: %w", err)
	}
	// Memory first, the state file last and atomically: a state file only
	// ever stands beside a complete memory file.
	if err := s.SaveSnapshot(ctx, hypervisor.SaveRequest{MemPath: string(p.MemFilePath), Diff: diff}, f); err != nil {
		return fileError("memory", err)
	}
	if err := snapshot.Write(string(p.SnapshotPath), f); err != nil {
		return fileError("snapshot", err)
	}
	us := uint64(time.Since(start).Microseconds())
	what := "full"
	g := &c.cfg.Metrics.Latencies.VMMFullCreateSnapshot
	if diff {
		what, g = "diff", &c.cfg.Metrics.Latencies.VMMDiffCreateSnapshot
	}
	g.Set(us)
	c.log.Infof("'create %s snapshot' VMM action took %d us.", what, us)
	return nil
}

// fileError words a failure to write a snapshot file as Firecracker does.
func fileError(which string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("Cannot perform %s on the %s backing file: %s", pe.Op, which, syserr.Display(pe.Err))
	}
	return fmt.Errorf("Cannot save the microVM state: %w", err)
}

func (c *Controller) loadSnapshot(ctx context.Context, p vmconfig.LoadSnapshotParams) (err error) {
	if c.bootPath {
		err := errors.New("Loading a microVM snapshot not allowed after configuring boot-specific resources.")
		c.log.Infof("%s", err)
		return err
	}
	// From here a failure is fatal, as in Firecracker: the answer is sent,
	// then the process ends with code 1.
	defer func() {
		if err != nil {
			c.requestExit(Exit{Code: ExitGenericError, Reason: "snapshot load failed",
				Message: "Failed to build MicroVM: Loading snapshot failed..", Debug: "BuildMicroVmError(Restore)"})
		}
	}()
	start := time.Now()
	f, err := snapshot.Load(p.SnapshotPath, c.res.Backend)
	if err != nil {
		var oe *snapshot.OpenError
		if errors.As(err, &oe) {
			return errors.New(stateFailed + "Failed to open snapshot file: " + syserr.Display(oe.Err))
		}
		return errors.New(stateFailed + "Failed to load snapshot state from file: " + err.Error())
	}
	r, ok := c.cfg.Backend.(hypervisor.Restorer)
	if !ok || !c.res.Caps.Snapshot {
		return hypervisor.Unsupported(c.res.Backend, "snapshots")
	}
	var saved savedVM
	if err := f.JSON(vmmSection, &saved); err != nil {
		return errors.New(stateFailed + "Failed to load snapshot state from file: " + err.Error())
	}
	if saved.Layout != vmmLayout {
		return errors.New(stateFailed + fmt.Sprintf("Failed to load snapshot state from file: %v: configuration layout %d, this ember reads %d", snapshot.ErrVersion, saved.Layout, vmmLayout))
	}
	var cfg vmconfig.VMMConfig
	if err := strictjson.Unmarshal(saved.Config, &cfg); err != nil {
		return errors.New(stateFailed + "Failed to load snapshot state from file: " + err.Error())
	}
	if err := applyOverrides(&cfg, p); err != nil {
		return err
	}
	uffd := p.MemBackend.BackendType == vmconfig.MemBackendUffd
	if uffd && !c.res.Caps.SnapshotUffd {
		return errors.New(memoryFailed + "Error creating guest memory from uffd: " + hypervisor.Unsupported(c.res.Backend, "the Uffd memory backend").Error())
	}
	hp, err := restoreHugePages(cfg.MachineConfig, p)
	if err != nil {
		return err
	}
	if err := c.applyRestored(&cfg, p.TrackDirtyPages, hp); err != nil {
		return errors.New(buildFailed + err.Error())
	}
	spec, err := c.res.Spec(c.cfg.ID)
	if err != nil {
		return errors.New(buildFailed + err.Error())
	}
	env, console, err := c.machineEnv()
	if err != nil {
		return errors.New(buildFailed + err.Error())
	}
	req := hypervisor.RestoreRequest{MemPath: string(p.MemBackend.BackendPath), Uffd: uffd, HugePages: hypervisor.HugePages(hp), ClockRealtime: p.ClockRealtime}
	m, err := r.Restore(ctx, spec, env, f, req)
	if err != nil {
		console.Close()
		return errors.New(restoreFailed + err.Error())
	}
	c.machine, c.console = m, console
	c.pendingStart = true
	c.state = Paused
	c.record(Paused.String(), "PUT /snapshot/load")
	c.machineUp(spec)
	if p.ResumeVM {
		if err := c.resume(ctx); err != nil {
			return err
		}
	}
	us := uint64(time.Since(start).Microseconds())
	c.cfg.Metrics.Latencies.VMMLoadSnapshot.Set(us)
	c.log.Debugf("'load snapshot' VMM action took %d us.", us)
	return nil
}

// applyOverrides swaps the taps and the vsock socket a load names.
func applyOverrides(cfg *vmconfig.VMMConfig, p vmconfig.LoadSnapshotParams) error {
	for _, o := range p.NetworkOverrides {
		found := false
		for i := range cfg.NetworkInterfaces {
			if cfg.NetworkInterfaces[i].IfaceID == o.IfaceID {
				cfg.NetworkInterfaces[i].HostDevName = o.HostDevName
				found = true
			}
		}
		if !found {
			return errUnknownNet
		}
	}
	if p.VsockOverride != nil {
		if cfg.Vsock == nil {
			return errUnknownVsock
		}
		cfg.Vsock.UDSPath = p.VsockOverride.UDSPath
	}
	return nil
}

// restoreHugePages resolves the load's huge_pages against the saved
// machine: "Snapshot" (the default) keeps what was saved. Hugetlbfs pages
// cannot come from a mapped memory file.
func restoreHugePages(m *vmconfig.MachineConfig, p vmconfig.LoadSnapshotParams) (vmconfig.HugePages, error) {
	hp := vmconfig.HugePagesNone
	if m != nil && m.HugePages != "" {
		hp = m.HugePages
	}
	switch p.HugePages {
	case "", "Snapshot":
	default:
		hp = vmconfig.HugePages(p.HugePages)
	}
	if hp == vmconfig.HugePages2M && p.MemBackend.BackendType != vmconfig.MemBackendUffd {
		return "", errHugetlbFile
	}
	return hp, nil
}

// applyRestored configures the resources as the saved VM was, with the
// load's dirty-page tracking and huge pages. Taps are opened and the vsock
// socket bound here, as at PUT time on a fresh VM.
func (c *Controller) applyRestored(cfg *vmconfig.VMMConfig, trackDirty bool, hp vmconfig.HugePages) error {
	if cfg.MachineConfig == nil {
		return errors.New("the snapshot holds no machine configuration")
	}
	m := *cfg.MachineConfig
	u := vmconfig.UpdateFromPut(m)
	u.TrackDirtyPages, u.HugePages = &trackDirty, &hp
	if err := c.res.UpdateMachineConfig(&u); err != nil {
		return err
	}
	c.res.RestoreBootSource(cfg.BootSource)
	if prefix, err := c.applyDevices(cfg, func() error { return nil }); err != nil {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	return nil
}
