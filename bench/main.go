// Command bench measures where ember stands: every figure next to its
// baseline from the same run, next to Firecracker's published goal.
//
//	go run ./bench          # full mode (several minutes)
//	go run ./bench -quick   # fewer rounds and VMs (under two minutes)
//
// It builds ember and a bare net/http API server (bench/bareapi), builds the
// test guest (guest/build.sh), runs the suites, prints a table and rewrites
// docs/benchmarks.md and its plots (docs/benchmarks/*.png).
//
// Invariants: ember and its baseline are always measured in the same run,
// interleaved round by round (ember, baseline, ember, baseline, ...), with
// the same client code, guest, kernel command line and devices; every
// process the benchmark starts is ended before it exits (and killed by the
// kernel if the benchmark itself is killed); the network namespace it
// creates is deleted, and test addresses exist only inside it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// config is the run's shape: how many rounds and how much work per suite.
type config struct {
	quick    bool
	root     string
	docPath  string
	writeDoc bool
	only     map[string]bool

	apiRounds, apiRequests  int
	apiThroughputFor        time.Duration
	startupRounds           int
	bootRounds              int
	densityN                []int
	densityRounds           int
	ioRounds, ioMiB, netMiB int
}

func (c config) mode() string {
	if c.quick {
		return "quick"
	}
	return "full"
}

func (c config) runs(suite string) bool { return len(c.only) == 0 || c.only[suite] }

var suites = []string{"api", "startup", "boot", "density", "io"}

func newConfig(quick bool) config {
	if quick {
		return config{
			quick: true, apiRounds: 3, apiRequests: 1000, apiThroughputFor: 300 * time.Millisecond,
			startupRounds: 10, bootRounds: 3, densityN: []int{1, 4}, densityRounds: 2,
			ioRounds: 2, ioMiB: 32, netMiB: 8,
		}
	}
	return config{
		apiRounds: 10, apiRequests: 3000, apiThroughputFor: time.Second,
		startupRounds: 40, bootRounds: 12, densityN: []int{1, 4, 16}, densityRounds: 3,
		ioRounds: 5, ioMiB: 128, netMiB: 32,
	}
}

// env is what the suites share.
type env struct {
	cfg      config
	tmp      string
	emberBin string
	bareBin  string
	assets   testguest.Assets
	isRoot   bool
	machine  machineInfo
	log      *os.File

	accelMu                         sync.Mutex
	accel, accelReason, qemuVersion string // from ember's log, once a VM booted
}

func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.log, "bench: "+format+"\n", args...)
}

func main() {
	quick := flag.Bool("quick", false, "fewer rounds and VMs; finishes in under two minutes")
	doc := flag.String("doc", "", "where to write the report (default <repo>/docs/benchmarks.md)")
	noDoc := flag.Bool("no-doc", false, "print the table only; leave docs/ alone")
	only := flag.String("only", "", "comma-separated suites to run ("+strings.Join(suites, ",")+"); default all")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	cfg := newConfig(*quick)
	cfg.writeDoc = !*noDoc
	if *only != "" {
		cfg.only = map[string]bool{}
		for _, s := range strings.Split(*only, ",") {
			s = strings.TrimSpace(s)
			if !contains(suites, s) {
				fmt.Fprintf(os.Stderr, "bench: unknown suite %q (have %s)\n", s, strings.Join(suites, ", "))
				os.Exit(2)
			}
			cfg.only[s] = true
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg, *doc)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func run(ctx context.Context, cfg config, docPath string) (err error) {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	cfg.root = root
	cfg.docPath = docPath
	if cfg.docPath == "" {
		cfg.docPath = filepath.Join(root, "docs", "benchmarks.md")
	}
	tmp, err := os.MkdirTemp("", "ember-bench-")
	if err != nil {
		return err
	}
	e := &env{cfg: cfg, tmp: tmp, isRoot: os.Geteuid() == 0, log: os.Stderr}
	defer func() {
		killAll()
		os.RemoveAll(tmp)
	}()
	start := time.Now()
	e.machine = readMachine()
	if err := e.build(ctx); err != nil {
		return err
	}

	rep := &report{cfg: cfg, machine: e.machine, started: start, tmp: tmp}
	rep.loadBefore = loadAvg()
	step := func(name string, f func() error) error {
		if !cfg.runs(name) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		t := time.Now()
		rep.loads = append(rep.loads, name+" "+loadAvg1())
		e.progress("%s: starting", name)
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rep.durations = append(rep.durations, fmt.Sprintf("%s %.0f s", name, time.Since(t).Seconds()))
		return nil
	}
	if err := step("api", func() (err error) { rep.api, err = e.runAPI(ctx); return }); err != nil {
		return err
	}
	if err := step("startup", func() (err error) { rep.startup, err = e.runStartup(ctx); return }); err != nil {
		return err
	}
	if err := step("boot", func() (err error) { rep.boot, err = e.runBoot(ctx); return }); err != nil {
		return err
	}
	if err := step("density", func() (err error) { rep.density, err = e.runDensity(ctx); return }); err != nil {
		return err
	}
	if err := step("io", func() (err error) { rep.io, err = e.runIO(ctx); return }); err != nil {
		return err
	}
	rep.loadAfter = loadAvg()
	rep.accel, rep.accelReason, rep.qemuVersion = e.accel, e.accelReason, e.qemuVersion
	rep.elapsed = time.Since(start)

	rows := rep.rows()
	fmt.Println(renderText(rows))
	if cfg.writeDoc {
		if err := rep.write(rows); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", cfg.docPath)
	}
	return nil
}

// repoRoot is the directory holding ember's go.mod and guest/build.sh,
// from the working directory upwards.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isFile(filepath.Join(dir, "go.mod")) && isFile(filepath.Join(dir, "guest", "build.sh")) && isFile(filepath.Join(dir, "cmd", "ember", "main.go")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside ember's repository (no go.mod with guest/build.sh above the working directory)")
		}
		dir = parent
	}
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// build compiles ember and the bare API server and builds the guest.
func (e *env) build(ctx context.Context) error {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return fmt.Errorf("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86): %w", err)
	}
	e.emberBin = filepath.Join(e.tmp, "bin", "ember")
	e.bareBin = filepath.Join(e.tmp, "bin", "bareapi")
	for _, b := range []struct{ out, pkg string }{{e.emberBin, "./cmd/ember"}, {e.bareBin, "./bench/bareapi"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg)
		cmd.Dir = e.cfg.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	if e.cfg.runs("boot") || e.cfg.runs("density") || e.cfg.runs("io") {
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(e.cfg.root, "guest", "build.sh"))
		cmd.Dir = e.cfg.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("guest/build.sh: %w\n%s", err, out)
		}
		dir := os.Getenv("EMBER_GUEST_DIR")
		if dir == "" {
			dir = filepath.Join(e.cfg.root, "build", "guest")
		}
		a, err := testguest.ReadManifest(dir)
		if err != nil {
			return err
		}
		e.assets = a
	}
	return nil
}

// machineInfo describes the host the numbers come from.
type machineInfo struct {
	cores    int
	cpuModel string
	memMiB   int64
	kernel   string
	hwVirt   bool // vmx or svm in /proc/cpuinfo
	kvmDev   bool // /dev/kvm opens
	goVer    string
	hostname string
}

func readMachine() machineInfo {
	m := machineInfo{cores: runtime.NumCPU(), goVer: runtime.Version()}
	m.hostname, _ = os.Hostname()
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch k {
			case "model name":
				if m.cpuModel == "" {
					m.cpuModel = v
				}
			case "flags":
				for _, fl := range strings.Fields(v) {
					if fl == "vmx" || fl == "svm" {
						m.hwVirt = true
					}
				}
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kb)
				m.memMiB = kb / 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		m.kvmDev = true
		f.Close()
	}
	return m
}

// loadAvg1 is the 1-minute load average.
func loadAvg1() string {
	f := strings.Fields(loadAvg())
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
