//go:build linux

package kvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ember-vmm/ember/internal/bus"
	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/hypervisor"
	kvmsys "github.com/ember-vmm/ember/internal/kvm"
	"github.com/ember-vmm/ember/internal/legacy"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/mmdsnet"
	"github.com/ember-vmm/ember/internal/ratelimit"
	"github.com/ember-vmm/ember/internal/virtio/balloon"
	"github.com/ember-vmm/ember/internal/virtio/blk"
	"github.com/ember-vmm/ember/internal/virtio/net"
	"github.com/ember-vmm/ember/internal/virtio/rng"
	"github.com/ember-vmm/ember/internal/virtio/vsock"
	"github.com/ember-vmm/ember/internal/vmconfig"
	"golang.org/x/sys/unix"
)

// machine is one VM. Its run state (started, paused, stopping, parked) is
// guarded by mu; changes wake waiters through the changed channel, which is
// closed and replaced on every change so waiters can also watch a context.
type machine struct {
	spec *hypervisor.Spec
	env  hypervisor.Env
	log  logger.Log

	sys *kvmsys.System
	vm  *kvmsys.VM
	mem *guestmem.Memory
	// uffd and uffdConn are kept for the VM's life after a load with
	// mem_backend Uffd: the handler sees EOF on uffdConn once the VM ends.
	uffd     *os.File
	uffdConn io.Closer
	pio      bus.Bus
	// mmio is the bus for guest-physical addresses no RAM backs.
	mmio bus.Bus

	vcpus []*vcpu
	arch  archState

	serial  *legacy.Serial
	i8042   *legacy.I8042
	drives  []driveDev
	nets    []netDev
	balloon *balloon.Device
	rng     *rng.Device
	vsock   *vsock.Device
	// mmdsTokens is the V2 token authority all MMDS interfaces share.
	mmdsTokens *mmdsnet.Tokens
	// virtioSlots are the virtio-mmio windows in attach order.
	virtioSlots []virtioSlot
	// closers release devices, eventfds and notifier goroutines, in
	// reverse order of acquisition, after the vCPUs have stopped.
	closers []io.Closer
	// notifyWG counts the goroutines forwarding ioeventfds.
	notifyWG sync.WaitGroup

	// restore is the snapshot being loaded, while Restore builds the
	// machine; nil for a machine Create boots.
	restore *restoreData
	// msrs are the MSRs a snapshot saves, read once.
	msrs []uint32

	// bootStart and bootCPU are when Start ran, for the boot timer.
	bootStart time.Time
	bootCPU   time.Duration

	mu      sync.Mutex
	changed chan struct{}
	started bool
	paused  bool
	// snapshotting is set while SaveSnapshot runs: the vCPUs stay parked.
	snapshotting bool
	stopping     bool
	parked       int
	live         int
	exit         hypervisor.ExitStatus
	done         chan struct{}
	closed       bool
	cancelIn     context.CancelFunc
}

type driveDev struct {
	id      string
	dev     *blk.Device
	limiter *ratelimit.Limiter
}

type netDev struct {
	id     string
	dev    *net.Device
	rx, tx *ratelimit.Limiter
}

// Available checks that /dev/kvm opens and that the CPU virtualizes in
// hardware: a /dev/kvm without vmx or svm cannot run Linux guests.
func (*Backend) Available(map[string]string) error {
	sys, err := kvmsys.Open()
	if err != nil {
		return unavailable(fmt.Sprintf("cannot open %s: %v", kvmsys.DevicePath, err))
	}
	sys.Close()
	return archCheckHost()
}

// Create builds the VM: guest RAM, the KVM VM and its vCPUs, the devices
// and the loaded kernel. Nothing runs until Start.
func (b *Backend) Create(ctx context.Context, spec *hypervisor.Spec, env hypervisor.Env) (hypervisor.Machine, error) {
	if spec == nil {
		return nil, errors.New("kvm: no VM spec")
	}
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	m := &machine{
		spec:    spec,
		env:     env,
		log:     env.Log,
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if m.env.Console == nil {
		m.env.Console = io.Discard
	}
	if err := m.build(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// checkSpec refuses what this backend does not implement, in case the
// controller's capability checks let it through.
func checkSpec(s *hypervisor.Spec) error {
	unsupported := func(what string) error { return hypervisor.Unsupported(Name, what) }
	switch {
	case len(s.Pmems) > 0:
		return unsupported("pmem devices")
	case s.MemoryHotplug != nil:
		return unsupported("memory hotplug")
	case s.PCI:
		return unsupported("PCI")
	case s.Balloon != nil && s.Balloon.FreePageHinting:
		return unsupported("free page hinting")
	}
	for _, d := range s.Drives {
		if d.Socket != "" {
			return unsupported("vhost-user block devices")
		}
		if d.IOEngine == hypervisor.IOAsync {
			return unsupported("the Async io_engine")
		}
	}
	return nil
}

func (m *machine) build(ctx context.Context) error {
	var err error
	if m.sys, err = kvmsys.Open(); err != nil {
		return fmt.Errorf("cannot open %s: %w", kvmsys.DevicePath, err)
	}
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return fmt.Errorf("cannot create the KVM VM: %w", err)
	}
	if err := m.archSetupVM(); err != nil {
		return err
	}
	if err := m.setupMemory(ctx); err != nil {
		return err
	}
	if err := m.archLegacyDevices(); err != nil {
		return err
	}
	if err := m.attachDevices(); err != nil {
		return err
	}
	if m.restore != nil {
		// The guest's memory and registers come from the snapshot.
		for i := 0; i < int(m.spec.VCPUs); i++ {
			c, err := m.createVCPU(i)
			if err != nil {
				return err
			}
			m.vcpus = append(m.vcpus, c)
		}
		if err := m.restoreState(); err != nil {
			return err
		}
		return ctx.Err()
	}
	if err := m.archLoad(); err != nil {
		return err
	}
	if m.spec.TrackDirtyPages {
		// The loader copies the kernel and initrd in through slices, which
		// leave no mark: count all of RAM as written, so a first diff
		// snapshot is complete (zero pages still cost nothing in it).
		for _, r := range m.mem.Regions() {
			m.mem.MarkDirty(r.GPA, r.Size)
		}
	}
	for i := 0; i < int(m.spec.VCPUs); i++ {
		c, err := m.newVCPU(i)
		if err != nil {
			return err
		}
		m.vcpus = append(m.vcpus, c)
	}
	return ctx.Err()
}

// setupMemory maps guest RAM and gives each region to KVM as one slot.
func (m *machine) setupMemory(ctx context.Context) error {
	layout, err := archMemoryLayout(m.spec.MemMiB << 20)
	if err != nil {
		return err
	}
	opts := guestmem.Options{Backing: guestmem.Anonymous, TrackDirty: m.spec.TrackDirtyPages}
	switch m.spec.HugePages {
	case hypervisor.HugePagesTransparent:
		opts.HugePages = guestmem.HugePagesTransparent
	case hypervisor.HugePages2M:
		opts.HugePages = guestmem.HugePages2M
	}
	if r := m.restore; r != nil {
		if err := r.checkLayout(layout); err != nil {
			return err
		}
		if r.uffdPath == "" && opts.HugePages == guestmem.HugePages2M {
			return errHugetlbFile
		}
		opts.File = r.memFile
	}
	if m.mem, err = guestmem.New(layout, opts); err != nil {
		if opts.HugePages == guestmem.HugePages2M && errors.Is(err, unix.ENOMEM) {
			return fmt.Errorf("huge_pages 2M: the guest needs %d free 2 MiB huge pages and the host has fewer (raise vm.nr_hugepages): %w",
				m.spec.MemMiB/2, err)
		}
		return fmt.Errorf("cannot allocate guest memory: %w", err)
	}
	if r := m.restore; r != nil && r.uffdPath != "" {
		// Before KVM or any device can touch guest RAM.
		if err := m.handToUffd(ctx, r.uffdPath); err != nil {
			return err
		}
	}
	var flags uint32
	if m.spec.TrackDirtyPages {
		flags = kvmsys.MemLogDirtyPages
	}
	for i, r := range m.mem.Regions() {
		host, err := m.mem.HostAddress(r.GPA)
		if err != nil {
			return err
		}
		err = m.vm.SetUserMemoryRegion(kvmsys.UserMemoryRegion{
			Slot:          uint32(i),
			Flags:         flags,
			GuestPhysAddr: r.GPA,
			MemorySize:    r.Size,
			UserspaceAddr: uint64(host),
		})
		if err != nil {
			return fmt.Errorf("cannot register guest memory with KVM: %w", err)
		}
	}
	return nil
}

// Start runs the vCPUs; it returns once each has its thread and is on its
// way into the guest.
func (m *machine) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started || m.closed {
		m.mu.Unlock()
		return errors.New("kvm: machine already started")
	}
	m.started = true
	m.live = len(m.vcpus)
	m.mu.Unlock()

	m.bootStart, m.bootCPU = time.Now(), processCPUTime()
	if m.env.ConsoleIn != nil {
		inCtx, cancel := context.WithCancel(context.Background())
		m.cancelIn = cancel
		go m.serial.Feed(inCtx, m.env.ConsoleIn)
	}
	ready := make(chan struct{}, len(m.vcpus))
	for _, c := range m.vcpus {
		go m.runVCPU(c, ready)
	}
	for range m.vcpus {
		select {
		case <-ready:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	go func() {
		m.waitState(context.Background(), func() bool { return m.live == 0 })
		m.finish(hypervisor.ExitStopped, nil) // no-op unless nothing else ended it
		close(m.done)
	}()
	return nil
}

// notifyLocked wakes everyone waiting for a state change; m.mu is held.
func (m *machine) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// waitState waits until cond (evaluated under m.mu) holds.
func (m *machine) waitState(ctx context.Context, cond func() bool) error {
	for {
		m.mu.Lock()
		if cond() {
			m.mu.Unlock()
			return nil
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Pause parks every vCPU outside KVM_RUN.
func (m *machine) Pause(ctx context.Context) error {
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return errors.New("kvm: the VM has ended")
	}
	m.paused = true
	m.notifyLocked()
	m.mu.Unlock()
	m.kickAll()
	return m.waitState(ctx, func() bool { return m.parked == m.live || m.stopping })
}

// Resume releases the parked vCPUs together.
func (m *machine) Resume(ctx context.Context) error {
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return errors.New("kvm: the VM has ended")
	}
	if m.snapshotting {
		m.mu.Unlock()
		return errors.New("kvm: a snapshot is being taken")
	}
	m.paused = false
	m.notifyLocked()
	m.mu.Unlock()
	if m.vsock != nil {
		// What the pause held up (a reset event, TX the guest queued)
		// moves again, as Firecracker kicks its devices on resume. Kick
		// waits for the device's worker, so m.mu is not held.
		m.vsock.Kick()
	}
	return nil
}

// finish records how the VM ended (the first reason wins) and stops the
// vCPUs. It never blocks, so devices may call it from vCPU threads.
func (m *machine) finish(reason hypervisor.ExitReason, err error) {
	m.mu.Lock()
	if m.exit.Reason == hypervisor.ExitNone {
		m.exit = hypervisor.ExitStatus{Reason: reason, Err: err}
	}
	m.stopping = true
	m.notifyLocked()
	m.mu.Unlock()
	m.kickAll()
}

func (m *machine) kickAll() {
	for _, c := range m.vcpus {
		c.kick()
	}
}

// Done is closed when every vCPU has stopped.
func (m *machine) Done() <-chan struct{} { return m.done }

// Exit says how the VM ended.
func (m *machine) Exit() hypervisor.ExitStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exit
}

// Close stops the vCPUs and releases everything, devices before guest RAM.
func (m *machine) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	started := m.started
	m.mu.Unlock()

	m.finish(hypervisor.ExitStopped, nil)
	if started {
		<-m.done
	} else {
		close(m.done)
	}
	if m.cancelIn != nil {
		m.cancelIn()
	}
	var errs []error
	for i := len(m.closers) - 1; i >= 0; i-- {
		if err := m.closers[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	m.notifyWG.Wait()
	for _, c := range m.vcpus {
		if err := c.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.vm != nil {
		errs = append(errs, m.vm.Close())
	}
	if m.sys != nil {
		errs = append(errs, m.sys.Close())
	}
	// Guest RAM goes last: nothing above may touch it any more.
	if m.mem != nil {
		errs = append(errs, m.mem.Close())
	}
	m.closeUffd()
	return errors.Join(errs...)
}

// SendCtrlAltDel presses Ctrl+Alt+Del on the i8042.
func (m *machine) SendCtrlAltDel(context.Context) error {
	return m.i8042.SendCtrlAltDel()
}

// UpdateDrive swaps a drive's backing file (PATCH /drives).
func (m *machine) UpdateDrive(_ context.Context, driveID, pathOnHost string) error {
	for _, d := range m.drives {
		if d.id == driveID {
			return d.dev.UpdateFile(pathOnHost)
		}
	}
	return fmt.Errorf("kvm: no drive %q", driveID)
}

// SetBalloonTarget implements hypervisor.Ballooner.
func (m *machine) SetBalloonTarget(_ context.Context, amountMiB uint32) error {
	if m.balloon == nil {
		return errors.New("kvm: no balloon device")
	}
	return m.balloon.SetTarget(amountMiB)
}

// SetBalloonStatsInterval implements hypervisor.Ballooner.
func (m *machine) SetBalloonStatsInterval(_ context.Context, seconds uint16) error {
	if m.balloon == nil {
		return errors.New("kvm: no balloon device")
	}
	return m.balloon.SetStatsInterval(seconds)
}

// BalloonStats implements hypervisor.Ballooner.
func (m *machine) BalloonStats(context.Context) (hypervisor.BalloonStats, error) {
	if m.balloon == nil {
		return hypervisor.BalloonStats{}, errors.New("kvm: no balloon device")
	}
	return m.balloon.Stats()
}

// UpdateDriveRateLimiter changes a drive's rate limiter live (PATCH
// /drives): a nil bucket keeps the old one.
func (m *machine) UpdateDriveRateLimiter(_ context.Context, driveID string, rl *vmconfig.RateLimiterConfig) error {
	for _, d := range m.drives {
		if d.id == driveID {
			d.limiter.Update(rl)
			return nil
		}
	}
	return fmt.Errorf("kvm: no drive %q", driveID)
}

// UpdateNetRateLimiters changes an interface's rate limiters live (PATCH
// /network-interfaces): a nil limiter or bucket keeps the old one.
func (m *machine) UpdateNetRateLimiters(_ context.Context, ifaceID string, rx, tx *vmconfig.RateLimiterConfig) error {
	for _, n := range m.nets {
		if n.id == ifaceID {
			n.rx.Update(rx)
			n.tx.Update(tx)
			return nil
		}
	}
	return fmt.Errorf("kvm: no network interface %q", ifaceID)
}

// DeviceStats implements hypervisor.DeviceStatser.
func (m *machine) DeviceStats(context.Context) (hypervisor.DeviceStats, error) {
	st := hypervisor.DeviceStats{
		Block: make(map[string]hypervisor.BlockStats, len(m.drives)),
		Net:   make(map[string]hypervisor.NetStats, len(m.nets)),
	}
	for _, d := range m.drives {
		s := d.dev.Stats()
		st.Block[d.id] = hypervisor.BlockStats{
			ReadBytes: s.ReadBytes, WriteBytes: s.WriteBytes,
			ReadCount: s.ReadCount, WriteCount: s.WriteCount, FlushCount: s.FlushCount,
		}
	}
	for _, n := range m.nets {
		s := n.dev.Stats()
		st.Net[n.id] = hypervisor.NetStats{
			RxBytes: s.RxBytes, RxPackets: s.RxPackets, TxBytes: s.TxBytes, TxPackets: s.TxPackets,
			RxThrottled: s.RxThrottled, TxThrottled: s.TxThrottled,
			RxLimiterEvents: s.RxLimiterEvents, TxLimiterEvents: s.TxLimiterEvents,
		}
	}
	if m.vsock != nil {
		// The device's counters are the contract's field for field.
		v := hypervisor.VsockStats(m.vsock.Metrics())
		st.Vsock = &v
	}
	return st, nil
}

// closerFunc adapts a function to io.Closer.
type closerFunc func() error

func (f closerFunc) Close() error { return f() }
