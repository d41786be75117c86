// Package seccomp confines the ember process with a seccomp-BPF deny-list.
//
// Firecracker installs one allow-list per thread kind (vmm, api, vcpu),
// each naming the few system calls that thread makes. A Go program cannot
// do that: goroutines move between OS threads, the runtime starts threads
// whenever it likes, and it makes system calls of its own (mmap, futex,
// clone, sigaltstack, ...) that change between Go releases. An allow-list
// would turn a Go upgrade into a SIGSYS at some unpredictable moment. So
// ember installs one process-wide deny-list instead: the calls no part of
// ember (nor the QEMU it starts) ever makes, and that an attacker who took
// over the process would want first — tracing or reading other processes,
// loading kernel code or BPF, mounting, switching namespaces, changing the
// clock, rebooting, keyrings. A denied call fails with EPERM; nothing is
// killed, so a misjudged entry shows up as an error, never as a crash.
//
// Invariants:
//   - Apply sets no_new_privs and installs the filter with
//     SECCOMP_FILTER_FLAG_TSYNC, so every thread of the process, present
//     and future, is confined; it fails rather than confining some threads.
//   - A system call made under another ABI (i386 through int 0x80, x32)
//     is denied outright, so the numbers checked are the only ones that
//     can reach the kernel.
//   - Filters are inherited across fork and exec and cannot be removed:
//     a child process (QEMU) runs under the same deny-list, which is why
//     the base list holds nothing QEMU needs, and why execve is denied only
//     by a Policy that says the process will never start another program
//     (the kvm backend, whose VM runs inside ember).
//
// What it cannot confine: everything Go's runtime and ember's own device
// models need (file, socket, memory and KVM ioctl calls, clone for threads)
// stays allowed, and the arguments of allowed calls are not checked (ioctl
// numbers, clone flags: clone3 passes its flags in memory, where a filter
// cannot read them).
package seccomp
