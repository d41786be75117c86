package seccomp

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Errors returned (wrapped) by Apply.
var (
	// ErrUnsupported means this build has no system call table for its
	// architecture; nothing was installed.
	ErrUnsupported = errors.New("seccomp: no filter for this architecture")
	// ErrInstall means the kernel refused no_new_privs or the filter.
	ErrInstall = errors.New("seccomp: installing the filter failed")
)

// Syscall is one system call of the native ABI.
type Syscall struct {
	Name string
	Nr   uint32
}

// Policy chooses what is denied beyond the base list.
type Policy struct {
	// DenyExec also denies execve and execveat. Only for a process that
	// will never start another program: the filter cannot be lifted, and a
	// child started before it was installed keeps running unconfined by it.
	DenyExec bool
	// AllowUserfaultfd leaves userfaultfd allowed, for a process that
	// loads snapshots with mem_backend Uffd (as Firecracker's VMM filter
	// does). It is otherwise denied: it lets a compromised process stall
	// the kernel inside its own memory accesses, widening kernel races.
	AllowUserfaultfd bool
}

// Denied returns the system calls the policy denies, base list first.
func (p Policy) Denied() []Syscall {
	out := append([]Syscall(nil), baseDenied...)
	if !p.AllowUserfaultfd {
		out = append(out, uffdDenied...)
	}
	if p.DenyExec {
		out = append(out, execDenied...)
	}
	return out
}

// seccomp_data offsets (include/uapi/linux/seccomp.h): nr, then arch.
const (
	offNr   = 0
	offArch = 4
)

// x32Bit marks an x32 system call number on x86-64; numbers at or above it
// are never native on the architectures supported here.
const x32Bit = 0x40000000

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
)

// Program returns the policy as a classic BPF program over seccomp_data.
func (p Policy) Program() ([]unix.SockFilter, error) { return program(p.Denied()) }

// program builds the filter that denies the calls in denied (and every
// call under a foreign ABI) and allows the rest.
func program(denied []Syscall) ([]unix.SockFilter, error) {
	if auditArch == 0 {
		return nil, ErrUnsupported
	}
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jump := func(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
	}
	// Layout: arch check, number range check, one equality test per denied
	// call (each jumping forward to the shared deny), allow, deny.
	n := 5 + len(denied) + 2
	deny := n - 1
	to := func(at int) uint8 {
		d := deny - at - 1
		if d < 0 || d > 255 {
			panic(fmt.Sprintf("seccomp: jump of %d instructions", d)) // a list this long is a programming error
		}
		return uint8(d)
	}
	prog := make([]unix.SockFilter, 0, n)
	prog = append(prog,
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArch),
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, auditArch, 1, 0),
		stmt(unix.BPF_RET|unix.BPF_K, retEPERM),
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNr),
	)
	prog = append(prog, jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32Bit, to(len(prog)), 0))
	for _, s := range denied {
		prog = append(prog, jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, s.Nr, to(len(prog)), 0))
	}
	prog = append(prog,
		stmt(unix.BPF_RET|unix.BPF_K, retAllow),
		stmt(unix.BPF_RET|unix.BPF_K, retEPERM),
	)
	return prog, nil
}

// Apply sets no_new_privs and installs the policy's filter on every thread
// of the process. It cannot be undone.
func Apply(p Policy) error {
	prog, err := p.Program()
	if err != nil {
		return err
	}
	return applyProgram(prog)
}

// DenyExecFromNow adds a filter denying execve and execveat to every
// thread of the process, on top of what Apply installed: for a process
// that had to start a program (QEMU) and will start no other. Children
// started before keep only the filters they inherited.
func DenyExecFromNow() error {
	prog, err := program(execDenied)
	if err != nil {
		return err
	}
	return applyProgram(prog)
}

func applyProgram(prog []unix.SockFilter) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("%w: prctl(PR_SET_NO_NEW_PRIVS): %w", ErrInstall, err)
	}
	if err := install(prog); err != nil {
		return fmt.Errorf("%w: %w", ErrInstall, err)
	}
	return nil
}
