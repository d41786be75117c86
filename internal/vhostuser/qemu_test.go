package vhostuser

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/testguest"
	"github.com/ember-vmm/ember/internal/virtio"
	"github.com/ember-vmm/ember/internal/virtio/blk"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func requireQEMU(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIPPING QEMU vhost-user test in -short mode: it boots a Linux guest under TCG")
	}
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skipf("SKIPPING QEMU vhost-user test: qemu-system-x86_64 is not installed: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING QEMU vhost-user test: it needs root (the test guest build installs its tools with apt-get)")
	}
	return bin
}

// TestQEMUBlock boots the test guest under QEMU with a vhost-user-blk
// device served by ember's virtio-blk model over Serve: the guest reads a
// pattern the test wrote, writes one the test then finds in the file, and
// reads the disk once more for a throughput figure.
func TestQEMUBlock(t *testing.T) {
	bin := requireQEMU(t)
	guest := testguest.Require(t)

	const diskSize = 64 << 20
	disk := filepath.Join(t.TempDir(), "disk.img")
	readTag, writeTag := "EMBER-READ-"+randHex(t), "EMBER-WRITE-"+randHex(t)
	const writeSector = 4096
	img := make([]byte, diskSize)
	copy(img, readTag+"\n")
	for i := 512; i < len(img); i++ {
		img[i] = byte(i * 7)
	}
	if err := os.WriteFile(disk, img, 0o644); err != nil {
		t.Fatal(err)
	}
	var logBuf syncBuffer
	lg := logger.New("vhost-user-test", &logBuf)
	lg.SetLevel(logger.Debug)
	log := lg.Thread("vhost")
	dev, err := blk.Open(disk, blk.Config{ID: "vu", Cache: blk.Writeback, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()

	c, theirs, err := SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(dev, Options{Log: log})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	served := make(chan error, 1)
	go func() {
		err := srv.Serve(ctx, c)
		if err != nil {
			cancel() // ends QEMU, so the test fails now rather than at its timeout
		}
		served <- err
	}()

	script := strings.Join([]string{
		`echo "VU-READ $(head -c 512 /dev/vda | head -n 1)"`,
		fmt.Sprintf(`printf '%%s\n' %s | dd of=/dev/vda bs=512 seek=%d conv=sync 2>/dev/null && sync && echo VU-WRITE-DONE`, writeTag, writeSector),
		`a=$(cut -d' ' -f1 /proc/uptime); dd if=/dev/vda of=/dev/null bs=1M count=32 iflag=direct 2>/dev/null; echo "VU-SPEED $a $(cut -d' ' -f1 /proc/uptime)"`,
	}, "\n")
	cmdline := strings.Join([]string{"console=ttyS0 reboot=k panic=1", testguest.TSCEarlyArg(),
		testguest.Script(script), testguest.End(testguest.EndPoweroff)}, " ")
	cmd := exec.CommandContext(ctx, bin,
		"-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "128M",
		"-M", "microvm,acpi=on,memory-backend=mem",
		"-object", "memory-backend-memfd,id=mem,size=128M,share=on",
		// Modern virtio-mmio, as ember's qemu backend uses: the legacy
		// layout has no VERSION_1 and lets the driver pick 1024-entry queues.
		"-global", "virtio-mmio.force-legacy=false",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio", "-device", "i8042",
		"-kernel", guest.Vmlinux, "-initrd", guest.Initramfs, "-append", cmdline,
		"-chardev", "socket,id=vu,fd=3", "-device", "vhost-user-blk,chardev=vu,queue-size=256",
	)
	cmd.ExtraFiles = []*os.File{theirs}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	con := testguest.NewConsole(out)
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("QEMU stderr:\n%s\nserver log:\n%s\nconsole:\n%s", stderr.String(), logBuf.String(), con.Tail(40))
		}
	}()

	line, err := con.Wait(ctx, "VU-READ ")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest up and reading after %v", time.Since(start).Round(time.Millisecond))
	if got := strings.TrimSpace(line[strings.Index(line, "VU-READ ")+len("VU-READ "):]); got != readTag {
		t.Errorf("guest read %q from sector 0, want %q", got, readTag)
	}
	if _, err := con.Wait(ctx, "VU-WRITE-DONE"); err != nil {
		t.Fatal(err)
	}
	speed, err := con.Wait(ctx, "VU-SPEED")
	if err != nil {
		t.Fatal(err)
	}
	var t0, t1 float64
	if _, err := fmt.Sscanf(speed[strings.Index(speed, "VU-SPEED"):], "VU-SPEED %g %g", &t0, &t1); err != nil || t1 <= t0 {
		t.Logf("no throughput figure in %q", speed)
	} else {
		t.Logf("guest read throughput (32 MiB in 1 MiB O_DIRECT reads, TCG): %.1f MiB/s", 32/(t1-t0))
	}
	if _, err := con.Wait(ctx, testguest.MarkerReady); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { _, _ = io.Copy(io.Discard, out); waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Errorf("QEMU exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("QEMU did not power off")
	}

	got, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	at := writeSector * blk.SectorSize
	if want := writeTag + "\n"; !bytes.HasPrefix(got[at:], []byte(want)) {
		t.Errorf("sector %d holds %q, want %q", writeSector, got[at:at+len(want)], want)
	}
	if !bytes.Equal(got[:len(readTag)], []byte(readTag)) {
		t.Errorf("sector 0 changed")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("Serve did not return after QEMU exited")
	}
	features, protocol := srv.Negotiated()
	t.Logf("negotiated features %#x, protocol features %#x", features, protocol)
	if features&virtio.Bit(virtio.FeatureVersion1) == 0 {
		t.Errorf("VERSION_1 not negotiated: %#x", features)
	}
	if protocol&(1<<ProtoConfig) == 0 {
		t.Errorf("CONFIG not negotiated: %#x", protocol)
	}
	if st := dev.Stats(); st.ReadCount == 0 || st.WriteCount == 0 {
		t.Errorf("device stats %+v: the guest's requests did not reach the device", st)
	}
	if m := regexp.MustCompile(`vhost-user: \S+ device active`).FindString(logBuf.String()); m == "" {
		t.Errorf("the device was never activated")
	}
}

func randHex(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}
