//go:build !amd64 && !arm64

package seccomp

// No table for this architecture: Program and Apply return ErrUnsupported.
const auditArch = 0

var baseDenied, execDenied, uffdDenied []Syscall
