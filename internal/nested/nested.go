// Package nested lets an ordinary `go test` test run a body that needs a
// hardware-virtualizing /dev/kvm on a machine that has none.
//
// Run(t, opts, body) calls body directly when /dev/kvm opens and the CPU
// shows vmx or svm (a real KVM host). Otherwise it boots an L1 Linux VM
// under QEMU's TCG with `-cpu max` — which emulates AMD SVM with nested
// paging, so the L1 kernel's kvm_amd gives a real /dev/kvm — and runs the
// same test binary inside it with -test.run naming exactly the calling
// test. The inner output is streamed into the outer test's log, and the
// outer test passes, fails or skips as the inner one did. The inner run
// sees EMBER_NESTED_INNER=1, so its Run calls body instead of recursing.
//
// L1 is the test guest's own kernel (internal/testguest). Its initramfs is
// the test guest's initramfs plus an appended archive holding the kvm
// modules (taken from the kernel package guest/build.sh downloaded), the L1
// init, a static copy of the test binary and the caller's files. With
// Options.Guest the test guest's kernels, initramfs and root file system
// reach L1 on a cached read-only ext4 disk, so an inner test can boot an
// L2 Linux. Inside L1 the inner test is root, /tmp is a tmpfs, busybox
// provides a userland on PATH, and the inner output travels on a second
// serial port, apart from the L1 console.
//
// Invariants: L1 is killed and reaped before Run returns, whatever
// happens (timeout, test failure, panic in the harness); every per-run
// file lives in t.TempDir(); derived caches (modules, guest disk, rebuilt
// test binaries) live in one directory beside the guest assets and are
// replaced, never accumulated. Every wait is bounded.
//
// Call Run first in a test: code before it runs again inside L1, where
// the repository, the go tool and testguest.Require are unavailable; get
// files from the Env instead. Compute host-only inputs outside L1:
//
//	func TestBoot(t *testing.T) {
//		var ember string
//		if !nested.Inside() {
//			ember = buildStaticEmber(t) // CGO_ENABLED=0
//		}
//		opts := nested.Options{Guest: true, Files: map[string]string{"ember": ember}}
//		nested.Run(t, opts, func(t *testing.T, env *nested.Env) {
//			g := env.Guest()           // L2 kernel, initramfs, rootfs
//			bin := env.File("ember")   // runs here, against /dev/kvm
//			...
//		})
//	}
//
// The test binary shipped into L1 must be static. The running one is used
// when it is (no PT_INTERP: the package links no cgo, or CGO_ENABLED=0);
// otherwise Run rebuilds the package's tests once per process with
// `CGO_ENABLED=0 go test -c`, which needs the go tool and the package's
// source directory as the working directory, as go test provides. This
// keeps every `go test` invocation working without asking callers (or
// scripts/test.sh) to disable cgo globally.
package nested

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// Environment variables.
const (
	// EnvInner is set to "1" for the test binary run inside L1.
	EnvInner = "EMBER_NESTED_INNER"
	// EnvDir names the directory holding the shipped files inside L1.
	EnvDir = "EMBER_NESTED_DIR"
	// EnvMode chooses when to nest: "auto" (default: only without usable
	// KVM), "always" (boot L1 even on a KVM host, to test the harness
	// there) or "never" (skip instead of booting L1).
	EnvMode = "EMBER_NESTED"
	// EnvVerbose, set to 1, streams the L1 console into the test log too.
	EnvVerbose = "EMBER_NESTED_VERBOSE"
	// EnvCache overrides where derived files are cached (default: a
	// "nested" directory inside the test guest's asset directory).
	EnvCache = "EMBER_NESTED_CACHE"
	// EnvArgs adds words to L1's kernel command line, after Options'
	// KernelArgs; "kvm_amd.vgif=0" and the like reach the module as
	// modprobe would pass them.
	EnvArgs = "EMBER_NESTED_ARGS"
	// EnvAttempt tells the inner test which L1 it runs in: 1, or 2 after
	// L1 itself triple faulted, froze or lost an interrupt.
	EnvAttempt = "EMBER_NESTED_ATTEMPT"
)

// Errors returned (wrapped) by the harness; failures name one of them.
var (
	// ErrNoQEMU means qemu-system-x86_64 is not installed.
	ErrNoQEMU = errors.New("nested: qemu-system-x86_64 not found")
	// ErrBoot means L1 did not reach its init or its kvm setup.
	ErrBoot = errors.New("nested: L1 did not boot")
	// ErrTimeout means L1 ran past its time budget and was killed.
	ErrTimeout = errors.New("nested: L1 timed out")
	// ErrFrozen means L1 stopped printing its heartbeat: its kernel no
	// longer runs even a shell loop.
	ErrFrozen = errors.New("nested: L1 froze")
	// ErrL1 means L1's init reported a fatal error or L1 ended without
	// reporting the inner result.
	ErrL1 = errors.New("nested: L1 failed")
	// ErrOptions means the Options are unusable.
	ErrOptions = errors.New("nested: bad options")
)

// Defaults for Options.
const (
	DefaultMemoryMiB   = 1024
	DefaultCPUs        = 1
	DefaultTimeout     = 5 * time.Minute
	DefaultBootTimeout = 2 * time.Minute
	// DefaultFrozenAfter is how long L1 may go without its heartbeat
	// (every 10 s of its time): a loaded host slows L1 severalfold, not
	// eighteenfold.
	DefaultFrozenAfter = 3 * time.Minute
)

// Options describe the L1 VM and what to ship into it. The zero value
// works: 1 GiB, one vCPU, no files.
type Options struct {
	// MemoryMiB is L1's memory (default 1024: room for a 256 MiB L2).
	MemoryMiB int
	// CPUs is L1's vCPU count (default 1).
	CPUs int
	// Timeout bounds the whole L1 run (default 5 min, and never past the
	// test's own deadline); the inner test gets a -test.timeout 30 s
	// shorter, so a hung body panics with its goroutines' stacks in the log.
	Timeout time.Duration
	// BootTimeout bounds QEMU start to "kvm ready" in L1 (default 2 min).
	BootTimeout time.Duration
	// FrozenAfter: L1 without a heartbeat for this long is frozen
	// (default DefaultFrozenAfter).
	FrozenAfter time.Duration
	// Files ships host files into L1: name (a relative slash path, which
	// may have directories) → host path. Inner tests find them with
	// Env.File. They are unpacked into L1's RAM, so keep them small (tens
	// of MiB); executables must be static (see CheckStatic) or be run
	// through a shipped dynamic loader. The inner test's working directory
	// is an empty /nested/work: ship testdata it reads here too.
	Files map[string]string
	// Guest ships the test guest (vmlinux, bzImage, initramfs, rootfs) on
	// a read-only disk; Env.Guest returns it.
	Guest bool
	// Modules are optional kernel modules L1 loads before the inner test:
	// any of "tun", "veth", "bridge" (kvm_amd is always loaded).
	Modules []string
	// Env adds KEY=VALUE variables to the inner test's environment.
	Env []string
	// KernelArgs are appended to L1's kernel command line.
	KernelArgs []string
}

// Env is what a body gets: where its files are, wherever it runs.
type Env struct {
	// Nested is true inside an L1 VM, false on a real KVM host.
	Nested bool
	// Dir holds the shipped files inside L1 ("" when not nested).
	Dir string

	t     testing.TB
	files map[string]string
	guest bool
}

// File returns the path of Options.Files[name] where the body runs; it
// fails the test if name was not shipped.
func (e *Env) File(name string) string {
	e.t.Helper()
	if !e.Nested {
		p, ok := e.files[name]
		if !ok {
			e.t.Fatalf("nested: no file %q in Options.Files", name)
		}
		return p
	}
	rel, err := cleanArchivePath(name)
	if err != nil {
		e.t.Fatalf("nested: %v", err)
	}
	p := filepath.Join(e.Dir, "files", filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		e.t.Fatalf("nested: file %q was not shipped into L1: %v", name, err)
	}
	return p
}

// Guest returns the test guest's assets where the body runs (needs
// Options.Guest). Inside L1 they are on a read-only disk: copy the root
// file system before writing to it.
func (e *Env) Guest() testguest.Assets {
	e.t.Helper()
	if !e.guest {
		e.t.Fatalf("nested: Env.Guest needs Options.Guest")
	}
	if !e.Nested {
		return testguest.Require(e.t)
	}
	a, err := testguest.ReadManifest(filepath.Join(e.Dir, "guest"))
	if err != nil {
		e.t.Fatalf("nested: the guest disk in L1: %v", err)
	}
	return a
}

// Inside reports whether this process is an inner test run inside L1.
func Inside() bool { return os.Getenv(EnvInner) == "1" }

// markLostInterrupt starts the failure LostInterrupt reports.
const markLostInterrupt = "EMBER-NESTED: L2 lost an interrupt: "

// LostInterrupt fails t, an inner test's, for an interrupt the hypervisor
// under the code under test never delivered: evidence must show it
// raised, deliverable and waiting in a vCPU's LAPIC (QEMU's emulated SVM
// and L1's KVM have lost some; docs/reliability.md). When the inner test
// then fails, Run treats it as a fault of L1, like a triple fault: it says
// so loudly and runs the inner test once more in a fresh L1. Outside L1
// it is a plain failure.
func LostInterrupt(t testing.TB, evidence string) {
	t.Helper()
	t.Errorf("%s%s", markLostInterrupt, evidence)
}

// KVMUsable reports whether this machine can run KVM guests directly:
// /dev/kvm opens read-write and the CPU advertises vmx or svm (a /dev/kvm
// without them, such as a paravirtual one, emulates instructions and cannot
// run Linux usefully). The reason says what is missing.
func KVMUsable() (bool, string) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false, "/dev/kvm: " + err.Error()
	}
	f.Close()
	flag, err := cpuVirtFlag()
	if err != nil {
		return false, err.Error()
	}
	if flag == "" {
		return false, "/dev/kvm opens but /proc/cpuinfo shows neither vmx nor svm"
	}
	return true, "/dev/kvm opens and the CPU has " + flag
}

func cpuVirtFlag() (string, error) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	return virtFlag(f)
}

// virtFlag returns "vmx" or "svm" from the first flags line of a
// /proc/cpuinfo, or "" if it has neither.
func virtFlag(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, fl := range strings.Fields(val) {
			if fl == "vmx" || fl == "svm" {
				return fl, nil
			}
		}
		return "", nil
	}
	return "", sc.Err()
}

// Run runs body with a usable /dev/kvm: directly on a KVM host or inside
// L1, booting L1 under TCG when needed (see the package doc). Run returns
// when the body has run here, or when the L1 run is over and t has been
// marked as the inner test ended; the caller should just return after it.
func Run(t *testing.T, opts Options, body func(t *testing.T, env *Env)) {
	t.Helper()
	env := &Env{t: t, files: opts.Files, guest: opts.Guest}
	if Inside() {
		env.Nested = true
		env.Dir = os.Getenv(EnvDir)
		if env.Dir == "" {
			t.Fatalf("nested: %s is set but %s is not", EnvInner, EnvDir)
		}
		body(t, env)
		return
	}
	mode := os.Getenv(EnvMode)
	switch mode {
	case "", "auto", "always", "never":
	default:
		t.Fatalf("nested: %s=%q: want auto, always or never", EnvMode, mode)
	}
	if mode != "always" {
		if ok, _ := KVMUsable(); ok {
			body(t, env)
			return
		}
	}
	_, why := KVMUsable()
	if mode == "never" {
		t.Skipf("SKIP: no usable KVM here (%s) and %s=never forbids booting an L1 VM", why, EnvMode)
	}
	if testing.Short() {
		t.Skipf("SKIP (-short): no usable KVM here (%s); booting an L1 VM under TCG takes seconds", why)
	}
	runL1(t, opts, why)
}

// runPattern is the -test.run pattern matching exactly the test named name
// (t.Name(): subtests separated by slashes).
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}
