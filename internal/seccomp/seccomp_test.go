package seccomp

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// run interprets prog over one seccomp_data the way the kernel does for the
// few instructions Program emits; anything else fails the test.
func run(t *testing.T, prog []unix.SockFilter, nr, arch uint32) uint32 {
	t.Helper()
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			switch in.K {
			case offNr:
				acc = nr
			case offArch:
				acc = arch
			default:
				t.Fatalf("load of offset %d", in.K)
			}
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			taken := acc == in.K
			if in.Code&0xf0 == unix.BPF_JGE {
				taken = acc >= in.K
			}
			if taken {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("instruction %#x at %d", in.Code, pc)
		}
	}
	t.Fatal("program fell off its end")
	return 0
}

func TestProgram(t *testing.T) {
	if auditArch == 0 {
		t.Skip("SKIPPING: no system call table for " + runtime.GOARCH + ", so the filter is NOT tested")
	}
	for _, p := range []Policy{{}, {DenyExec: true}, {DenyExec: true, AllowUserfaultfd: true}} {
		prog, err := p.Program()
		if err != nil {
			t.Fatal(err)
		}
		if len(prog) > unix.BPF_MAXINSNS {
			t.Fatalf("%d instructions", len(prog))
		}
		denied := map[uint32]string{}
		for _, s := range p.Denied() {
			if old, dup := denied[s.Nr]; dup {
				t.Errorf("%s and %s share number %d", old, s.Name, s.Nr)
			}
			denied[s.Nr] = s.Name
		}
		tests := []struct {
			name     string
			nr, arch uint32
			want     uint32
		}{
			{"getpid", unix.SYS_GETPID, auditArch, retAllow},
			{"mmap", unix.SYS_MMAP, auditArch, retAllow},
			{"clone", unix.SYS_CLONE, auditArch, retAllow},
			{"ioctl", unix.SYS_IOCTL, auditArch, retAllow},
			{"seccomp", unix.SYS_SECCOMP, auditArch, retAllow},
			{"execve", unix.SYS_EXECVE, auditArch, map[bool]uint32{false: retAllow, true: retEPERM}[p.DenyExec]},
			{"userfaultfd", unix.SYS_USERFAULTFD, auditArch, map[bool]uint32{false: retEPERM, true: retAllow}[p.AllowUserfaultfd]},
			{"foreign arch", unix.SYS_GETPID, 0x40000003 /* AUDIT_ARCH_I386 */, retEPERM},
			{"x32 getpid", x32Bit | unix.SYS_GETPID, auditArch, retEPERM},
			{"huge number", 0xffffffff, auditArch, retEPERM},
		}
		for nr, name := range denied {
			tests = append(tests, struct {
				name     string
				nr, arch uint32
				want     uint32
			}{name, nr, auditArch, retEPERM})
		}
		for _, tc := range tests {
			if got := run(t, prog, tc.nr, tc.arch); got != tc.want {
				t.Errorf("%+v %s (nr %d, arch %#x): %#x, want %#x", p, tc.name, tc.nr, tc.arch, got, tc.want)
			}
		}
	}
}

// childEnv makes the test binary act as a process under the filter.
const childEnv = "EMBER_SECCOMP_TEST_CHILD"

// probe is one system call made with harmless arguments: unconfined it
// fails with something other than EPERM (or succeeds), confined with EPERM.
type probe struct {
	name string
	call func() error
}

func sys(nr uintptr, args ...uintptr) error {
	var a [6]uintptr
	copy(a[:], args)
	_, _, errno := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	if errno != 0 {
		return errno
	}
	return nil
}

var probes = []probe{
	// No such process: ESRCH when allowed.
	{"ptrace", func() error { return sys(unix.SYS_PTRACE, unix.PTRACE_PEEKDATA, 0x7fffffff, 0, 0) }},
	// A mount point that does not exist: ENOENT when allowed.
	{"mount", func() error {
		return unix.Mount("none", "/nonexistent-ember-seccomp-test", "tmpfs", 0, "")
	}},
	// An unknown bpf command: EINVAL when allowed.
	{"bpf", func() error { return sys(unix.SYS_BPF, 0xffff, 0, 0) }},
	// No flags: EINVAL when allowed.
	{"unshare", func() error { return sys(unix.SYS_UNSHARE, 0xffffffff) }},
	// A bad fd: EBADF when allowed.
	{"setns", func() error { return sys(unix.SYS_SETNS, ^uintptr(0), 0) }},
	// A missing file: ENOENT when allowed (the kernel resolves the path
	// first).
	{"execve", func() error {
		p, _ := unix.BytePtrFromString("/nonexistent-ember-seccomp-test")
		return sys(unix.SYS_EXECVE, uintptr(unsafe.Pointer(p)), 0, 0)
	}},
}

func probeNamed(name string) probe {
	for _, p := range probes {
		if p.name == name {
			return p
		}
	}
	panic("no probe " + name)
}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(child(os.Getenv(childEnv)))
	}
	os.Exit(m.Run())
}

// child prints "<name> <errno or ok>" for each probe, made from a thread
// that existed before the filter and from one started after it, then the
// process's Seccomp and NoNewPrivs status lines.
func child(mode string) int {
	// A thread locked before Apply must be confined by TSYNC too.
	before := make(chan func(), 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		runtime.LockOSThread()
		defer wg.Done()
		for f := range before {
			f()
		}
	}()
	sync := make(chan struct{})
	before <- func() { close(sync) }
	<-sync
	switch mode {
	case "none":
	case "base":
		if err := Apply(Policy{}); err != nil {
			fmt.Println("apply", err)
			return 1
		}
	case "exec":
		if err := Apply(Policy{DenyExec: true}); err != nil {
			fmt.Println("apply", err)
			return 1
		}
	case "late":
		// The qemu backend's order: the base list, a program started (here
		// a probe shows execve still reaches the kernel), then exec denied.
		if err := Apply(Policy{}); err != nil {
			fmt.Println("apply", err)
			return 1
		}
		if err := probeNamed("execve").call(); err != unix.ENOENT {
			fmt.Println("execve between the filters:", err)
			return 1
		}
		if err := DenyExecFromNow(); err != nil {
			fmt.Println("deny exec", err)
			return 1
		}
	}
	report := func(where string, p probe) {
		err := p.call()
		what := "ok"
		var errno unix.Errno
		if errors.As(err, &errno) {
			what = unix.ErrnoName(errno)
		} else if err != nil {
			what = err.Error()
		}
		fmt.Printf("%s %s %s\n", where, p.name, what)
	}
	for _, p := range probes {
		done := make(chan struct{})
		before <- func() { report("old", p); close(done) }
		<-done
		runtime.LockOSThread()
		report("new", p)
		runtime.UnlockOSThread()
	}
	close(before)
	wg.Wait()
	st, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(l, "Seccomp:") || strings.HasPrefix(l, "NoNewPrivs:") {
			fmt.Println(strings.Join(strings.Fields(l), " "))
		}
	}
	return 0
}

func runChild(t *testing.T, mode string) map[string]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %s: %v\n%s", mode, err, out)
	}
	got := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 {
			got[f[0]+" "+f[1]] = f[2]
		} else if len(f) == 2 {
			got[f[0]] = f[1]
		}
	}
	return got
}

func TestApply(t *testing.T) {
	if auditArch == 0 {
		t.Skip("SKIPPING: no system call table for " + runtime.GOARCH + ", so the filter is NOT tested")
	}
	if os.Geteuid() != 0 {
		// Unprivileged, mount and setns fail with EPERM anyway, so the
		// baseline could not tell the filter's EPERM from the kernel's.
		t.Skip("SKIPPING: must run as root to tell the filter's EPERM from a permission check, so the filter is NOT tested")
	}
	free := runChild(t, "none")
	if free["Seccomp:"] != "0" {
		t.Fatalf("the test runs under seccomp already (%q); cannot compare", free["Seccomp:"])
	}
	for _, p := range probes {
		for _, where := range []string{"old", "new"} {
			if v := free[where+" "+p.name]; v == "" || v == "EPERM" {
				t.Errorf("unconfined %s on the %s thread: %q, want a result other than EPERM", p.name, where, v)
			}
		}
	}
	for _, tc := range []struct {
		mode     string
		denyExec bool
	}{{"base", false}, {"exec", true}, {"late", true}} {
		t.Run(tc.mode, func(t *testing.T) {
			got := runChild(t, tc.mode)
			if got["Seccomp:"] != "2" || got["NoNewPrivs:"] != "1" {
				t.Errorf("status Seccomp %q NoNewPrivs %q, want 2 and 1", got["Seccomp:"], got["NoNewPrivs:"])
			}
			for _, p := range probes {
				for _, where := range []string{"old", "new"} {
					want := "EPERM"
					if p.name == "execve" && !tc.denyExec {
						want = free[where+" execve"]
					}
					if v := got[where+" "+p.name]; v != want {
						t.Errorf("%s on the %s thread: %q, want %q", p.name, where, v, want)
					}
				}
			}
		})
	}
}

func TestDeniedNames(t *testing.T) {
	// The list is documented by name in docs/reliability.md; names must be
	// the kernel's, each once.
	seen := map[string]bool{}
	for _, s := range (Policy{DenyExec: true}).Denied() {
		if seen[s.Name] || s.Name == "" || strings.ToLower(s.Name) != s.Name {
			t.Errorf("bad or repeated name %q", s.Name)
		}
		seen[s.Name] = true
	}
	if auditArch != 0 && !seen["execve"] {
		t.Error("DenyExec does not deny execve")
	}
}
