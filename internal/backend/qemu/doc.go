// Package qemu is ember's QEMU backend: one qemu-system-x86_64 process per
// VM, machine type microvm with ACPI, driven over QMP (package qmp). It
// registers itself as "qemu" with package hypervisor.
//
// # Accelerator
//
// KVM when /dev/kvm opens and /proc/cpuinfo shows vmx or svm (a /dev/kvm
// without them can be a page-table based nested hypervisor, slower than TCG
// and unable to run stock kernels); Hypervisor.framework on Intel Macs; TCG
// otherwise. The choice and its reason are logged in one Info line with
// QEMU's version; the full command line is logged at Debug.
//
// Under TCG ember adds tsc_early_khz=<host TSC kHz> (from /proc/cpuinfo) to
// the guest kernel's command line, before any " -- " and unless the user
// set it: an emulated guest calibrating its TSC against the PIT on a busy
// host can fail and hang before "Calibrating delay loop", and TCG's rdtsc
// runs at the host TSC rate, so telling the guest that rate skips the
// calibration. The addition is logged. Nothing else is added to the command
// line: with ACPI, microvm lists its virtio-mmio devices in the DSDT (what
// stock kernels need; kernels built from Firecracker's configs find them
// there too) and adds no virtio_mmio.device= entries.
//
// # How Firecracker's configuration maps onto QEMU
//
//	machine-config    -smp cpus=N,sockets=1,cores=N/T,threads=T (T=2 with smt), -m
//	                  huge_pages None and 2M: a memfd ember creates (hugetlb 2 MiB
//	                  pages for 2M, which need free pages, checked first), passed
//	                  as memory-backend-file on /dev/fd/N, share=on, so snapshots
//	                  read guest RAM (with devices over vhost-user, which cannot
//	                  be snapshotted, QEMU's own shared memfd); Transparent:
//	                  memory-backend-ram, which QEMU advises MADV_HUGEPAGE (THP
//	                  mode must not be never; no snapshots)
//	boot-source       -kernel/-initrd passed open as /dev/fd/N (ELF vmlinux via
//	                  PVH, or bzImage), -append with the controller's command line
//	drives            -blockdev raw over file (aio=threads for Sync, io_uring for
//	                  Async after probing that QEMU can use it; locking off, as
//	                  Firecracker takes no image locks) + virtio-blk-device with
//	                  Firecracker's serial (st_dev st_rdev st_ino), one queue, no
//	                  discard/write-zeroes/config-wce/indirect descriptors, I/O
//	                  errors reported to the guest (QEMU's default pauses on ENOSPC)
//	cache_type        Writeback: write-cache=on, the guest sees VIRTIO_BLK_F_FLUSH
//	                  and a flush reaches the disk (fdatasync). Unsafe: write-cache=off
//	                  (no FLUSH: the guest sees a write-through disk, as on
//	                  Firecracker) and cache.no-flush=on, so QEMU does not emulate
//	                  write-through with a sync per write; data stays in the host
//	                  page cache, as Firecracker leaves it
//	network           the controller's tap, duplicated and passed as -netdev
//	                  tap,fd=N (no vhost); virtio-net-device with guest_mac (a random
//	                  locally administered one when none is given: QEMU always offers
//	                  a MAC) and host_mtu; control queue, link status, ECN, GSO and
//	                  multiqueue off, leaving Firecracker's feature set
//	balloon           virtio-balloon-device (deflate-on-oom, free-page-reporting);
//	                  amount_mib is the balloon size, QEMU's "balloon" the guest's
//	                  target size: target = mem_size_mib - amount_mib. Statistics
//	                  from qom-get guest-stats, named as Firecracker names them
//	                  (QEMU 7.2 has no oom_kill, alloc_stall, scan or reclaim
//	                  figures; they stay absent)
//	entropy           rng-random on /dev/urandom + virtio-rng-device
//	serial console    COM1 (isa-serial at 0x3f8, IRQ 4) on a socket pair ember
//	                  always drains into Env.Console, and feeds from Env.ConsoleIn
//	i8042             -device i8042: reboot=k resets and Ctrl-Alt-Del (send-key)
//
// Every virtio device sits on a modern (version 2) virtio-mmio transport, as
// Firecracker's do (QEMU's default is the legacy layout). microvm lists the
// transports in its DSDT from the highest slot down and Linux probes them in
// that order, so devices take slots top-down in Firecracker's attach order
// (balloon, drives with the root first, nets, rng): the root drive is
// /dev/vda. QEMU's virtio-blk also offers SEG_MAX, GEOMETRY, BLK_SIZE and
// TOPOLOGY, which cannot be turned off; they only inform the guest.
//
// Under TCG a guest with smt sees an Intel vendor string: TCG cannot
// emulate AMD's topology extensions, without which the guest would count
// its threads as cores. Without smt the CPU stays TCG's AMD-flavoured "max",
// whose emulated SVM lets a guest run KVM itself.
//
// Not available on QEMU 7.2's microvm, and reported so in Capabilities:
// virtio-pmem and virtio-mem (QEMU maps them into guest memory only through
// PCI), free page hinting (QEMU ties it to migration); not implemented yet:
// vsock with Firecracker's Unix-socket protocol, dirty-page tracking.
// Snapshots: see snapshot.go.
//
// # Lifecycle
//
// QEMU starts paused (-S); Machine.Start is the first "cont", Pause and
// Resume are "stop" and "cont" (stop returns once no vCPU runs). With
// -action reboot=shutdown,shutdown=pause a guest reset stops QEMU's run and
// emits SHUTDOWN with reason guest-reset: the Machine ends with ExitReset
// and QEMU is killed. A guest power-off (ACPI) only pauses QEMU: the
// Machine keeps running, as Firecracker, which has no ACPI power-off, keeps
// a halted guest; Pause and Resume are then no-ops. QEMU exiting or dying
// on its own ends the Machine with ExitError naming the signal or status and
// QEMU's last words. Machine.Close kills QEMU and reaps it; the monitor and
// console are socket pairs, so nothing is left on disk.
//
// QEMU never outlives ember: it is started with PR_SET_PDEATHSIG=SIGKILL
// from a dedicated thread that stays locked for the life of the process
// (Linux sends the signal when the forking thread exits, and Go retires
// threads), and in its own process group, so a terminal's Ctrl-C reaches
// ember rather than QEMU.
//
// UpdateDrive adds a new file node, reopens the drive's raw node on it and
// resizes the node to the file's size, which makes QEMU announce the new
// capacity to the guest (and touches the file's mtime). A read-only node
// cannot be resized, so a read-only drive is reopened writable for that
// moment when its file allows it (the guest's device holds no write
// permission meanwhile) and read-only again after.
//
// # Options
//
// hypervisor.Env.Options: "qemu-binary" names the QEMU binary (default
// qemu-system-x86_64 on PATH; Debian/Ubuntu package qemu-system-x86);
// "qemu-accel" forces kvm, hvf or tcg.
//
// Every user-supplied string reaches QEMU as data: paths, MACs and serials
// inside JSON option values (-blockdev, -device, -netdev, -object), boot
// files and taps as passed descriptors, so a comma or an equals sign in a
// path can never add an option.
package qemu
