package testguest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests boot the assets under bare QEMU (TCG, microvm with ACPI, as
// ember's QEMU backend does) so that a broken kernel, initramfs, rootfs or
// test init fails here, not in some distant end-to-end test.

const bootTimeout = 2 * time.Minute

func needQEMU(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIP (-short): guest boot tests take seconds each under TCG")
	}
	q, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("SKIP LOUDLY: qemu-system-x86_64 not found; the guest assets are NOT proven to boot " +
			"(apt-get install qemu-system-x86)")
	}
	return q
}

type vm struct {
	cmd     *exec.Cmd
	con     *Console
	start   time.Time
	exited  chan struct{}
	waitErr error
	qmp     string
}

type bootOpts struct {
	kernel  string
	append  []string
	extra   []string // more QEMU arguments
	netns   string   // run QEMU inside this network namespace
	withQMP bool
}

// boot starts QEMU with the initramfs and the given kernel; the VM is killed
// when the test ends.
func boot(t *testing.T, qemu string, a Assets, o bootOpts) *vm {
	t.Helper()
	args := []string{"-accel", "tcg", "-M", "microvm,acpi=on", "-cpu", "max", "-m", "256", "-smp", "1",
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot", "-device", "i8042",
		"-kernel", o.kernel, "-initrd", a.Initramfs,
		"-append", strings.Join(append([]string{"console=ttyS0", "quiet", "panic=-1", "reboot=k", TSCEarlyArg()}, o.append...), " "),
	}
	v := &vm{exited: make(chan struct{})}
	if o.withQMP {
		v.qmp = filepath.Join(t.TempDir(), "qmp.sock")
		args = append(args, "-qmp", "unix:"+v.qmp+",server=on,wait=off")
	}
	args = append(args, o.extra...)
	if o.netns != "" {
		args = append([]string{"netns", "exec", o.netns, qemu}, args...)
		qemu = "ip"
	}
	v.cmd = exec.Command(qemu, args...)
	// QEMU's own complaints go to the console too, so failures show them.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stdout, v.cmd.Stderr = pw, pw
	v.start = time.Now()
	err = v.cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		t.Fatalf("start qemu: %v", err)
	}
	v.con = NewConsole(pr)
	go func() {
		v.waitErr = v.cmd.Wait()
		close(v.exited)
	}()
	t.Cleanup(func() {
		v.cmd.Process.Kill()
		<-v.exited
		<-v.con.Done()
		pr.Close()
		if t.Failed() {
			t.Logf("guest console:\n%s", v.con.Tail(60))
		}
	})
	return v
}

// waitExit waits for QEMU to end by itself and checks it exited 0.
func (v *vm) waitExit(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-v.exited:
		if v.waitErr != nil {
			t.Fatalf("qemu: %v", v.waitErr)
		}
	case <-ctx.Done():
		t.Fatalf("qemu still running after %v", bootTimeout)
	}
}

func mustWait(t *testing.T, ctx context.Context, c *Console, substr string) string {
	t.Helper()
	line, err := c.Wait(ctx, substr)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

func TestBootInitramfs(t *testing.T) {
	qemu := needQEMU(t)
	a := Require(t)
	for _, tc := range []struct{ name, kernel string }{
		{"vmlinux", a.Vmlinux},
		{"bzImage", a.BzImage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
			defer cancel()
			v := boot(t, qemu, a, bootOpts{kernel: tc.kernel, append: []string{
				Script(`echo "sum $((20 + 22)) $(uname -r)"; [ "$$" != 1 ]`),
				MemInfo(), End(EndReboot),
			}})
			mustWait(t, ctx, v.con, MarkerInit)
			t.Logf("%s: %v from QEMU start to %q", tc.name, time.Since(v.start).Round(time.Millisecond), MarkerInit)
			mustWait(t, ctx, v.con, "sum 42 "+a.KernelVersion)
			mustWait(t, ctx, v.con, MarkerPrefix+"sh 1 exit 0")
			line := mustWait(t, ctx, v.con, MarkerPrefix+"mem ")
			var total, free int
			if _, err := fmt.Sscanf(line, MarkerPrefix+"mem %d %d", &total, &free); err != nil || total < 100_000 || free <= 0 || free > total {
				t.Errorf("mem line %q: want MemTotal ~256 MiB and 0 < MemFree <= MemTotal", line)
			}
			mustWait(t, ctx, v.con, MarkerReady)
			v.waitExit(t, ctx) // reboot -f with -no-reboot ends QEMU
		})
	}
}

func TestBootRootfsPersists(t *testing.T) {
	qemu := needQEMU(t)
	a := Require(t)
	disk := RootfsCopy(t)
	drive := []string{"-drive", "id=rootfs,file=" + disk + ",format=raw,if=none", "-device", "virtio-blk-device,drive=rootfs"}
	token := randomToken(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*bootTimeout)
	defer cancel()
	v := boot(t, qemu, a, bootOpts{kernel: a.Vmlinux, extra: drive, append: []string{
		"root=/dev/vda", "rw",
		Script(`grep -q " / ext4 rw" /proc/mounts && echo ` + token + ` > /persist && sync && echo "wrote $(cat /persist)"`),
		End(EndReboot),
	}})
	mustWait(t, ctx, v.con, MarkerInit)
	mustWait(t, ctx, v.con, "wrote "+token)
	mustWait(t, ctx, v.con, MarkerReady)
	v.waitExit(t, ctx)

	v = boot(t, qemu, a, bootOpts{kernel: a.BzImage, extra: drive, append: []string{
		"root=UUID=" + a.RootfsUUID, "ro",
		Script(`echo "read $(cat /persist)"; if touch /x 2>/dev/null; then echo writable; else echo read-only; fi`),
		End(EndReboot),
	}})
	mustWait(t, ctx, v.con, "read "+token)
	mustWait(t, ctx, v.con, "read-only")
	mustWait(t, ctx, v.con, MarkerReady)
	v.waitExit(t, ctx)
}

func TestBootMissingRootIsFatal(t *testing.T) {
	qemu := needQEMU(t)
	a := Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	v := boot(t, qemu, a, bootOpts{kernel: a.Vmlinux, append: []string{"root=/dev/vda", "ember.rootwait=1"}})
	line := mustWait(t, ctx, v.con, MarkerFatal)
	if !strings.Contains(line, "/dev/vda") {
		t.Errorf("fatal line %q does not name the device", line)
	}
	v.waitExit(t, ctx)
	for _, l := range v.con.Lines() {
		if strings.Contains(l, MarkerInit) {
			t.Fatalf("test init ran without its root: %q", l)
		}
	}
}

func TestBootNetworkInNamespace(t *testing.T) {
	qemu := needQEMU(t)
	if os.Geteuid() != 0 {
		t.Skip("SKIP LOUDLY: the virtio-net boot test needs root for a network namespace and a tap")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("SKIP LOUDLY: no ip(8) for the virtio-net boot test")
	}
	a := Require(t)
	ns := fmt.Sprintf("ember-tg-%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Everything lives in a namespace of our own: no private-range traffic
	// can reach the machine's real network.
	run("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("-n", ns, "tuntap", "add", "dev", "tap0", "mode", "tap")
	run("-n", ns, "addr", "add", "172.16.0.1/30", "dev", "tap0")
	run("-n", ns, "link", "set", "tap0", "up")

	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	v := boot(t, qemu, a, bootOpts{kernel: a.Vmlinux, netns: ns,
		extra: []string{"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
			"-device", "virtio-net-device,netdev=n0,mac=06:00:ac:10:00:02"},
		append: []string{Net("172.16.0.2/30"), Gateway("172.16.0.1"), Ping("172.16.0.1"),
			Script(`cat /sys/class/net/eth0/address`), End(EndReboot)},
	})
	mustWait(t, ctx, v.con, MarkerPrefix+"net ok eth0 172.16.0.2/30")
	mustWait(t, ctx, v.con, MarkerPrefix+"gw ok 172.16.0.1")
	mustWait(t, ctx, v.con, MarkerPrefix+"ping ok")
	mustWait(t, ctx, v.con, "06:00:ac:10:00:02")
	mustWait(t, ctx, v.con, MarkerReady)
	v.waitExit(t, ctx)
}

func TestBootCounterAndCtrlAltDel(t *testing.T) {
	qemu := needQEMU(t)
	a := Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	v := boot(t, qemu, a, bootOpts{kernel: a.Vmlinux, withQMP: true, append: []string{Counter(), End(EndWait)}})
	mustWait(t, ctx, v.con, MarkerReady)
	i, _, err := v.con.WaitFrom(ctx, 0, MarkerPrefix+"tick 1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.con.WaitFrom(ctx, i+1, MarkerPrefix+"tick 5"); err != nil {
		t.Fatal(err)
	}
	q := dialQMP(t, ctx, v.qmp)
	q.do(t, `{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"ctrl"},{"type":"qcode","data":"alt"},{"type":"qcode","data":"delete"}]}}`)
	mustWait(t, ctx, v.con, MarkerCtrlAltDel)
	v.waitExit(t, ctx)
}

type qmpConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialQMP(t *testing.T, ctx context.Context, path string) *qmpConn {
	t.Helper()
	var c net.Conn
	var err error
	for c == nil {
		var d net.Dialer
		if c, err = d.DialContext(ctx, "unix", path); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("qmp %s: %v", path, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Cleanup(func() { c.Close() })
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	q := &qmpConn{c: c, r: bufio.NewReader(c)}
	if _, err := q.r.ReadString('\n'); err != nil { // greeting
		t.Fatalf("qmp greeting: %v", err)
	}
	q.do(t, `{"execute":"qmp_capabilities"}`)
	return q
}

func (q *qmpConn) do(t *testing.T, cmd string) {
	t.Helper()
	if _, err := q.c.Write([]byte(cmd + "\n")); err != nil {
		t.Fatalf("qmp write: %v", err)
	}
	for {
		line, err := q.r.ReadString('\n')
		if err != nil {
			t.Fatalf("qmp %s: %v", cmd, err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("qmp reply %q: %v", line, err)
		}
		if e, ok := m["error"]; ok {
			t.Fatalf("qmp %s: %s", cmd, e)
		}
		if _, ok := m["return"]; ok {
			return
		}
	}
}

func randomToken(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
