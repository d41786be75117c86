package qemu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/syserr"
)

// DefaultBinary is the QEMU that runs x86-64 guests.
const DefaultBinary = "qemu-system-x86_64"

// Option names understood in hypervisor.Env.Options.
const (
	// OptionBinary names the QEMU binary (a path, or a name looked up on PATH).
	OptionBinary = "qemu-binary"
	// OptionAccel forces the accelerator: "kvm", "hvf" or "tcg".
	OptionAccel = "qemu-accel"
)

// findBinary resolves the QEMU binary, or says how to install it.
func findBinary(option string) (string, error) {
	name := DefaultBinary
	if option != "" {
		name = option
	}
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	if name != DefaultBinary {
		return "", &hypervisor.UnavailableError{Backend: Name, Reason: fmt.Sprintf(
			"the QEMU binary %q (--qemu-binary) cannot be run: %s", option, syserr.Display(err))}
	}
	return "", &hypervisor.UnavailableError{Backend: Name, Reason: "QEMU is not installed: " + DefaultBinary +
		" was not found on PATH; install the qemu-system-x86 package (Debian, Ubuntu) or name the binary with --qemu-binary"}
}

// accel is a QEMU accelerator.
type accel string

const (
	accelKVM accel = "kvm"
	accelHVF accel = "hvf"
	accelTCG accel = "tcg"
)

// hostProbe is what the accelerator choice looks at; tests inject it.
type hostProbe struct {
	GOOS, GOARCH string
	// CPUInfo is the content of /proc/cpuinfo (Linux).
	CPUInfo []byte
	// OpenKVM tries /dev/kvm; nil error means it opened.
	OpenKVM func() error
}

func realProbe(goos, goarch string) hostProbe {
	info, _ := os.ReadFile("/proc/cpuinfo")
	return hostProbe{
		GOOS: goos, GOARCH: goarch, CPUInfo: info,
		OpenKVM: func() error {
			f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
			if err == nil {
				f.Close()
			}
			return err
		},
	}
}

// chooseAccel picks the fastest accelerator that can really run a Linux
// guest and says why, in words fit for the log. KVM needs both a /dev/kvm
// that opens and a CPU that shows hardware virtualization: some hosts
// offer a /dev/kvm that emulates instruction by instruction (nested,
// page-table based) and is slower than TCG and unable to run stock kernels.
func chooseAccel(p hostProbe) (accel, string) {
	switch {
	case p.GOOS == "darwin" && p.GOARCH == "amd64":
		return accelHVF, "macOS Hypervisor.framework"
	case p.GOOS == "darwin":
		return accelTCG, "x86 guests on a " + p.GOARCH + " Mac are emulated"
	case p.GOOS != "linux":
		return accelTCG, "no accelerator support for " + p.GOOS
	case p.GOARCH != "amd64":
		return accelTCG, "x86 guests on a " + p.GOARCH + " host are emulated"
	}
	if !cpuFlag(p.CPUInfo, "vmx") && !cpuFlag(p.CPUInfo, "svm") {
		return accelTCG, "/proc/cpuinfo shows neither vmx nor svm"
	}
	if p.OpenKVM == nil {
		return accelTCG, "/dev/kvm cannot be opened"
	}
	if err := p.OpenKVM(); err != nil {
		return accelTCG, "/dev/kvm cannot be opened: " + errText(err)
	}
	return accelKVM, "/dev/kvm opens and the CPU has hardware virtualization"
}

func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// parseAccel reads the qemu-accel option.
func parseAccel(s string) (accel, error) {
	switch a := accel(s); a {
	case accelKVM, accelHVF, accelTCG:
		return a, nil
	}
	return "", fmt.Errorf("invalid %s %q: want kvm, hvf or tcg", OptionAccel, s)
}

// cpuFlag reports whether the first "flags" line of cpuinfo lists flag.
func cpuFlag(cpuinfo []byte, flag string) bool {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			if f == flag {
				return true
			}
		}
		return false
	}
	return false
}

// hostTSCkHz returns the host TSC rate in kHz from the first "cpu MHz" of
// cpuinfo, 0 if absent. Under TCG the guest's rdtsc reads the host TSC, so
// this is the rate the guest must be told.
func hostTSCkHz(cpuinfo []byte) uint64 {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		// Parse as decimal text, not float, so 2096.021 is exactly 2096021.
		whole, frac, _ := strings.Cut(strings.TrimSpace(v), ".")
		mhz, err := strconv.ParseUint(whole, 10, 32)
		if err != nil {
			return 0
		}
		frac = (frac + "000")[:3]
		khz, err := strconv.ParseUint(frac, 10, 32)
		if err != nil {
			return 0
		}
		return mhz*1000 + khz
	}
	return 0
}

// withKernelArg inserts arg into a kernel command line before the first
// " -- " (what follows it belongs to init), unless a parameter of the same
// name is already among the kernel's parameters.
func withKernelArg(cmdline, arg string) string {
	name, _, _ := strings.Cut(arg, "=")
	kernel, rest, hasInit := splitInit(cmdline)
	for _, f := range kernelWords(kernel) {
		if k, _, _ := strings.Cut(f, "="); k == name {
			return cmdline
		}
	}
	for kernel != "" && kernelSpace(kernel[len(kernel)-1]) {
		kernel = kernel[:len(kernel)-1]
	}
	if kernel != "" {
		kernel += " "
	}
	kernel += arg
	if hasInit {
		return kernel + " --" + rest
	}
	return kernel
}

// kernelSpace reports whether the kernel's command-line parser takes b
// as a separator between words (its isspace; Latin-1's 0xa0 included).
func kernelSpace(b byte) bool {
	switch b {
	case ' ', '\t', '\n', '\v', '\f', '\r', 0xa0:
		return true
	}
	return false
}

// kernelWords splits a command line into words as the kernel does.
func kernelWords(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		for i < len(s) && kernelSpace(s[i]) {
			i++
		}
		j := i
		for j < len(s) && !kernelSpace(s[j]) {
			j++
		}
		if j > i {
			out = append(out, s[i:j])
		}
		i = j
	}
	return out
}

// splitInit cuts a command line at its first "--" word, which ends the
// kernel's parameters (the rest goes to init): rest keeps what followed
// the "--", leading separator included. Words are split as the kernel
// splits them, on any of its space bytes.
func splitInit(cmdline string) (kernel, rest string, ok bool) {
	for i := 0; i < len(cmdline); {
		for i < len(cmdline) && kernelSpace(cmdline[i]) {
			i++
		}
		j := i
		for j < len(cmdline) && !kernelSpace(cmdline[j]) {
			j++
		}
		if cmdline[i:j] == "--" {
			return cmdline[:i], cmdline[j:], true
		}
		i = j
	}
	return cmdline, "", false
}

// hugePagesFree returns the number of free 2 MiB huge pages.
func hugePagesFree() (uint64, error) {
	b, err := os.ReadFile("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// thpMode returns the host's transparent huge page mode (always, madvise,
// never), or "" if unknown.
func thpMode() string {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		return ""
	}
	for _, f := range strings.Fields(string(b)) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return strings.Trim(f, "[]")
		}
	}
	return ""
}
