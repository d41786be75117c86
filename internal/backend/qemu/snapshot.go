package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/snapshot"
)

// Snapshots on QEMU. Guest RAM is a memfd ember creates (in 2 MiB huge
// pages when asked) and QEMU maps shared (memory-backend-file on
// /dev/fd/N, share=on), so ember writes Firecracker's plain memory file
// from its own descriptor, and QEMU's migration stream, with capability
// x-ignore-shared, carries only the CPU, device and ROM state (tens of
// kilobytes). A snapshot is that stream, read from a pipe passed with
// getfd, stored raw in the state file beside a small JSON section.
//
// A restore starts a QEMU with the same device layout and -incoming defer,
// guest RAM in a fresh memfd filled from the memory file, and feeds the
// stream back. The memory file is copied rather than mapped privately:
// QEMU 7.2 leaves only shared RAM out of its stream, so a guest on a
// private mapping could never be snapshotted again without its whole RAM
// in the state file. The copy reads only the file's data extents and
// stores only non-zero pages, and it never writes to the file, so any
// number of VMs may restore from one file at once.
//
// After a snapshot QEMU sits in "postmigrate" with its block nodes
// inactive (flushed); "cont" reactivates them, so Resume works as usual.
// QEMU refuses another migration before the guest has run again; its
// state has not changed meanwhile, so a second snapshot of the same pause
// reuses the first one's stream.
//
// Diff snapshots write the pages guest RAM holds (the memfd's data
// extents: every page ever touched, including swapped-out ones), the
// over-approximation Firecracker makes with mincore when dirty-page
// tracking is off. QEMU exposes no dirty log of its own guest RAM, so
// track_dirty_pages compares page hashes instead (see pageSums).
//
// Devices ember runs over vhost-user map the same memfd. Drives and
// interfaces among them migrate (see unmigratable); vsock and the
// rate-limited entropy device do not.
//
// Not covered: VMs with vsock or a rate-limited entropy device (QEMU 7.2
// cannot migrate their vhost-user devices), and huge_pages Transparent,
// where guest RAM is QEMU's anonymous memory (a memfd would lose the huge
// pages on hosts whose shmem THP policy is "never").

// Section names in the state file.
const (
	sectionQEMU      = "qemu"
	sectionMigration = "qemu-migration"
)

// savedLayout is the version of savedQEMU's layout.
const savedLayout = 1

// maxMigrationState bounds the device state read from QEMU: it is
// kilobytes; more means RAM got into the stream.
const maxMigrationState = snapshot.MaxSize / 2

// savedQEMU is the backend's JSON section.
type savedQEMU struct {
	Layout int `json:"layout"`
	// QEMUVersion wrote the migration stream; a restore names it when
	// another version refuses the stream.
	QEMUVersion string `json:"qemu_version"`
	// Accel is the accelerator the guest ran on: the CPU model follows
	// from it, and the stream only loads into the same one.
	Accel string `json:"accel"`
	// MACs are the guest MACs of the nets, in spec order (random ones
	// included, which the guest has seen).
	MACs []string `json:"macs"`
}

// snapState is what a machine keeps for snapshots.
type snapState struct {
	ram   *snapRAM // nil: QEMU owns guest RAM, no snapshots
	accel accel
	macs  []string
	// blocked says why QEMU cannot save this VM (nil if it can).
	blocked error
	mu      sync.Mutex // one snapshot at a time
	// last is the device state of the last snapshot. QEMU refuses a
	// second migration until the guest has run again ("postmigrate"),
	// and until then its state is the same, so a second snapshot of the
	// same pause (a Full, then a Diff) reuses it.
	last []byte
}

func (s *snapState) close() {
	if s != nil {
		s.ram.close()
	}
}

// snapRAM is guest RAM as a memfd ember owns.
type snapRAM struct {
	fd   *os.File
	size uint64
	// hugetlb: in 2 MiB huge pages (which take no write(2)).
	hugetlb bool
	// filled is how long a restore's copy from the memory file took.
	filled time.Duration
	// sums is track_dirty_pages (nil without it).
	sums *pageSums
}

func (r *snapRAM) close() {
	if r != nil && r.fd != nil {
		r.fd.Close()
	}
}

// restoreInputs are what a launch for a restore needs.
type restoreInputs struct {
	memPath string
	macs    []string
}

// belowFourG is where microvm splits guest RAM: up to 3 GiB at address 0,
// the rest from 4 GiB.
const belowFourG = 3 << 30

// ramRegions is microvm's guest RAM layout for size bytes: the memfd holds
// the regions back to back in guest-address order, which is exactly the
// memory file's shape.
func ramRegions(size uint64) []snapshot.Region {
	if size <= belowFourG {
		return []snapshot.Region{{GPA: 0, Size: size}}
	}
	return []snapshot.Region{{GPA: 0, Size: belowFourG}, {GPA: 1 << 32, Size: size - belowFourG}}
}

// fileOffset maps a guest address range to its offset in the memfd.
func fileOffset(regions []snapshot.Region, gpa, n uint64) (uint64, error) {
	var off uint64
	for _, r := range regions {
		if gpa >= r.GPA && gpa+n <= r.GPA+r.Size {
			return off + gpa - r.GPA, nil
		}
		off += r.Size
	}
	return 0, fmt.Errorf("guest range %#x+%#x is not RAM", gpa, n)
}

var _ hypervisor.Snapshotter = (*machine)(nil)
var _ hypervisor.Restorer = (*Backend)(nil)

// SaveSnapshot writes guest RAM to req.MemPath and the device state into
// f. The VM must be paused; it stays paused.
func (m *machine) SaveSnapshot(ctx context.Context, req hypervisor.SaveRequest, f *snapshot.File) error {
	if err := m.snapshotable(); err != nil {
		return err
	}
	s := m.snap
	s.mu.Lock()
	defer s.mu.Unlock()
	var st struct {
		Running bool   `json:"running"`
		Status  string `json:"status"`
	}
	if err := m.run(ctx, "query-status", nil, &st); err != nil {
		return err
	}
	if st.Running {
		return errors.New("the VM is running; pause it first")
	}
	start := time.Now()
	state := s.last
	if st.Status != "postmigrate" || state == nil {
		var err error
		if state, err = m.migrateOut(ctx); err != nil {
			return fmt.Errorf("saving the device state: %w", err)
		}
		s.last = state
	}
	migrated := time.Since(start)
	regions := ramRegions(s.ram.size)
	read := s.ram.reader(regions)
	// With track_dirty_pages, the pages changed since the last snapshot
	// (or the boot, or the load); every snapshot, Full or Diff, is the
	// next baseline, as a Full resets Firecracker's dirty log.
	var dirty [][]uint64
	var next []uint64
	switch {
	case s.ram.sums != nil && req.Diff:
		var err error
		if dirty, next, err = s.ram.changed(regions); err != nil {
			return fmt.Errorf("finding the pages changed since the last snapshot: %w", err)
		}
	case s.ram.sums != nil:
		// A Full reads every page anyway: hash them on the way.
		next = make([]uint64, len(s.ram.sums.sums))
		read = s.ram.sums.recording(regions, read, next)
	}
	if req.Diff {
		if dirty == nil {
			var err error
			if dirty, err = s.ram.resident(regions); err != nil {
				return fmt.Errorf("finding the pages guest RAM holds: %w", err)
			}
		}
		if err := snapshot.WriteMemoryDiff(req.MemPath, regions, dirty, read); err != nil {
			return err
		}
	} else if err := snapshot.WriteMemory(req.MemPath, regions, read); err != nil {
		return err
	}
	if next != nil {
		s.ram.sums.sums = next
	}
	m.log.Debugf("snapshot: device state %d bytes in %v, guest memory (%d MiB) in %v",
		len(state), migrated.Round(time.Microsecond), s.ram.size>>20, (time.Since(start) - migrated).Round(time.Microsecond))
	f.MemSize, f.Regions = s.ram.size, regions
	v := m.qmp.Greeting().Version
	if err := f.AddJSON(sectionQEMU, savedQEMU{
		Layout: savedLayout, QEMUVersion: fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro),
		Accel: string(s.accel), MACs: s.macs,
	}); err != nil {
		return err
	}
	return f.AddRaw(sectionMigration, state)
}

// snapshotable says why this machine cannot be saved, if it cannot.
func (m *machine) snapshotable() error {
	switch {
	case m.snap != nil && m.snap.blocked != nil:
		return m.snap.blocked
	case m.snap == nil || m.snap.ram == nil:
		return hypervisor.Unsupported(Name, "snapshots of a VM with huge_pages Transparent (its guest RAM is QEMU's own anonymous memory)")
	}
	return m.ended()
}

// unmigratable says why QEMU cannot save a VM spec describes, if it
// cannot. Drives and interfaces whose devices run in ember over vhost-user
// migrate: QEMU's virtio-net and vhost-user-blk carry the transport and
// queue positions, and ember's devices keep no other state a snapshot
// needs (their rate limiters start full after a load, on kvm too). QEMU
// 7.2's vhost-user-vsock-device and vhost-user-rng cannot be migrated at
// all.
func unmigratable(spec *hypervisor.Spec) error {
	switch {
	case spec.Vsock != nil:
		return hypervisor.Unsupported(Name, "snapshots of a VM with vsock (QEMU's vhost-user-vsock-device, through which ember's vsock device runs, cannot be migrated)")
	case goEntropy(spec.Entropy):
		return hypervisor.Unsupported(Name, "snapshots of a VM with a rate-limited entropy device (QEMU's vhost-user-rng, through which ember's limited entropy device runs, cannot be migrated)")
	}
	return nil
}

// ignoreShared keeps guest RAM (shared) out of QEMU's migration stream.
var ignoreShared = map[string]any{
	"capabilities": []any{map[string]any{"capability": "x-ignore-shared", "state": true}},
}

// migrationStatus is query-migrate's answer, in the parts ember reads.
type migrationStatus struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
}

// waitMigration polls QEMU until the migration in progress ends.
func (m *machine) waitMigration(ctx context.Context) error {
	for {
		var st migrationStatus
		if err := m.run(ctx, "query-migrate", nil, &st); err != nil {
			return err
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			if st.ErrorDesc == "" {
				st.ErrorDesc = "QEMU's migration " + st.Status
			}
			return errors.New(st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			m.run(context.WithoutCancel(ctx), "migrate_cancel", nil, nil)
			return ctx.Err()
		case <-m.procDone:
			return ErrEnded
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// migrateOut has QEMU write its state (RAM left out) into a pipe and
// returns it.
func (m *machine) migrateOut(ctx context.Context) ([]byte, error) {
	if err := m.run(ctx, "migrate-set-capabilities", ignoreShared, nil); err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	err = m.qmp.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "ember-snapshot"}, w, nil)
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("passing the state pipe to QEMU: %w", err)
	}
	type result struct {
		b   []byte
		err error
	}
	read := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(r, maxMigrationState+1))
		if err == nil && len(b) > maxMigrationState {
			err = fmt.Errorf("QEMU's device state exceeds %d bytes", maxMigrationState)
		}
		if err != nil {
			r.Close() // QEMU's writes fail and so does its migration
		}
		read <- result{b, err}
	}()
	if err := m.run(ctx, "migrate", map[string]string{"uri": "fd:ember-snapshot"}, nil); err != nil {
		m.run(context.WithoutCancel(ctx), "closefd", map[string]string{"fdname": "ember-snapshot"}, nil)
		<-read
		return nil, err
	}
	werr := m.waitMigration(ctx)
	res := <-read // QEMU has closed its end once the migration ended
	switch {
	case res.err != nil:
		return nil, res.err
	case werr != nil:
		return nil, werr
	}
	return res.b, nil
}

// Restore starts a QEMU with spec's devices, guest RAM from the memory
// file and the saved device state; the first Start continues the guest.
func (b *Backend) Restore(ctx context.Context, spec *hypervisor.Spec, env hypervisor.Env, f *snapshot.File, req hypervisor.RestoreRequest) (hypervisor.Machine, error) {
	if spec == nil || f == nil {
		return nil, errors.New("qemu: no VM spec or snapshot")
	}
	if err := checkMachine(spec); err != nil {
		return nil, err
	}
	if err := unmigratable(spec); err != nil {
		return nil, err
	}
	if req.ClockRealtime {
		// QEMU's stream restores the guest clock where it stopped and has
		// no way to move it on by the time since.
		return nil, hypervisor.Unsupported(Name, "clock_realtime")
	}
	var saved savedQEMU
	if err := f.JSON(sectionQEMU, &saved); err != nil {
		return nil, err
	}
	if saved.Layout != savedLayout {
		return nil, fmt.Errorf("%w: qemu section layout %d, this ember reads %d", snapshot.ErrVersion, saved.Layout, savedLayout)
	}
	if len(saved.MACs) != len(spec.Nets) {
		return nil, fmt.Errorf("%w: the snapshot has %d network interfaces, the configuration %d", snapshot.ErrCorrupt, len(saved.MACs), len(spec.Nets))
	}
	state, err := f.Raw(sectionMigration)
	if err != nil {
		return nil, err
	}
	size := spec.MemMiB << 20
	if !sameRegions(f.Regions, ramRegions(size)) || f.MemSize != size {
		return nil, fmt.Errorf("%w: the snapshot's guest memory layout does not match a %d MiB guest", snapshot.ErrCorrupt, spec.MemMiB)
	}
	if req.MemPath == "" {
		return nil, errors.New("no memory file")
	}
	start := time.Now()
	m, err := b.launch(ctx, spec, env, &restoreInputs{memPath: req.MemPath, macs: saved.MACs})
	if err != nil {
		return nil, err
	}
	launched := time.Since(start)
	if string(m.snap.accel) != saved.Accel {
		m.Close()
		return nil, fmt.Errorf("the snapshot was taken under the %s accelerator and cannot continue under %s", saved.Accel, m.snap.accel)
	}
	if err := m.migrateIn(ctx, state); err != nil {
		err = m.restoreError(err, saved.QEMUVersion)
		m.Close()
		return nil, err
	}
	if err := m.configure(ctx); err != nil {
		m.Close()
		return nil, err
	}
	m.log.Debugf("restore: QEMU up with guest memory in %v (memory file copied in %v), device state loaded in %v",
		launched.Round(time.Microsecond), m.snap.ram.filled.Round(time.Microsecond), (time.Since(start) - launched).Round(time.Microsecond))
	return m, nil
}

func sameRegions(a, b []snapshot.Region) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// migrateIn feeds the saved state to a QEMU waiting with -incoming defer.
func (m *machine) migrateIn(ctx context.Context, state []byte) error {
	if err := m.run(ctx, "migrate-set-capabilities", ignoreShared, nil); err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	err = m.qmp.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "ember-restore"}, r, nil)
	r.Close()
	if err != nil {
		w.Close()
		return fmt.Errorf("passing the state pipe to QEMU: %w", err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := w.Write(state)
		w.Close()
		wrote <- err
	}()
	if err := m.run(ctx, "migrate-incoming", map[string]string{"uri": "fd:ember-restore"}, nil); err != nil {
		w.Close()
		m.run(context.WithoutCancel(ctx), "closefd", map[string]string{"fdname": "ember-restore"}, nil)
		<-wrote
		return err
	}
	err = m.waitMigration(ctx)
	if err != nil {
		w.Close() // unblocks the writer if QEMU stopped reading
	}
	if werr := <-wrote; err == nil && werr != nil {
		err = fmt.Errorf("writing the device state to QEMU: %w", werr)
	}
	return err
}

// restoreError explains a failed load: QEMU exits when a stream does not
// load, and its last words say why.
func (m *machine) restoreError(err error, savedVersion string) error {
	select {
	case <-m.procDone:
	case <-time.After(time.Second):
	}
	msg := err.Error()
	if t := strings.TrimSpace(m.stderr.tail()); t != "" {
		msg = lastLine(t)
	}
	v := m.qmp.Greeting().Version
	if now := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro); savedVersion != "" && savedVersion != now {
		msg += fmt.Sprintf(" (the snapshot was written by QEMU %s, this is QEMU %s)", savedVersion, now)
	}
	return fmt.Errorf("QEMU could not load the device state: %s", msg)
}
