package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// Lines and markers the benchmark measures to.
const (
	lineAPIStarted = "API server started."
	// baseBootArgs replace Firecracker's defaults, whose nomodule and
	// 8250.nr_uarts=0 break the test guest; quiet keeps the emulated
	// serial port short, as a boot-time measurement wants.
	baseBootArgs = "console=ttyS0 reboot=k panic=1 pci=off quiet"
)

// Timeouts: generous, since TCG guests on a loaded 2-core machine are slow.
const (
	apiReadyTimeout = 30 * time.Second
	bootTimeout     = 3 * time.Minute
)

// emberProc is one ember process with its API client.
type emberProc struct {
	*proc
	sock   string
	client *apiClient
}

// startEmber starts ember on a fresh socket in dir and waits for its API.
// netns, if set, runs it inside that network namespace (ip netns exec
// execs ember in place, so the pid is ember's).
func (e *env) startEmber(ctx context.Context, dir, netns string, extra ...string) (*emberProc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "api.sock")
	os.Remove(sock)
	argv := append([]string{e.emberBin, "--api-sock", sock}, extra...)
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	p, err := startProc("ember", argv, dir, nil)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, apiReadyTimeout)
	defer cancel()
	if _, err := p.out.wait(wctx, 0, lineAPIStarted); err != nil {
		p.stop(false)
		return nil, fmt.Errorf("ember did not start: %w", err)
	}
	return &emberProc{proc: p, sock: sock, client: newAPIClient(sock)}, nil
}

// close ends ember (SIGTERM: it takes QEMU down and removes its runtime
// directory) and closes the client.
func (m *emberProc) close() {
	m.client.Close()
	m.stop(true)
	os.Remove(m.sock)
}

// vmSetup is what a benchmark VM gets.
type vmSetup struct {
	memMiB   int
	switches []string // test-init switches, after baseBootArgs
	drive    string   // a scratch drive (not root), "" for none
	tap      string   // a tap for eth0, "" for none
}

func (s vmSetup) bootArgs() string {
	return strings.Join(append([]string{baseBootArgs}, s.switches...), " ")
}

// configure sends the pre-boot requests a Firecracker client would.
func (m *emberProc) configure(ctx context.Context, a testguest.Assets, s vmSetup) error {
	put := func(path string, body any) error {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		_, err = m.client.mustStatus(ctx, "PUT", path, b, http.StatusNoContent)
		return err
	}
	if err := put("/machine-config", map[string]any{"vcpu_count": 1, "mem_size_mib": s.memMiB}); err != nil {
		return err
	}
	if err := put("/boot-source", map[string]any{
		"kernel_image_path": a.Vmlinux, "initrd_path": a.Initramfs, "boot_args": s.bootArgs(),
	}); err != nil {
		return err
	}
	if s.drive != "" {
		if err := put("/drives/scratch", map[string]any{
			"drive_id": "scratch", "path_on_host": s.drive, "is_root_device": false, "is_read_only": false,
		}); err != nil {
			return err
		}
	}
	if s.tap != "" {
		if err := put("/network-interfaces/eth0", map[string]any{
			"iface_id": "eth0", "host_dev_name": s.tap, "guest_mac": netGuestMAC,
		}); err != nil {
			return err
		}
	}
	return nil
}

// instanceStart sends InstanceStart and returns when it was sent and how
// long the call took.
func (m *emberProc) instanceStart(ctx context.Context) (time.Time, time.Duration, error) {
	t0 := time.Now()
	_, err := m.client.mustStatus(ctx, "PUT", "/actions", []byte(`{"action_type":"InstanceStart"}`), http.StatusNoContent)
	return t0, time.Since(t0), err
}

// qemuArgv returns the QEMU command ember logged (ember runs at Debug).
func (m *emberProc) qemuArgv() ([]string, error) {
	ln, ok := m.out.find(qemuCommandPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: ember logged no %q line (is it running at --level Debug?)", ErrArgv, qemuCommandPrefix)
	}
	return emberQEMUArgv(ln.text)
}

var accelRE = regexp.MustCompile(`QEMU (\d+\.\d+\.\d+) at \S+, accelerator (\w+) \(([^)]*)\)`)

// accelerator reads the accelerator ember's qemu backend picked, and why,
// from its Info line.
func (m *emberProc) accelerator() (qemuVersion, accel, reason string, ok bool) {
	ln, found := m.out.find(", accelerator ")
	if !found {
		return "", "", "", false
	}
	sm := accelRE.FindStringSubmatch(ln.text)
	if sm == nil {
		return "", "", "", false
	}
	return sm[1], sm[2], sm[3], true
}

// noteAccel records the accelerator from an ember that booted a VM.
func (e *env) noteAccel(m *emberProc) {
	if v, a, why, ok := m.accelerator(); ok {
		e.accelMu.Lock()
		e.qemuVersion, e.accel, e.accelReason = v, a, why
		e.accelMu.Unlock()
	}
}

// waitGuest waits for a guest console line containing substr, logged after
// mark, and returns when the benchmark read it.
func waitGuest(ctx context.Context, p *proc, mark int, substr string) (time.Time, error) {
	wctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	ln, err := p.out.wait(wctx, mark, substr)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s (pid %d): %w", p.name, p.pid, err)
	}
	return ln.at, nil
}

// startBareQEMU starts QEMU on its own with argv (from bareArgv).
func (e *env) startBareQEMU(dir, netns string, argv []string) (*proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	return startProc("qemu", argv, dir, nil)
}

// bareInputsFor is the stand-alone replacement for what ember passes.
func (e *env) bareInputsFor(drives map[string]string, taps []string) bareInputs {
	return bareInputs{Kernel: e.assets.Vmlinux, Initrd: e.assets.Initramfs, Drives: drives, Taps: taps}
}

// emberPlusQEMUMem measures ember and its QEMU child.
func (e *env) emberPlusQEMUMem(m *emberProc, memMiB int) (emberMem, qemuMem memUse, err error) {
	if emberMem, err = measureMem(m.pid, 0, nil); err != nil {
		return
	}
	q, err := qemuChild(m.pid)
	if err != nil {
		return
	}
	qemuMem, err = measureMem(q, memMiB, e.bootFiles())
	return
}

func (e *env) bootFiles() []string { return []string{e.assets.Vmlinux, e.assets.Initramfs} }
