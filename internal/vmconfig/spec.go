package vmconfig

import (
	"fmt"

	"github.com/ember-vmm/ember/internal/bootargs"
	"github.com/ember-vmm/ember/internal/hypervisor"
)

// Spec turns the accumulated configuration into the backend-neutral VM
// description: the command line gets Firecracker's additions (pci=off, the
// root device), devices come in Firecracker's attach order. The
// configuration itself is not changed, so a failed boot can be retried.
func (r *Resources) Spec(id string) (*hypervisor.Spec, error) {
	if r.boot == nil {
		return nil, ErrMissingKernelConfig
	}
	var cmd *bootargs.Cmdline
	if r.boot.cmdline != nil {
		cmd = r.boot.cmdline.Clone()
	} else {
		var err error
		if cmd, err = bootargs.Parse(bootargs.Default, bootargs.MaxSize); err != nil {
			return nil, fmt.Errorf("Invalid kernel command line: %s", err)
		}
	}
	var extra []string
	if !r.PCI {
		extra = append(extra, "pci=off")
	}
	if r.HasBlockRoot() {
		d := r.drives[0]
		partUUID := ""
		if d.PartUUID != nil {
			partUUID = *d.PartUUID
		}
		extra = append(extra, bootargs.Root(partUUID, d.IsReadOnly != nil && *d.IsReadOnly)...)
	}
	for i, p := range r.pmem {
		if p.RootDevice {
			mode := "rw"
			if p.ReadOnly {
				mode = "ro"
			}
			extra = append(extra, fmt.Sprintf("root=/dev/pmem%d", i), mode)
		}
	}
	for _, s := range extra {
		if err := cmd.Insert(s); err != nil {
			return nil, fmt.Errorf("Invalid kernel command line: %s", err)
		}
	}
	line, err := cmd.String()
	if err != nil {
		return nil, fmt.Errorf("Cannot load command line string: %s", err)
	}

	s := &hypervisor.Spec{
		ID:              id,
		VCPUs:           r.Machine.VCPUCount,
		MemMiB:          uint64(r.Machine.MemSizeMiB),
		SMT:             r.Machine.SMT,
		HugePages:       hypervisor.HugePages(r.Machine.HugePages),
		TrackDirtyPages: r.Machine.TrackDirtyPages,
		Boot: hypervisor.Boot{
			KernelPath: r.boot.config.KernelImagePath,
			Cmdline:    line,
		},
		BootTimer: r.BootTimer,
		PCI:       r.PCI,
	}
	if r.boot.config.InitrdPath != nil {
		s.Boot.InitrdPath = *r.boot.config.InitrdPath
	}
	if r.balloon != nil {
		b := r.balloon
		s.Balloon = &hypervisor.Balloon{
			AmountMiB:             b.AmountMiB,
			DeflateOnOOM:          b.DeflateOnOOM,
			StatsPollingIntervalS: b.StatsPollingIntervalS,
			FreePageHinting:       b.FreePageHinting,
			FreePageReporting:     b.FreePageReporting,
		}
	}
	for _, d := range r.drives {
		hd := hypervisor.Drive{
			ID:          d.DriveID,
			Root:        d.IsRootDevice,
			Cache:       hypervisor.CacheType(d.CacheType),
			RateLimiter: limiter(d.RateLimiter),
		}
		if d.PathOnHost != nil {
			hd.PathOnHost = *d.PathOnHost
		}
		if d.IsReadOnly != nil {
			hd.ReadOnly = *d.IsReadOnly
		}
		if d.PartUUID != nil {
			hd.PartUUID = *d.PartUUID
		}
		if d.IOEngine != nil {
			hd.IOEngine = hypervisor.IOEngine(*d.IOEngine)
		}
		if d.Socket != nil {
			hd.Socket = *d.Socket
		}
		s.Drives = append(s.Drives, hd)
	}
	for _, n := range r.nets {
		hn := hypervisor.Net{
			ID:        n.config.IfaceID,
			TapName:   n.config.HostDevName,
			Tap:       n.tap,
			RxLimiter: limiter(n.config.RxRateLimiter),
			TxLimiter: limiter(n.config.TxRateLimiter),
		}
		if n.config.GuestMAC != nil {
			hn.GuestMAC = n.config.GuestMAC.String()
		}
		if n.config.MTU != nil {
			hn.MTU = *n.config.MTU
		}
		if n.mmds != nil && r.mmds != nil {
			version, compat := r.mmds.Config()
			hn.MMDS = &hypervisor.MMDS{Version: version, IPv4: n.mmds.String(), IMDSCompat: compat}
			s.MMDSData = r.mmds
		}
		s.Nets = append(s.Nets, hn)
	}
	for _, p := range r.pmem {
		s.Pmems = append(s.Pmems, hypervisor.Pmem{
			ID: p.ID, PathOnHost: p.PathOnHost, Root: p.RootDevice, ReadOnly: p.ReadOnly,
			RateLimiter: limiter(p.RateLimiter),
		})
	}
	if r.vsock != nil {
		s.Vsock = &hypervisor.Vsock{GuestCID: r.vsock.GuestCID, UDSPath: r.vsock.UDSPath}
		if r.vsockDev != nil {
			s.Vsock.Device = r.vsockDev
		}
	}
	if r.entropy != nil {
		s.Entropy = &hypervisor.Entropy{RateLimiter: limiter(r.entropy.RateLimiter)}
	}
	if m := r.memoryHotplug; m != nil {
		s.MemoryHotplug = &hypervisor.MemoryHotplug{
			TotalSizeMiB: m.TotalSizeMiB, SlotSizeMiB: m.SlotSizeMiB, BlockSizeMiB: m.BlockSizeMiB,
		}
	}
	return s, nil
}

func limiter(c *RateLimiterConfig) *hypervisor.RateLimiter {
	c = c.Normalize()
	if c == nil {
		return nil
	}
	return &hypervisor.RateLimiter{Bandwidth: bucket(c.Bandwidth), Ops: bucket(c.Ops)}
}

func bucket(b *TokenBucketConfig) *hypervisor.TokenBucket {
	if b == nil {
		return nil
	}
	t := &hypervisor.TokenBucket{Size: b.Size, RefillTimeMs: b.RefillTime}
	if b.OneTimeBurst != nil {
		t.OneTimeBurst = *b.OneTimeBurst
	}
	return t
}
