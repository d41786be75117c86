//go:build linux

package qemu

import (
	"context"
	"errors"
	"fmt"
	gonet "net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/mmdsnet"
	"github.com/ember-vmm/ember/internal/ratelimit"
	"github.com/ember-vmm/ember/internal/syserr"
	"github.com/ember-vmm/ember/internal/vhostuser"
	"github.com/ember-vmm/ember/internal/virtio"
	"github.com/ember-vmm/ember/internal/virtio/blk"
	"github.com/ember-vmm/ember/internal/virtio/net"
	"github.com/ember-vmm/ember/internal/virtio/rng"
	"github.com/ember-vmm/ember/internal/virtio/vsock"
	"github.com/ember-vmm/ember/internal/vmconfig"
)

// goDevices are the devices of one VM that run in ember (the same models
// as the kvm backend's) and reach QEMU over vhost-user: drives with a rate
// limiter, interfaces with MMDS or a rate limiter, the vsock device and an
// entropy device with a rate limiter.
type goDevices struct {
	log    logger.Log
	drives map[string]*goDriveDev
	nets   map[string]*goNetDev
	// vsock is the device the controller bound at PUT /vsock (it owns
	// it); nil without vsock.
	vsock *vsock.Device
	rng   *rng.Device // nil unless the entropy device is rate limited
	// vsockVU and rngVU are QEMU's socket ends for those two, like
	// driveVU.
	vsockVU, rngVU *os.File
	// driveVU are QEMU's socket ends, indexed like the spec's drives (nil
	// where QEMU runs the device itself); they are closed once QEMU holds
	// its copies.
	driveVU []*os.File
	// netVU are the paths QEMU connects to for the nets' back-ends ("" for
	// the nets QEMU runs itself): QEMU 7.2's vhost-user netdev refuses an
	// fd= chardev ("does not support FD passing"), so these are sockets in
	// a private directory (sockDir), each accepting exactly one connection
	// and unlinked once it has.
	netVU   []string
	sockDir string

	cancel  context.CancelFunc
	serving sync.WaitGroup
	closers []func() error // devices and pollers, in creation order
	once    sync.Once
}

type goDriveDev struct {
	dev     *blk.Device
	limiter *ratelimit.Limiter
}

type goNetDev struct {
	dev    *net.Device
	rx, tx *ratelimit.Limiter
}

var _ virtio.Limiter = (*ratelimit.Limiter)(nil)

// startGoDevices builds the Go devices spec asks for and starts serving
// each over its own socket pair, so every server is up before QEMU begins
// the handshake (QEMU waits for the vhost-user netdev's back-end while it
// starts). macs are the guest MACs QEMU's net devices get. It returns nil
// when spec needs none.
func startGoDevices(spec *hypervisor.Spec, env hypervisor.Env, macs []string) (*goDevices, error) {
	if !usesVhostUser(spec) {
		return nil, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &goDevices{
		log: env.Log, cancel: cancel,
		drives:  map[string]*goDriveDev{},
		nets:    map[string]*goNetDev{},
		driveVU: make([]*os.File, len(spec.Drives)),
		netVU:   make([]string, len(spec.Nets)),
	}
	var pending []pendingServe
	fail := func(err error) (*goDevices, error) {
		for _, p := range pending {
			if p.conn != nil {
				p.conn.Close()
			}
			if p.ln != nil {
				p.ln.Close()
			}
		}
		g.close()
		return nil, err
	}
	limiter := func(rl *hypervisor.RateLimiter) *ratelimit.Limiter {
		return ratelimit.NewFromSpec(rl, ratelimit.Options{Log: env.Log})
	}
	for i, d := range spec.Drives {
		if !goDrive(&d) {
			continue
		}
		cache := blk.Unsafe
		if d.Cache == hypervisor.CacheWriteback {
			cache = blk.Writeback
		}
		lim := limiter(d.RateLimiter)
		dev, err := blk.Open(d.PathOnHost, blk.Config{ID: d.ID, ReadOnly: d.ReadOnly, Cache: cache, Limiter: lim, Log: env.Log})
		if err != nil {
			return fail(fmt.Errorf("Unable to create the virtio block device: %s", syserr.Display(err)))
		}
		g.closers = append(g.closers, dev.Close)
		g.drives[d.ID] = &goDriveDev{dev: dev, limiter: lim}
		conn, theirs, err := vhostuser.SocketPair()
		if err != nil {
			return fail(err)
		}
		g.driveVU[i] = theirs
		pending = append(pending, pendingServe{what: "drive " + d.ID, conn: conn, dev: dev})
	}
	var tokens *mmdsnet.Tokens
	for i, n := range spec.Nets {
		if !goNet(&n) {
			continue
		}
		if n.Tap == nil {
			return fail(fmt.Errorf("network interface %s has no open tap", n.ID))
		}
		rx, tx := limiter(n.RxLimiter), limiter(n.TxLimiter)
		cfg := net.Config{ID: n.ID, MTU: n.MTU, RxLimiter: rx, TxLimiter: tx, Log: env.Log}
		mac, err := gonet.ParseMAC(macs[i])
		if err != nil {
			return fail(fmt.Errorf("network interface %s: %w", n.ID, err))
		}
		cfg.MAC = mac
		var stack *mmdsnet.Stack
		if n.MMDS != nil {
			if tokens == nil {
				// One token authority for all interfaces: a token issued
				// on one is good on the others, as in Firecracker.
				if tokens, err = mmdsnet.NewTokens(spec.ID, nil, env.Log); err != nil {
					return fail(err)
				}
			}
			if stack, err = mmdsStack(spec, env, n.MMDS, tokens); err != nil {
				return fail(fmt.Errorf("network interface %s: %w", n.ID, err))
			}
			cfg.Interceptor = stack
		}
		tapFile, err := dupFile(n.Tap)
		if err != nil {
			return fail(fmt.Errorf("network interface %s: duplicating the tap: %w", n.ID, err))
		}
		dev, err := net.New(tapFile, cfg)
		if err != nil {
			tapFile.Close()
			return fail(fmt.Errorf("network interface %s: %w", n.ID, err))
		}
		g.closers = append(g.closers, dev.Close)
		g.nets[n.ID] = &goNetDev{dev: dev, rx: rx, tx: tx}
		if stack != nil {
			g.wakeForMMDS(stack, dev)
		}
		ln, path, err := g.listen(env.RuntimeDir, "net"+strconv.Itoa(i))
		if err != nil {
			return fail(fmt.Errorf("network interface %s: %w", n.ID, err))
		}
		g.netVU[i] = path
		pending = append(pending, pendingServe{what: "interface " + n.ID, ln: ln, dev: dev})
	}
	if v := spec.Vsock; v != nil {
		dev, ok := v.Device.(*vsock.Device)
		if !ok {
			return fail(fmt.Errorf("qemu: the vsock device at %s was not bound by PUT /vsock", v.UDSPath))
		}
		// The controller owns the device: its socket exists before boot
		// and outlives the machine. Serve resets it when QEMU goes, and
		// so does close, before guest RAM is unmapped. QEMU keeps the
		// event queue, so the TRANSPORT_RESET Firecracker sends before a
		// snapshot would be QEMU's to send (Go devices on qemu have no
		// snapshots yet).
		g.vsock = dev
		g.closers = append(g.closers, dev.Reset)
		conn, theirs, err := vhostuser.SocketPair()
		if err != nil {
			return fail(err)
		}
		g.vsockVU = theirs
		pending = append(pending, pendingServe{what: "vsock", conn: conn, dev: dev.WithoutEventQueue(),
			withhold: 1 << vhostuser.ProtoStatus})
	}
	if e := spec.Entropy; goEntropy(e) {
		dev := rng.New(rng.Config{Limiter: limiter(e.RateLimiter), Log: env.Log})
		g.rng = dev
		g.closers = append(g.closers, dev.Close)
		conn, theirs, err := vhostuser.SocketPair()
		if err != nil {
			return fail(err)
		}
		g.rngVU = theirs
		pending = append(pending, pendingServe{what: "entropy device", conn: conn, dev: dev,
			withhold: 1<<vhostuser.ProtoStatus | 1<<vhostuser.ProtoConfig})
	}
	for _, p := range pending {
		g.serving.Add(1)
		go func() {
			defer g.serving.Done()
			conn := p.conn
			if p.ln != nil {
				var err error
				if conn, err = acceptOne(ctx, p.ln); err != nil {
					if ctx.Err() == nil {
						g.log.Errorf("vhost-user server of %s: %v", p.what, err)
					}
					return
				}
			}
			// Serve returns nil when QEMU hangs up, as it does when it
			// exits; anything else is a protocol failure worth a line.
			if err := vhostuser.Serve(ctx, conn, p.dev, vhostuser.Options{Log: env.Log, Withhold: p.withhold}); err != nil && ctx.Err() == nil {
				g.log.Errorf("vhost-user server of %s ended: %v", p.what, err)
			}
		}()
	}
	return g, nil
}

// pendingServe is a server to start: on conn, or on the one connection
// ln accepts.
type pendingServe struct {
	what string
	conn *gonet.UnixConn
	ln   *gonet.UnixListener
	dev  virtio.Device
	// withhold are protocol features not to offer: QEMU 7.2's
	// vhost-user-vsock-device and vhost-user-rng negotiate STATUS but
	// never set DRIVER_OK, and the entropy device has no config space.
	withhold uint64
}

// listen creates a listening socket named for name in the private socket
// directory (made on first use, mode 0700, under dir or the temporary
// directory when dir is "" or too long for a socket path).
func (g *goDevices) listen(dir, name string) (*gonet.UnixListener, string, error) {
	if g.sockDir == "" {
		// sun_path holds 107 bytes; leave room for the directory's and the
		// socket's names.
		if dir == "" || len(dir) > 64 {
			dir = os.TempDir()
		}
		d, err := os.MkdirTemp(dir, "ember-vhost-user-")
		if err != nil {
			return nil, "", fmt.Errorf("creating the vhost-user socket directory: %w", err)
		}
		g.sockDir = d
	}
	path := filepath.Join(g.sockDir, name+".sock")
	ln, err := gonet.ListenUnix("unix", &gonet.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, "", fmt.Errorf("creating the vhost-user socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	return ln, path, nil
}

// acceptOne accepts the one connection ln is for and closes ln (removing
// its path), so nothing else can connect afterwards. Only ember's user can
// reach the socket: its directory is private.
func acceptOne(ctx context.Context, ln *gonet.UnixListener) (*gonet.UnixConn, error) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	c, err := ln.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("waiting for QEMU to connect: %w", err)
	}
	return c, nil
}

// mmdsStack is the metadata service endpoint for one interface.
func mmdsStack(spec *hypervisor.Spec, env hypervisor.Env, c *hypervisor.MMDS, tokens *mmdsnet.Tokens) (*mmdsnet.Stack, error) {
	if spec.MMDSData == nil {
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
	cfg := mmdsnet.Config{
		IPv4: addr, Version: version, IMDSCompat: c.IMDSCompat,
		Store: spec.MMDSData, Tokens: tokens, InstanceID: spec.ID, Log: env.Log,
	}
	if env.Metrics != nil {
		cfg.Metrics = &env.Metrics.MMDS
	}
	return mmdsnet.New(cfg)
}

// mmdsPoll is how often an MMDS interface's retransmission deadline is
// checked; Firecracker's endpoint retransmits after 300 ms.
const mmdsPoll = 50 * time.Millisecond

// wakeForMMDS polls the stack's retransmission deadline and wakes the
// device's RX path when it passes: the stack has no timers of its own.
func (g *goDevices) wakeForMMDS(stack *mmdsnet.Stack, dev *net.Device) {
	stop := make(chan struct{})
	done := make(chan struct{})
	g.closers = append(g.closers, func() error { close(stop); <-done; return nil })
	go func() {
		defer close(done)
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

// frontEnds returns QEMU's socket ends, for the launch inputs.
func (g *goDevices) frontEnds() (drives []*os.File, nets []string, vsock, rng *os.File) {
	if g == nil {
		return nil, nil, nil, nil
	}
	return g.driveVU, g.netVU, g.vsockVU, g.rngVU
}

// releaseFrontEnds closes ember's copies of QEMU's socket ends, once QEMU
// holds its own (or will never start): a server then sees QEMU's exit as
// the end of its connection.
func (g *goDevices) releaseFrontEnds() {
	if g == nil {
		return
	}
	for i, f := range g.driveVU {
		if f != nil {
			f.Close()
			g.driveVU[i] = nil
		}
	}
	for _, f := range []**os.File{&g.vsockVU, &g.rngVU} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}

// close stops the servers, then the devices. QEMU must be gone already (or
// never started), so no guest request is in flight.
func (g *goDevices) close() {
	if g == nil {
		return
	}
	g.once.Do(func() {
		g.releaseFrontEnds()
		g.cancel()
		g.serving.Wait()
		if g.sockDir != "" {
			os.RemoveAll(g.sockDir)
		}
		for _, c := range g.closers {
			if err := c(); err != nil {
				g.log.Warnf("closing a device: %v", err)
			}
		}
	})
}

// updateDrive swaps a Go drive's backing file; ok is false for a drive on
// QEMU's path.
func (g *goDevices) updateDrive(driveID, path string) (ok bool, err error) {
	if g == nil || g.drives[driveID] == nil {
		return false, nil
	}
	return true, g.drives[driveID].dev.UpdateFile(path)
}

// updateDriveLimiter changes a Go drive's limiter; ok is false for a drive
// on QEMU's path.
func (g *goDevices) updateDriveLimiter(driveID string, rl *vmconfig.RateLimiterConfig) bool {
	if g == nil || g.drives[driveID] == nil {
		return false
	}
	g.drives[driveID].limiter.Update(rl)
	return true
}

// updateNetLimiters changes a Go interface's limiters; ok is false for an
// interface on QEMU's path.
func (g *goDevices) updateNetLimiters(ifaceID string, rx, tx *vmconfig.RateLimiterConfig) bool {
	if g == nil || g.nets[ifaceID] == nil {
		return false
	}
	n := g.nets[ifaceID]
	n.rx.Update(rx)
	n.tx.Update(tx)
	return true
}

// stats adds the Go devices' counters to st.
func (g *goDevices) stats(st *hypervisor.DeviceStats) {
	if g == nil {
		return
	}
	for id, d := range g.drives {
		s := d.dev.Stats()
		st.Block[id] = hypervisor.BlockStats{
			ReadBytes: s.ReadBytes, WriteBytes: s.WriteBytes,
			ReadCount: s.ReadCount, WriteCount: s.WriteCount, FlushCount: s.FlushCount,
		}
	}
	for id, n := range g.nets {
		s := n.dev.Stats()
		st.Net[id] = hypervisor.NetStats{
			RxBytes: s.RxBytes, RxPackets: s.RxPackets, TxBytes: s.TxBytes, TxPackets: s.TxPackets,
			RxThrottled: s.RxThrottled, TxThrottled: s.TxThrottled,
			RxLimiterEvents: s.RxLimiterEvents, TxLimiterEvents: s.TxLimiterEvents,
		}
	}
	if g.vsock != nil {
		// The device's counters are the contract's field for field.
		v := hypervisor.VsockStats(g.vsock.Metrics())
		st.Vsock = &v
	}
}
