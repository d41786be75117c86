package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// Marker lines of the I/O script (ioScript).
const (
	ioPrefix = "EMBER-BENCH: "
	ioWStart = ioPrefix + "wstart"
	ioWEnd   = ioPrefix + "wend"
	ioRStart = ioPrefix + "rstart"
	ioREnd   = ioPrefix + "rend"
	ioNEnd   = ioPrefix + "nend"
	ioErr    = ioPrefix + "error"
	// ioAlive is printed every 2 s during the network transfer, so a
	// stalled transfer shows whether the guest itself still runs.
	ioAlive = ioPrefix + "alive"
)

// ioResult holds guest I/O throughput in MiB/s per side (0 ember, 1 bare
// QEMU with the same devices).
type ioResult struct {
	write, read, net [2][]float64
	mib, netMiB      int
	argv, bareArgv   []string
	// attempts and stalls count, per side, the guests run and those whose
	// network transfer stalled (and were replaced).
	attempts, stalls [2]int
	skipped          string // why nothing was measured, if so
}

// ioScript is the guest's part: write then read the scratch drive with
// O_DIRECT (no guest page cache), then send netMiB to the host over TCP
// from a file in the guest's tmpfs (a pipe from dd would make the two
// guest processes share the one emulated vCPU while sending). Each phase
// is bracketed by marker lines the host timestamps.
func ioScript(blockMiB, netMiB int) string {
	return fmt.Sprintf(`i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo "%[3]s"
dd if=/dev/zero of=/dev/vda bs=1M count=%[1]d oflag=direct 2>/dev/null || echo "%[7]s write $?"
echo "%[4]s"
sync; echo 3 >/proc/sys/vm/drop_caches
echo "%[5]s"
dd if=/dev/vda of=/dev/null bs=1M count=%[1]d iflag=direct 2>/dev/null || echo "%[7]s read $?"
echo "%[6]s"
dd if=/dev/zero of=/tmp/net.bin bs=1M count=%[2]d 2>/dev/null || echo "%[7]s net file $?"
(while sleep 2; do echo "%[11]s"; done) &
nc %[8]s %[9]d </tmp/net.bin
kill $!
rm -f /tmp/net.bin
echo "%[10]s"
`, blockMiB, netMiB, ioWStart, ioWEnd, ioRStart, ioREnd, ioErr, netHostIP, netPort, ioNEnd, ioAlive)
}

// runIO boots a guest with a scratch drive and a tap, alternating ember and
// bare QEMU (its command line derived from ember's, drive and tap
// included), and times the guest's writes, reads and sends.
func (e *env) runIO(ctx context.Context) (*ioResult, error) {
	res := &ioResult{mib: e.cfg.ioMiB, netMiB: e.cfg.netMiB}
	if !e.isRoot {
		res.skipped = "not root: the network namespace and tap need root"
		return res, nil
	}
	ne, err := newNetEnv()
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	defer ne.Close()
	setup := vmSetup{
		memMiB:   bootMemMiB,
		switches: []string{testguest.Net(netGuestCIDR), testguest.Script(ioScript(res.mib, res.netMiB)), testguest.End(testguest.EndWait)},
		tap:      ne.tap,
	}
	bytes, netBytes := int64(res.mib)<<20, int64(res.netMiB)<<20
	for r := 0; r < e.cfg.ioRounds; r++ {
		dir := filepath.Join(e.tmp, fmt.Sprintf("io-%d", r))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		setup.drive = filepath.Join(dir, "ember-scratch.img")
		var argv []string
		err := e.ioRetry(res, 0, func() (err error) {
			argv, err = e.ioEmberOnce(ctx, dir, setup, ne, bytes, netBytes, res)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("ember I/O round %d: %w", r+1, err)
		}
		bareDrive := filepath.Join(dir, "bare-scratch.img")
		bargv, err := bareArgv(argv, e.bareInputsFor(map[string]string{setup.drive: bareDrive}, []string{ne.tap}))
		if err != nil {
			return nil, err
		}
		if r == 0 {
			res.argv, res.bareArgv = argv, bargv
		}
		err = e.ioRetry(res, 1, func() error {
			return e.ioBareOnce(ctx, dir, bargv, bareDrive, ne, bytes, netBytes, res)
		})
		if err != nil {
			return nil, fmt.Errorf("bare QEMU I/O round %d: %w", r+1, err)
		}
		e.progress("io: round %d/%d: write %.0f/%.0f, read %.0f/%.0f, net %.0f/%.0f MiB/s (ember/bare)", r+1, e.cfg.ioRounds,
			last(res.write[0]), last(res.write[1]), last(res.read[0]), last(res.read[1]), last(res.net[0]), last(res.net[1]))
	}
	return res, nil
}

// ioAttempts bounds the runs of one side in one round: a guest whose
// network transfer stalls (see errNetStall) is replaced by a fresh one.
const ioAttempts = 3

// ioRetry runs f until it succeeds, fails otherwise than by a stalled
// transfer, or has had ioAttempts tries; stalls are counted for the report.
func (e *env) ioRetry(res *ioResult, side int, f func() error) error {
	for attempt := 1; ; attempt++ {
		res.attempts[side]++
		err := f()
		if err == nil || !errors.Is(err, errNetStall) || attempt == ioAttempts {
			return err
		}
		res.stalls[side]++
		e.progress("io: %s: %v\n(retrying with a fresh VM)", sideNames[side], err)
	}
}

var sideNames = [2]string{"ember", "bare QEMU"}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func (e *env) ioEmberOnce(ctx context.Context, dir string, setup vmSetup, ne *netEnv, bytes, netBytes int64, res *ioResult) ([]string, error) {
	if err := makeScratch(setup.drive, bytes); err != nil {
		return nil, err
	}
	defer os.Remove(setup.drive)
	m, err := e.startEmber(ctx, filepath.Join(dir, "ember"), ne.ns, "--level", "Debug")
	if err != nil {
		return nil, err
	}
	defer m.close()
	if err := m.configure(ctx, e.assets, setup); err != nil {
		return nil, err
	}
	ne.expect(netBytes)
	mark := m.out.mark()
	if _, _, err := m.instanceStart(ctx); err != nil {
		return nil, err
	}
	if err := e.ioPhases(ctx, m.proc, mark, ne, res, 0); err != nil {
		return nil, err
	}
	e.noteAccel(m)
	return m.qemuArgv()
}

func (e *env) ioBareOnce(ctx context.Context, dir string, argv []string, drive string, ne *netEnv, bytes, netBytes int64, res *ioResult) error {
	if err := makeScratch(drive, bytes); err != nil {
		return err
	}
	defer os.Remove(drive)
	ne.expect(netBytes)
	p, err := e.startBareQEMU(dir, ne.ns, argv)
	if err != nil {
		return err
	}
	defer p.stop(false)
	return e.ioPhases(ctx, p, 0, ne, res, 1)
}

func last(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return xs[len(xs)-1]
}

// makeScratch creates a sparse file of n bytes; the guest's write pass
// fills it before the read pass.
func makeScratch(path string, n int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(n); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ioPhases waits for the script's markers and records the three figures.
func (e *env) ioPhases(ctx context.Context, p *proc, mark int, ne *netEnv, res *ioResult, side int) error {
	at := map[string]time.Time{}
	for _, m := range []string{ioWStart, ioWEnd, ioRStart, ioREnd} {
		t, err := waitGuest(ctx, p, mark, m)
		if err != nil {
			return err
		}
		at[m] = t
	}
	var tr transfer
	select {
	case tr = <-ne.recv:
	case <-time.After(bootTimeout):
		return fmt.Errorf("no data reached the host within %v; guest said:\n%s", bootTimeout, p.out.tail(10))
	case <-ctx.Done():
		return ctx.Err()
	}
	if tr.err != nil {
		return fmt.Errorf("network transfer: %d of %d bytes arrived, then: %w; guest said:\n%s", tr.bytes, int64(res.netMiB)<<20, tr.err, p.out.tail(10))
	}
	if _, err := waitGuest(ctx, p, mark, ioNEnd); err != nil {
		return err
	}
	if ln, bad := p.out.find(ioErr); bad {
		return fmt.Errorf("the guest's script failed: %s", strings.TrimSpace(ln.text))
	}
	mib := float64(res.mib)
	res.write[side] = append(res.write[side], mib/at[ioWEnd].Sub(at[ioWStart]).Seconds())
	res.read[side] = append(res.read[side], mib/at[ioREnd].Sub(at[ioRStart]).Seconds())
	res.net[side] = append(res.net[side], tr.mibps())
	return nil
}
