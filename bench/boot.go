package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// bootMemMiB is the guest size of every boot, memory and density VM:
// Firecracker's reference microVM (1 vCPU, 128 MiB).
const bootMemMiB = 128

// memSettle is how long after the guest's "ready" line memory is sampled.
const memSettle = 500 * time.Millisecond

// bootResult holds the boot and memory figures, per side (0 ember, 1 bare
// QEMU).
type bootResult struct {
	boot      [2][]float64 // InstanceStart (ember) or exec (QEMU) to the init marker, ms
	startCall []float64    // ember's InstanceStart API call, ms
	emberRSS  []memUse     // ember process
	emberQEMU []memUse     // ember's QEMU
	bareQEMU  []memUse     // bare QEMU
	argv      []string     // ember's QEMU command (first round)
	bareArgv  []string     // the stand-alone equivalent
	kvmRow    string       // what the kvm backend says
}

// runBoot boots the test guest from its initramfs, alternating ember and
// bare QEMU, and samples memory once the guest is up.
func (e *env) runBoot(ctx context.Context) (*bootResult, error) {
	res := &bootResult{}
	setup := vmSetup{memMiB: bootMemMiB, switches: []string{testguest.End(testguest.EndWait)}}
	for r := 0; r < e.cfg.bootRounds; r++ {
		dir := filepath.Join(e.tmp, fmt.Sprintf("boot-%d", r))
		argv, err := e.bootEmberOnce(ctx, dir, setup, res)
		if err != nil {
			return nil, fmt.Errorf("ember boot %d: %w", r+1, err)
		}
		bargv, err := bareArgv(argv, e.bareInputsFor(nil, nil))
		if err != nil {
			return nil, err
		}
		if r == 0 {
			res.argv, res.bareArgv = argv, bargv
		}
		if err := e.bootBareOnce(ctx, dir, bargv, res); err != nil {
			return nil, fmt.Errorf("bare QEMU boot %d: %w", r+1, err)
		}
		e.progress("boot: round %d/%d: ember %.0f ms, bare QEMU %.0f ms", r+1, e.cfg.bootRounds,
			res.boot[0][len(res.boot[0])-1], res.boot[1][len(res.boot[1])-1])
	}
	res.kvmRow = e.kvmBackendStatus(ctx)
	return res, nil
}

func (e *env) bootEmberOnce(ctx context.Context, dir string, setup vmSetup, res *bootResult) ([]string, error) {
	m, err := e.startEmber(ctx, filepath.Join(dir, "ember"), "", "--level", "Debug")
	if err != nil {
		return nil, err
	}
	defer m.close()
	if err := m.configure(ctx, e.assets, setup); err != nil {
		return nil, err
	}
	mark := m.out.mark()
	t0, call, err := m.instanceStart(ctx)
	if err != nil {
		return nil, err
	}
	tInit, err := waitGuest(ctx, m.proc, mark, testguest.MarkerInit)
	if err != nil {
		return nil, err
	}
	if _, err := waitGuest(ctx, m.proc, mark, testguest.MarkerReady); err != nil {
		return nil, err
	}
	time.Sleep(memSettle)
	em, qm, err := e.emberPlusQEMUMem(m, setup.memMiB)
	if err != nil {
		return nil, err
	}
	argv, err := m.qemuArgv()
	if err != nil {
		return nil, err
	}
	e.noteAccel(m)
	res.boot[0] = append(res.boot[0], float64(tInit.Sub(t0))/float64(time.Millisecond))
	res.startCall = append(res.startCall, float64(call)/float64(time.Millisecond))
	res.emberRSS = append(res.emberRSS, em)
	res.emberQEMU = append(res.emberQEMU, qm)
	return argv, nil
}

func (e *env) bootBareOnce(ctx context.Context, dir string, argv []string, res *bootResult) error {
	p, err := e.startBareQEMU(dir, "", argv)
	if err != nil {
		return err
	}
	defer p.stop(false)
	tInit, err := waitGuest(ctx, p, 0, testguest.MarkerInit)
	if err != nil {
		return err
	}
	if _, err := waitGuest(ctx, p, 0, testguest.MarkerReady); err != nil {
		return err
	}
	time.Sleep(memSettle)
	qm, err := measureMem(p.pid, bootMemMiB, e.bootFiles())
	if err != nil {
		return err
	}
	res.boot[1] = append(res.boot[1], float64(tInit.Sub(p.started))/float64(time.Millisecond))
	res.bareQEMU = append(res.bareQEMU, qm)
	return nil
}

// kvmBackendStatus asks ember for its built-in kvm backend and reports
// why it cannot be measured here.
func (e *env) kvmBackendStatus(ctx context.Context) string {
	dir := filepath.Join(e.tmp, "kvm")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "could not ask ember: " + err.Error()
	}
	p, err := startProc("ember", []string{e.emberBin, "--api-sock", filepath.Join(dir, "api.sock"), "--backend", "kvm"}, e.tmp, nil)
	if err != nil {
		return "could not ask ember: " + err.Error()
	}
	defer p.stop(true)
	wctx, cancel := context.WithTimeout(ctx, apiReadyTimeout)
	defer cancel()
	select {
	case <-p.done:
	case <-wctx.Done():
	}
	if ln, ok := p.out.find("not built into"); ok {
		if i := strings.Index(ln.text, "The kvm backend"); i >= 0 {
			return "not built: " + strings.TrimSuffix(strings.TrimSpace(ln.text[i:]), ".") + " (ember's message)"
		}
		return "not built"
	}
	if _, ok := p.out.find(lineAPIStarted); ok {
		if !e.machine.hwVirt {
			return "built, but not measurable here: /proc/cpuinfo shows neither vmx nor svm"
		}
		return "built; not yet measured by this benchmark"
	}
	return "ember with --backend kvm said: " + strings.TrimSpace(p.out.tail(3))
}
