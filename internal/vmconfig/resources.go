package vmconfig

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/ember-vmm/ember/internal/bootargs"
	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/mmds"
	"github.com/ember-vmm/ember/internal/syserr"
	"github.com/ember-vmm/ember/internal/tap"
)

// Errors with Firecracker's texts. Callers add the prefix of the action
// ("Drive config error: ", ...), which differs between the API and
// --config-file.
var (
	ErrInvalidVCPUCount      = errors.New("The number of vCPUs must be greater than 0, less than 32 and must be 1 or an even number if SMT is enabled.")
	ErrInvalidMemorySize     = errors.New("The memory size (MiB) is either 0, or not a multiple of the configured page size.")
	ErrIncompatibleBalloon   = errors.New("The memory size (MiB) is smaller than the previously set balloon device target size.")
	ErrRootBlockExists       = errors.New("A root block device already exists!")
	ErrBlockRootWithPmemRoot = errors.New("Attempt to add block as a root device while the root device defined as a pmem device")
	ErrInvalidBlockConfig    = errors.New("Unable to create the virtio block device: Invalid block config.")
	ErrRootPmemExists        = errors.New("A root pmem device already exist")
	ErrPmemRootWithBlockRoot = errors.New("Attempt to add pmem as a root device while the root device defined as a block device")
	ErrBalloonTooLarge       = errors.New("Amount of pages requested is too large.")
	ErrNoBalloon             = errors.New("No balloon device found.")
	ErrMMDSEmptyIfaceList    = errors.New("The list of network interface IDs that allow forwarding MMDS requests is empty.")
	ErrMMDSInvalidIPv4       = errors.New("The MMDS IPv4 address is not link local.")
	ErrMMDSInvalidIfaceID    = errors.New("The list of network interface IDs provided contains at least one ID that does not correspond to any existing network interface.")
	ErrMissingKernelConfig   = errors.New("Cannot start microvm without kernel configuration.")
)

// TapOpener opens a tap device by name as Firecracker does
// (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, vnet header size 12); tap.Open in
// production, errors as *tap.Error.
type TapOpener func(name string) (*os.File, error)

// VsockBinder creates the vsock device and binds its host socket at
// uds_path, as PUT /vsock does on Firecracker; vsock.New in production,
// with errors carrying Firecracker's texts ("Cannot create backend for vsock
// device: ...").
type VsockBinder func(c VsockDeviceConfig) (BoundVsock, error)

// BoundVsock is a vsock device whose socket is bound; Close unlinks it.
type BoundVsock interface {
	hypervisor.VsockDevice
	Close() error
}

// Resources accumulates the configuration of a VM before it boots. It owns
// the taps it opened and the vsock device it bound; Close releases them.
type Resources struct {
	// Backend and Caps say which engine will run the VM and what it can do;
	// a configuration it cannot honour is refused when it is set.
	Backend string
	Caps    hypervisor.Capabilities
	OpenTap TapOpener
	// BindVsock, if not nil, binds uds_path at PUT /vsock; without it the
	// configuration is only recorded.
	BindVsock VsockBinder
	Log       logger.Log

	Machine       MachineConfig
	customCPU     bool
	boot          *bootSource
	drives        []BlockDeviceConfig // normalized, root first
	nets          []*netDevice
	vsock         *VsockDeviceConfig
	vsockDev      BoundVsock
	balloon       *BalloonDeviceConfig
	entropy       *EntropyDeviceConfig
	pmem          []PmemConfig
	memoryHotplug *MemoryHotplugConfig

	// MMDSSizeLimit bounds the metadata store (--mmds-size-limit).
	MMDSSizeLimit int
	mmds          *mmds.Store

	// BootTimer and PCI come from the command line.
	BootTimer bool
	PCI       bool

	SerialOutPath     *string
	SerialRateLimiter *TokenBucketConfig
}

type bootSource struct {
	config  BootSourceConfig
	cmdline *bootargs.Cmdline // nil: Firecracker's default at boot
}

type netDevice struct {
	config NetworkInterfaceConfig // normalized
	tap    *os.File
	mmds   *netip.Addr // the MMDS address when MMDS answers on this interface
}

// NewResources returns the configuration of a fresh process.
func NewResources(backend string, caps hypervisor.Capabilities, openTap TapOpener, mmdsSizeLimit int) *Resources {
	return &Resources{
		Backend:       backend,
		Caps:          caps,
		OpenTap:       openTap,
		Machine:       DefaultMachineConfig(),
		MMDSSizeLimit: mmdsSizeLimit,
	}
}

// unsupported is the error for a feature the backend lacks.
func (r *Resources) unsupported(what string) error {
	return hypervisor.Unsupported(r.Backend, what)
}

// Close releases the taps the configuration holds and unlinks the vsock
// socket.
func (r *Resources) Close() {
	for _, n := range r.nets {
		if n.tap != nil {
			n.tap.Close()
			n.tap = nil
		}
	}
	if r.vsockDev != nil {
		// The socket file may be gone already; nothing to report at exit.
		r.vsockDev.Close()
		r.vsockDev = nil
	}
}

// UpdateMachineConfig applies u with Firecracker's validation.
func (r *Resources) UpdateMachineConfig(u *MachineConfigUpdate) error {
	m := r.Machine
	if u.VCPUCount != nil {
		m.VCPUCount = *u.VCPUCount
	}
	if u.SMT != nil {
		m.SMT = *u.SMT
	}
	if m.VCPUCount == 0 || m.VCPUCount > 32 || (m.SMT && m.VCPUCount > 1 && m.VCPUCount%2 == 1) {
		return ErrInvalidVCPUCount
	}
	if u.MemSizeMiB != nil {
		m.MemSizeMiB = *u.MemSizeMiB
	}
	if u.HugePages != nil {
		m.HugePages = *u.HugePages
	}
	if m.MemSizeMiB == 0 || (m.HugePages != HugePagesNone && m.MemSizeMiB%2 != 0) {
		return ErrInvalidMemorySize
	}
	customCPU := r.customCPU
	if u.CPUTemplate != nil {
		customCPU = false
		if *u.CPUTemplate == "None" {
			m.CPUTemplate = nil
		} else {
			t := *u.CPUTemplate
			m.CPUTemplate = &t
		}
	}
	if u.TrackDirtyPages != nil {
		m.TrackDirtyPages = *u.TrackDirtyPages
	}
	if r.balloon != nil && uint64(m.MemSizeMiB) < uint64(r.balloon.AmountMiB) {
		return ErrIncompatibleBalloon
	}
	if m.HugePages != HugePagesNone && !r.Caps.HugePages {
		return r.unsupported("huge pages")
	}
	if m.TrackDirtyPages && !r.Caps.TrackDirtyPages {
		return r.unsupported("dirty page tracking")
	}
	if m.CPUTemplate != nil && !r.Caps.CPUTemplates {
		return r.unsupported("CPU templates")
	}
	r.Machine, r.customCPU = m, customCPU
	return nil
}

// SetCustomCPUTemplate records a custom CPU template (PUT /cpu-config).
func (r *Resources) SetCustomCPUTemplate() error {
	if !r.Caps.CPUTemplates {
		return r.unsupported("CPU templates")
	}
	r.Machine.CPUTemplate = nil
	r.customCPU = true
	return nil
}

// SetBootSource opens the kernel and initrd as Firecracker does and checks
// the command line.
func (r *Resources) SetBootSource(c BootSourceConfig) error {
	f, err := os.Open(c.KernelImagePath)
	if err != nil {
		return fmt.Errorf("The kernel file cannot be opened: %s", syserr.Display(err))
	}
	f.Close()
	if c.InitrdPath != nil {
		f, err := os.Open(*c.InitrdPath)
		if err != nil {
			return fmt.Errorf("The initrd file cannot be opened due to invalid path or invalid permissions. %s", syserr.Display(err))
		}
		f.Close()
	}
	var cmd *bootargs.Cmdline
	if c.BootArgs != nil {
		if cmd, err = bootargs.Parse(*c.BootArgs, bootargs.MaxSize); err != nil {
			return fmt.Errorf("The kernel command line is invalid: %s", err)
		}
	}
	r.boot = &bootSource{config: c, cmdline: cmd}
	return nil
}

// RestoreBootSource records the boot source of a VM restored from a
// snapshot, for GET /vm/config. Nothing is opened: a restored VM loads no
// kernel, and its files may be long gone.
func (r *Resources) RestoreBootSource(c BootSourceConfig) {
	var cmd *bootargs.Cmdline
	if c.BootArgs != nil {
		cmd, _ = bootargs.Parse(*c.BootArgs, bootargs.MaxSize)
	}
	r.boot = &bootSource{config: c, cmdline: cmd}
}

// BootSource returns the boot source as GET /vm/config shows it.
func (r *Resources) BootSource() BootSourceConfig {
	if r.boot == nil {
		return BootSourceConfig{}
	}
	return r.boot.config
}

// HasBlockRoot reports whether a drive is the root device.
func (r *Resources) HasBlockRoot() bool { return len(r.drives) > 0 && r.drives[0].IsRootDevice }

func (r *Resources) hasPmemRoot() bool {
	for _, p := range r.pmem {
		if p.RootDevice {
			return true
		}
	}
	return false
}

// SetDrive adds or replaces a drive (PUT /drives/{id} before boot).
func (r *Resources) SetDrive(c BlockDeviceConfig) error {
	pos := -1
	for i, d := range r.drives {
		if d.DriveID == c.DriveID {
			pos = i
			break
		}
	}
	if c.IsRootDevice && r.hasPmemRoot() {
		return ErrBlockRootWithPmemRoot
	}
	if c.IsRootDevice && r.HasBlockRoot() && pos != 0 {
		return ErrRootBlockExists
	}
	d, err := r.checkDrive(c)
	if err != nil {
		return err
	}
	switch {
	case pos < 0 && c.IsRootDevice:
		r.drives = append([]BlockDeviceConfig{d}, r.drives...)
	case pos < 0:
		r.drives = append(r.drives, d)
	default:
		r.drives[pos] = d
		if pos != 0 && c.IsRootDevice {
			r.drives[0], r.drives[pos] = r.drives[pos], r.drives[0]
		}
	}
	return nil
}

// checkDrive validates a drive as Firecracker's block device constructor
// does and returns it normalized as GET shows it.
func (r *Resources) checkDrive(c BlockDeviceConfig) (BlockDeviceConfig, error) {
	switch {
	case c.PathOnHost != nil && c.Socket == nil:
		ro := c.IsReadOnly != nil && *c.IsReadOnly
		engine := IOEngineSync
		if c.IOEngine != nil {
			engine = *c.IOEngine
		}
		flag := os.O_RDWR
		if ro {
			flag = os.O_RDONLY
		}
		f, err := os.OpenFile(*c.PathOnHost, flag, 0)
		if err != nil {
			return c, fmt.Errorf("Unable to create the virtio block device: Virtio backend error: Error manipulating the backing file: %s %s",
				syserr.Display(err), *c.PathOnHost)
		}
		if _, err := f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return c, fmt.Errorf("Unable to create the virtio block device: Virtio backend error: Error manipulating the backing file: %s %s",
				syserr.Display(err), *c.PathOnHost)
		}
		f.Close()
		if c.CacheType == "" {
			c.CacheType = CacheUnsafe
		}
		c.IsReadOnly, c.IOEngine = &ro, &engine
		c.RateLimiter = c.RateLimiter.Normalize()
		if c.RateLimiter != nil && !r.Caps.BlockRateLimiter {
			return c, r.unsupported("rate limiters on drives")
		}
		if engine == IOEngineAsync && !r.Caps.AsyncIO {
			return c, r.unsupported("the Async io_engine")
		}
		return c, nil
	case c.Socket != nil && c.IsReadOnly == nil && c.PathOnHost == nil && c.RateLimiter == nil && c.IOEngine == nil:
		if !r.Caps.VhostUserBlock {
			return c, r.unsupported("vhost-user block devices")
		}
		if c.CacheType == "" {
			c.CacheType = CacheUnsafe
		}
		return c, nil
	}
	return c, ErrInvalidBlockConfig
}

// Drives returns the drives in attach order (root first).
func (r *Resources) Drives() []BlockDeviceConfig {
	return append([]BlockDeviceConfig(nil), r.drives...)
}

// SetNet adds or replaces a network interface, opening its tap.
func (r *Resources) SetNet(c NetworkInterfaceConfig) error {
	if c.GuestMAC != nil {
		for _, n := range r.nets {
			if n.config.GuestMAC != nil && *n.config.GuestMAC == *c.GuestMAC && n.config.IfaceID != c.IfaceID {
				return fmt.Errorf("The MAC address is already in use: %s", c.GuestMAC)
			}
		}
	}
	// Firecracker drops the old device (and its tap) before creating the new
	// one, by swapping the last device into its place.
	for i, n := range r.nets {
		if n.config.IfaceID == c.IfaceID {
			r.Log.Warnf("Replacing existing network device '%s'. The previous device configuration will be destroyed.", c.IfaceID)
			if n.tap != nil {
				n.tap.Close()
			}
			last := len(r.nets) - 1
			r.nets[i] = r.nets[last]
			r.nets = r.nets[:last]
			break
		}
	}
	c.RxRateLimiter = c.RxRateLimiter.Normalize()
	c.TxRateLimiter = c.TxRateLimiter.Normalize()
	if (c.RxRateLimiter != nil || c.TxRateLimiter != nil) && !r.Caps.NetRateLimiter {
		return r.unsupported("rate limiters on network interfaces")
	}
	var tap *os.File
	if r.OpenTap != nil {
		var err error
		if tap, err = r.OpenTap(c.HostDevName); err != nil {
			return tapError(err)
		}
	}
	if c.MTU != nil && *c.MTU < 68 {
		if tap != nil {
			tap.Close()
		}
		return fmt.Errorf("Could not create the network device: MTU %d is out of range [68, 65535]", *c.MTU)
	}
	r.nets = append(r.nets, &netDevice{config: c, tap: tap})
	return nil
}

// tapError renders a failure to open a tap as Firecracker's net device
// constructor reports it.
func tapError(err error) error {
	const prefix = "Could not create the network device: "
	var te *tap.Error
	if errors.As(err, &te) && te.Op == tap.OpSetVnetHdrSize {
		return errors.New(prefix + "Setting vnet header size failed: " + te.Error())
	}
	if te != nil {
		return errors.New(prefix + "Open tap device failed: " + te.Error())
	}
	return errors.New(prefix + "Open tap device failed: " + syserr.Display(err))
}

// Nets returns the interfaces in attach order.
func (r *Resources) Nets() []NetworkInterfaceConfig {
	out := make([]NetworkInterfaceConfig, len(r.nets))
	for i, n := range r.nets {
		out[i] = n.config
	}
	return out
}

// SetVsock sets the vsock device, binding its socket now when a binder is
// set. A device already set is dropped and its socket unlinked first, as
// Firecracker does; if that unlink or the new bind fails, no device is left.
func (r *Resources) SetVsock(c VsockDeviceConfig) error {
	if !r.Caps.Vsock {
		return r.unsupported("vsock")
	}
	c.VsockID = nil
	r.vsock = nil
	if old := r.vsockDev; old != nil {
		r.vsockDev = nil
		if err := old.Close(); err != nil {
			return err
		}
	}
	if r.BindVsock != nil {
		dev, err := r.BindVsock(c)
		if err != nil {
			return err
		}
		r.vsockDev = dev
	}
	r.vsock = &c
	return nil
}

// Vsock returns the vsock device, if any.
func (r *Resources) Vsock() *VsockDeviceConfig { return r.vsock }

// SetBalloon sets the balloon device.
func (r *Resources) SetBalloon(c BalloonDeviceConfig) error {
	if uint64(c.AmountMiB) > uint64(r.Machine.MemSizeMiB) {
		return ErrBalloonTooLarge
	}
	switch {
	case !r.Caps.Balloon:
		return r.unsupported("the balloon device")
	case c.StatsPollingIntervalS > 0 && !r.Caps.BalloonStats:
		return r.unsupported("balloon statistics")
	case c.FreePageHinting && !r.Caps.FreePageHinting:
		return r.unsupported("free page hinting")
	case c.FreePageReporting && !r.Caps.FreePageReporting:
		return r.unsupported("free page reporting")
	}
	r.balloon = &c
	return nil
}

// Balloon returns the balloon configuration or ErrNoBalloon.
func (r *Resources) Balloon() (BalloonDeviceConfig, error) {
	if r.balloon == nil {
		return BalloonDeviceConfig{}, ErrNoBalloon
	}
	return *r.balloon, nil
}

// SetEntropy sets the entropy device.
func (r *Resources) SetEntropy(c EntropyDeviceConfig) error {
	c.RateLimiter = c.RateLimiter.Normalize()
	if !r.Caps.Entropy {
		return r.unsupported("the entropy device")
	}
	if c.RateLimiter != nil && !r.Caps.EntropyRateLimiter {
		return r.unsupported("rate limiters on the entropy device")
	}
	r.entropy = &c
	return nil
}

// Entropy returns the entropy device, if any.
func (r *Resources) Entropy() *EntropyDeviceConfig { return r.entropy }

// SetPmem adds or replaces a pmem device.
func (r *Resources) SetPmem(c PmemConfig) error {
	if c.RootDevice && r.HasBlockRoot() {
		return ErrPmemRootWithBlockRoot
	}
	pos := -1
	for i, p := range r.pmem {
		if p.ID == c.ID {
			pos = i
		}
	}
	if c.RootDevice && r.hasPmemRoot() && (pos < 0 || !r.pmem[pos].RootDevice) {
		return ErrRootPmemExists
	}
	if !r.Caps.Pmem {
		return r.unsupported("pmem devices")
	}
	c.RateLimiter = c.RateLimiter.Normalize()
	if pos >= 0 {
		r.pmem[pos] = c
	} else {
		r.pmem = append(r.pmem, c)
	}
	return nil
}

// Pmems returns the pmem devices in attach order.
func (r *Resources) Pmems() []PmemConfig { return append([]PmemConfig(nil), r.pmem...) }

// SetMemoryHotplug validates and sets the virtio-mem device.
func (r *Resources) SetMemoryHotplug(c MemoryHotplugConfig) error {
	switch {
	case c.BlockSizeMiB < DefaultBlockSizeMiB:
		return fmt.Errorf("Block size must not be lower than %d MiB", DefaultBlockSizeMiB)
	case c.BlockSizeMiB&(c.BlockSizeMiB-1) != 0:
		return errors.New("Block size must be a power of 2")
	case c.SlotSizeMiB < DefaultSlotSizeMiB:
		return fmt.Errorf("Slot size must not be lower than %d MiB", DefaultSlotSizeMiB)
	case c.SlotSizeMiB%c.BlockSizeMiB != 0:
		return fmt.Errorf("Slot size must be a multiple of block size (%d MiB)", c.BlockSizeMiB)
	case c.TotalSizeMiB < c.SlotSizeMiB:
		return fmt.Errorf("Total size must not be lower than slot size (%d MiB)", c.SlotSizeMiB)
	case c.TotalSizeMiB%c.SlotSizeMiB != 0:
		return fmt.Errorf("Total size must be a multiple of slot size (%d MiB)", c.SlotSizeMiB)
	}
	if !r.Caps.MemoryHotplug {
		return r.unsupported("memory hotplug")
	}
	r.memoryHotplug = &c
	return nil
}

// MemoryHotplug returns the virtio-mem configuration, if any.
func (r *Resources) MemoryHotplug() *MemoryHotplugConfig { return r.memoryHotplug }

// MMDS returns the metadata store, creating it on first use as Firecracker
// does before boot.
func (r *Resources) MMDS() *mmds.Store {
	if r.mmds == nil {
		r.mmds = mmds.NewStore(r.MMDSSizeLimit)
	}
	return r.mmds
}

// MMDSIfInitialized returns the metadata store if it exists.
func (r *Resources) MMDSIfInitialized() *mmds.Store { return r.mmds }

// SetMMDSConfig binds the metadata service to interfaces.
func (r *Resources) SetMMDSConfig(c MMDSConfig, instanceID string) error {
	addr := netip.AddrFrom4([4]byte{169, 254, 169, 254})
	if c.IPv4Address != nil {
		a := c.IPv4Address.Addr()
		b := a.As4()
		if b[0] != 169 || b[1] != 254 || b[2] == 0 || b[2] == 255 {
			return ErrMMDSInvalidIPv4
		}
		addr = a
	}
	if len(c.NetworkInterfaces) == 0 {
		return ErrMMDSEmptyIfaceList
	}
	for _, id := range c.NetworkInterfaces {
		found := false
		for _, n := range r.nets {
			found = found || n.config.IfaceID == id
		}
		if !found {
			return ErrMMDSInvalidIfaceID
		}
	}
	if !r.Caps.MMDS {
		return r.unsupported("the metadata service (MMDS)")
	}
	store := r.MMDS()
	for _, n := range r.nets {
		n.mmds = nil
		for _, id := range c.NetworkInterfaces {
			if n.config.IfaceID == id {
				a := addr
				n.mmds = &a
			}
		}
	}
	version := c.Version
	if version == "" {
		version = MMDSV1
	}
	store.Configure(string(version), c.IMDSCompat, instanceID)
	return nil
}

// MMDSConfig rebuilds the MMDS configuration from the interfaces, as
// GET /vm/config shows it (nil unless an interface serves MMDS).
func (r *Resources) MMDSConfig() *MMDSConfig {
	if r.mmds == nil {
		return nil
	}
	var c *MMDSConfig
	for _, n := range r.nets {
		if n.mmds == nil {
			continue
		}
		if c == nil {
			version, compat := r.mmds.Config()
			ip := IPv4Addr(*n.mmds)
			c = &MMDSConfig{Version: MMDSVersion(version), IMDSCompat: compat, IPv4Address: &ip}
		}
		c.NetworkInterfaces = append(c.NetworkInterfaces, n.config.IfaceID)
	}
	return c
}

// SetSerial records the serial output configuration.
func (r *Resources) SetSerial(c SerialConfig) error {
	if c.RateLimiter.Enabled() && !r.Caps.SerialRateLimiter {
		return r.unsupported("a rate limiter on the serial console")
	}
	if c.SerialOutPath != nil {
		p := string(*c.SerialOutPath)
		r.SerialOutPath = &p
	} else {
		r.SerialOutPath = nil
	}
	r.SerialRateLimiter = c.RateLimiter
	return nil
}

// FullConfig returns the configuration as GET /vm/config shows it.
func (r *Resources) FullConfig() VMMConfig {
	m := r.Machine
	c := VMMConfig{
		Drives:            r.Drives(),
		BootSource:        r.BootSource(),
		MachineConfig:     &m,
		MMDSConfig:        r.MMDSConfig(),
		NetworkInterfaces: r.Nets(),
		Vsock:             r.vsock,
		Entropy:           r.entropy,
		Pmem:              r.Pmems(),
		MemoryHotplug:     r.memoryHotplug,
	}
	if r.balloon != nil {
		b := *r.balloon
		c.Balloon = &b
	}
	if c.Drives == nil {
		c.Drives = []BlockDeviceConfig{}
	}
	if c.NetworkInterfaces == nil {
		c.NetworkInterfaces = []NetworkInterfaceConfig{}
	}
	if c.Pmem == nil {
		c.Pmem = []PmemConfig{}
	}
	return c
}
