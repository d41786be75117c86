package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// TestBoot boots both kernel formats with the initramfs and the ext4 root
// on /dev/vda, and checks the guest really runs from that root with the
// command line ember built.
func TestBoot(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"vmlinux", "bzImage"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			a := requireVM(t)
			kernel := a.Vmlinux
			if format == "bzImage" {
				kernel = a.BzImage
			}
			e := startEmber(t, startOpts{})
			e.putMachine(128)
			// The root's file system type, its device number, vda's device
			// number and the UUID in vda's ext4 superblock (offset 1128).
			e.putBootSource(kernel, a.Initramfs, testguest.Script(`
echo "EMBER-GUEST: rootfs $(awk '$2 == "/" {print $3}' /proc/mounts | tail -n 1) $(stat -c %d /) $(cat /sys/block/vda/dev) $(dd if=/dev/vda bs=1 skip=1128 count=16 2>/dev/null | od -An -tx1 | tr -d ' \n')"
echo "EMBER-GUEST: cmdline $(cat /proc/cmdline)"
`), testguest.End(testguest.EndReboot))
			e.putDrive("rootfs", rootfsCopy(t), true, false)
			filters := seccompFilters(t, e.pid)
			start := time.Now()
			e.action("InstanceStart")
			e.waitLine(testguest.MarkerInit, bootTimeout)
			t.Logf("%s: InstanceStart to %q in %v", format, testguest.MarkerInit, time.Since(start).Round(time.Millisecond))
			// ember confines itself with one filter from startup; on qemu,
			// once QEMU runs, a second one denies exec.
			want := map[string]int{"qemu": 2, "kvm": 1}[e.backend]
			if filters != 1 || seccompFilters(t, e.pid) != want {
				t.Errorf("ember's seccomp filters: %d before InstanceStart, %d after; want 1 and %d", filters, seccompFilters(t, e.pid), want)
			}

			rootfs := e.waitLine("EMBER-GUEST: rootfs ", bootTimeout)
			if f := strings.Fields(rootfs); len(f) != 6 || f[2] != "ext4" || f[3] != devNumber(f[4]) || f[5] != strings.ReplaceAll(a.RootfsUUID, "-", "") {
				t.Errorf("the guest's / is not the ext4 root drive on vda with UUID %s: %q (fs type, root dev, vda dev, vda UUID)", a.RootfsUUID, rootfs)
			}
			cmdline := e.waitLine("EMBER-GUEST: cmdline ", bootTimeout)
			// As Firecracker does, ember adds root= for the root drive.
			if !strings.Contains(cmdline, "root=/dev/vda rw") {
				t.Errorf("the guest's command line lacks root=/dev/vda rw: %s", cmdline)
			}
			if e.backend == "qemu" && !hostHasHardwareVirt() && !strings.Contains(cmdline, "tsc_early_khz=") {
				t.Errorf("under TCG ember must add tsc_early_khz=: %s", cmdline)
			}
			e.wantExit(0, bootTimeout)
		})
	}
}

// devNumber turns "major:minor" into the number stat -c %d prints, or "".
func devNumber(mm string) string {
	maj, min, ok := strings.Cut(mm, ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return ""
	}
	return strconv.FormatUint(ma<<8|mi&0xff|(mi&^0xff)<<12, 10)
}

// TestRootPersists: a file the first VM writes to its root drive is read
// back by a second VM (a second ember) booted from the same image.
func TestRootPersists(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	root := rootfsCopy(t)
	token := randHex(t, 8)

	first := startEmber(t, startOpts{})
	first.putDrive("rootfs", root, true, false)
	first.boot(a, 128, testguest.Script("echo "+token+" > /persist && sync"), testguest.End(testguest.EndReboot))
	first.waitLine("EMBER-GUEST: sh 1 exit 0", bootTimeout)
	first.wantExit(0, bootTimeout)

	second := startEmber(t, startOpts{})
	second.putDrive("rootfs", root, true, false)
	second.boot(a, 128, testguest.Script(`echo "EMBER-GUEST: persist $(cat /persist)"`), testguest.End(testguest.EndReboot))
	if got := second.waitLine("EMBER-GUEST: persist", bootTimeout); got != "EMBER-GUEST: persist "+token {
		t.Errorf("the second VM read %q, want the token %s", got, token)
	}
	second.wantExit(0, bootTimeout)
}

// TestReadOnlyDrive: the guest cannot change a drive attached with
// is_read_only, not even after clearing its own read-only flag.
func TestReadOnlyDrive(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	content := bytes.Repeat([]byte(randHex(t, 32)), (1<<20)/64)
	img := writeFile(t, filepath.Join(e.dir, "ro.img"), content)
	e.putDrive("data", img, false, true)
	e.boot(a, 128, testguest.Script(`
echo "EMBER-GUEST: ro-flag $(cat /sys/block/vda/ro)"
blockdev --setrw /dev/vda 2>/dev/null
if dd if=/dev/zero of=/dev/vda bs=4096 count=4 oflag=direct conv=fsync 2>/dev/null; then echo "EMBER-GUEST: write allowed"; else echo "EMBER-GUEST: write refused"; fi
echo "EMBER-GUEST: head $(dd if=/dev/vda bs=16 count=1 iflag=direct 2>/dev/null)"
`), testguest.End(testguest.EndReboot))
	e.waitLine("EMBER-GUEST: sh 1 exit", bootTimeout)
	for _, want := range []string{"EMBER-GUEST: ro-flag 1", "EMBER-GUEST: write refused", "EMBER-GUEST: head " + string(content[:16])} {
		if !e.hasLine(want) {
			t.Errorf("the guest did not report %q", want)
		}
	}
	e.wantExit(0, bootTimeout)
	after, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(after) != sha256.Sum256(content) {
		t.Error("the read-only drive's file changed")
	}
}

// TestHostileDrivePath: a drive path full of QEMU option syntax is that
// file and nothing else. Were the path pasted into a -drive option, the
// trailing "file=<decoy>" would win and the guest would read the decoy.
// Kernel and initrd paths with option syntax boot as well.
func TestHostileDrivePath(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	decoyToken, realToken := randHex(t, 16), randHex(t, 16)
	decoy := writeFile(t, filepath.Join(e.dir, "decoy.img"), padMiB(decoyToken))
	hostile := e.dir + "/a,file=" + decoy
	if !strings.Contains(hostile, ",file=/") {
		t.Fatalf("bad test path %q", hostile)
	}
	writeFile(t, hostile, padMiB(realToken))
	e.putDrive("data", hostile, false, false)
	// The kernel and initrd under hostile names too.
	kernel, initrd := e.dir+"/vmlinux,initrd="+decoy, e.dir+"/initrd,file="+decoy
	for target, link := range map[string]string{a.Vmlinux: kernel, a.Initramfs: initrd} {
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	e.putMachine(128)
	e.putBootSource(kernel, initrd, testguest.Script(`echo "EMBER-GUEST: data $(head -c 32 /dev/vda)"`), testguest.End(testguest.EndReboot))
	e.action("InstanceStart")
	switch got := strings.TrimPrefix(e.waitLine("EMBER-GUEST: data", bootTimeout), "EMBER-GUEST: data "); got {
	case realToken:
	case decoyToken:
		t.Fatalf("option injection: the guest sees %s, not %s", decoy, hostile)
	default:
		t.Fatalf("the guest read %q from the drive, want %q", got, realToken)
	}
	e.wantExit(0, bootTimeout)
}

// padMiB is token followed by a newline and zeros up to 1 MiB.
func padMiB(token string) []byte {
	b := make([]byte, 1<<20)
	copy(b, token+"\n")
	return b
}

// TestSerialOutPath: with PUT /serial the guest console goes to the file,
// and stdout keeps only the log.
func TestSerialOutPath(t *testing.T) {
	t.Parallel()
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	serial := filepath.Join(e.dir, "serial.out")
	e.mustAPI("PUT", "/serial", map[string]string{"serial_out_path": serial}, http.StatusNoContent)
	e.boot(a, 128, testguest.End(testguest.EndReboot))
	e.wantExit(0, bootTimeout)
	out, err := os.ReadFile(serial)
	if err != nil {
		t.Fatalf("serial_out_path: %v", err)
	}
	for _, want := range []string{testguest.MarkerInit, testguest.MarkerReady, "reboot: Restarting system"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("the serial file lacks %q:\n%s", want, out)
		}
	}
	if bytes.Contains(out, []byte("Running Firecracker")) {
		t.Errorf("log lines went to the serial file:\n%s", out)
	}
	for _, l := range e.con.Lines() {
		if strings.Contains(l, testguest.MarkerPrefix) {
			t.Errorf("guest output on stdout despite serial_out_path: %q", l)
		}
	}
}

// seccompFilters is the number of seccomp filters on process pid.
func seccompFilters(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Seccomp_filters:\s+(\d+)$`).FindSubmatch(b)
	if m == nil {
		t.Skip("SKIPPING the seccomp check: this kernel's /proc/<pid>/status has no Seccomp_filters line, so ember's filters are NOT checked")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
