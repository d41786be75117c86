package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/nested"
	"github.com/ember-vmm/ember/internal/testember"
	"github.com/ember-vmm/ember/internal/testguest"
)

// The kvm-vs-qemu benchmark (issue 5, item 8): boot time to the guest's
// init and the VMM's memory beyond guest RAM, for ember's built-in kvm
// backend next to its qemu backend (QEMU with -accel kvm) on the same
// machine. Without hardware virtualization here both run inside one L1 VM
// under QEMU TCG with nested SVM.
const (
	envBench       = "EMBER_BENCH"        // 1: run TestKVMBench
	envBenchWrite  = "EMBER_BENCH_WRITE"  // 1: also write its section of docs/benchmarks.md
	envBenchRounds = "EMBER_BENCH_ROUNDS" // rounds (one boot per backend each), default 5
	// envBenchChild marks the test process a writing TestKVMBench starts to
	// run the benchmark: an L1 VM's output reaches only the log, so the
	// writer reads the results from its child's output.
	envBenchChild = "EMBER_KVM_BENCH_CHILD"

	benchResultTag   = "EMBER-KVM-BENCH-RESULT "
	benchMemMiB      = 128
	benchRoundsDef   = 5
	benchBeginMarker = "<!-- kvm-bench:begin -->"
	benchEndMarker   = "<!-- kvm-bench:end -->"
	benchDocCommand  = "EMBER_BENCH=1 EMBER_BENCH_WRITE=1 go test ./tests/e2e -run TestKVMBench -timeout 60m"
)

// Firecracker's published targets (bare metal, its own guest config).
const (
	fcBootTargetMS      = 125
	fcOverheadTargetMiB = 5
)

// benchSample is one boot.
type benchSample struct {
	Backend string  `json:"backend"`
	Round   int     `json:"round"`
	BootMS  float64 `json:"boot_ms"`   // InstanceStart sent → MarkerInit seen
	StartMS float64 `json:"start_ms"`  // InstanceStart sent → its answer
	EmberKB int64   `json:"ember_kib"` // ember's RSS once the guest is ready
	QEMUKB  int64   `json:"qemu_kib"`  // its children's RSS (QEMU), 0 for kvm
	GuestKB int64   `json:"guest_kib"` // Rss of the guest RAM mapping
}

// overheadKiB is the VMM's memory beyond the guest RAM it has touched.
func (s benchSample) overheadKiB() int64 { return s.EmberKB + s.QEMUKB - s.GuestKB }

// benchResult is what the benchmark body reports.
type benchResult struct {
	Nested   bool          `json:"nested"`    // ran inside an L1 VM
	CPUs     int           `json:"cpus"`      // where the body ran
	CPUModel string        `json:"cpu_model"` // where the body ran
	Samples  []benchSample `json:"samples"`
}

// TestKVMBench boots the test guest alternately with the kvm and the qemu
// backend and measures boot time and VMM memory. It runs only with
// EMBER_BENCH=1; with EMBER_BENCH_WRITE=1 it also writes its section of
// docs/benchmarks.md.
func TestKVMBench(t *testing.T) {
	if os.Getenv(envBench) != "1" {
		t.Skip("SKIPPING the kvm-vs-qemu boot and memory benchmark: it runs only with EMBER_BENCH=1 " +
			"(it boots an L1 VM and 2×" + envBenchRounds + " L2 guests, minutes of CPU); kvm and qemu are NOT measured")
	}
	rounds := benchRounds(t)
	if !nested.Inside() && os.Getenv(envBenchWrite) == "1" && os.Getenv(envBenchChild) == "" {
		res := runBenchChild(t)
		t.Logf("kvm vs qemu, %d rounds:\n%s", rounds, benchTable(res))
		writeBenchDoc(t, res, rounds)
		return
	}
	opts := nested.Options{
		Guest: true,
		// One vCPU: the machine is shared, and both backends see the same.
		CPUs:    1,
		Timeout: 5*time.Minute + time.Duration(rounds)*4*time.Minute,
		Env:     []string{envBench + "=1", envBenchRounds + "=" + strconv.Itoa(rounds)},
		Files:   map[string]string{},
	}
	if !nested.Inside() {
		opts.Files["ember"] = emberBin
		if ok, _ := nested.KVMUsable(); !ok {
			maps.Copy(opts.Files, nested.QEMUFiles(t))
		}
	}
	nested.Run(t, opts, func(t *testing.T, env *nested.Env) {
		if env.Nested {
			emberBin = env.File("ember")
		}
		g := env.Guest()
		qemuArgs := []string{"--accel", "kvm"}
		if env.Nested {
			qemuArgs = append(qemuArgs, "--qemu-binary", qemuWrapper(t, env))
		} else if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
			t.Skipf("SKIPPING the kvm-vs-qemu benchmark: qemu-system-x86_64 is not installed (%v)", err)
		}
		res := benchResult{Nested: env.Nested, CPUs: runtime.NumCPU(), CPUModel: cpuModel()}
		for r := 1; r <= rounds; r++ {
			// Alternate which backend goes first, so drift in the
			// machine's load favours neither.
			order := []string{"kvm", "qemu"}
			if r%2 == 0 {
				slices.Reverse(order)
			}
			for _, backend := range order {
				var args []string
				if backend == "qemu" {
					args = qemuArgs
				}
				var s benchSample
				ok := t.Run(fmt.Sprintf("round%d-%s", r, backend), func(t *testing.T) {
					s = benchBoot(t, g, backend, args)
					s.Round = r
				})
				if !ok {
					t.Fatalf("round %d, %s: the boot failed; no figures", r, backend)
				}
				res.Samples = append(res.Samples, s)
			}
		}
		t.Logf("kvm vs qemu, %d rounds (ran inside L1: %v):\n%s", rounds, env.Nested, benchTable(res))
		j, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s%s", benchResultTag, j)
	})
}

func benchRounds(t *testing.T) int {
	t.Helper()
	v := os.Getenv(envBenchRounds)
	if v == "" {
		return benchRoundsDef
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 100 {
		t.Fatalf("%s=%q: want a number of rounds from 1 to 100", envBenchRounds, v)
	}
	return n
}

// qemuWrapper writes the script ember runs as its QEMU inside L1: QEMU is
// dynamically linked and L1 has no libraries, so it is started through the
// shipped loader, with its firmware directory.
func qemuWrapper(t *testing.T, env *nested.Env) string {
	t.Helper()
	lib := env.File("qemu/lib/ld-linux-x86-64.so.2")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --library-path %s %s -L %s \"$@\"\n",
		shQuote(lib), shQuote(filepath.Dir(lib)), shQuote(env.File("qemu/bin/qemu-system-x86_64")),
		shQuote(filepath.Dir(env.File("qemu/share/bios-microvm.bin"))))
	// ember hands QEMU its kernel and sockets as /dev/fd/N paths, and L1
	// (devtmpfs, no udev) lacks that link.
	if _, err := os.Lstat("/dev/fd"); os.IsNotExist(err) {
		if err := os.Symlink("/proc/self/fd", "/dev/fd"); err != nil {
			t.Fatalf("L1 has no /dev/fd for QEMU: %v", err)
		}
	}
	p := filepath.Join(t.TempDir(), "qemu-system-x86_64")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// benchBoot boots the test guest once with backend and measures it.
func benchBoot(t *testing.T, g testguest.Assets, backend string, args []string) benchSample {
	t.Helper()
	e := startEmber(t, startOpts{backend: backend, args: args})
	e.putMachine(benchMemMiB)
	e.putBootSource(g.Vmlinux, g.Initramfs, testguest.End(testguest.EndWait))
	start := time.Now()
	e.action("InstanceStart")
	answered := time.Since(start)
	e.waitLine(testguest.MarkerInit, bootTimeout)
	boot := time.Since(start)
	e.waitLine(testguest.MarkerReady, bootTimeout)

	s := benchSample{Backend: backend, BootMS: ms(boot), StartMS: ms(answered)}
	var err error
	if s.EmberKB, err = rssKiB(e.pid); err != nil {
		t.Fatal(err)
	}
	guestPID := e.pid
	if backend == "qemu" {
		kids := descendants(e.pid)
		if len(kids) != 1 {
			t.Fatalf("ember (pid %d) runs %d processes, want exactly its QEMU: %v", e.pid, len(kids), kids)
		}
		guestPID = kids[0]
		if s.QEMUKB, err = rssKiB(guestPID); err != nil {
			t.Fatal(err)
		}
	}
	if s.GuestKB, err = guestRAMKiB(guestPID, benchMemMiB<<10); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: InstanceStart → answer %.0f ms, → init %.0f ms; RSS ember %d KiB, QEMU %d KiB, guest RAM touched %d KiB, overhead %d KiB",
		backend, s.StartMS, s.BootMS, s.EmberKB, s.QEMUKB, s.GuestKB, s.overheadKiB())
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// rssKiB is a process's resident memory (smaps_rollup's Rss, the sum the
// per-mapping figures below are taken from).
func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, fmt.Errorf("RSS of pid %d: %w", pid, err)
	}
	defer f.Close()
	maps, err := parseSmaps(f)
	if err != nil || len(maps) != 1 {
		return 0, fmt.Errorf("RSS of pid %d: unreadable smaps_rollup (%d entries, %v)", pid, len(maps), err)
	}
	return maps[0].rss, nil
}

// guestRAMKiB is the Rss of pid's guest RAM: its mapping of exactly
// sizeKiB (the one with the most resident pages, should the runtime hold
// another of that size).
func guestRAMKiB(pid int, sizeKiB int64) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, fmt.Errorf("guest RAM of pid %d: %w", pid, err)
	}
	defer f.Close()
	all, err := parseSmaps(f)
	if err != nil {
		return 0, fmt.Errorf("guest RAM of pid %d: %w", pid, err)
	}
	best := int64(-1)
	for _, m := range all {
		if m.size == sizeKiB && m.rss > best {
			best = m.rss
		}
	}
	if best < 0 {
		slices.SortFunc(all, func(a, b smapsEntry) int { return int(b.size - a.size) })
		return 0, fmt.Errorf("guest RAM of pid %d: no mapping of %d KiB; largest: %v", pid, sizeKiB, all[:min(5, len(all))])
	}
	return best, nil
}

// smapsEntry is one mapping of /proc/<pid>/smaps (or smaps_rollup's
// single entry), sizes in KiB.
type smapsEntry struct {
	head      string
	size, rss int64
}

// parseSmaps reads smaps or smaps_rollup: a header line per mapping
// ("start-end perms ..."), then "Key: value kB" lines.
func parseSmaps(r io.Reader) ([]smapsEntry, error) {
	var out []smapsEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") {
			if !strings.Contains(f[0], "-") {
				return nil, fmt.Errorf("smaps: unexpected line %q", line)
			}
			out = append(out, smapsEntry{head: line})
			continue
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("smaps: %q before any mapping", line)
		}
		cur := &out[len(out)-1]
		switch f[0] {
		case "Size:", "Rss:":
			if len(f) != 3 || f[2] != "kB" {
				return nil, fmt.Errorf("smaps: unexpected line %q", line)
			}
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || v < 0 {
				return nil, fmt.Errorf("smaps: unexpected line %q", line)
			}
			if f[0] == "Size:" {
				cur.size = v
			} else {
				cur.rss = v
			}
		}
	}
	return out, sc.Err()
}

// cpuModel is /proc/cpuinfo's first model name.
func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// runBenchChild runs TestKVMBench in a child test process, streams its
// output into t's log and returns the results it reported.
func runBenchChild(t *testing.T) benchResult {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-test.run", "^TestKVMBench$", "-test.v", "-test.count=1"}
	ctx := t.Context()
	if dl, ok := t.Deadline(); ok {
		left := time.Until(dl) - 15*time.Second
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, left)
		defer cancel()
		args = append(args, "-test.timeout", left.Round(time.Second).String())
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(os.Environ(), envBenchChild+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the benchmark's test process: %v", err)
	}
	var res *benchResult
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	w := t.Output()
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintf(w, "| %s\n", line)
		if _, j, ok := strings.Cut(line, benchResultTag); ok {
			var r benchResult
			if err := json.Unmarshal([]byte(j), &r); err != nil {
				t.Errorf("unreadable benchmark result %q: %v", j, err)
				continue
			}
			res = &r
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the benchmark's test process failed: %v (its output is above)", err)
	}
	if res == nil {
		t.Fatalf("the benchmark's test process reported no %q line (did it skip?)", strings.TrimSpace(benchResultTag))
	}
	return *res
}

// benchStat is a median with its range.
type benchStat struct {
	n                int
	median, min, max float64
}

func statOf(xs []float64) benchStat {
	if len(xs) == 0 {
		return benchStat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return benchStat{n: len(s), median: m, min: s[0], max: s[len(s)-1]}
}

// pick gathers one figure of backend's samples.
func pick(res benchResult, backend string, f func(benchSample) float64) benchStat {
	var xs []float64
	for _, s := range res.Samples {
		if s.Backend == backend {
			xs = append(xs, f(s))
		}
	}
	return statOf(xs)
}

func fmtStat(s benchStat, unit string, prec int) string {
	if s.n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.*f %s (%.*f–%.*f)", prec, s.median, unit, prec, s.min, prec, s.max)
}

func fmtRatio(a, b benchStat) string {
	if a.n == 0 || b.n == 0 || b.median == 0 || math.IsNaN(a.median/b.median) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a.median/b.median)
}

func kib2mib(v int64) float64 { return float64(v) / 1024 }

// benchTable renders the results as a markdown table: medians with their
// range, kvm ÷ qemu, and Firecracker's targets.
func benchTable(res benchResult) string {
	type fig struct {
		name, unit string
		prec       int
		f          func(benchSample) float64
		target     string
		noRatio    bool // the backends' figures mean different things
	}
	figs := []fig{
		{"InstanceStart sent → `" + testguest.MarkerInit + "` on the console", "ms", 0,
			func(s benchSample) float64 { return s.BootMS },
			fmt.Sprintf("≤ %d ms to init (bare metal)", fcBootTargetMS), false},
		{"… of which InstanceStart sent → its answer (VMM start)", "ms", 0,
			func(s benchSample) float64 { return s.StartMS }, "", false},
		{"… of which InstanceStart's answer → `" + testguest.MarkerInit + "` (guest boot)", "ms", 0,
			func(s benchSample) float64 { return s.BootMS - s.StartMS }, "", false},
		{"VMM memory beyond guest RAM (RSS of ember + QEMU − guest RAM touched)", "MiB", 1,
			func(s benchSample) float64 { return kib2mib(s.overheadKiB()) },
			fmt.Sprintf("≤ %d MiB", fcOverheadTargetMiB), false},
		{"ember process RSS (guest RAM included for kvm)", "MiB", 1,
			func(s benchSample) float64 { return kib2mib(s.EmberKB) }, "", true},
		{"QEMU process RSS (guest RAM included)", "MiB", 1,
			func(s benchSample) float64 { return kib2mib(s.QEMUKB) }, "", true},
		{fmt.Sprintf("guest RAM touched (Rss of the %d MiB mapping)", benchMemMiB), "MiB", 1,
			func(s benchSample) float64 { return kib2mib(s.GuestKB) }, "", false},
	}
	var b strings.Builder
	b.WriteString("| Figure | kvm: median (min–max) | qemu: median (min–max) | kvm ÷ qemu | Firecracker's target |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, f := range figs {
		k, q := pick(res, "kvm", f.f), pick(res, "qemu", f.f)
		if strings.HasPrefix(f.name, "QEMU") {
			k = benchStat{} // the kvm backend has no QEMU
		}
		target := f.target
		if target == "" {
			target = "—"
		}
		ratio := fmtRatio(k, q)
		if f.noRatio {
			ratio = "—"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", f.name, fmtStat(k, f.unit, f.prec), fmtStat(q, f.unit, f.prec), ratio, target)
	}
	return b.String()
}

// benchDominates says, from the figures, what dominates each measure.
func benchDominates(res benchResult) string {
	over := func(be string) benchStat {
		return pick(res, be, func(s benchSample) float64 { return kib2mib(s.overheadKiB()) })
	}
	qemuOwn := pick(res, "qemu", func(s benchSample) float64 { return kib2mib(s.QEMUKB - s.GuestKB) })
	emberQ := pick(res, "qemu", func(s benchSample) float64 { return kib2mib(s.EmberKB) })
	start := func(be string) benchStat { return pick(res, be, func(s benchSample) float64 { return s.StartMS }) }
	guest := func(be string) benchStat {
		return pick(res, be, func(s benchSample) float64 { return s.BootMS - s.StartMS })
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Boot time is dominated by the guest's own boot (%.1f s with kvm, %.1f s with qemu from InstanceStart's answer to init)",
		guest("kvm").median/1000, guest("qemu").median/1000)
	if res.Nested {
		b.WriteString(": every privileged instruction and VM exit of the L2 guest goes through L1's KVM on an SVM that TCG emulates, " +
			"so these seconds stand for well under one on hardware")
	}
	fmt.Fprintf(&b, "; starting the VMM (InstanceStart's answer) takes %.0f ms with kvm and %.0f ms with qemu", start("kvm").median, start("qemu").median)
	if res.Nested {
		b.WriteString(", where QEMU is a large dynamically linked program loaded under TCG")
	}
	b.WriteString(". ")
	fmt.Fprintf(&b, "Memory beyond guest RAM is dominated by QEMU with the qemu backend (%.1f of its %.1f MiB are QEMU's own, %.1f MiB ember's), "+
		"while with kvm the whole %.1f MiB is ember's own process: the Go runtime, its heap and the binary's resident text.",
		qemuOwn.median, over("qemu").median, emberQ.median, over("kvm").median)
	return b.String()
}

// benchSection is the docs/benchmarks.md section for res.
func benchSection(res benchResult, rounds int, when time.Time, hostCPUs int, hostModel, qemuVersion string) string {
	var b strings.Builder
	b.WriteString(benchBeginMarker + "\n")
	b.WriteString("## kvm backend next to qemu: boot time and memory\n\n")
	fmt.Fprintf(&b, "Written by `%s` (not by `go run ./bench`, which keeps this section as it is). ", benchDocCommand)
	fmt.Fprintf(&b, "Measured %s UTC on a %d-core %s host.\n\n", when.UTC().Format("2006-01-02 15:04"), hostCPUs, hostModel)
	if res.Nested {
		fmt.Fprintf(&b, "This host has no usable hardware virtualization, so both backends ran inside an L1 VM under QEMU TCG with nested SVM "+
			"(L1: %d vCPU, %s, 1 GiB), each booting the test guest as an L2 VM on L1's KVM. "+
			"Absolute numbers are therefore far from bare metal; the ratio kvm ÷ qemu is the meaningful figure, "+
			"and Firecracker's targets (for bare metal) stand beside them for reference only.\n\n", res.CPUs, res.CPUModel)
	} else {
		fmt.Fprintf(&b, "Both backends ran directly on this host's KVM (%d CPUs, %s).\n\n", res.CPUs, res.CPUModel)
	}
	fmt.Fprintf(&b, "Guest: the test guest's vmlinux and initramfs, 1 vCPU, %d MiB, boot_args `%s %s`. "+
		"kvm is ember's built-in VMM; qemu is ember's qemu backend running %s with `-accel kvm`. "+
		"%d rounds, one boot per backend each, the first backend alternating. "+
		"Boot time runs from sending InstanceStart to the `%s` console line; memory is read from /proc/<pid>/smaps_rollup and smaps "+
		"once the guest printed `%s`, guest RAM touched being the Rss of the process's %d MiB guest RAM mapping.\n\n",
		benchMemMiB, baseBootArgs, testguest.End(testguest.EndWait), qemuVersion, rounds, testguest.MarkerInit, testguest.MarkerReady, benchMemMiB)
	b.WriteString(benchTable(res))
	b.WriteString("\n" + benchDominates(res) + "\n")
	b.WriteString(benchEndMarker + "\n")
	return b.String()
}

// replaceSection puts section in place of doc's kvm-bench section, or at
// its end when it has none.
func replaceSection(doc, section string) string {
	if i := strings.Index(doc, benchBeginMarker); i >= 0 {
		if j := strings.Index(doc[i:], benchEndMarker); j >= 0 {
			rest := strings.TrimPrefix(doc[i+j+len(benchEndMarker):], "\n")
			return doc[:i] + section + rest
		}
	}
	if doc != "" {
		doc = strings.TrimRight(doc, "\n") + "\n\n"
	}
	return doc + section
}

// writeBenchDoc writes the results into docs/benchmarks.md.
func writeBenchDoc(t *testing.T, res benchResult, rounds int) {
	t.Helper()
	root, err := testember.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	version := "QEMU"
	if out, err := exec.Command("qemu-system-x86_64", "--version").Output(); err == nil {
		if first, _, _ := strings.Cut(string(out), "\n"); first != "" {
			version = strings.TrimPrefix(strings.TrimSpace(first), "QEMU emulator version ")
			version = "QEMU " + strings.Fields(version)[0]
		}
	}
	path := filepath.Join(root, "docs", "benchmarks.md")
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	section := benchSection(res, rounds, time.Now(), runtime.NumCPU(), cpuModel(), version)
	if err := os.WriteFile(path, []byte(replaceSection(string(old), section)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote the kvm-bench section of %s", path)
}

// TestKVMBenchReport checks the benchmark's arithmetic and rendering
// without booting anything.
func TestKVMBenchReport(t *testing.T) {
	t.Run("smaps", func(t *testing.T) {
		smaps := `55d0c0000000-55d0c0400000 r-xp 00000000 08:01 1234 /usr/bin/ember
Size:               4096 kB
Rss:                3000 kB
Pss:                3000 kB
VmFlags: rd ex mr mw me
7f0000000000-7f0008000000 rw-p 00000000 00:00 0
Size:             131072 kB
KernelPageSize:        4 kB
Rss:               40960 kB
VmFlags: rd wr mr mw me ac
7f1000000000-7f1008000000 rw-p 00000000 00:00 0
Size:             131072 kB
Rss:                 128 kB
`
		got, err := parseSmaps(strings.NewReader(smaps))
		if err != nil {
			t.Fatal(err)
		}
		want := []int64{4096, 3000, 131072, 40960, 131072, 128}
		if len(got) != 3 {
			t.Fatalf("parsed %d mappings, want 3: %+v", len(got), got)
		}
		for i, m := range got {
			if m.size != want[2*i] || m.rss != want[2*i+1] {
				t.Errorf("mapping %d: size %d rss %d, want %d %d", i, m.size, m.rss, want[2*i], want[2*i+1])
			}
		}
		rollup := "55d0c0000000-7ffd00000000 ---p 00000000 00:00 0 [rollup]\nRss:               44088 kB\nPss:  1 kB\n"
		if r, err := parseSmaps(strings.NewReader(rollup)); err != nil || len(r) != 1 || r[0].rss != 44088 {
			t.Errorf("rollup: %+v, %v", r, err)
		}
		for _, bad := range []string{"Rss: 12 kB\n", "7f-8f rw-p 0 00:00 0\nRss: x kB\n", "garbage line\n"} {
			if _, err := parseSmaps(strings.NewReader(bad)); err == nil {
				t.Errorf("parseSmaps(%q) accepted it", bad)
			}
		}
		// guestRAMKiB on this very process: no mapping of an absurd size.
		if _, err := guestRAMKiB(os.Getpid(), 1<<40); err == nil {
			t.Error("guestRAMKiB found a 1 PiB mapping in the test process")
		}
	})
	t.Run("stats", func(t *testing.T) {
		for _, tc := range []struct {
			in   []float64
			want benchStat
		}{
			{[]float64{5, 1, 3}, benchStat{3, 3, 1, 5}},
			{[]float64{4, 1, 3, 2}, benchStat{4, 2.5, 1, 4}},
			{nil, benchStat{}},
		} {
			if got := statOf(tc.in); got != tc.want {
				t.Errorf("statOf(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
		}
	})
	res := benchResult{Nested: true, CPUs: 1, CPUModel: "AMD EPYC", Samples: []benchSample{
		{Backend: "kvm", Round: 1, BootMS: 4000, StartMS: 400, EmberKB: 30 << 10, GuestKB: 20 << 10},
		{Backend: "qemu", Round: 1, BootMS: 5000, StartMS: 500, EmberKB: 10 << 10, QEMUKB: 60 << 10, GuestKB: 20 << 10},
		{Backend: "qemu", Round: 2, BootMS: 6000, StartMS: 1500, EmberKB: 10 << 10, QEMUKB: 64 << 10, GuestKB: 20 << 10},
		{Backend: "kvm", Round: 2, BootMS: 3000, StartMS: 600, EmberKB: 32 << 10, GuestKB: 20 << 10},
	}}
	t.Run("table", func(t *testing.T) {
		tab := benchTable(res)
		for _, want := range []string{
			"| InstanceStart sent → `EMBER-GUEST: init` on the console | 3500 ms (3000–4000) | 5500 ms (5000–6000) | 0.64× | ≤ 125 ms to init (bare metal) |",
			"| 11.0 MiB (10.0–12.0) | 52.0 MiB (50.0–54.0) | 0.21× | ≤ 5 MiB |",
			"| QEMU process RSS (guest RAM included) | — | 62.0 MiB (60.0–64.0) | — | — |",
			"| ember process RSS (guest RAM included for kvm) | 31.0 MiB (30.0–32.0) | 10.0 MiB (10.0–10.0) | — | — |",
			"| … of which InstanceStart sent → its answer (VMM start) | 500 ms (400–600) | 1000 ms (500–1500) | 0.50× | — |",
		} {
			if !strings.Contains(tab, want) {
				t.Errorf("table lacks %q:\n%s", want, tab)
			}
		}
		if d := benchDominates(res); !strings.Contains(d, "42.0 of its 52.0 MiB are QEMU's own") || !strings.Contains(d, "whole 11.0 MiB") ||
			!strings.Contains(d, "3.0 s with kvm, 4.5 s with qemu") || !strings.Contains(d, "takes 500 ms with kvm and 1000 ms with qemu") {
			t.Errorf("dominates: %s", d)
		}
	})
	t.Run("section", func(t *testing.T) {
		sec := benchSection(res, 2, time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC), 2, "Host CPU", "QEMU 7.2.0")
		if !strings.HasPrefix(sec, benchBeginMarker+"\n") || !strings.HasSuffix(sec, benchEndMarker+"\n") {
			t.Errorf("section not delimited:\n%s", sec)
		}
		for _, want := range []string{"2030-01-02 03:04 UTC", "2-core Host CPU host", "nested SVM", "ratio kvm ÷ qemu", benchDocCommand, "QEMU 7.2.0"} {
			if !strings.Contains(sec, want) {
				t.Errorf("section lacks %q:\n%s", want, sec)
			}
		}
		for _, tc := range []struct{ name, doc, want string }{
			{"empty", "", sec},
			{"append", "# Benchmarks\n\ntext\n", "# Benchmarks\n\ntext\n\n" + sec},
			{"replace", "# B\n\n" + benchBeginMarker + "\nold\n" + benchEndMarker + "\n\n## After\n", "# B\n\n" + sec + "\n## After\n"},
			{"replace at end", "# B\n" + benchBeginMarker + "old" + benchEndMarker, "# B\n" + sec},
		} {
			if got := replaceSection(tc.doc, sec); got != tc.want {
				t.Errorf("%s: replaceSection:\n got %q\nwant %q", tc.name, got, tc.want)
			}
		}
	})
}
