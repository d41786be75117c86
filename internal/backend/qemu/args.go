package qemu

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ember-vmm/ember/internal/hypervisor"
)

// mmioTransports is how many virtio-mmio transports microvm creates with
// ACPI on (and its default second IO-APIC): one per pin of that IO-APIC.
const mmioTransports = 24

// plan is everything a QEMU process is started with.
type plan struct {
	args []string
	// files become the child's descriptors 3, 4, ...; a nil entry is a
	// placeholder (argv golden tests build plans without real files).
	files []*os.File
	// fdPaths maps "/dev/fd/N" back to the user's path, to make QEMU's
	// error messages name the file the user gave.
	fdPaths map[string]string
	// drives holds what UpdateDrive needs to rebuild a drive's nodes.
	drives []driveNodes
	// balloon is the QOM path of the balloon device, "" if none.
	balloon string
}

// driveNodes names a drive's block nodes: a raw format node over a file
// protocol node (numbered, since UpdateDrive replaces it).
type driveNodes struct {
	ID     string
	Format string // raw node name, what the device is attached to
	File   string // current file node name
	// Added says File was made by blockdev-add (and must be deleted so);
	// the first one is defined inline and goes away with its last user.
	Added    bool
	ReadOnly bool
	Cache    cacheOpts
	AIO      string
	// VhostUser says the drive runs on ember's device over vhost-user:
	// QEMU has no block nodes for it.
	VhostUser bool
}

type cacheOpts struct {
	Direct  bool `json:"direct"`
	NoFlush bool `json:"no-flush"`
}

// launchInputs is what buildPlan needs besides the Spec: host facts and the
// files Create opened. Files may be nil in tests.
type launchInputs struct {
	Accel  accel
	TSCkHz uint64 // 0: do not add tsc_early_khz

	QMP, Console   *os.File
	Kernel, Initrd *os.File
	// Taps are the taps of the nets on QEMU's own path (nil for the
	// others).
	Taps []*os.File
	// DriveVU are QEMU's ends of the vhost-user sockets of the drives that
	// run on ember's devices (nil for the others), NetVU the socket paths
	// of such nets ("" for the others); nil slices mean none does.
	DriveVU []*os.File
	NetVU   []string
	// VsockVU and RngVU are QEMU's ends of the vhost-user sockets of the
	// vsock device and of a rate-limited entropy device.
	VsockVU, RngVU *os.File
	// DriveSerials are the virtio-blk serials, one per drive ("" for none).
	DriveSerials []string
	// MACs are the guest MACs, one per net, with empty ones already filled.
	MACs []string
	// ResetLog, if set, receives QEMU's CPU reset log (-d cpu_reset), which
	// under TCG is where a triple fault shows: QMP reports it as the same
	// "guest-reset" as a keyboard-controller reset.
	ResetLog *os.File
	// RAM, if set, is guest RAM: a memfd ember created and keeps, mapped
	// shared by QEMU, so ember can save it and QEMU can leave it out of
	// its migration stream (x-ignore-shared).
	RAM *os.File
	// Incoming starts QEMU to receive a saved state (-incoming defer)
	// instead of booting: no kernel, initrd or command line.
	Incoming bool
}

func (p *plan) add(args ...string) { p.args = append(p.args, args...) }

// addJSON adds a QEMU option whose value is a JSON object. QEMU parses such
// values with its JSON parser, so user strings inside (paths, MACs, serials)
// are data and can never introduce options, whatever commas, equals signs
// or quotes they hold.
func (p *plan) addJSON(opt string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", opt, err)
	}
	p.add(opt, string(b))
	return nil
}

// addFile passes f to QEMU and returns its descriptor number there.
func (p *plan) addFile(f *os.File) int {
	p.files = append(p.files, f)
	return 2 + len(p.files)
}

// addPath passes f and returns a /dev/fd path QEMU can open it by, so the
// user's path never appears in an option QEMU would parse.
func (p *plan) addPath(f *os.File, userPath string) string {
	path := "/dev/fd/" + strconv.Itoa(p.addFile(f))
	p.fdPaths[path] = userPath
	return path
}

// checkSpec refuses a boot this backend cannot do. The controller consults
// Capabilities first; this is the backstop.
func checkSpec(spec *hypervisor.Spec) error {
	if err := checkMachine(spec); err != nil {
		return err
	}
	return checkBoot(spec)
}

// checkMachine refuses a machine (booted or restored) this backend cannot
// build.
func checkMachine(spec *hypervisor.Spec) error {
	unsupported := func(what string) error { return hypervisor.Unsupported(Name, what) }
	switch {
	case spec.VCPUs == 0:
		return fmt.Errorf("invalid machine: vcpu_count is 0")
	case spec.SMT && spec.VCPUs > 1 && spec.VCPUs%2 != 0:
		return fmt.Errorf("invalid machine: with SMT, vcpu_count must be 1 or even")
	case spec.MemMiB == 0:
		return fmt.Errorf("invalid machine: mem_size_mib is 0")
	case len(spec.Pmems) > 0:
		return unsupported("pmem devices")
	case spec.MemoryHotplug != nil:
		return unsupported("memory hotplug")
	case spec.BootTimer:
		return unsupported("the boot timer device")
	case spec.PCI:
		return unsupported("PCI")
	case spec.TrackDirtyPages && (!snapshotsSupported || spec.HugePages == hypervisor.HugePagesTransparent):
		// Pages are compared in ember's memfd, which Transparent huge
		// pages leave to QEMU.
		return unsupported("dirty page tracking with huge_pages Transparent")
	case spec.HugePages == hypervisor.HugePagesTransparent && usesVhostUser(spec):
		// vhost-user needs guest RAM in a shared memfd, where transparent
		// huge pages depend on the host's shmem policy, not on QEMU.
		return unsupported("transparent huge pages with vsock, MMDS or rate limiters")
	case spec.Balloon != nil && spec.Balloon.FreePageHinting:
		return unsupported("balloon free page hinting")
	}
	switch spec.HugePages {
	case "", hypervisor.HugePagesNone, hypervisor.HugePagesTransparent, hypervisor.HugePages2M:
	default:
		return fmt.Errorf("invalid huge_pages %q", spec.HugePages)
	}
	for _, d := range spec.Drives {
		switch {
		case d.Socket != "":
			return unsupported("vhost-user block devices")
		case d.PathOnHost == "":
			return fmt.Errorf("drive %s has no path_on_host", d.ID)
		}
		switch d.Cache {
		case "", hypervisor.CacheUnsafe, hypervisor.CacheWriteback:
		default:
			return fmt.Errorf("drive %s: invalid cache_type %q", d.ID, d.Cache)
		}
		switch d.IOEngine {
		case "", hypervisor.IOSync, hypervisor.IOAsync:
		default:
			return fmt.Errorf("drive %s: invalid io_engine %q", d.ID, d.IOEngine)
		}
	}
	for _, n := range spec.Nets {
		switch {
		case n.Tap == nil:
			return fmt.Errorf("network interface %s has no open tap", n.ID)
		}
	}
	return nil
}

// checkBoot refuses a boot without a kernel; a restore needs none.
func checkBoot(spec *hypervisor.Spec) error {
	if spec.Boot.KernelPath == "" {
		return fmt.Errorf("invalid machine: no kernel image")
	}
	return nil
}

// buildPlan turns a Spec into QEMU's command line (without the binary).
// It is a pure function of its inputs, so its output is golden-tested.
func buildPlan(spec *hypervisor.Spec, in launchInputs) (*plan, error) {
	check := checkSpec
	if in.Incoming {
		check = checkMachine
	}
	if err := check(spec); err != nil {
		return nil, err
	}
	if len(in.Taps) != len(spec.Nets) || len(in.MACs) != len(spec.Nets) || len(in.DriveSerials) != len(spec.Drives) ||
		(in.DriveVU != nil && len(in.DriveVU) != len(spec.Drives)) || (in.NetVU != nil && len(in.NetVU) != len(spec.Nets)) {
		return nil, fmt.Errorf("internal error: launch inputs do not match the spec")
	}
	vuFile := func(i int) *os.File {
		if in.DriveVU == nil {
			return nil
		}
		return in.DriveVU[i]
	}
	p := &plan{fdPaths: map[string]string{}}

	p.add("-no-user-config", "-nodefaults", "-display", "none")
	// QEMU confines itself with seccomp on Linux: no obsolete or
	// privilege-raising system calls, no fork or exec, no changes to its
	// scheduling. It needs none of them: every file, tap and socket it uses
	// arrives as an open descriptor. macOS builds have no -sandbox.
	if in.Accel != accelHVF {
		p.add("-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
	}
	// ACPI on: stock kernels find virtio-mmio devices only through the DSDT.
	// With ACPI, microvm adds no virtio_mmio.device= entries to the command
	// line (auto-kernel-cmdline only acts without ACPI), which would make a
	// kernel that also has command-line discovery probe every device twice.
	// The ISA serial is added below as a device, bound to ember's chardev.
	machine := "microvm,acpi=on,isa-serial=off"
	switch {
	case in.RAM != nil:
		// ember's memfd (in 2 MiB huge pages when asked), reopened by
		// QEMU through /dev/fd and mapped shared: vhost-user back-ends
		// and snapshots read it.
		if err := p.addJSON("-object", map[string]any{
			"qom-type": "memory-backend-file", "id": "ram", "size": spec.MemMiB << 20,
			"mem-path": "/dev/fd/" + strconv.Itoa(p.addFile(in.RAM)), "share": true,
		}); err != nil {
			return nil, err
		}
		machine += ",memory-backend=ram"
	case usesVhostUser(spec):
		// vhost-user back-ends map guest RAM through ember's memfd.
		return nil, fmt.Errorf("qemu: devices over vhost-user need guest RAM ember shares")
	case spec.HugePages == hypervisor.HugePages2M:
		if err := p.addJSON("-object", map[string]any{
			"qom-type": "memory-backend-memfd", "id": "ram",
			"size": spec.MemMiB << 20, "hugetlb": true, "hugetlbsize": 2 << 20,
		}); err != nil {
			return nil, err
		}
		machine += ",memory-backend=ram"
	case spec.HugePages == hypervisor.HugePagesTransparent:
		// QEMU advises MADV_HUGEPAGE on anonymous guest RAM itself.
		if err := p.addJSON("-object", map[string]any{
			"qom-type": "memory-backend-ram", "id": "ram", "size": spec.MemMiB << 20,
		}); err != nil {
			return nil, err
		}
		machine += ",memory-backend=ram"
	}
	p.add("-machine", machine)
	p.add("-accel", string(in.Accel))
	if in.ResetLog != nil {
		p.add("-d", "cpu_reset", "-D", "/dev/fd/"+strconv.Itoa(p.addFile(in.ResetLog)))
	}
	threads := 1
	if spec.SMT && spec.VCPUs > 1 {
		threads = 2
	}
	switch {
	case in.Accel != accelTCG:
		p.add("-cpu", "host")
	case threads > 1:
		// TCG cannot emulate AMD's topology extensions, so an AMD-flavoured
		// "max" CPU shows its threads as cores; with Intel's vendor string
		// the guest reads the thread count from leaf 0xB, as on Firecracker
		// on Intel hosts. Only for SMT: the AMD flavour is what lets a guest
		// use the emulated SVM (nested KVM).
		p.add("-cpu", "max,vendor=GenuineIntel")
	default:
		p.add("-cpu", "max")
	}
	p.add("-smp", fmt.Sprintf("cpus=%d,sockets=1,cores=%d,threads=%d", spec.VCPUs, int(spec.VCPUs)/threads, threads))
	p.add("-m", strconv.FormatUint(spec.MemMiB, 10)+"M")

	// Modern (version 2) virtio-mmio, as Firecracker's: QEMU's transport
	// defaults to the legacy layout, without VIRTIO_F_VERSION_1.
	p.add("-global", "virtio-mmio.force-legacy=false")
	// Started paused: Machine.Start is the first "cont".
	p.add("-S")
	// A guest reset ends QEMU's run as a shutdown; a guest power-off only
	// pauses it. ember reads the SHUTDOWN event's reason to tell them
	// apart: reset ends the Machine, power-off leaves it up, as Firecracker
	// (which has no ACPI power-off) leaves a halted guest running.
	p.add("-action", "reboot=shutdown,shutdown=pause")

	p.add("-chardev", fmt.Sprintf("socket,id=qmp,fd=%d", p.addFile(in.QMP)))
	p.add("-mon", "chardev=qmp,mode=control")
	p.add("-chardev", fmt.Sprintf("socket,id=console,fd=%d", p.addFile(in.Console)))
	// COM1 (0x3f8, IRQ 4) and the i8042, as Firecracker has them: the i8042
	// carries reboot=k resets and Ctrl-Alt-Del.
	if err := p.addJSON("-device", map[string]any{"driver": "isa-serial", "chardev": "console", "index": 0}); err != nil {
		return nil, err
	}
	p.add("-device", "i8042")

	if in.Incoming {
		// The guest's state arrives over the migration stream; guest RAM
		// is already filled. QEMU writes no boot images into RAM while
		// it waits for the stream.
		p.add("-incoming", "defer")
	} else {
		p.add("-kernel", p.addPath(in.Kernel, spec.Boot.KernelPath))
		if spec.Boot.InitrdPath != "" {
			p.add("-initrd", p.addPath(in.Initrd, spec.Boot.InitrdPath))
		}
		cmdline := spec.Boot.Cmdline
		if in.TSCkHz != 0 {
			cmdline = withKernelArg(cmdline, tscArg(in.TSCkHz))
		}
		p.add("-append", cmdline)
	}

	// virtio-mmio slots. microvm lists transports in its DSDT from the
	// highest index down, and Linux probes them in DSDT order, so devices
	// take slots top-down in Firecracker's attach order: the first device
	// (the root drive first among drives) is probed first and the root
	// drive is /dev/vda.
	slot := mmioTransports
	nextBus := func() (string, error) {
		if slot == 0 {
			return "", fmt.Errorf("too many virtio devices: microvm has %d virtio-mmio slots", mmioTransports)
		}
		slot--
		return "virtio-mmio-bus." + strconv.Itoa(slot), nil
	}

	if b := spec.Balloon; b != nil {
		bus, err := nextBus()
		if err != nil {
			return nil, err
		}
		if err := p.addJSON("-device", map[string]any{
			"driver": "virtio-balloon-device", "id": "balloon", "bus": bus,
			"deflate-on-oom":      b.DeflateOnOOM,
			"free-page-reporting": b.FreePageReporting,
			"page-poison":         false,
			"indirect_desc":       false,
			"event_idx":           false,
		}); err != nil {
			return nil, err
		}
		p.balloon = "/machine/peripheral/balloon"
	}

	for i, d := range spec.Drives {
		bus, err := nextBus()
		if err != nil {
			return nil, err
		}
		if goDrive(&d) {
			// ember's virtio-blk model serves the queues, config space and
			// features; QEMU keeps the transport. Firecracker's one queue
			// of 256 entries.
			chr := "vu-blk" + strconv.Itoa(i)
			p.add("-chardev", fmt.Sprintf("socket,id=%s,fd=%d", chr, p.addFile(vuFile(i))))
			if err := p.addJSON("-device", map[string]any{
				"driver": "vhost-user-blk", "id": "blk" + strconv.Itoa(i), "bus": bus, "chardev": chr,
				"num-queues": 1, "queue-size": 256,
				"discard": false, "write-zeroes": false, "config-wce": false,
				"indirect_desc": false,
			}); err != nil {
				return nil, err
			}
			// A placeholder keeps plan.drives indexed like spec.Drives.
			p.drives = append(p.drives, driveNodes{ID: d.ID, VhostUser: true})
			continue
		}
		dn := driveNodes{
			ID:       d.ID,
			Format:   "drive" + strconv.Itoa(i),
			File:     "drive" + strconv.Itoa(i) + "-file0",
			ReadOnly: d.ReadOnly,
			// Unsafe: Firecracker offers no flush and never syncs; the guest
			// sees a write-through disk (no VIRTIO_BLK_F_FLUSH) and QEMU must
			// not emulate write-through with a sync per write, so flushes are
			// dropped. Writeback: flush is offered and reaches the disk.
			Cache: cacheOpts{NoFlush: d.Cache != hypervisor.CacheWriteback},
			AIO:   "threads",
		}
		if d.IOEngine == hypervisor.IOAsync {
			dn.AIO = "io_uring"
		}
		if err := p.addJSON("-blockdev", dn.formatNode(dn.fileNode(d.PathOnHost))); err != nil {
			return nil, err
		}
		dev := map[string]any{
			"driver": "virtio-blk-device", "id": "blk" + strconv.Itoa(i), "bus": bus,
			"drive":       dn.Format,
			"write-cache": onOff(d.Cache == hypervisor.CacheWriteback),
			// The guest sees what Firecracker offers: one queue, no
			// discard or write-zeroes, no writeback toggle in config space.
			"num-queues": 1, "discard": false, "write-zeroes": false, "config-wce": false,
			"indirect_desc": false,
			// I/O errors go to the guest, as in Firecracker; QEMU's default
			// would pause the VM on ENOSPC.
			"werror": "report", "rerror": "report",
		}
		if s := in.DriveSerials[i]; s != "" {
			dev["serial"] = s
		}
		if err := p.addJSON("-device", dev); err != nil {
			return nil, err
		}
		p.drives = append(p.drives, dn)
	}

	for i, n := range spec.Nets {
		bus, err := nextBus()
		if err != nil {
			return nil, err
		}
		id := "net" + strconv.Itoa(i)
		var netdev map[string]any
		if !goNet(&n) {
			netdev = map[string]any{
				"type": "tap", "id": id, "fd": strconv.Itoa(p.addFile(in.Taps[i])), "vhost": false,
			}
		} else {
			// ember's virtio-net model runs the queues on the tap (with the
			// MMDS stack and limiters in its path); QEMU keeps the
			// transport and the config space (MAC, MTU).
			// QEMU 7.2's vhost-user netdev refuses fd= chardevs, so QEMU
			// connects to a socket ember listens on; as a client without
			// reconnect, it connects before it goes on starting.
			if in.NetVU == nil || in.NetVU[i] == "" {
				return nil, fmt.Errorf("internal error: no vhost-user socket for interface %s", n.ID)
			}
			chr := "vu-" + id
			// -chardev takes no JSON in QEMU 7.2: a comma in the path is
			// doubled, QemuOpts' escape, so it cannot start an option.
			p.add("-chardev", "socket,id="+chr+",path="+strings.ReplaceAll(in.NetVU[i], ",", ",,"))
			netdev = map[string]any{"type": "vhost-user", "id": id, "chardev": chr}
		}
		if err := p.addJSON("-netdev", netdev); err != nil {
			return nil, err
		}
		dev := map[string]any{
			"driver": "virtio-net-device", "id": id + "-dev", "bus": bus, "netdev": id,
			"mac": in.MACs[i],
			// Firecracker's feature set: checksum and TSO/UFO offloads,
			// mergeable RX buffers, event index; no control queue, link
			// status, ECN or GSO.
			"ctrl_vq": false, "ctrl_rx": false, "ctrl_vlan": false, "ctrl_rx_extra": false,
			"ctrl_mac_addr": false, "ctrl_guest_offloads": false, "guest_announce": false,
			"mq": false, "status": false, "gso": false, "guest_ecn": false, "host_ecn": false,
			"indirect_desc": false,
		}
		if n.MTU != 0 {
			dev["host_mtu"] = n.MTU
		}
		if err := p.addJSON("-device", dev); err != nil {
			return nil, err
		}
	}

	if spec.Vsock != nil {
		bus, err := nextBus()
		if err != nil {
			return nil, err
		}
		// ember's vsock device (Firecracker's Unix-socket protocol) serves
		// RX and TX and the config space (guest_cid, read with GET_CONFIG);
		// QEMU keeps the transport and the event queue. Firecracker's
		// device has no indirect descriptors and no SEQPACKET.
		p.add("-chardev", fmt.Sprintf("socket,id=vu-vsock,fd=%d", p.addFile(in.VsockVU)))
		if err := p.addJSON("-device", map[string]any{
			"driver": "vhost-user-vsock-device", "id": "vsock", "bus": bus, "chardev": "vu-vsock",
			"seqpacket": "off", "indirect_desc": false, "queue_reset": false,
		}); err != nil {
			return nil, err
		}
	}

	if goEntropy(spec.Entropy) {
		bus, err := nextBus()
		if err != nil {
			return nil, err
		}
		// ember's entropy device with its rate limiter serves the queue.
		// QEMU's vhost-user-rng passes the driver's features straight to
		// the back-end, so the guest must be offered no more than
		// Firecracker's VERSION_1.
		p.add("-chardev", fmt.Sprintf("socket,id=vu-rng,fd=%d", p.addFile(in.RngVU)))
		if err := p.addJSON("-device", map[string]any{
			"driver": "vhost-user-rng", "id": "rng-dev", "bus": bus, "chardev": "vu-rng",
			"indirect_desc": false, "event_idx": false, "queue_reset": false,
		}); err != nil {
			return nil, err
		}
	} else if spec.Entropy != nil {
		bus, err := nextBus()
		if err != nil {
			return nil, err
		}
		if err := p.addJSON("-object", map[string]any{
			"qom-type": "rng-random", "id": "rng", "filename": "/dev/urandom",
		}); err != nil {
			return nil, err
		}
		if err := p.addJSON("-device", map[string]any{
			"driver": "virtio-rng-device", "id": "rng-dev", "bus": bus, "rng": "rng",
			// Firecracker's entropy device offers VERSION_1 alone.
			"indirect_desc": false, "event_idx": false,
		}); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// goDrive reports whether a drive runs on ember's virtio-blk model over
// vhost-user rather than on QEMU's block layer: a rate limiter lives in
// ember's device.
func goDrive(d *hypervisor.Drive) bool { return d.RateLimiter != nil }

// goNet reports whether an interface runs on ember's virtio-net model over
// vhost-user: MMDS and rate limiters sit in that device's path. A plain
// interface keeps QEMU's tap path.
func goNet(n *hypervisor.Net) bool { return n.MMDS != nil || n.RxLimiter != nil || n.TxLimiter != nil }

// goEntropy reports whether the entropy device runs on ember's model over
// vhost-user: its rate limiter lives there.
func goEntropy(e *hypervisor.Entropy) bool { return e != nil && e.RateLimiter != nil }

// usesVhostUser reports whether any device of spec runs over vhost-user.
// vsock always does: its host side is ember's.
func usesVhostUser(spec *hypervisor.Spec) bool {
	if spec.Vsock != nil || goEntropy(spec.Entropy) {
		return true
	}
	for i := range spec.Drives {
		if goDrive(&spec.Drives[i]) {
			return true
		}
	}
	for i := range spec.Nets {
		if goNet(&spec.Nets[i]) {
			return true
		}
	}
	return false
}

// fileNode is the blockdev-add options of a drive's file protocol node.
func (d driveNodes) fileNode(path string) map[string]any { return d.fileNodeRO(path, d.ReadOnly) }

func (d driveNodes) fileNodeRO(path string, readOnly bool) map[string]any {
	return map[string]any{
		"driver": "file", "node-name": d.File, "filename": path,
		"aio": d.AIO, "read-only": readOnly, "cache": d.Cache,
		// Firecracker takes no image locks; two VMs may share a read-only
		// image, and QEMU's locks would refuse what Firecracker allows.
		"locking": "off",
	}
}

// formatNode is the options of the raw node over file, which is either a
// nested definition or the name of an existing node.
func (d driveNodes) formatNode(file any) map[string]any { return d.formatNodeRO(file, d.ReadOnly) }

func (d driveNodes) formatNodeRO(file any, readOnly bool) map[string]any {
	return map[string]any{
		"driver": "raw", "node-name": d.Format, "file": file,
		"read-only": readOnly, "cache": d.Cache,
	}
}

// quoteArgs renders argv for a log line, quoting what a shell would need.
func quoteArgs(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`|&;<>()*?[]{}!#~") {
			b.WriteString(a)
			continue
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(a, "'", `'\''`))
		b.WriteByte('\'')
	}
	return b.String()
}

// tscArg is the kernel parameter that gives the guest its TSC rate.
func tscArg(kHz uint64) string { return "tsc_early_khz=" + strconv.FormatUint(kHz, 10) }

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
