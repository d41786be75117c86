//go:build linux

package kvm

import (
	"errors"
	"fmt"
	gonet "net"
	"net/netip"
	"os"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	kvmsys "github.com/ember-vmm/ember/internal/kvm"
	"github.com/ember-vmm/ember/internal/mmdsnet"
	"github.com/ember-vmm/ember/internal/ratelimit"
	"github.com/ember-vmm/ember/internal/syserr"
	"github.com/ember-vmm/ember/internal/virtio"
	"github.com/ember-vmm/ember/internal/virtio/balloon"
	"github.com/ember-vmm/ember/internal/virtio/blk"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	"github.com/ember-vmm/ember/internal/virtio/net"
	"github.com/ember-vmm/ember/internal/virtio/rng"
	"github.com/ember-vmm/ember/internal/virtio/vsock"
	"golang.org/x/sys/unix"
)

// virtioSlot is where a virtio-mmio device sits in the guest.
type virtioSlot struct {
	Addr uint64
	GSI  uint32
	// name is the device's snapshot section ("block/rootfs", "vsock").
	name string
	t    *mmio.Transport
}

// attachDevices builds the virtio devices in Firecracker's attach order
// (balloon, drives with the root first, nets, vsock, rng), each in the next
// virtio-mmio slot.
func (m *machine) attachDevices() error {
	s := m.spec
	if b := s.Balloon; b != nil {
		dev, err := balloon.New(balloon.Config{
			AmountMiB:         b.AmountMiB,
			DeflateOnOOM:      b.DeflateOnOOM,
			StatsIntervalS:    b.StatsPollingIntervalS,
			FreePageReporting: b.FreePageReporting,
			Log:               m.log,
		})
		if err != nil {
			return err
		}
		m.balloon = dev
		if err := m.attachVirtio("balloon", dev, dev); err != nil {
			return err
		}
	}
	for _, d := range s.Drives {
		cache := blk.Unsafe
		if d.Cache == hypervisor.CacheWriteback {
			cache = blk.Writeback
		}
		lim := m.limiter(d.RateLimiter)
		dev, err := blk.Open(d.PathOnHost, blk.Config{ID: d.ID, ReadOnly: d.ReadOnly, Cache: cache, Limiter: lim, Log: m.log})
		if err != nil {
			return fmt.Errorf("Unable to create the virtio block device: %s", syserr.Display(err))
		}
		m.drives = append(m.drives, driveDev{id: d.ID, dev: dev, limiter: lim})
		if err := m.attachVirtio("block/"+d.ID, dev, dev); err != nil {
			return err
		}
	}
	for _, n := range s.Nets {
		if n.Tap == nil {
			return fmt.Errorf("kvm: interface %s has no open tap", n.ID)
		}
		tapFile, err := dupFile(n.Tap)
		if err != nil {
			return fmt.Errorf("cannot duplicate the tap of interface %s: %w", n.ID, err)
		}
		rx, tx := m.limiter(n.RxLimiter), m.limiter(n.TxLimiter)
		cfg := net.Config{ID: n.ID, MTU: n.MTU, RxLimiter: rx, TxLimiter: tx, Log: m.log}
		var stack *mmdsnet.Stack
		if n.MMDS != nil {
			if stack, err = m.mmdsStack(n.MMDS); err != nil {
				tapFile.Close()
				return fmt.Errorf("interface %s: %w", n.ID, err)
			}
			cfg.Interceptor = stack
		}
		if n.GuestMAC != "" {
			mac, err := gonet.ParseMAC(n.GuestMAC)
			if err != nil {
				tapFile.Close()
				return fmt.Errorf("interface %s: %w", n.ID, err)
			}
			cfg.MAC = mac
		}
		dev, err := net.New(tapFile, cfg)
		if err != nil {
			tapFile.Close()
			return fmt.Errorf("interface %s: %w", n.ID, err)
		}
		m.nets = append(m.nets, netDev{id: n.ID, dev: dev, rx: rx, tx: tx})
		if stack != nil {
			m.wakeForMMDS(stack, dev)
		}
		if err := m.attachVirtio("net/"+n.ID, dev, dev); err != nil {
			return err
		}
	}
	if v := s.Vsock; v != nil {
		dev, ok := v.Device.(*vsock.Device)
		if !ok {
			return fmt.Errorf("kvm: the vsock device at %s was not bound by PUT /vsock", v.UDSPath)
		}
		m.vsock = dev
		// The controller owns the device (its socket exists before boot and
		// outlives the machine); the machine only stops it, before guest
		// RAM goes away.
		if err := m.attachVirtio("vsock", dev, closerFunc(dev.Reset)); err != nil {
			return err
		}
	}
	if s.Entropy != nil {
		dev := rng.New(rng.Config{Limiter: m.limiter(s.Entropy.RateLimiter), Log: m.log})
		m.rng = dev
		if err := m.attachVirtio("rng", dev, dev); err != nil {
			return err
		}
	}
	return nil
}

// limiter is a device's rate limiter. Every device gets one, limiting
// nothing when the spec has no limits, so PATCH can add limits later as on
// Firecracker.
func (m *machine) limiter(rl *hypervisor.RateLimiter) *ratelimit.Limiter {
	return ratelimit.NewFromSpec(rl, ratelimit.Options{Log: m.log})
}

var _ virtio.Limiter = (*ratelimit.Limiter)(nil)

// mmdsStack is the metadata service endpoint for one interface. All
// interfaces share one token authority, so a token issued on one is good
// on the others.
func (m *machine) mmdsStack(c *hypervisor.MMDS) (*mmdsnet.Stack, error) {
	if m.spec.MMDSData == nil {
		return nil, errors.New("MMDS is configured but the spec has no metadata store")
	}
	version, err := mmdsnet.ParseVersion(c.Version)
	if err != nil {
		return nil, err
	}
	addr, err := netip.ParseAddr(c.IPv4)
	if err != nil {
		return nil, fmt.Errorf("MMDS address %q: %w", c.IPv4, err)
	}
	if m.mmdsTokens == nil {
		if m.mmdsTokens, err = mmdsnet.NewTokens(m.spec.ID, nil, m.log); err != nil {
			return nil, err
		}
	}
	cfg := mmdsnet.Config{
		IPv4: addr, Version: version, IMDSCompat: c.IMDSCompat,
		Store: m.spec.MMDSData, Tokens: m.mmdsTokens, InstanceID: m.spec.ID, Log: m.log,
	}
	if m.env.Metrics != nil {
		cfg.Metrics = &m.env.Metrics.MMDS
	}
	return mmdsnet.New(cfg)
}

// wakeForMMDS polls the stack's retransmission deadline and wakes the
// device's RX path when it passes: the stack has no timers of its own.
func (m *machine) wakeForMMDS(stack *mmdsnet.Stack, dev *net.Device) {
	stop := make(chan struct{})
	m.closers = append(m.closers, closerFunc(func() error { close(stop); return nil }))
	go func() {
		t := time.NewTicker(mmdsPoll)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if at, ok := stack.Deadline(); ok && at <= mmdsnet.Monotonic() {
				dev.WakeRx()
			}
		}
	}()
}

// mmdsPoll is how often an MMDS interface's retransmission deadline is
// checked; Firecracker's endpoint retransmits after 300 ms.
const mmdsPoll = 50 * time.Millisecond

// attachVirtio puts dev behind a virtio-mmio window in the next slot, with
// an irqfd for its interrupt and an ioeventfd per queue. closer stops the
// device at Close, after the vCPUs and before guest RAM is unmapped. name
// identifies the device in snapshots.
func (m *machine) attachVirtio(name string, dev virtio.Device, closer interface{ Close() error }) error {
	slot, err := archVirtioSlot(len(m.virtioSlots))
	if err != nil {
		closer.Close()
		return err
	}
	irq, err := m.irqLine(slot.GSI)
	if err != nil {
		closer.Close()
		return err
	}
	// Registered after its interrupt line, so Close (which runs closers in
	// reverse) stops the device's workers before the eventfd they signal
	// is closed.
	m.closers = append(m.closers, closer)
	t := mmio.New(dev, m.mem, irq, m.log)
	if err := m.mmio.Insert(t, slot.Addr, mmio.Size); err != nil {
		return fmt.Errorf("cannot map the %s device at %#x: %w", dev.Type(), slot.Addr, err)
	}
	for q := 0; q < t.QueueCount(); q++ {
		if err := m.queueNotifier(t, slot.Addr+mmio.NotifyOffset, q); err != nil {
			return err
		}
	}
	slot.name, slot.t = name, t
	m.virtioSlots = append(m.virtioSlots, slot)
	return nil
}

// irqLine returns an eventfd that raises an edge on gsi through an irqfd.
func (m *machine) irqLine(gsi uint32) (*kvmsys.EventFD, error) {
	efd, err := kvmsys.NewEventFD()
	if err != nil {
		return nil, err
	}
	m.closers = append(m.closers, efd)
	if err := m.vm.IRQFD(efd.Fd(), gsi); err != nil {
		return nil, fmt.Errorf("cannot connect interrupt %d: %w", gsi, err)
	}
	return efd, nil
}

// queueNotifier registers an ioeventfd for queue q's notifications at addr
// and forwards each to the transport from a goroutine parked in Go's poller.
func (m *machine) queueNotifier(t *mmio.Transport, addr uint64, q int) error {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("cannot create an eventfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ioeventfd")
	m.closers = append(m.closers, f)
	ev := kvmsys.IOEvent{Addr: addr, Len: 4, DataMatch: true, Data: uint64(q)}
	if err := m.vm.IOEventFD(fd, ev); err != nil {
		return fmt.Errorf("cannot register the queue notifier at %#x: %w", addr, err)
	}
	m.notifyWG.Add(1)
	go func() {
		defer m.notifyWG.Done()
		var buf [8]byte
		for {
			if _, err := f.Read(buf[:]); err != nil {
				return // closed
			}
			t.Notify(uint32(q))
		}
	}()
	return nil
}

// dupFile duplicates f without touching f's own state (Fd would switch it
// to blocking mode); the copy keeps the shared O_NONBLOCK and so lands in
// Go's poller.
func dupFile(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var dupErr error
	if err := rc.Control(func(fd uintptr) {
		nfd, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, dupErr
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}

// bootTimer is Firecracker's boot-timer device: the guest's init writes
// 123 at offset 0 when it has booted, and the time since InstanceStart is
// logged.
type bootTimer struct{ m *machine }

// bootTimerMagic is the byte a guest writes to say it has booted.
const bootTimerMagic = 123

func (b bootTimer) Read(uint64, []byte) {}

func (b bootTimer) Write(off uint64, data []byte) {
	if off != 0 || len(data) == 0 || data[0] != bootTimerMagic {
		return
	}
	wall := time.Since(b.m.bootStart)
	cpu := processCPUTime() - b.m.bootCPU
	b.m.log.Infof("Guest-boot-time = %6d us %d ms, %6d CPU us %d CPU ms",
		wall.Microseconds(), wall.Milliseconds(), cpu.Microseconds(), cpu.Milliseconds())
}

// processCPUTime is the CPU time this process has used.
func processCPUTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
