// Package loader puts a Linux guest into guest memory the way Firecracker
// does on x86-64: it lays out guest RAM around the 32-bit MMIO gap, loads
// the kernel (an ELF vmlinux, entered through its PVH note when it has
// one, else through the 64-bit Linux boot protocol, or a bzImage entered
// at its 64-bit entry point), places the initrd at the top of low RAM,
// writes the command line, the boot parameters (zero page with its e820
// map, or PVH start info with its memory map and module list), the GDT,
// IDT and identity page tables, and returns the initial vCPU state as
// plain values for a backend to hand to its hypervisor.
//
// Invariants: everything read from a kernel or initrd image (offsets,
// sizes, addresses) is checked against the image's size and against guest
// RAM before any byte is written; a refused image yields an *Error whose
// text is Firecracker's fault message for the case and which wraps one of
// the package's sentinel errors; no input makes Load panic. Guest memory
// is assumed fresh (zero-filled), as an anonymous mapping is: the loader
// writes only what it must, so untouched guest pages stay unbacked.
// Architecture-specific code lives in _amd64 files.
package loader
