package qemu

// Integration tests: real QEMU under the host's accelerator (TCG on the
// project's machines) booting the test guest from internal/testguest,
// driven only through the hypervisor contract.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/tap"
	"github.com/ember-vmm/ember/internal/testguest"
	"golang.org/x/sys/unix"
)

// bootTimeout bounds one boot to the test init's "ready" under TCG.
const bootTimeout = 60 * time.Second

// baseCmdline is what the controller would pass, plus quiet to keep the
// emulated serial port short.
const baseCmdline = "console=ttyS0 reboot=k panic=1 pci=off quiet"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		runHelper()
		return
	}
	os.Exit(m.Run())
}

func requireQEMU(t testing.TB) {
	t.Helper()
	if _, err := findBinary(""); err != nil {
		t.Skipf("SKIPPING QEMU integration test: %v", err)
	}
}

// console collects guest output and lets tests wait for lines.
type console struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	notify chan struct{}
}

func newConsole() *console { return &console{notify: make(chan struct{}, 1)} }

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf.Write(p)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// lines returns the output up to its last complete line, so a match never
// sees a line the guest is still writing ("mem 2237" of "mem 223768").
func (c *console) lines() string {
	s := c.String()
	return s[:strings.LastIndexByte(s, '\n')+1]
}

// waitFor waits until the complete lines of the output match re and
// returns the first match's submatches.
func (c *console) waitFor(t *testing.T, re string, timeout time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(timeout)
	for {
		if m := rx.FindStringSubmatch(c.lines()); m != nil {
			return m
		}
		select {
		case <-c.notify:
		case <-deadline:
			t.Fatalf("no %q on the console within %v; console:\n%s", re, timeout, c.tail())
		}
	}
}

func (c *console) tail() string {
	s := c.String()
	if len(s) > 3000 {
		s = "…" + s[len(s)-3000:]
	}
	return s
}

// script returns the test init's switch that runs sh in the guest.
func script(sh string) string {
	return "ember.sh=" + base64.StdEncoding.EncodeToString([]byte(sh))
}

type vm struct {
	hypervisor.Machine
	con *console
	log *logBuffer
}

// testLog returns a logger at Debug writing into a buffer the test can read.
func testLog() (logger.Log, *logBuffer) {
	b := &logBuffer{}
	l := logger.New("qemu-test", b)
	l.SetLevel(logger.Debug)
	return l.Thread("main"), b
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// baseSpec is a 1-vCPU, 128 MiB guest from the initramfs.
func baseSpec(t *testing.T, switches ...string) *hypervisor.Spec {
	a := testguest.Require(t)
	return &hypervisor.Spec{
		ID: "test", VCPUs: 1, MemMiB: 128,
		Boot: hypervisor.Boot{
			KernelPath: a.Vmlinux, InitrdPath: a.Initramfs,
			Cmdline: baseCmdline + " " + strings.Join(switches, " "),
		},
	}
}

// create builds and starts a VM; it is closed when the test ends.
func create(t *testing.T, spec *hypervisor.Spec) *vm {
	t.Helper()
	requireQEMU(t)
	con := newConsole()
	log, logBuf := testLog()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := (&Backend{}).Create(ctx, spec, hypervisor.Env{Log: log, Console: con, RuntimeDir: t.TempDir()})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	v := &vm{Machine: m, con: con, log: logBuf}
	t.Cleanup(func() {
		m.Close()
		if t.Failed() {
			t.Logf("ember log:\n%s", logBuf)
		}
	})
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return v
}

// waitExit waits for the VM to end and returns how.
func (v *vm) waitExit(t *testing.T, timeout time.Duration) hypervisor.ExitStatus {
	t.Helper()
	select {
	case <-v.Done():
		return v.Exit()
	case <-time.After(timeout):
		t.Fatalf("the VM did not end within %v; console:\n%s", timeout, v.con.tail())
	}
	return hypervisor.ExitStatus{}
}

func (v *vm) pid() int { return v.Machine.(*machine).cmd.Process.Pid }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestBootKernelFormats(t *testing.T) {
	for _, format := range []string{"vmlinux", "bzImage"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			spec := baseSpec(t, "ember.end=reboot")
			if format == "bzImage" {
				spec.Boot.KernelPath = testguest.Require(t).BzImage
			}
			start := time.Now()
			v := create(t, spec)
			v.con.waitFor(t, "EMBER-GUEST: init", bootTimeout)
			t.Logf("%s: EMBER-GUEST: init after %v", format, time.Since(start).Round(time.Millisecond))
			// The guest's "reboot" ends the Machine, as Firecracker exits.
			if st := v.waitExit(t, bootTimeout); st.Reason != hypervisor.ExitReset {
				t.Fatalf("exit %+v, want a guest reset", st)
			}
			log := v.log.String()
			for _, want := range []string{"accelerator " + string(detectHost().accel), "qemu command: ", "QEMU 7.", "The guest reset the machine"} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
			if detectHost().accel == accelTCG && detectHost().tscKHz != 0 && !strings.Contains(log, "added tsc_early_khz=") {
				t.Errorf("the tsc_early_khz addition is not logged:\n%s", log)
			}
		})
	}
}

// TestRootPersists boots twice on the same image: a file written by the
// first boot is read by the second.
func TestRootPersists(t *testing.T) {
	t.Parallel()
	root := testguest.RootfsCopy(t)
	token := strconv.FormatInt(time.Now().UnixNano(), 36)
	rootSpec := func(switches ...string) *hypervisor.Spec {
		s := baseSpec(t, append([]string{"root=/dev/vda rw"}, switches...)...)
		s.Drives = []hypervisor.Drive{{ID: "rootfs", PathOnHost: root, Root: true, Cache: hypervisor.CacheWriteback}}
		return s
	}
	v := create(t, rootSpec(script("echo "+token+" > /persist && sync"), "ember.end=reboot"))
	v.con.waitFor(t, `EMBER-GUEST: sh 1 exit 0`, bootTimeout)
	if st := v.waitExit(t, bootTimeout); st.Reason != hypervisor.ExitReset {
		t.Fatalf("first boot: exit %+v", st)
	}
	v.Close()
	v2 := create(t, rootSpec(script(`echo "EMBER-GUEST: persist $(cat /persist)"`), "ember.end=reboot"))
	if got := v2.con.waitFor(t, `EMBER-GUEST: persist (\S*)`, bootTimeout)[1]; got != token {
		t.Errorf("second boot read %q, want %q", got, token)
	}
}

// TestReadOnlyDrive: the guest sees a read-only disk and cannot write it.
func TestReadOnlyDrive(t *testing.T) {
	t.Parallel()
	root := testguest.RootfsCopy(t)
	before, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	s := baseSpec(t, "root=/dev/vda ro", script(`
echo "EMBER-GUEST: ro-flag $(cat /sys/block/vda/ro)"
if mount -o remount,rw / 2>/dev/null; then echo "EMBER-GUEST: remount allowed"; else echo "EMBER-GUEST: remount refused"; fi
if echo x > /written 2>/dev/null; then echo "EMBER-GUEST: write allowed"; else echo "EMBER-GUEST: write refused"; fi
if dd if=/dev/zero of=/dev/vda bs=512 count=1 conv=fsync 2>/dev/null; then echo "EMBER-GUEST: raw write allowed"; else echo "EMBER-GUEST: raw write refused"; fi
`), "ember.end=reboot")
	s.Drives = []hypervisor.Drive{{ID: "rootfs", PathOnHost: root, Root: true, ReadOnly: true}}
	v := create(t, s)
	v.con.waitFor(t, "EMBER-GUEST: sh 1 exit", bootTimeout)
	out := v.con.String()
	for _, want := range []string{"ro-flag 1", "remount refused", "write refused", "raw write refused"} {
		if !strings.Contains(out, "EMBER-GUEST: "+want) {
			t.Errorf("guest did not report %q:\n%s", want, v.con.tail())
		}
	}
	v.waitExit(t, bootTimeout)
	after, _ := os.ReadFile(root)
	if !bytes.Equal(before, after) {
		t.Error("the read-only image changed")
	}
}

// TestDriveOrder: with two drives the root is /dev/vda whatever their ids,
// and each drive's cache mode shows as Firecracker's does.
func TestDriveOrder(t *testing.T) {
	t.Parallel()
	root := testguest.RootfsCopy(t)
	data := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(data, bytes.Repeat([]byte{0xe5}, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(root)
	s := baseSpec(t, "root=/dev/vda rw", script(`
for d in vda vdb; do
  echo "EMBER-GUEST: disk $d $(cat /sys/block/$d/size) $(cat /sys/block/$d/queue/write_cache | tr ' ' _) $(cat /sys/block/$d/serial)"
  echo "EMBER-GUEST: features $d $(cat /sys/block/$d/device/features)"
done
echo "EMBER-GUEST: rootdev $(awk '$2 == "/" { print $1 }' /proc/mounts | tail -n 1)"
`), "ember.end=reboot")
	// The data drive sorts first by id: only the attach order may decide.
	s.Drives = []hypervisor.Drive{
		{ID: "zz_root", PathOnHost: root, Root: true, Cache: hypervisor.CacheWriteback},
		{ID: "aa_data", PathOnHost: data, Cache: hypervisor.CacheUnsafe, IOEngine: hypervisor.IOAsync},
	}
	v := create(t, s)
	v.con.waitFor(t, "EMBER-GUEST: sh 1 exit 0", bootTimeout)
	rootSerial, _ := driveSerial(root)
	dataSerial, _ := driveSerial(data)
	want := []string{
		fmt.Sprintf("disk vda %d write_back %s", st.Size()/512, rootSerial),
		fmt.Sprintf("disk vdb %d write_through %s", (3<<20)/512, dataSerial),
		"rootdev /dev/root",
	}
	out := v.con.String()
	for _, w := range want[:2] {
		if !strings.Contains(out, "EMBER-GUEST: "+w) {
			t.Errorf("guest did not report %q:\n%s", w, v.con.tail())
		}
	}
	if !regexp.MustCompile(`EMBER-GUEST: rootdev (/dev/root|/dev/vda)`).MatchString(out) {
		t.Errorf("root is not vda:\n%s", v.con.tail())
	}
	// The features Firecracker negotiates must match; QEMU's extra
	// informational ones (SEG_MAX 2, GEOMETRY 4, BLK_SIZE 6, TOPOLOGY 10)
	// cannot be turned off and are ignored.
	checkFeatures(t, "vda", v.con.waitFor(t, `features vda ([01]{64})`, time.Second)[1],
		[]int{9, 29, 32}, []int{2, 4, 6, 10})
	checkFeatures(t, "vdb", v.con.waitFor(t, `features vdb ([01]{64})`, time.Second)[1],
		[]int{29, 32}, []int{2, 4, 6, 10})
	v.waitExit(t, bootTimeout)
}

// TestPauseResume: a paused guest prints nothing; resumed, it goes on.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	v := create(t, baseSpec(t, "ember.counter=1"))
	ctx := ctxT(t)
	v.con.waitFor(t, `EMBER-GUEST: tick 5\b`, bootTimeout)
	if err := v.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Pause(ctx); err != nil {
		t.Fatalf("second Pause: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // output already in flight
	paused := lastTick(v.con.lines())
	time.Sleep(1500 * time.Millisecond)
	if got := lastTick(v.con.lines()); got != paused {
		t.Fatalf("ticks went on while paused: %d → %d", paused, got)
	}
	if err := v.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Resume(ctx); err != nil {
		t.Fatalf("second Resume: %v", err)
	}
	v.con.waitFor(t, fmt.Sprintf(`EMBER-GUEST: tick %d\b`, paused+3), 20*time.Second)
}

// checkFeatures compares a virtio device's negotiated feature bits (sysfs
// "features": bit 0 first) with the set Firecracker negotiates, ignoring
// the bits in ignore.
func checkFeatures(t *testing.T, dev, bits string, want, ignore []int) {
	t.Helper()
	wantSet := map[int]bool{}
	for _, b := range want {
		wantSet[b] = true
	}
	skip := map[int]bool{}
	for _, b := range ignore {
		skip[b] = true
	}
	for i, c := range bits {
		if skip[i] {
			continue
		}
		if got := c == '1'; got != wantSet[i] {
			t.Errorf("%s: feature bit %d is %v, Firecracker's is %v (features %s)", dev, i, got, wantSet[i], bits)
		}
	}
}

func lastTick(s string) int {
	m := regexp.MustCompile(`EMBER-GUEST: tick (\d+)`).FindAllStringSubmatch(s, -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

func TestCtrlAltDel(t *testing.T) {
	t.Parallel()
	v := create(t, baseSpec(t, "ember.end=wait"))
	v.con.waitFor(t, "EMBER-GUEST: ready", bootTimeout)
	if err := v.Machine.(hypervisor.CtrlAltDeler).SendCtrlAltDel(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if st := v.waitExit(t, 30*time.Second); st.Reason != hypervisor.ExitReset {
		t.Fatalf("exit %+v, want a guest reset", st)
	}
	if !strings.Contains(v.con.String(), "EMBER-GUEST: ctrl-alt-del") {
		t.Errorf("the guest did not see Ctrl-Alt-Del:\n%s", v.con.tail())
	}
}

// TestPoweroff: as on Firecracker, a guest that powers off does not end
// the VM.
func TestPoweroff(t *testing.T) {
	t.Parallel()
	v := create(t, baseSpec(t, "ember.end=poweroff"))
	v.con.waitFor(t, "EMBER-GUEST: ready", bootTimeout)
	v.con.waitFor(t, "(Power down|reboot: System halted)", 20*time.Second)
	select {
	case <-v.Done():
		t.Fatalf("the VM ended after a guest poweroff: %+v", v.Exit())
	case <-time.After(2 * time.Second):
	}
	ctx := ctxT(t)
	if err := v.Pause(ctx); err != nil {
		t.Errorf("Pause after poweroff: %v", err)
	}
	if err := v.Resume(ctx); err != nil {
		t.Errorf("Resume after poweroff: %v", err)
	}
	if !strings.Contains(v.log.String(), "The guest powered off") {
		t.Errorf("poweroff not logged:\n%s", v.log)
	}
	v.Close()
	if st := v.Exit(); st.Reason != hypervisor.ExitStopped {
		t.Errorf("exit after Close %+v, want stopped", st)
	}
}

// TestQEMUKilled: QEMU dying under the VM ends it with an error that says so.
func TestQEMUKilled(t *testing.T) {
	t.Parallel()
	v := create(t, baseSpec(t, "ember.end=wait"))
	v.con.waitFor(t, "EMBER-GUEST: init", bootTimeout)
	pid := v.pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := v.waitExit(t, 10*time.Second)
	if st.Reason != hypervisor.ExitError || st.Err == nil || !strings.Contains(st.Err.Error(), "killed by signal 9") {
		t.Fatalf("exit %+v, want an error naming SIGKILL", st)
	}
	if err := v.Pause(ctxT(t)); !errors.Is(err, ErrEnded) {
		t.Errorf("Pause on a dead VM: %v", err)
	}
}

// TestCloseBeforeStart: a VM closed before it ran leaves no process.
func TestCloseBeforeStart(t *testing.T) {
	t.Parallel()
	requireQEMU(t)
	log, _ := testLog()
	m, err := (&Backend{}).Create(ctxT(t), baseSpec(t), hypervisor.Env{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	pid := m.(*machine).cmd.Process.Pid
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if alive(pid) {
		t.Error("QEMU outlived Close")
	}
	<-m.Done()
	if st := m.Exit(); st.Reason != hypervisor.ExitStopped {
		t.Errorf("exit %+v", st)
	}
	if err := m.Start(ctxT(t)); !errors.Is(err, ErrEnded) {
		t.Errorf("Start after Close: %v", err)
	}
}

// TestStartFailure: QEMU refusing its configuration is reported in its own
// words, naming the user's path rather than the descriptor ember passed.
func TestStartFailure(t *testing.T) {
	t.Parallel()
	requireQEMU(t)
	bad := filepath.Join(t.TempDir(), "not-a-kernel")
	if err := os.WriteFile(bad, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := baseSpec(t)
	s.Boot.KernelPath = bad
	s.Boot.InitrdPath = ""
	log, _ := testLog()
	_, err := (&Backend{}).Create(ctxT(t), s, hypervisor.Env{Log: log})
	if err == nil || !strings.Contains(err.Error(), "QEMU failed to start") || !strings.Contains(err.Error(), "kernel") || !strings.Contains(err.Error(), bad) {
		t.Errorf("err = %v", err)
	}

	s = baseSpec(t)
	s.Boot.KernelPath = filepath.Join(t.TempDir(), "missing")
	_, err = (&Backend{}).Create(ctxT(t), s, hypervisor.Env{Log: log})
	if err == nil || !strings.Contains(err.Error(), "No such file or directory (os error 2)") {
		t.Errorf("missing kernel: %v", err)
	}
	s = baseSpec(t)
	s.Drives = []hypervisor.Drive{{ID: "rootfs", PathOnHost: "/nonexistent/rootfs.ext4", Root: true}}
	_, err = (&Backend{}).Create(ctxT(t), s, hypervisor.Env{Log: log})
	if err == nil || !strings.Contains(err.Error(), "drive rootfs") || !strings.Contains(err.Error(), "os error 2") {
		t.Errorf("missing drive: %v", err)
	}
}

// TestCreateCancelled: a cancelled Create fails with the context error.
func TestCreateCancelled(t *testing.T) {
	t.Parallel()
	requireQEMU(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	log, _ := testLog()
	m, err := (&Backend{}).Create(ctx, baseSpec(t), hypervisor.Env{Log: log})
	if err == nil {
		m.Close()
		t.Fatal("Create with a cancelled context succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// TestHostileDrivePath: a path full of QEMU option syntax reaches QEMU as
// exactly that path and opens that file.
func TestHostileDrivePath(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a,b=c,file.locking=on,read-only=on")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, `disk,driver=qcow2"x.img`)
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "vmlinux,initrd=etc-passwd")
	if err := os.Symlink(testguest.Require(t).Vmlinux, kernel); err != nil {
		t.Fatal(err)
	}
	s := baseSpec(t, "ember.end=wait")
	s.Boot.KernelPath = kernel
	s.Drives = []hypervisor.Drive{{ID: "rootfs", PathOnHost: img, Root: true}}
	v := create(t, s)
	var blocks []struct {
		Inserted struct {
			File string `json:"file"`
			RO   bool   `json:"ro"`
			Drv  string `json:"drv"`
		} `json:"inserted"`
	}
	if err := v.Machine.(*machine).qmp.Execute(ctxT(t), "query-block", nil, &blocks); err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 1 || blocks[0].Inserted.File != img || blocks[0].Inserted.RO || blocks[0].Inserted.Drv != "raw" {
		t.Fatalf("QEMU opened %+v, want exactly %q, raw, writable", blocks, img)
	}
	v.con.waitFor(t, "EMBER-GUEST: init", bootTimeout)
}

// TestNetwork pings the host end of a tap from the guest, inside a network
// namespace the test creates and removes.
func TestNetwork(t *testing.T) {
	t.Parallel()
	requireQEMU(t)
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING network test: needs root for a network namespace and a tap")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("SKIPPING network test: the ip command (iproute2) is missing")
	}
	ns := fmt.Sprintf("ember-qemu-%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	f := openTapIn(t, ns, "tap0")
	defer f.Close()
	ip("-n", ns, "addr", "add", "172.16.0.1/24", "dev", "tap0")
	ip("-n", ns, "link", "set", "tap0", "up")

	s := baseSpec(t, "ember.net=172.16.0.2/24", "ember.ping=172.16.0.1", "ember.end=reboot",
		script(`echo "EMBER-GUEST: eth0 $(cat /sys/class/net/eth0/mtu) $(cat /sys/class/net/eth0/address) $(cat /sys/class/net/eth0/device/features)"`))
	s.Nets = []hypervisor.Net{{ID: "eth0", TapName: "tap0", Tap: f, GuestMAC: "06:00:ac:10:00:02", MTU: 1400}}
	s.Drives = nil
	v := create(t, s)
	got := v.con.waitFor(t, `EMBER-GUEST: ping (ok|fail)`, bootTimeout)
	if got[1] != "ok" {
		t.Fatalf("the guest could not ping the host through the tap:\n%s", v.con.tail())
	}
	eth := v.con.waitFor(t, `EMBER-GUEST: eth0 (\d+) (\S+) ([01]{64})`, bootTimeout)
	if eth[1] != "1400" || eth[2] != "06:00:ac:10:00:02" {
		t.Errorf("guest eth0 has MTU %s and MAC %s", eth[1], eth[2])
	}
	// CSUM, GUEST_CSUM, MTU, MAC, GUEST_TSO4/6, GUEST_UFO, HOST_TSO4/6,
	// HOST_UFO, MRG_RXBUF, EVENT_IDX, VERSION_1: Firecracker's set.
	checkFeatures(t, "eth0", eth[3], []int{0, 1, 3, 5, 7, 8, 10, 11, 12, 14, 15, 29, 32}, nil)
	out, err := exec.Command("ip", "-n", ns, "neigh", "show", "dev", "tap0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "06:00:ac:10:00:02") {
		t.Errorf("the host did not see the guest's MAC: %v: %s", err, out)
	}
	v.waitExit(t, bootTimeout)
}

// openTapIn opens a tap inside network namespace ns, on a thread that is
// discarded afterwards so no goroutine ever runs in that namespace again.
func openTapIn(t *testing.T, ns, name string) *os.File {
	t.Helper()
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		nsf, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer nsf.Close()
		if err := unix.Setns(int(nsf.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns: %w", err)}
			return
		}
		f, err := tap.Open(name)
		ch <- result{f, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.f
}

// TestBalloon inflates the balloon after boot and watches the guest's
// memory shrink, then reads the statistics.
func TestBalloon(t *testing.T) {
	t.Parallel()
	s := baseSpec(t, "ember.meminfo=300ms", "ember.end=wait")
	s.MemMiB = 256
	s.Balloon = &hypervisor.Balloon{AmountMiB: 0, StatsPollingIntervalS: 1}
	v := create(t, s)
	// Anchored: the guest's background report may interleave with other
	// output, and only whole lines count.
	const memLine = `(?m)^EMBER-GUEST: mem (\d+) (\d+)\r?\n`
	first := v.con.waitFor(t, memLine, bootTimeout)
	total0, _ := strconv.Atoi(first[1])
	free0, _ := strconv.Atoi(first[2])
	b := v.Machine.(hypervisor.Ballooner)
	ctx := ctxT(t)
	if err := b.SetBalloonTarget(ctx, 100); err != nil {
		t.Fatal(err)
	}
	// Without deflate-on-oom the guest takes ballooned pages out of
	// MemTotal; free memory drops by the same amount either way.
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := regexp.MustCompile(memLine).FindAllStringSubmatch(v.con.lines(), -1)
		total, _ := strconv.Atoi(m[len(m)-1][1])
		free, _ := strconv.Atoi(m[len(m)-1][2])
		if total0-total >= 95*1024 && free0-free >= 90*1024 {
			t.Logf("MemTotal %d → %d kB, MemFree %d → %d kB", total0, total, free0, free)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("balloon of 100 MiB not visible: MemTotal %d → %d kB, MemFree %d → %d kB\n%s", total0, total, free0, free, v.con.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	var st hypervisor.BalloonStats
	for deadline := time.Now().Add(20 * time.Second); ; {
		var err error
		if st, err = b.BalloonStats(ctx); err != nil {
			t.Fatal(err)
		}
		if st.ActualMiB >= 99 && st.FreeMemory != nil && st.TotalMemory != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never showed the inflated balloon with guest figures: %+v", st)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if st.TargetMiB != 100 || st.TargetPages != 25600 || st.ActualPages != st.ActualMiB*256 {
		t.Errorf("stats %+v", st)
	}
	if tm := *st.TotalMemory; tm > 256<<20 || tm < 100<<20 {
		t.Errorf("guest total memory %d bytes is implausible", tm)
	}
	// Deflate again.
	if err := b.SetBalloonTarget(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.SetBalloonStatsInterval(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.SetBalloonTarget(ctx, 257); err == nil {
		t.Error("a balloon larger than memory was accepted")
	}
}

// TestUpdateDrive swaps drives for bigger files after boot; the guest sees
// the new size and the new content, for a writable and a read-only drive.
func TestUpdateDrive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	img := func(name string, fill byte, size int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte{fill}, size), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	small, big := img("small.img", 'A', 8<<20), img("big.img", 'B', 16<<20)
	roSmall, roBig := img("ro-small.img", 'C', 4<<20), img("ro-big.img", 'D', 6<<20)
	s := baseSpec(t, script(`
while :; do
  for d in vda vdb; do
    echo "EMBER-GUEST: $d $(cat /sys/block/$d/size) $(dd if=/dev/$d bs=1 count=1 iflag=direct 2>/dev/null) ro=$(cat /sys/block/$d/ro)"
  done
  sleep 0.3
done`))
	s.Drives = []hypervisor.Drive{{ID: "data", PathOnHost: small}, {ID: "ro", PathOnHost: roSmall, ReadOnly: true}}
	v := create(t, s)
	v.con.waitFor(t, `EMBER-GUEST: vda 16384 A ro=0`, bootTimeout)
	v.con.waitFor(t, `EMBER-GUEST: vdb 8192 C ro=1`, bootTimeout)
	du := v.Machine.(hypervisor.DriveUpdater)
	ctx := ctxT(t)
	if err := du.UpdateDrive(ctx, "data", big); err != nil {
		t.Fatal(err)
	}
	v.con.waitFor(t, `EMBER-GUEST: vda 32768 B ro=0`, 20*time.Second)
	if err := du.UpdateDrive(ctx, "ro", roBig); err != nil {
		t.Fatal(err)
	}
	v.con.waitFor(t, `EMBER-GUEST: vdb 12288 D ro=1`, 20*time.Second)
	// Same path again (Firecracker's way to announce a resize).
	if err := os.Truncate(big, 24<<20); err != nil {
		t.Fatal(err)
	}
	if err := du.UpdateDrive(ctx, "data", big); err != nil {
		t.Fatal(err)
	}
	v.con.waitFor(t, `EMBER-GUEST: vda 49152 B`, 20*time.Second)
	if err := du.UpdateDrive(ctx, "nope", big); err == nil {
		t.Error("unknown drive accepted")
	}
	if err := du.UpdateDrive(ctx, "data", filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "os error 2") {
		t.Errorf("missing file: %v", err)
	}
	if st, _ := os.Stat(big); st.Size() != 24<<20 {
		t.Errorf("the backing file changed size: %d", st.Size())
	}
	// The read-only drive is read-only again in QEMU, not just in the guest.
	var blocks []struct {
		Inserted struct {
			File string `json:"file"`
			RO   bool   `json:"ro"`
		} `json:"inserted"`
	}
	if err := v.Machine.(*machine).qmp.Execute(ctx, "query-block", nil, &blocks); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if b.Inserted.File == roBig && !b.Inserted.RO {
			t.Error("the read-only drive was left writable")
		}
	}
	if strings.Contains(v.log.String(), "releasing the previous file") {
		t.Errorf("stale nodes:\n%s", v.log)
	}
}

// TestSpawnThreadExit: QEMU must survive the exit of the OS thread of the
// goroutine that created it (the parent-death signal follows the forking
// thread, not the process).
func TestSpawnThreadExit(t *testing.T) {
	t.Parallel()
	requireQEMU(t)
	spec := baseSpec(t, "ember.end=wait")
	ch := make(chan hypervisor.Machine, 1)
	errc := make(chan error, 1)
	var createOnThread func()
	createOnThread = func() {
		runtime.LockOSThread() // this goroutine's thread is destroyed when it returns
		if unix.Gettid() == unix.Getpid() {
			// Go never destroys the main thread; hold it and use another.
			done := make(chan struct{})
			go func() { createOnThread(); close(done) }()
			<-done
			return
		}
		log, _ := testLog()
		m, err := (&Backend{}).Create(context.Background(), spec, hypervisor.Env{Log: log})
		if err != nil {
			errc <- err
			return
		}
		ch <- m
	}
	go createOnThread()
	var m hypervisor.Machine
	select {
	case m = <-ch:
	case err := <-errc:
		t.Fatal(err)
	}
	defer m.Close()
	time.Sleep(time.Second)
	select {
	case <-m.Done():
		t.Fatalf("QEMU died with its creator's thread: %+v", m.Exit())
	default:
	}
	if !alive(m.(*machine).cmd.Process.Pid) {
		t.Fatal("QEMU is gone")
	}
}

// TestParentKilled: QEMU dies with ember even when ember is SIGKILLed.
func TestParentKilled(t *testing.T) {
	t.Parallel()
	requireQEMU(t)
	a := testguest.Require(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "HELPER_KERNEL="+a.Vmlinux, "HELPER_INITRD="+a.Initramfs)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper said nothing: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "QEMU "))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	if !alive(pid) {
		t.Fatal("QEMU not running under the helper")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	for deadline := time.Now().Add(5 * time.Second); alive(pid); {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("QEMU (pid %d) outlived its SIGKILLed parent", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const helperEnv = "EMBER_QEMU_TEST_HELPER"

// runHelper is the child of TestParentKilled: it owns a running VM, says
// QEMU's pid, and waits to be killed.
func runHelper() {
	spec := &hypervisor.Spec{
		VCPUs: 1, MemMiB: 128,
		Boot: hypervisor.Boot{KernelPath: os.Getenv("HELPER_KERNEL"), InitrdPath: os.Getenv("HELPER_INITRD"), Cmdline: baseCmdline + " ember.end=wait"},
	}
	m, err := (&Backend{}).Create(context.Background(), spec, hypervisor.Env{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	if err := m.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	fmt.Printf("QEMU %d\n", m.(*machine).cmd.Process.Pid)
	select {}
}

// alive reports whether pid runs (a zombie counts as dead).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestTCGBootReliability boots EMBER_TCG_BOOTS guests in a row (default:
// skipped) and fails if any boot hangs; it guards the TSC calibration fix.
func TestTCGBootReliability(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("EMBER_TCG_BOOTS"))
	if n <= 0 {
		t.Skip("SKIPPING the boot reliability run: set EMBER_TCG_BOOTS=N (e.g. 100) to boot N guests in a row")
	}
	requireQEMU(t)
	var times []time.Duration
	start := time.Now()
	for i := range n {
		ok := t.Run(fmt.Sprintf("boot%03d", i+1), func(t *testing.T) {
			s := baseSpec(t, "ember.end=reboot")
			bootStart := time.Now()
			v := create(t, s)
			v.con.waitFor(t, "EMBER-GUEST: init", 30*time.Second)
			times = append(times, time.Since(bootStart))
			if st := v.waitExit(t, 30*time.Second); st.Reason != hypervisor.ExitReset {
				t.Fatalf("exit %+v", st)
			}
		})
		if !ok {
			t.Fatalf("boot %d of %d failed", i+1, n)
		}
	}
	var sum, worst time.Duration
	for _, d := range times {
		sum += d
		worst = max(worst, d)
	}
	t.Logf("%d boots in %v: mean %v to EMBER-GUEST: init, worst %v", n, time.Since(start).Round(time.Second),
		(sum / time.Duration(len(times))).Round(time.Millisecond), worst.Round(time.Millisecond))
}

// TestConsoleInput types into the guest's serial console.
func TestConsoleInput(t *testing.T) {
	t.Parallel()
	requireQEMU(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	con := newConsole()
	log, _ := testLog()
	m, err := (&Backend{}).Create(ctxT(t), baseSpec(t, "ember.end=shell"), hypervisor.Env{Log: log, Console: con, ConsoleIn: r})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	v := &vm{Machine: m, con: con}
	v.con.waitFor(t, "EMBER-GUEST: shell", bootTimeout)
	time.Sleep(500 * time.Millisecond) // let the shell reach its prompt
	if _, err := w.Write([]byte("echo typed-$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	v.con.waitFor(t, "typed-42", 20*time.Second)
}

// TestMachineShape checks what the guest sees of vCPUs (SMT), memory
// backing (transparent huge pages), the entropy device and the balloon.
func TestMachineShape(t *testing.T) {
	t.Parallel()
	s := baseSpec(t, script(`
echo "EMBER-GUEST: cpus $(nproc) siblings $(cat /sys/devices/system/cpu/cpu0/topology/thread_siblings_list)"
echo "EMBER-GUEST: rng $(cat /sys/class/misc/hw_random/rng_current) $(head -c 16 /dev/hwrng | od -An -tx1 | tr -d ' \n')"
for d in /sys/bus/virtio/devices/*; do echo "EMBER-GUEST: virtio $(cat $d/device) $(cat $d/features)"; done
`), "ember.end=wait")
	s.VCPUs, s.SMT, s.MemMiB = 2, true, 256
	s.HugePages = hypervisor.HugePagesTransparent
	s.Entropy = &hypervisor.Entropy{}
	s.Balloon = &hypervisor.Balloon{DeflateOnOOM: true}
	v := create(t, s)
	v.con.waitFor(t, "EMBER-GUEST: sh 1 exit 0", 2*bootTimeout)
	if m := v.con.waitFor(t, `EMBER-GUEST: cpus (\d+) siblings (\S+)`, time.Second); m[1] != "2" || m[2] != "0-1" {
		t.Errorf("guest sees %s CPUs with cpu0's siblings %s, want 2 and 0-1 (SMT)", m[1], m[2])
	}
	if m := v.con.waitFor(t, `EMBER-GUEST: rng (\S+) ([0-9a-f]*)`, time.Second); !strings.HasPrefix(m[1], "virtio_rng") || len(m[2]) != 32 {
		t.Errorf("entropy device: current %q, read %q", m[1], m[2])
	}
	// Firecracker's sets: rng VERSION_1; balloon VERSION_1, STATS_VQ (QEMU
	// always offers it) and DEFLATE_ON_OOM.
	checkFeatures(t, "rng", v.con.waitFor(t, `virtio 0x0004 ([01]{64})`, time.Second)[1], []int{32}, nil)
	checkFeatures(t, "balloon", v.con.waitFor(t, `virtio 0x0005 ([01]{64})`, time.Second)[1], []int{1, 2, 32}, nil)
	if mode := thpMode(); mode == "always" || mode == "madvise" {
		// Guest RAM of a booted guest is backed by transparent huge pages.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", v.pid()))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`AnonHugePages:\s+(\d+) kB`).FindStringSubmatch(string(b))
		if m == nil || m[1] == "0" {
			t.Errorf("no transparent huge pages in QEMU's memory:\n%s", b)
		}
	} else {
		t.Logf("host THP mode %q: not checking QEMU's huge pages", mode)
	}
}

// TestHugePages2M boots on 2 MiB huge pages if the host has enough free;
// otherwise it checks that Create says so clearly.
func TestHugePages2M(t *testing.T) {
	t.Parallel()
	requireQEMU(t)
	s := baseSpec(t, "ember.end=reboot")
	s.HugePages = hypervisor.HugePages2M
	free, err := hugePagesFree()
	if err != nil || free < s.MemMiB/2 {
		log, _ := testLog()
		_, err := (&Backend{}).Create(ctxT(t), s, hypervisor.Env{Log: log})
		if err == nil || !strings.Contains(err.Error(), "huge_pages 2M") {
			t.Fatalf("Create on a host without free huge pages: %v", err)
		}
		t.Logf("host has %d free 2 MiB pages; Create refused as it should: %v", free, err)
		return
	}
	v := create(t, s)
	v.con.waitFor(t, "EMBER-GUEST: init", bootTimeout)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", v.pid()))
	if err == nil && !regexp.MustCompile(`(Shared|Private)_Hugetlb:\s+[1-9]`).Match(b) {
		t.Errorf("guest RAM is not on huge pages:\n%s", b)
	}
	v.waitExit(t, bootTimeout)
}

// TestAsyncWithoutIOURing: a QEMU that cannot use io_uring gets a clear
// error for io_engine Async (a stand-in binary fails the probe as a QEMU
// built without liburing does).
func TestAsyncWithoutIOURing(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "qemu-no-uring")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"qemu-system-x86_64: -blockdev {...}: Parameter 'aio' does not accept value 'io_uring'\" >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := minimalSpec()
	s.Drives = []hypervisor.Drive{{ID: "rootfs", PathOnHost: fake, Root: true, IOEngine: hypervisor.IOAsync}}
	_, err := (&Backend{}).Create(ctxT(t), s, hypervisor.Env{Options: map[string]string{OptionBinary: fake}})
	if err == nil || !strings.Contains(err.Error(), "io_engine Async needs io_uring") || !strings.Contains(err.Error(), "does not accept value 'io_uring'") {
		t.Fatalf("err = %v", err)
	}
	// The answer is cached per binary.
	if err2 := probeIOURing(ctxT(t), fake); err2 == nil {
		t.Error("cached probe lost the failure")
	}
}
