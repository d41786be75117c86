package qemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/syserr"
	"golang.org/x/sys/unix"
)

// Name is the backend's --backend value.
const Name = "qemu"

func init() { hypervisor.Register(&Backend{}) }

// Backend runs VMs in QEMU.
type Backend struct{}

// Name returns "qemu".
func (*Backend) Name() string { return Name }

// Available checks that the QEMU binary (the qemu-binary option, or
// qemu-system-x86_64 on PATH) can be found.
func (*Backend) Available(options map[string]string) error {
	_, err := findBinary(options[OptionBinary])
	return err
}

// Capabilities reports what QEMU's microvm gives ember today. QEMU 7.2
// attaches virtio-pmem and virtio-mem only through PCI (on virtio-mmio
// they realize but are never mapped into guest memory), so pmem and memory
// hotplug are absent. Vsock (Firecracker's Unix-socket protocol), MMDS
// and the drive, interface and entropy rate limiters run in ember's own
// device models, served to QEMU over vhost-user.
func (*Backend) Capabilities() hypervisor.Capabilities {
	return hypervisor.Capabilities{
		Balloon:            true,
		BalloonStats:       true,
		FreePageReporting:  true,
		Entropy:            true,
		HugePages:          true,
		AsyncIO:            true,
		DrivePathUpdate:    true,
		SendCtrlAltDel:     true,
		MMDS:               true,
		NetRateLimiter:     true,
		BlockRateLimiter:   true,
		Vsock:              true,
		EntropyRateLimiter: true,
		Snapshot:           snapshotsSupported,
		DiffSnapshot:       snapshotsSupported,
		TrackDirtyPages:    snapshotsSupported,
	}
}

// hostFacts is the host-dependent part of a launch, computed once.
type hostFacts struct {
	accel  accel
	reason string
	tscKHz uint64
}

var (
	hostOnce sync.Once
	host     hostFacts
)

func detectHost() hostFacts {
	hostOnce.Do(func() {
		p := realProbe(runtime.GOOS, runtime.GOARCH)
		host.accel, host.reason = chooseAccel(p)
		if runtime.GOARCH == "amd64" {
			host.tscKHz = hostTSCkHz(p.CPUInfo)
		}
	})
	return host
}

// Create starts a paused QEMU for spec and connects to its monitor.
func (b *Backend) Create(ctx context.Context, spec *hypervisor.Spec, env hypervisor.Env) (hypervisor.Machine, error) {
	if spec == nil {
		return nil, errors.New("qemu: no VM spec")
	}
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	m, err := b.launch(ctx, spec, env, nil)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// launch starts QEMU for spec: booting it, or, with rs, waiting for the
// state of a snapshot (-incoming) with guest RAM already filled.
func (b *Backend) launch(ctx context.Context, spec *hypervisor.Spec, env hypervisor.Env, rs *restoreInputs) (*machine, error) {
	bin, err := findBinary(env.Options[OptionBinary])
	if err != nil {
		return nil, err
	}
	facts := detectHost()
	acc, reason := facts.accel, facts.reason
	if s := env.Options[OptionAccel]; s != "" {
		if acc, err = parseAccel(s); err != nil {
			return nil, err
		}
		reason = "forced by the " + OptionAccel + " option"
	}
	if err := checkHost(ctx, bin, spec); err != nil {
		return nil, err
	}

	// Everything opened here is closed on return: QEMU holds its own
	// copies from the moment it starts.
	var opened []io.Closer
	defer func() {
		for _, c := range opened {
			c.Close()
		}
	}()
	openRO := func(what, path string) (*os.File, error) {
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("cannot open the %s %s: %s", what, path, syserr.Display(err))
		}
		opened = append(opened, f)
		return f, nil
	}

	in := launchInputs{Accel: acc, Incoming: rs != nil}
	if acc == accelTCG && facts.tscKHz != 0 && rs == nil {
		in.TSCkHz = facts.tscKHz
	}
	ram, err := guestRAM(spec, rs)
	if err != nil {
		return nil, err
	}
	if ram != nil {
		in.RAM = ram.fd // the machine keeps it; QEMU gets its own copy
	}
	var kept *snapRAM
	defer func() {
		if kept == nil {
			ram.close()
		}
	}()
	var resetLog *os.File
	if acc == accelTCG {
		if resetLog, err = anonymousFile(env.RuntimeDir); err != nil {
			return nil, fmt.Errorf("creating the reset log: %w", err)
		}
		opened = append(opened, resetLog)
		in.ResetLog = resetLog
	}
	if rs == nil {
		if in.Kernel, err = openRO("kernel image", spec.Boot.KernelPath); err != nil {
			return nil, err
		}
		if spec.Boot.InitrdPath != "" {
			if in.Initrd, err = openRO("initrd", spec.Boot.InitrdPath); err != nil {
				return nil, err
			}
		}
	}
	for _, d := range spec.Drives {
		serial, err := driveSerial(d.PathOnHost)
		if err != nil {
			return nil, fmt.Errorf("drive %s: %w", d.ID, err)
		}
		in.DriveSerials = append(in.DriveSerials, serial)
	}
	for _, n := range spec.Nets {
		var f *os.File
		if !goNet(&n) {
			if f, err = dupFile(n.Tap); err != nil {
				return nil, fmt.Errorf("network interface %s: duplicating the tap: %w", n.ID, err)
			}
			opened = append(opened, f)
		}
		in.Taps = append(in.Taps, f)
		mac := n.GuestMAC
		if rs != nil && len(rs.macs) == len(spec.Nets) {
			mac = rs.macs[len(in.MACs)] // the device's MAC as saved
		}
		if mac == "" {
			mac = randomMAC()
		}
		in.MACs = append(in.MACs, mac)
	}
	// Devices that run in ember serve before QEMU starts: QEMU connects
	// to them while it starts. They are closed after QEMU on every path.
	gd, err := startGoDevices(spec, env, in.MACs)
	if err != nil {
		return nil, err
	}
	created := false
	defer func() {
		gd.releaseFrontEnds()
		if !created {
			gd.close()
		}
	}()
	in.DriveVU, in.NetVU, in.VsockVU, in.RngVU = gd.frontEnds()
	qmpOurs, qmpTheirs, err := socketPair("qmp")
	if err != nil {
		return nil, err
	}
	opened = append(opened, qmpTheirs)
	conOurs, conTheirs, err := socketPair("console")
	if err != nil {
		qmpOurs.Close()
		return nil, err
	}
	opened = append(opened, conTheirs)
	in.QMP, in.Console = qmpTheirs, conTheirs

	p, err := buildPlan(spec, in)
	if err != nil {
		qmpOurs.Close()
		conOurs.Close()
		return nil, err
	}

	log := env.Log
	log.Debugf("qemu command: %s", quoteArgs(append([]string{bin}, p.args...)))

	m := newMachine(spec, env, p)
	m.godevs = gd
	m.snap = &snapState{ram: ram, accel: acc, macs: in.MACs, blocked: unmigratable(spec)}
	if resetLog != nil {
		// The machine keeps its own descriptor to read the log back.
		if m.resetLog, err = dupFile(resetLog); err != nil {
			qmpOurs.Close()
			conOurs.Close()
			return nil, err
		}
	}
	cmd := exec.Command(bin, p.args...)
	cmd.ExtraFiles = p.files
	cmd.Stderr = m.stderr
	cmd.Dir = "/"
	if env.RuntimeDir != "" {
		cmd.Dir = env.RuntimeDir
	}
	if err := startChild(cmd); err != nil {
		qmpOurs.Close()
		conOurs.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	m.cmd = cmd
	created = true // from here on, every failure ends in m.Close, which closes gd
	kept = ram     // and the guest RAM
	go m.reap()
	// QEMU has its copies now; ours must go so EOFs reach the right ends.
	for _, c := range opened {
		c.Close()
	}
	opened = nil
	gd.releaseFrontEnds()

	if err := m.connect(ctx, qmpOurs, conOurs); err != nil {
		if ctx.Err() != nil {
			m.Close()
			return nil, fmt.Errorf("starting QEMU: %w", ctx.Err())
		}
		err = m.startError(err, p.fdPaths) // QEMU's own words, before Close kills it
		m.Close()
		return nil, err
	}
	v := m.qmp.Greeting().Version
	slow := ""
	if acc == accelTCG {
		slow = "; the guest is emulated and slow"
	}
	log.Infof("QEMU %d.%d.%d at %s, accelerator %s (%s)%s", v.Major, v.Minor, v.Micro, bin, acc, reason, slow)
	if in.TSCkHz != 0 {
		if arg := tscArg(in.TSCkHz); withKernelArg(spec.Boot.Cmdline, arg) != spec.Boot.Cmdline {
			log.Infof("TCG: added %s to the guest kernel command line, so the emulated guest does not hang calibrating its TSC", arg)
		}
	}
	if rs == nil {
		// A restored machine is configured once its state has arrived.
		if err := m.configure(ctx); err != nil {
			m.Close()
			return nil, err
		}
	}
	m.tapWatch = m.watchTaps(spec)
	m.supervising = true
	go m.supervise()
	return m, nil
}

// checkHost refuses, with a clear message, what this host's QEMU cannot do.
func checkHost(ctx context.Context, bin string, spec *hypervisor.Spec) error {
	switch spec.HugePages {
	case hypervisor.HugePages2M:
		need := (spec.MemMiB + 1) / 2
		free, err := hugePagesFree()
		if err != nil {
			return fmt.Errorf("huge_pages 2M: this host has no 2 MiB huge pages: %v", err)
		}
		if free < need {
			return fmt.Errorf("huge_pages 2M: the guest needs %d free 2 MiB huge pages and the host has %d (raise vm.nr_hugepages)", need, free)
		}
	case hypervisor.HugePagesTransparent:
		if thpMode() == "never" {
			return fmt.Errorf("huge_pages Transparent: transparent huge pages are disabled on this host (/sys/kernel/mm/transparent_hugepage/enabled is never)")
		}
	}
	for _, d := range spec.Drives {
		// ember's own block device (over vhost-user) does its I/O itself.
		if d.IOEngine == hypervisor.IOAsync && !goDrive(&d) {
			if err := probeIOURing(ctx, bin); err != nil {
				return fmt.Errorf("drive %s: io_engine Async needs io_uring, which %s cannot use here: %w", d.ID, bin, err)
			}
			break
		}
	}
	return nil
}

var ioURing sync.Map // binary path → error (nil: works)

// probeIOURing asks QEMU to open an empty file with aio=io_uring. QEMU
// refuses if it was built without liburing or the kernel refuses io_uring.
func probeIOURing(ctx context.Context, bin string) error {
	if v, ok := ioURing.Load(bin); ok {
		err, _ := v.(error)
		return err
	}
	f, err := os.CreateTemp("", "ember-io-uring-probe-")
	if err != nil {
		return fmt.Errorf("probing io_uring: %w", err)
	}
	f.Close()
	defer os.Remove(f.Name())
	node, err := json.Marshal(map[string]any{
		"driver": "file", "node-name": "probe", "filename": f.Name(), "aio": "io_uring", "read-only": true,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-machine", "none", "-nodefaults", "-no-user-config", "-display", "none",
		"-blockdev", string(node), "-qmp", "stdio")
	cmd.Stdin = strings.NewReader(`{"execute":"qmp_capabilities"}` + "\n" + `{"execute":"quit"}` + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("probing io_uring: %w", ctx.Err()) // not cached
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		err = errors.New(msg)
	}
	ioURing.Store(bin, err)
	return err
}

// driveSerial is Firecracker's virtio-blk serial: the decimal st_dev,
// st_rdev and st_ino of the backing file, concatenated, cut to 20 bytes.
func driveSerial(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("cannot open %s: %s", path, syserr.Display(err))
	}
	s := fmt.Sprintf("%d%d%d", st.Dev, st.Rdev, st.Ino)
	if len(s) > 20 {
		s = s[:20]
	}
	return s, nil
}

// dupFile duplicates f without touching f's own state (Fd would switch it
// to blocking mode).
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

// socketPair returns ember's end as a net.Conn and QEMU's end as a file.
func socketPair(what string) (net.Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|sockCloexec, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the %s socket pair: %w", what, err)
	}
	unix.CloseOnExec(fds[0]) // for systems without SOCK_CLOEXEC
	unix.CloseOnExec(fds[1])
	ours := os.NewFile(uintptr(fds[0]), what)
	defer ours.Close()
	conn, err := net.FileConn(ours)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("creating the %s socket pair: %w", what, err)
	}
	return conn, os.NewFile(uintptr(fds[1]), what), nil
}

// randomMAC returns a random locally administered unicast MAC, what a
// guest driver would pick when the device offers none.
func randomMAC() string {
	var b [6]byte
	rand.Read(b[:])
	b[0] = b[0]&^0x01 | 0x02
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

// anonymousFile returns a new, already unlinked file in dir (the temporary
// directory when dir is ""), so nothing is left behind whatever happens.
func anonymousFile(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, "qemu-reset-*.log")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
