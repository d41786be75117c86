// Package kvm is ember's built-in VMM: the "kvm" backend, which runs a
// Firecracker-shaped microVM in this process on Linux's KVM, in pure Go.
//
// A Machine owns guest RAM (package guestmem, mapped outside the Go heap), a
// KVM VM with its in-kernel irqchip and PIT, one vCPU per locked OS thread,
// the legacy devices on the port I/O bus (the 8250 console, the i8042) and
// the virtio devices behind virtio-mmio windows on the MMIO bus, each with an
// irqfd for its interrupt line and an ioeventfd per queue, so that neither a
// device interrupt nor a queue notification costs a vCPU exit to this
// process. The guest machine is Firecracker's: its memory layout, boot
// protocols, MP and ACPI tables (packages loader, mptable and acpi), CPUID
// normalization and boot MSRs.
//
// Invariants:
//   - A vCPU's KVM_RUN happens only on its own locked thread; other
//     goroutines stop it by setting immediate_exit and signalling that thread,
//     and the run loop re-examines its state after every EINTR instead of
//     re-entering the guest blindly.
//   - Pause returns only once every vCPU is parked outside KVM_RUN; Resume
//     releases them together.
//   - The guest ends the machine by resetting it through the i8042 (exit 0,
//     as Firecracker); any exit KVM reports that ember cannot handle ends it
//     as an error (exit 1).
//   - Everything Create acquires is released by Close, and by Create itself
//     when it fails: devices stop before guest RAM is unmapped. The vsock
//     device is the exception: the controller bound it at PUT /vsock and
//     owns it, so the machine resets it (dropping its connections and its
//     hold on guest RAM) but leaves its socket to the controller.
//   - A snapshot is taken only of a paused machine, with every virtio
//     device stopped while its state and guest RAM are read; the devices
//     then run again from the state just saved, as a restored machine's do.
//     A restored machine maps the memory file privately, so the file never
//     changes and any number of machines may restore from it at once.
//
// Architecture-specific parts (layout, vCPU state, tables, legacy devices)
// live in _amd64 files; other architectures report the backend unavailable.
package kvm
