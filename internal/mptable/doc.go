// Package mptable writes the Intel MultiProcessor Specification 1.4
// tables that let a guest without ACPI find its CPUs and interrupt
// routing: a floating pointer structure followed by a configuration table
// with one processor entry per vCPU (APIC ids 0..n-1, the first the boot
// processor), an ISA bus, the IOAPIC (id n+1), an I/O interrupt entry
// routing each of IRQs 0..23 to the same IOAPIC pin (as KVM's default
// routing does) and the local interrupts (ExtINT on LINT0, NMI on LINT1).
//
// Invariants: the table lies at the start of the system area reserved for
// it (loader.SystemMemStart), entirely below loader.SystemMemEnd and in
// guest RAM, or nothing is written; both checksums are valid.
package mptable
