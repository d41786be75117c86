package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// densityPoint is the figures for N VMs started at once, per side (0 ember,
// 1 bare QEMU): the time from starting the processes to the last guest's
// init marker, in s, and the memory of all processes summed.
type densityPoint struct {
	n     int
	total [2][]float64
	mem   [2][]memUse
}

// runDensity starts N VMs at once, for each N, alternating ember and bare
// QEMU. For ember the clock starts before the N ember processes are
// started (each then takes its API, its configuration and InstanceStart);
// for QEMU, before the N QEMUs are started.
func (e *env) runDensity(ctx context.Context) ([]*densityPoint, error) {
	setup := vmSetup{memMiB: bootMemMiB, switches: []string{testguest.End(testguest.EndWait)}}
	var out []*densityPoint
	for _, n := range e.cfg.densityN {
		pt := &densityPoint{n: n}
		for r := 0; r < e.cfg.densityRounds; r++ {
			dir := filepath.Join(e.tmp, fmt.Sprintf("density-%d-%d", n, r))
			argv, err := e.densityEmber(ctx, dir, n, setup, pt)
			if err != nil {
				return nil, fmt.Errorf("density %d, ember: %w", n, err)
			}
			bargv, err := bareArgv(argv, e.bareInputsFor(nil, nil))
			if err != nil {
				return nil, err
			}
			if err := e.densityBare(ctx, dir, n, bargv, pt); err != nil {
				return nil, fmt.Errorf("density %d, bare QEMU: %w", n, err)
			}
			e.progress("density: %d VMs, round %d/%d: ember %.1f s, bare QEMU %.1f s", n, r+1, e.cfg.densityRounds,
				pt.total[0][len(pt.total[0])-1], pt.total[1][len(pt.total[1])-1])
		}
		out = append(out, pt)
	}
	return out, nil
}

func (e *env) densityEmber(ctx context.Context, dir string, n int, setup vmSetup, pt *densityPoint) ([]string, error) {
	ems := make([]*emberProc, n)
	inits := make([]time.Time, n)
	errs := make([]error, n)
	defer func() {
		var wg sync.WaitGroup
		for _, m := range ems {
			if m != nil {
				wg.Add(1)
				go func() { defer wg.Done(); m.close() }()
			}
		}
		wg.Wait()
	}()
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := e.startEmber(ctx, filepath.Join(dir, fmt.Sprintf("ember-%d", i)), "", "--level", "Debug")
			if err != nil {
				errs[i] = err
				return
			}
			ems[i] = m
			if err := m.configure(ctx, e.assets, setup); err != nil {
				errs[i] = err
				return
			}
			mark := m.out.mark()
			if _, _, err := m.instanceStart(ctx); err != nil {
				errs[i] = err
				return
			}
			inits[i], errs[i] = waitGuest(ctx, m.proc, mark, testguest.MarkerInit)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	pt.total[0] = append(pt.total[0], latest(inits).Sub(t0).Seconds())
	var sum memUse
	for _, m := range ems {
		if _, err := waitGuest(ctx, m.proc, 0, testguest.MarkerReady); err != nil {
			return nil, err
		}
	}
	time.Sleep(memSettle)
	for _, m := range ems {
		em, qm, err := e.emberPlusQEMUMem(m, setup.memMiB)
		if err != nil {
			return nil, err
		}
		sum = sum.add(em).add(qm)
	}
	pt.mem[0] = append(pt.mem[0], sum)
	e.noteAccel(ems[0])
	return ems[0].qemuArgv()
}

func (e *env) densityBare(ctx context.Context, dir string, n int, argv []string, pt *densityPoint) error {
	ps := make([]*proc, n)
	inits := make([]time.Time, n)
	errs := make([]error, n)
	defer func() {
		for _, p := range ps {
			if p != nil {
				p.stop(false)
			}
		}
	}()
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := e.startBareQEMU(dir, "", argv)
			if err != nil {
				errs[i] = err
				return
			}
			ps[i] = p
			inits[i], errs[i] = waitGuest(ctx, p, 0, testguest.MarkerInit)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	pt.total[1] = append(pt.total[1], latest(inits).Sub(t0).Seconds())
	for _, p := range ps {
		if _, err := waitGuest(ctx, p, 0, testguest.MarkerReady); err != nil {
			return err
		}
	}
	time.Sleep(memSettle)
	var sum memUse
	for _, p := range ps {
		qm, err := measureMem(p.pid, bootMemMiB, e.bootFiles())
		if err != nil {
			return err
		}
		sum = sum.add(qm)
	}
	pt.mem[1] = append(pt.mem[1], sum)
	return nil
}

func latest(ts []time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}
