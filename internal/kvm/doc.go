// Package kvm is a thin, typed binding of the Linux KVM API (/dev/kvm) in
// pure Go: the system, VM and vCPU file descriptors, their ioctls, and the
// vCPU's shared kvm_run page. It holds no policy: what a VM looks like
// (memory layout, CPUID, registers at boot, devices) is the caller's.
//
// Invariants:
//   - Every struct passed to the kernel has exactly the kernel's layout
//     (linux/kvm.h and the arch's asm/kvm.h); the tests check sizes, field
//     offsets and ioctl numbers against values printed by the C compiler.
//   - Every failing ioctl returns an *IoctlError naming the ioctl and
//     wrapping the raw unix.Errno, so errors.Is(err, unix.EINTR) works.
//   - VCPU.Run is one KVM_RUN ioctl made with unix.Syscall (so the Go
//     scheduler can run other goroutines meanwhile); it never retries, and
//     an interrupted run comes back as EINTR for the caller's loop to judge.
//   - Views of the kvm_run page that depend on kernel-written offsets and
//     lengths are bounds-checked against the mapping.
//   - Every descriptor is opened close-on-exec, each type has a Close, and
//     constructors release what they acquired when they fail.
//
// Arch-specific structs and ioctls live in _amd64 files; an arm64 port adds
// _arm64 files beside them. Files converting pointers are *_unsafe.go.
package kvm
