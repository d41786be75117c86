//go:build linux

package kvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/legacy"
	"github.com/ember-vmm/ember/internal/snapshot"
	"github.com/ember-vmm/ember/internal/virtio/balloon"
	"github.com/ember-vmm/ember/internal/virtio/net"
	"github.com/ember-vmm/ember/internal/virtio/vsock"
)

// Snapshots. SaveSnapshot stops every virtio device (its transport's
// Quiesce) so nothing writes guest RAM or moves a ring while the state is
// read, saves the vCPUs on their own threads and the VM, writes guest RAM,
// and then starts the devices again from the state it just saved — the
// path a restore takes, so a VM that carries on after a snapshot runs the
// same code as its clones. Restore builds a machine as Create does, with
// RAM a private mapping of the memory file and the saved state loaded
// into the vCPUs, the VM and the devices instead of a kernel.
//
// Vsock connections do not survive a snapshot, as on Firecracker: the
// device drops them when it stops, and once it runs again (in the saved VM
// and in every restored one) it sends the guest a TRANSPORT_RESET event,
// so guest sockets reset and listeners accept anew.

var (
	_ hypervisor.Snapshotter = (*machine)(nil)
	_ hypervisor.Restorer    = (*Backend)(nil)
)

// errHugetlbFile is Firecracker's refusal to map a memory file into
// hugetlbfs pages.
var errHugetlbFile = errors.New("Failed to load guest memory: Error creating guest memory from file: Cannot restore hugetlbfs backed snapshot by mapping the memory file. Please use uffd.")

// restoreData is the snapshot Restore is loading.
type restoreData struct {
	file          *snapshot.File
	memFile       *os.File // mem_backend File
	uffdPath      string   // mem_backend Uffd: the page-fault handler's socket
	machine       *machineState
	clockRealtime bool
}

// checkLayout requires the guest RAM layout the configuration gives to be
// the one the memory file holds.
func (r *restoreData) checkLayout(layout []guestmem.Region) error {
	if len(layout) != len(r.file.Regions) {
		return fmt.Errorf("%w: the snapshot has %d memory regions, the configuration %d", errState, len(r.file.Regions), len(layout))
	}
	var total uint64
	for i, l := range layout {
		if f := r.file.Regions[i]; f.GPA != l.GPA || f.Size != l.Size {
			return fmt.Errorf("%w: memory region %d is %#x+%#x in the snapshot, %#x+%#x in the configuration", errState, i, f.GPA, f.Size, l.GPA, l.Size)
		}
		total += l.Size
	}
	if total != r.file.MemSize {
		return fmt.Errorf("%w: the snapshot's memory is %d bytes, its regions %d", errState, r.file.MemSize, total)
	}
	return nil
}

// savedDevice is a virtio device stopped for a snapshot and the state it
// resumes from.
type savedDevice struct {
	slot  virtioSlot
	state *virtioState
}

// SaveSnapshot implements hypervisor.Snapshotter.
func (m *machine) SaveSnapshot(ctx context.Context, req hypervisor.SaveRequest, f *snapshot.File) error {
	if f == nil {
		return errors.New("kvm: no snapshot file")
	}
	m.mu.Lock()
	switch {
	case m.stopping || m.closed:
		m.mu.Unlock()
		return errors.New("kvm: the VM has ended")
	case m.started && (!m.paused || m.parked != m.live):
		m.mu.Unlock()
		return errors.New("kvm: the VM is not paused")
	case m.snapshotting:
		m.mu.Unlock()
		return errors.New("kvm: a snapshot is already being taken")
	}
	m.snapshotting = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.snapshotting = false
		m.notifyLocked()
		m.mu.Unlock()
	}()

	start := time.Now()
	devs, err := m.quiesceDevices()
	// Whatever happens, the devices run again once the state is saved.
	defer func() {
		if rerr := m.resumeDevices(devs); rerr != nil {
			m.log.Errorf("Failed to resume the devices after a snapshot: %v", rerr)
		}
	}()
	if err != nil {
		return err
	}
	cpu, err := m.archSaveCPU(ctx)
	if err != nil {
		return err
	}
	ms := machineState{Version: machineStateVersion, VCPUs: len(m.vcpus)}
	for _, d := range devs {
		ms.Devices = append(ms.Devices, d.slot.name)
	}
	if err := f.AddJSON(sectionMachine, &ms); err != nil {
		return err
	}
	if err := f.AddRaw(sectionCPU, cpu); err != nil {
		return err
	}
	if err := f.AddJSON(sectionDevicePrefix+deviceSerial, m.serial.SaveState()); err != nil {
		return err
	}
	if err := f.AddJSON(sectionDevicePrefix+deviceI8042, m.i8042.SaveState()); err != nil {
		return err
	}
	for _, d := range devs {
		if err := f.AddJSON(sectionDevicePrefix+d.slot.name, d.state); err != nil {
			return err
		}
	}
	stateDone := time.Now()
	if err := m.saveMemory(req); err != nil {
		return err
	}
	var regions []snapshot.Region
	for _, r := range m.mem.Regions() {
		regions = append(regions, snapshot.Region{GPA: r.GPA, Size: r.Size})
	}
	f.Regions, f.MemSize = regions, snapshot.MemSize(regions)
	m.log.Debugf("kvm: snapshot state saved in %v, memory (%s) in %v",
		stateDone.Sub(start).Round(time.Microsecond), map[bool]string{false: "full", true: "diff"}[req.Diff], time.Since(stateDone).Round(time.Microsecond))
	return nil
}

// quiesceDevices stops every virtio device and returns each one's state.
// The devices stopped so far are returned even on error, to be resumed.
func (m *machine) quiesceDevices() ([]savedDevice, error) {
	var out []savedDevice
	for _, s := range m.virtioSlots {
		st := &virtioState{Version: virtioStateVersion}
		// A device's own state is read before it stops: stopping forgets
		// what the guest told it.
		switch dev := s.t.Device().(type) {
		case *balloon.Device:
			b := dev.SaveState()
			st.Balloon = &b
		case *net.Device:
			n := dev.SaveState()
			st.Net = &n
		case *vsock.Device:
			v := dev.SaveState()
			st.Vsock = &v
		}
		ts, err := s.t.Quiesce()
		if err != nil {
			return out, fmt.Errorf("cannot stop the %s device: %w", s.name, err)
		}
		st.Transport = ts
		out = append(out, savedDevice{slot: s, state: st})
	}
	return out, nil
}

// resumeDevices starts the devices quiesceDevices stopped, from the state
// it saved.
func (m *machine) resumeDevices(devs []savedDevice) error {
	var errs []error
	for _, d := range devs {
		if err := m.restoreDevice(d.slot, d.state); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// restoreDevice loads st into the device behind slot and starts it if it
// was running. A running vsock device then resets the guest's connections.
func (m *machine) restoreDevice(slot virtioSlot, st *virtioState) error {
	dev := slot.t.Device()
	switch d := dev.(type) {
	case *balloon.Device:
		if st.Balloon == nil {
			return fmt.Errorf("%w: the balloon's state is missing", errState)
		}
		if err := d.RestoreState(*st.Balloon); err != nil {
			return err
		}
	case *net.Device:
		if st.Net == nil {
			return fmt.Errorf("%w: the state of %s is missing", errState, slot.name)
		}
		if err := d.RestoreState(*st.Net); err != nil {
			return err
		}
	case *vsock.Device:
		// The VM that was snapshotted and every one restored from it carry
		// on handing out host ports where it left off.
		if st.Vsock != nil {
			if err := d.RestoreState(*st.Vsock); err != nil {
				return err
			}
		}
	}
	if err := slot.t.Restore(st.Transport); err != nil {
		return fmt.Errorf("%s: %w", slot.name, err)
	}
	if v, ok := dev.(*vsock.Device); ok && slot.t.Active() {
		if err := v.TransportReset(); err != nil {
			m.log.Warnf("vsock: cannot send the transport reset event after a snapshot: %v", err)
		}
	}
	return nil
}

// saveMemory writes guest RAM to req.MemPath: all of it, or the pages
// written since the last snapshot. Without a dirty log, that is what is
// resident (mincore), as Firecracker does. With one, it is KVM's log of
// the vCPUs' writes ORed with ember's own (device buffers and used rings,
// recorded by guest memory). A full snapshot clears both logs, so the next
// diff holds what changed after it.
func (m *machine) saveMemory(req hypervisor.SaveRequest) error {
	var regions []snapshot.Region
	for _, r := range m.mem.Regions() {
		regions = append(regions, snapshot.Region{GPA: r.GPA, Size: r.Size})
	}
	var dirty [][]uint64
	var err error
	switch {
	case m.spec.TrackDirtyPages:
		if dirty, err = m.dirtyLog(); err != nil {
			return err
		}
	case req.Diff:
		if dirty, err = m.mem.ResidentPages(); err != nil {
			return fmt.Errorf("cannot find the resident guest pages: %w", err)
		}
	}
	if req.Diff {
		return snapshot.WriteMemoryDiff(req.MemPath, regions, dirty, m.mem.Slice)
	}
	return snapshot.WriteMemory(req.MemPath, regions, m.mem.Slice)
}

// dirtyLog returns, per memory slot, the pages written since the last
// call: KVM's log ORed with ember's.
func (m *machine) dirtyLog() ([][]uint64, error) {
	own := m.mem.TakeDirty()
	out := make([][]uint64, len(own))
	for i, r := range m.mem.Regions() {
		pages := r.Size / guestmem.PageSize
		bm := make([]uint64, (pages+63)/64)
		if err := m.vm.GetDirtyLog(uint32(i), pages, bm); err != nil {
			return nil, fmt.Errorf("cannot read the dirty log: %w", err)
		}
		for j := range bm {
			bm[j] |= own[i][j]
		}
		out[i] = bm
	}
	return out, nil
}

// Restore implements hypervisor.Restorer.
func (b *Backend) Restore(ctx context.Context, spec *hypervisor.Spec, env hypervisor.Env, f *snapshot.File, req hypervisor.RestoreRequest) (hypervisor.Machine, error) {
	switch {
	case spec == nil:
		return nil, errors.New("kvm: no VM spec")
	case f == nil:
		return nil, errors.New("kvm: no snapshot")
	case !req.Uffd && (req.HugePages == hypervisor.HugePages2M || spec.HugePages == hypervisor.HugePages2M):
		return nil, errHugetlbFile
	}
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	raw, err := jsonSection(f, sectionMachine)
	if err != nil {
		return nil, err
	}
	ms, err := decodeMachineState(raw)
	if err != nil {
		return nil, err
	}
	if ms.VCPUs != int(spec.VCPUs) {
		return nil, fmt.Errorf("%w: the snapshot has %d vCPUs, the configuration %d", errState, ms.VCPUs, spec.VCPUs)
	}
	rd := &restoreData{file: f, machine: ms, clockRealtime: req.ClockRealtime}
	if req.Uffd {
		rd.uffdPath = req.MemPath
	} else {
		mf, err := os.Open(req.MemPath)
		if err != nil {
			return nil, fmt.Errorf("Failed to load guest memory: Error creating guest memory from file: %w", err)
		}
		// The mapping keeps what it needs of the file.
		defer mf.Close()
		rd.memFile = mf
	}
	m := &machine{
		spec:    spec,
		env:     env,
		log:     env.Log,
		changed: make(chan struct{}),
		done:    make(chan struct{}),
		restore: rd,
	}
	if m.env.Console == nil {
		m.env.Console = io.Discard
	}
	if err := m.build(ctx); err != nil {
		m.Close()
		return nil, err
	}
	m.restore = nil
	return m, nil
}

// restoreState loads the snapshot into the machine build made: vCPUs,
// then the VM, then the devices, in Firecracker's order.
func (m *machine) restoreState() error {
	r := m.restore
	names := make([]string, len(m.virtioSlots))
	for i, s := range m.virtioSlots {
		names[i] = s.name
	}
	if len(names) != len(r.machine.Devices) {
		return fmt.Errorf("%w: the snapshot has virtio devices %q, the configuration %q", errState, r.machine.Devices, names)
	}
	for i := range names {
		if names[i] != r.machine.Devices[i] {
			return fmt.Errorf("%w: the snapshot has virtio devices %q, the configuration %q", errState, r.machine.Devices, names)
		}
	}
	cpu, err := r.file.Raw(sectionCPU)
	if err != nil {
		return err
	}
	if err := m.archRestoreCPU(cpu); err != nil {
		return err
	}
	var serial legacy.SerialState
	var i8042 legacy.I8042State
	if raw, err := jsonSection(r.file, sectionDevicePrefix+deviceSerial); err != nil {
		return err
	} else if serial, err = decodeSerialState(raw); err != nil {
		return fmt.Errorf("serial: %w", err)
	}
	if err := m.serial.RestoreState(serial); err != nil {
		return err
	}
	if raw, err := jsonSection(r.file, sectionDevicePrefix+deviceI8042); err != nil {
		return err
	} else if i8042, err = decodeI8042State(raw); err != nil {
		return fmt.Errorf("i8042: %w", err)
	}
	if err := m.i8042.RestoreState(i8042); err != nil {
		return err
	}
	for _, s := range m.virtioSlots {
		raw, err := jsonSection(r.file, sectionDevicePrefix+s.name)
		if err != nil {
			return err
		}
		st, err := decodeVirtioState(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if err := m.restoreDevice(s, st); err != nil {
			return err
		}
	}
	return nil
}

// jsonSection returns the bytes of JSON section name.
func jsonSection(f *snapshot.File, name string) ([]byte, error) {
	s, ok := f.Section(name)
	if !ok {
		return nil, fmt.Errorf("%w: %w: %q", errState, snapshot.ErrNoSection, name)
	}
	if s.Encoding != snapshot.EncodingJSON {
		return nil, fmt.Errorf("%w: section %q is %s, not json", errState, name, s.Encoding)
	}
	return s.Data, nil
}
