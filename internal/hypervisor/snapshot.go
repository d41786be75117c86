package hypervisor

import (
	"context"

	"github.com/ember-vmm/ember/internal/snapshot"
)

// Snapshots. The controller owns the state file: it fills the header's
// common fields, adds its own section (the VM configuration) and writes the
// file atomically with package snapshot. A backend owns guest memory and
// its own sections: it writes the memory file and adds what it needs to
// rebuild the machine. A backend claiming Capabilities.Snapshot implements
// Snapshotter on its machines and Restorer on itself.

// Snapshotter saves a paused machine.
type Snapshotter interface {
	// SaveSnapshot writes guest RAM to req.MemPath as Firecracker's memory
	// file (the regions back to back in guest-address order, the file as
	// long as guest RAM), sets f.Regions and f.MemSize, and appends the
	// backend's sections to f. The machine is paused and stays paused. A
	// failure leaves no memory file that looks complete at req.MemPath
	// (a Diff into an existing file may have merged some pages into it,
	// as Firecracker's does). Errors writing the file are *fs.PathError
	// naming the step, as package snapshot's writers return them, so the
	// controller can word them as Firecracker does. A restored machine that
	// has not started yet may be saved too.
	SaveSnapshot(ctx context.Context, req SaveRequest, f *snapshot.File) error
}

// SaveRequest is what PUT /snapshot/create asks of a backend.
type SaveRequest struct {
	MemPath string
	// Diff writes only the pages written since the last snapshot (or since
	// the start, for the first): with Spec.TrackDirtyPages from the dirty
	// log, otherwise from what is resident. An existing file of the right
	// size is written in place, so a diff merges onto its base.
	Diff bool
}

// Restorer is a backend that builds machines from snapshots.
type Restorer interface {
	// Restore builds the machine spec describes (the configuration the
	// controller kept in the state file, with the load's overrides applied)
	// from the backend's sections of f and the memory file req.MemPath.
	// Nothing is loaded from spec.Boot. The machine is not running: its
	// first Start continues the guest from the saved state. A failed
	// Restore leaves nothing behind.
	Restore(ctx context.Context, spec *Spec, env Env, f *snapshot.File, req RestoreRequest) (Machine, error)
}

// RestoreRequest is what PUT /snapshot/load asks of a backend.
type RestoreRequest struct {
	// MemPath is the memory file (mem_backend File). Guest RAM maps it
	// privately, so the guest's writes never reach the file and several
	// VMs may restore from one file at once. With Uffd it is the Unix
	// socket of a page-fault handler instead.
	MemPath string
	// Uffd is mem_backend Uffd: guest RAM starts empty, registered with a
	// userfaultfd that is handed to the handler at MemPath, which fills
	// each page when it is first touched.
	Uffd bool
	// HugePages is the load's huge_pages ("" or "Snapshot": as saved).
	HugePages HugePages
	// ClockRealtime is the load's clock_realtime: the guest's clock moves
	// on by the wall-clock time since the snapshot instead of resuming
	// where it stopped.
	ClockRealtime bool
}
