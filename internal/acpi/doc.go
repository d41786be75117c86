// Package acpi builds the ACPI tables of a microVM, as Firecracker
// describes its machine: an RSDP at a fixed address pointing at an XSDT
// that lists a FADT (hardware-reduced ACPI, power and sleep buttons as
// control-method devices, no VGA) and a MADT (one enabled local APIC per
// vCPU and the IOAPIC), the FADT pointing at a DSDT that declares each
// virtio-mmio device (_HID "LNRO0005", its registers and GSI), COM1 and
// the i8042 keyboard controller. It holds a small AML encoder for the
// DSDT.
//
// Invariants: every table's length and checksum are right; a table is
// never written unless all of them fit in the system area below the RSDP
// and in guest RAM. Architecture-specific tables live in _amd64 files.
package acpi
