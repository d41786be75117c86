package nested

import (
	"bufio"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

//go:embed l1init.sh
var l1Init []byte

// Paths inside L1.
const (
	l1Dir       = "/nested"
	l1TestBin   = l1Dir + "/bin/test"
	l1GuestDisk = "/dev/vda"
)

// Markers the L1 init prints on its console (ttyS0).
const (
	markInit     = "EMBER-NESTED: init"
	markKVMReady = "EMBER-NESTED: kvm ready"
	markInnerRun = "EMBER-NESTED: inner start"
	markAlive    = "EMBER-NESTED: alive "

	markFatal     = "EMBER-NESTED: fatal: "
	resultPrefix  = "EMBER-NESTED " // + token + " exit N" | " fatal REASON", on ttyS1
	consoleTail   = 40
	consoleKeep   = 500 // console lines kept for failure messages
	drainAfterEnd = 5 * time.Second
)

// l1Slots bounds concurrent L1 VMs in one test process: each keeps a host
// core busy, and more of them than cores only makes all of them slow.
var l1Slots = make(chan struct{}, max(1, runtime.NumCPU()))

func (o Options) withDefaults() (Options, error) {
	if o.MemoryMiB == 0 {
		o.MemoryMiB = DefaultMemoryMiB
	}
	if o.CPUs == 0 {
		o.CPUs = DefaultCPUs
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.FrozenAfter == 0 {
		o.FrozenAfter = DefaultFrozenAfter
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = DefaultBootTimeout
	}
	switch {
	case o.MemoryMiB < 128:
		return o, fmt.Errorf("%w: MemoryMiB %d is below 128", ErrOptions, o.MemoryMiB)
	case o.CPUs < 1 || o.CPUs > 16:
		return o, fmt.Errorf("%w: CPUs %d is not in 1..16", ErrOptions, o.CPUs)
	case o.Timeout < 0 || o.BootTimeout < 0 || o.FrozenAfter < 0:
		return o, fmt.Errorf("%w: negative timeout", ErrOptions)
	}
	for _, kv := range o.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return o, fmt.Errorf("%w: Env entry %q is not KEY=VALUE", ErrOptions, kv)
		}
	}
	for name, src := range o.Files {
		if _, err := cleanArchivePath(name); err != nil {
			return o, fmt.Errorf("%w: Files: %v", ErrOptions, err)
		}
		st, err := os.Stat(src)
		if err != nil {
			return o, fmt.Errorf("%w: Files[%q]: %v", ErrOptions, name, err)
		}
		if !st.Mode().IsRegular() {
			return o, fmt.Errorf("%w: Files[%q]: %s is not a regular file", ErrOptions, name, src)
		}
	}
	for _, m := range o.Modules {
		if !slices.Contains(optionalModules, m) {
			return o, fmt.Errorf("%w: Modules: %q is not one of %v", ErrOptions, m, optionalModules)
		}
	}
	for _, a := range o.KernelArgs {
		if strings.ContainsAny(a, " \t\n") || a == "" {
			return o, fmt.Errorf("%w: KernelArgs entry %q must be one non-empty word", ErrOptions, a)
		}
	}
	return o, nil
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// innerScript is /nested/run: the inner test's command line with a clean
// environment.
func innerScript(pattern string, timeout time.Duration, env []string) string {
	vars := []string{
		"PATH=/bin:/sbin:/usr/bin:/usr/sbin",
		"HOME=/root",
		"TMPDIR=/tmp",
		EnvInner + "=1",
		EnvDir + "=" + l1Dir,
	}
	vars = append(vars, env...)
	var b strings.Builder
	b.WriteString("exec env -i")
	for _, v := range vars {
		b.WriteString(" " + shellQuote(v))
	}
	fmt.Fprintf(&b, " %s -test.run %s -test.v -test.count=1 -test.timeout=%ds\n",
		l1TestBin, shellQuote(pattern), int(timeout/time.Second))
	return b.String()
}

// buildInitrd writes L1's initrd to path: the test guest's initramfs, then
// (4-byte aligned, as the kernel's unpacker requires between archives) an
// uncompressed archive whose /init replaces the guest's.
func buildInitrd(path string, a testguest.Assets, mods moduleCache, testBin string, o Options, token, script string) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	base, err := os.Open(a.Initramfs)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, base)
	base.Close()
	if err != nil {
		return err
	}
	if r := n % 4; r != 0 {
		if _, err := out.Write(make([]byte, 4-r)); err != nil {
			return err
		}
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	c := newCPIOWriter(bw)
	c.Bytes("init", 0o755, l1Init)
	config := "NESTED_TOKEN=" + shellQuote(token) + "\n"
	if o.Guest {
		config += "NESTED_GUEST_DISK=" + l1GuestDisk + "\n"
	}
	c.Bytes("nested/run", 0o755, []byte(script))
	c.Dir("nested/files", 0o755)
	if len(o.Modules) > 0 {
		config += "NESTED_MODULES=" + shellQuote(strings.Join(o.Modules, " ")) + "\n"
	}
	c.Bytes("nested/config", 0o644, []byte(config))
	if err := mods.addTo(c, "nested/modules", o.Modules); err != nil {
		return err
	}
	c.File("nested/bin/test", testBin, 0o755)
	c.Files("nested/files", o.Files)
	if err := c.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return out.Close()
}

// lineReader sends r's lines (without line ends) on a channel, closed at
// EOF or a read error; it gives up sending once done is closed, so an
// abandoned reader never blocks.
func lineReader(r io.Reader, done <-chan struct{}) <-chan string {
	ch := make(chan string, 256)
	go func() {
		defer close(ch)
		br := bufio.NewReaderSize(r, 64*1024)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				select {
				case ch <- strings.TrimRight(line, "\r\n"):
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// l1Run is one L1 VM's state as runL1 watches it.
type l1Run struct {
	start                             time.Time
	booted, kvmReady, innerAt, doneAt time.Duration
	console, inner                    []string
	uptime                            string // L1's own uptime at kvm ready
	result                            string // "exit N" or "fatal ..." from the init, "" if none
	initFatal                         string
	qemuLog                           string // QEMU's -D file: CPU resets and triple faults
	gone                              time.Duration
	lastAlive                         time.Time // the last heartbeat
	registers                         string    // L1's vCPUs when it froze
}

// l1Attempts bounds how often runL1 boots L1 when L1 itself triple faults.
const l1Attempts = 2

func errLine(err error) string {
	if err == nil {
		return ""
	}
	return err.Error() + "\n"
}

// monitorRegisters asks QEMU's monitor for L1's vCPU registers and keeps
// the lines that say where each vCPU is.
func monitorRegisters(path string) string {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return "\n(no monitor: " + err.Error() + ")"
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "info registers -a\n")
	b, _ := io.ReadAll(c) // until the deadline: the monitor stays open
	var keep []string
	for l := range strings.Lines(string(b)) {
		l = strings.TrimRight(l, "\r\n")
		for _, p := range []string{"CPU#", "RAX=", "RIP=", "CS =", "CR0=", "EFER="} {
			if strings.HasPrefix(l, p) {
				keep = append(keep, l)
			}
		}
	}
	return "\nL1's vCPUs (QEMU monitor):\n" + strings.Join(keep, "\n")
}

// emulatorFault says how L1 failed on its own, or "" if it did not:
// before the inner test reported, it froze, or it triple faulted (QEMU
// exited 0 under -no-reboot and logged one); or the inner test failed
// after showing that L1's KVM lost an interrupt of its L2 guest
// (LostInterrupt).
func (r *l1Run) emulatorFault(failure, waitErr error) string {
	switch {
	case r.result != "" && r.result != "exit 0" && r.innerSaid(markLostInterrupt):
		return "LOST AN INTERRUPT OF ITS L2 GUEST"
	case r.result != "" || r.innerAt == 0: // it reported, or never got that far
		return ""
	case errors.Is(failure, ErrFrozen):
		return "FROZE"
	case failure != nil || waitErr != nil:
		return ""
	}
	if b, err := os.ReadFile(r.qemuLog); err == nil && strings.Contains(string(b), "Triple fault") {
		return "TRIPLE FAULTED"
	}
	// The inner test runs as a process: it cannot panic L1's kernel, but
	// memory the emulator corrupted can (seen: "corrupted stack end").
	for _, l := range r.console {
		if strings.Contains(l, "Kernel panic") {
			return "PANICKED"
		}
	}
	return ""
}

// innerSaid reports whether the inner test printed a line containing s.
func (r *l1Run) innerSaid(s string) bool {
	for _, l := range r.inner {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func (r *l1Run) tail() string {
	lines := r.console
	if len(lines) > consoleTail {
		lines = lines[len(lines)-consoleTail:]
	}
	if len(lines) == 0 {
		return "(L1 console empty)"
	}
	return "L1 console (last lines):\n" + strings.Join(lines, "\n")
}

// resets reports what QEMU logged about L1 besides its CPUs' register
// dumps at reset: a triple fault in L1 ends QEMU with status 0 and no
// word on the console, and guest errors may say what came before it.
func (r *l1Run) resets() string {
	b, err := os.ReadFile(r.qemuLog)
	if err != nil {
		return ""
	}
	var keep []string
	for l := range strings.Lines(string(b)) {
		if strings.Contains(l, "=") || strings.HasPrefix(l, "CPU Reset") {
			continue // a register dump
		}
		keep = append(keep, strings.TrimRight(l, "\n"))
	}
	if len(keep) > consoleTail {
		keep = keep[len(keep)-consoleTail:]
	}
	if len(keep) == 0 {
		return ""
	}
	return "\nQEMU log (" + r.qemuLog + "):\n" + strings.Join(keep, "\n")
}

func (r *l1Run) timings(total time.Duration) string {
	f := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	up := ""
	if r.uptime != "" {
		up = " (L1 uptime " + r.uptime + "s)"
	}
	return fmt.Sprintf("since QEMU start: L1 init %s, kvm ready %s%s, inner test started %s, inner done %s, L1 gone %s",
		f(r.booted), f(r.kvmReady), up, f(r.innerAt), f(r.doneAt), f(total))
}

func runL1(t *testing.T, opts Options, why string) {
	t.Helper()
	o, err := opts.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skipf("SKIP LOUDLY: no usable KVM here (%s) and %v; this KVM test did NOT run (apt-get install qemu-system-x86)", why, ErrNoQEMU)
	}
	t.Logf("nested: no usable KVM here (%s); running %s inside an L1 VM (QEMU TCG, nested SVM)", why, t.Name())
	a := testguest.Require(t)

	prepStart := time.Now()
	ctx := t.Context()
	mods, err := prepareModules(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	testBin, rebuilt, err := staticTestBinary(ctx, cacheRoot(a))
	if err != nil {
		t.Fatal(err)
	}
	if rebuilt {
		t.Logf("nested: the test binary is dynamically linked; rebuilt it with CGO_ENABLED=0 for L1")
	}
	shipsLoader := false
	for name := range o.Files {
		shipsLoader = shipsLoader || strings.HasPrefix(filepath.Base(name), "ld-linux")
	}
	for name, src := range o.Files {
		if shipsLoader {
			break // dynamic executables come with their loader
		}
		if st, err := os.Stat(src); err == nil && st.Mode()&0o111 != 0 {
			if err := CheckStatic(src); errors.Is(err, ErrNotStatic) {
				t.Logf("nested: warning: Files[%q]: %v (L1 has no dynamic loader unless you ship one)", name, err)
			}
		}
	}
	var disk string
	if o.Guest {
		if disk, err = prepareGuestDisk(ctx, a); err != nil {
			t.Fatal(err)
		}
	}

	timeout := o.Timeout
	if dl, ok := t.Deadline(); ok {
		if left := time.Until(dl) - 10*time.Second; left < timeout {
			timeout = left
		}
	}
	deadline := time.Now().Add(timeout)
	for attempt := 1; ; attempt++ {
		timeout := time.Until(deadline)
		if timeout < 20*time.Second {
			t.Fatalf("%v: only %v left before the test deadline; raise -timeout", ErrTimeout, timeout)
		}
		run, failure, waitErr := bootL1(t, qemu, o, a, mods, testBin, disk, timeout, attempt)
		t.Logf("nested: prepared in %.2fs; %s", (run.start.Sub(prepStart)).Seconds(), run.timings(run.gone))
		prepStart = time.Now()
		if why := run.emulatorFault(failure, waitErr); why != "" && attempt < l1Attempts {
			// An L2 guest or a process in L1 cannot reset or freeze L1's
			// kernel; QEMU's emulated SVM sometimes does
			// (docs/reliability.md).
			t.Logf("nested: L1 ITSELF %s (attempt %d of %d; QEMU's TCG, not the code under test); "+
				"running the inner test again in a fresh L1. What it printed:\n%s%s%s%s",
				why, attempt, l1Attempts, errLine(failure), run.tail(), run.resets(), run.registers)
			continue
		}
		report(t, run, failure, waitErr)
		return
	}
}

// bootL1 runs the inner test in one L1 VM and watches it for at most
// timeout.
func bootL1(t *testing.T, qemu string, o Options, a testguest.Assets, mods moduleCache, testBin, disk string, timeout time.Duration, attempt int) (run *l1Run, failure, waitErr error) {
	t.Helper()
	ctx := t.Context()
	// The inner test times out first (L1 boots in seconds), so a hung body
	// panics with its goroutines' stacks in the log before L1 is killed.
	innerTimeout := max(timeout-30*time.Second, timeout/2)

	var tok [8]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return &l1Run{start: time.Now()}, err, nil
	}
	token := hex.EncodeToString(tok[:])
	tmp := t.TempDir()
	initrd := filepath.Join(tmp, "l1-initrd")
	qemuLog := filepath.Join(tmp, "l1-qemu.log")
	monitor := filepath.Join(tmp, "l1-monitor.sock")
	script := innerScript(runPattern(t.Name()), innerTimeout, append(o.Env[:len(o.Env):len(o.Env)], EnvAttempt+"="+strconv.Itoa(attempt)))
	if err := buildInitrd(initrd, a, mods, testBin, o, token, script); err != nil {
		return &l1Run{start: time.Now()}, fmt.Errorf("nested: L1 initrd: %w", err), nil
	}
	select {
	case l1Slots <- struct{}{}:
	case <-ctx.Done():
		return &l1Run{start: time.Now()}, fmt.Errorf("nested: gave up waiting for an L1 slot: %w", ctx.Err()), nil
	}
	defer func() { <-l1Slots }()

	cmdline := []string{"console=ttyS0", "quiet", "panic=-1", "reboot=k"}
	if arg := testguest.TSCEarlyArg(); arg != "" {
		cmdline = append(cmdline, arg)
	}
	// L1's KVM shadows L2's page tables instead of using nested paging:
	// with QEMU's emulated nested paging, L1's own memory got corrupted
	// (kernel stacks, processes' heaps; triple faults and freezes), and
	// with shadow paging whole TestKVM runs pass (docs/reliability.md).
	cmdline = append(cmdline, "kvm_amd.npt=0")
	// L1 keeps time by its TSC, which QEMU derives from the host's clock,
	// so L1's KVM runs a master clock: L2's kvmclock is then stable, and
	// snapshots carry the realtime clock that clock_realtime needs.
	cmdline = append(cmdline, "clocksource=tsc", "tsc=reliable")
	cmdline = append(cmdline, o.KernelArgs...)
	cmdline = append(cmdline, strings.Fields(os.Getenv(EnvArgs))...)
	args := []string{
		"-accel", "tcg", "-M", "microvm,acpi=on", "-cpu", "max",
		"-m", strconv.Itoa(o.MemoryMiB), "-smp", strconv.Itoa(o.CPUs),
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-serial", "stdio",
		// The inner output gets its own port, apart from kernel messages.
		"-chardev", "file,id=inner,path=/dev/fd/3",
		"-device", "isa-serial,chardev=inner,iobase=0x2f8,irq=3",
		"-device", "i8042",
		"-kernel", a.Vmlinux, "-initrd", initrd,
		"-append", strings.Join(cmdline, " "),
		"-d", "cpu_reset,guest_errors", "-D", qemuLog,
		"-monitor", "unix:" + monitor + ",server=on,wait=off",
	}
	if disk != "" {
		args = append(args,
			"-drive", "id=guest,file="+disk+",format=raw,if=none,readonly=on",
			"-device", "virtio-blk-device,drive=guest")
	}

	conR, conW, err := os.Pipe()
	if err != nil {
		return &l1Run{start: time.Now()}, err, nil
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		conR.Close()
		conW.Close()
		return &l1Run{start: time.Now()}, err, nil
	}
	defer conR.Close()
	defer inR.Close()
	cmd := exec.Command(qemu, args...)
	cmd.Stdout, cmd.Stderr = conW, conW
	cmd.ExtraFiles = []*os.File{inW}
	// If the test process dies, so does L1.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	run = &l1Run{start: time.Now(), qemuLog: qemuLog}
	err = cmd.Start()
	conW.Close()
	inW.Close()
	if err != nil {
		return run, fmt.Errorf("nested: start %s: %w", qemu, err), nil
	}
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	killed := false
	kill := func() {
		if !killed {
			killed = true
			cmd.Process.Kill()
		}
	}
	defer func() {
		kill()
		<-exited
	}()

	verbose := os.Getenv(EnvVerbose) == "1"
	out := t.Output()
	readersDone := make(chan struct{})
	defer close(readersDone)
	conC, innerC := lineReader(conR, readersDone), lineReader(inR, readersDone)
	boot := time.NewTimer(o.BootTimeout)
	defer boot.Stop()
	total := time.NewTimer(timeout)
	defer total.Stop()
	beat := time.NewTicker(10 * time.Second)
	defer beat.Stop()
	var drain <-chan time.Time
	exitedC := exited
	resultTag := resultPrefix + token + " "
	for conC != nil || innerC != nil {
		select {
		case line, ok := <-conC:
			if !ok {
				conC = nil
				continue
			}
			if strings.Contains(line, markAlive) {
				run.lastAlive = time.Now()
				continue
			}
			run.console = append(run.console, line)
			if len(run.console) > 2*consoleKeep {
				run.console = append(run.console[:0], run.console[consoleKeep:]...)
			}
			if verbose {
				fmt.Fprintf(out, "L1 console| %s\n", line)
			}
			since := time.Since(run.start)
			switch {
			case strings.Contains(line, markInit) && run.booted == 0:
				run.booted = since
			case strings.Contains(line, markKVMReady) && run.kvmReady == 0:
				run.kvmReady = since
				_, up, _ := strings.Cut(line, markKVMReady)
				run.uptime = strings.TrimSpace(up)
				boot.Stop()
			case strings.Contains(line, markInnerRun) && run.innerAt == 0:
				run.innerAt = since
				run.lastAlive = time.Now()
			case strings.Contains(line, markFatal) && run.initFatal == "":
				_, run.initFatal, _ = strings.Cut(line, markFatal)
			}
		case line, ok := <-innerC:
			if !ok {
				innerC = nil
				continue
			}
			if rest, found := strings.CutPrefix(line, resultTag); found && run.result == "" {
				run.result = rest
				run.doneAt = time.Since(run.start)
				continue
			}
			run.inner = append(run.inner, line)
			fmt.Fprintf(out, "L1| %s\n", line)
		case <-boot.C:
			if run.kvmReady == 0 && failure == nil {
				failure = fmt.Errorf("%w: no %q within %v", ErrBoot, markKVMReady, o.BootTimeout)
				kill()
			}
		case <-beat.C:
			if !run.lastAlive.IsZero() && time.Since(run.lastAlive) > o.FrozenAfter && failure == nil && exitedC != nil {
				failure = fmt.Errorf("%w: no heartbeat for %v", ErrFrozen, time.Since(run.lastAlive).Round(time.Second))
				run.registers = monitorRegisters(monitor)
				kill()
			}
		case <-total.C:
			if failure == nil {
				failure = fmt.Errorf("%w: killed after %v", ErrTimeout, timeout)
				kill()
			}
		case <-exitedC:
			exitedC = nil
			// The pipes end with QEMU; bound the wait for their last lines
			// anyway, in case a stray process holds them open.
			drain = time.After(drainAfterEnd)
		case <-drain:
			conC, innerC = nil, nil
		}
	}
	kill()
	<-exited
	run.gone = time.Since(run.start)
	return run, failure, waitErr
}

// report ends t with what one L1 run showed.
func report(t *testing.T, run *l1Run, failure, waitErr error) {
	t.Helper()
	if failure != nil {
		t.Fatalf("%v\n%s%s", failure, run.tail(), run.registers)
	}
	switch {
	case strings.HasPrefix(run.result, "fatal "):
		t.Fatalf("%v: L1 init: %s\n%s", ErrL1, strings.TrimPrefix(run.result, "fatal "), run.tail())
	case run.result == "":
		why := "QEMU exited before the inner test reported"
		if run.initFatal != "" {
			why = "L1 init: " + run.initFatal
		}
		status := "QEMU exited 0"
		if waitErr != nil {
			status = "QEMU: " + waitErr.Error()
		}
		t.Fatalf("%v: %s (%s)\n%s%s", ErrL1, why, status, run.tail(), run.resets())
	}
	verdict(t, run)
}

// verdict marks t as the inner run of the same test ended.
func verdict(t *testing.T, run *l1Run) {
	t.Helper()
	rc, err := strconv.Atoi(strings.TrimPrefix(run.result, "exit "))
	if err != nil || !strings.HasPrefix(run.result, "exit ") {
		t.Fatalf("%v: unreadable result %q", ErrL1, run.result)
	}
	status, reason := innerStatus(run.inner, t.Name())
	switch {
	case rc != 0:
		t.Fatalf("nested: the inner test failed inside L1 (exit status %d; its output is above)\n%s", rc, run.tail())
	case status == "PASS":
	case status == "SKIP":
		t.Skipf("nested: the inner test skipped inside L1: %s", reason)
	default:
		t.Fatalf("nested: the inner run exited 0 without running %s (pattern %q matched nothing?)", t.Name(), runPattern(t.Name()))
	}
}

// innerStatus finds how test name ended in go test -v output: "PASS",
// "FAIL", "SKIP" or "" (never reported), and for a skip the last log line
// before the verdict (the skip message).
func innerStatus(lines []string, name string) (status, reason string) {
	for i, l := range lines {
		l = strings.TrimSpace(l)
		for _, s := range []string{"PASS", "FAIL", "SKIP"} {
			if strings.HasPrefix(l, "--- "+s+": "+name+" (") {
				status = s
				if s == "SKIP" && i > 0 {
					reason = strings.TrimSpace(lines[i-1])
				}
			}
		}
	}
	return status, reason
}
