// Package kernelimage reads an x86-64 guest kernel's headers to tell how it
// boots, with the checks and error texts of the kernel loader Firecracker
// uses: an ELF vmlinux (entered through its PVH note when it has one, else
// the 64-bit Linux boot protocol) or a bzImage (which must offer the 64-bit
// entry point, boot protocol 2.12+ with XLF_KERNEL_64). It reads headers
// only; loading into guest memory is a backend's job. Every offset read
// from the file is bounds-checked against its size.
package kernelimage

import (
	"encoding/binary"
	"errors"
	"io"
)

// Format is a kernel image format.
type Format int

// The formats.
const (
	ELF Format = iota + 1
	BzImage
)

// Info describes a kernel image.
type Info struct {
	Format Format
	// PVHEntry is the 32-bit PVH entry point of an ELF with a PVH note (0
	// when there is none).
	PVHEntry uint32
	// Entry is the ELF entry point.
	Entry uint64
	// Version is a bzImage's boot protocol version (0x020f is 2.15).
	Version uint16
}

// Protocol names the boot protocol as Firecracker's log line does
// ("Kernel loaded using PVH boot protocol").
func (i *Info) Protocol() string {
	switch {
	case i.Format == ELF && i.PVHEntry != 0:
		return "PVH boot protocol"
	case i.Format == ELF:
		return "Linux 64-bit boot protocol"
	}
	return "Linux 64-bit boot protocol (bzImage)"
}

// Errors, with the loader's texts. An error from Inspect prints as
// "Kernel Loader: failed to load <kind> kernel image: Kernel Loader: <what>".
var (
	ErrInvalidELFMagic     = errors.New("Invalid Elf magic number")
	ErrBigEndian           = errors.New("Trying to load big-endian binary on little-endian machine")
	ErrReadELFHeader       = errors.New("Unable to read elf header")
	ErrProgramHeaderSize   = errors.New("Invalid program header size")
	ErrProgramHeaderOffset = errors.New("Invalid program header offset")
	ErrInvalidEntryAddress = errors.New("Invalid entry address")
	ErrReadProgramHeader   = errors.New("Unable to read program header")
	ErrInvalidPVHNote      = errors.New("Invalid PVH note header")
	ErrInvalidBzImage      = errors.New("Invalid bzImage")
	ErrReadBzImageHeader   = errors.New("Unable to read bzImage header")
	ErrBzImageUnderflow    = errors.New("Underflow occurred during an arithmetic operation")
	ErrInvalidKernelStart  = errors.New("invalid kernel start address")
	ErrBzImageNo64BitEntry = errors.New("bzImage does not provide a 64-bit entry point")
)

// LoaderError is a kernel the loader refuses.
type LoaderError struct {
	Kind string // "ELF" or "bzImage"; "" for errors outside a format
	Err  error
}

func (e *LoaderError) Error() string {
	if e.Kind == "" {
		return "Kernel Loader: " + e.Err.Error()
	}
	return "Kernel Loader: failed to load " + e.Kind + " kernel image: Kernel Loader: " + e.Err.Error()
}

func (e *LoaderError) Unwrap() error { return e.Err }

// highmem is where kernels are loaded (1 MiB); entry points below it are refused.
const highmem = 0x10_0000

// Inspect reads the image's headers.
func Inspect(r io.ReaderAt, size int64) (*Info, error) {
	var ident [16]byte
	if _, err := r.ReadAt(ident[:], 0); err != nil || size < 64 {
		// Too short for an ELF header: the ELF loader cannot read its
		// header, which is not the "no magic" case that falls back to bzImage.
		if size >= 4 {
			var magic [4]byte
			r.ReadAt(magic[:], 0)
			if string(magic[:]) != "\x7fELF" {
				return inspectBzImage(r, size)
			}
		}
		return nil, &LoaderError{Kind: "ELF", Err: ErrReadELFHeader}
	}
	if string(ident[:4]) != "\x7fELF" {
		return inspectBzImage(r, size)
	}
	return inspectELF(r, size, ident)
}

func inspectELF(r io.ReaderAt, size int64, ident [16]byte) (*Info, error) {
	fail := func(err error) (*Info, error) { return nil, &LoaderError{Kind: "ELF", Err: err} }
	if ident[5] != 1 { // ELFDATA2LSB
		return fail(ErrBigEndian)
	}
	var h [64]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return fail(ErrReadELFHeader)
	}
	le := binary.LittleEndian
	entry := le.Uint64(h[24:])
	phoff := le.Uint64(h[32:])
	phentsize := le.Uint16(h[54:])
	phnum := le.Uint16(h[56:])
	if int(phentsize) != 56 {
		return fail(ErrProgramHeaderSize)
	}
	if phoff < 64 {
		return fail(ErrProgramHeaderOffset)
	}
	if entry < highmem {
		return fail(ErrInvalidEntryAddress)
	}
	info := &Info{Format: ELF, Entry: entry}
	for i := 0; i < int(phnum); i++ {
		var ph [56]byte
		off := int64(phoff) + int64(i)*56
		if off+56 > size {
			return fail(ErrReadProgramHeader)
		}
		if _, err := r.ReadAt(ph[:], off); err != nil {
			return fail(ErrReadProgramHeader)
		}
		if le.Uint32(ph[0:]) != 4 { // PT_NOTE
			continue
		}
		entry, err := pvhNote(r, size, le.Uint64(ph[8:]), le.Uint64(ph[32:]))
		if err != nil {
			return fail(err)
		}
		if entry != 0 {
			info.PVHEntry = entry
		}
	}
	return info, nil
}

// pvhNote scans one PT_NOTE segment for XEN_ELFNOTE_PHYS32_ENTRY (type 18,
// name "Xen") and returns its entry point, or 0.
func pvhNote(r io.ReaderAt, size int64, off, filesz uint64) (uint32, error) {
	const noteType = 18
	end := off + filesz
	if end < off || end > uint64(size) {
		return 0, ErrInvalidPVHNote
	}
	for off+12 <= end {
		var nh [12]byte
		if _, err := r.ReadAt(nh[:], int64(off)); err != nil {
			return 0, ErrInvalidPVHNote
		}
		namesz := uint64(binary.LittleEndian.Uint32(nh[0:]))
		descsz := uint64(binary.LittleEndian.Uint32(nh[4:]))
		typ := binary.LittleEndian.Uint32(nh[8:])
		name := off + 12
		desc := name + align4(namesz)
		next := desc + align4(descsz)
		if next > end || next <= off {
			return 0, ErrInvalidPVHNote
		}
		if typ == noteType && namesz >= 3 {
			var n [3]byte
			r.ReadAt(n[:], int64(name))
			if string(n[:]) == "Xen" {
				if descsz < 4 {
					return 0, ErrInvalidPVHNote
				}
				var d [4]byte
				if _, err := r.ReadAt(d[:], int64(desc)); err != nil {
					return 0, ErrInvalidPVHNote
				}
				return binary.LittleEndian.Uint32(d[:]), nil
			}
		}
		off = next
	}
	return 0, nil
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

func inspectBzImage(r io.ReaderAt, size int64) (*Info, error) {
	fail := func(err error) (*Info, error) { return nil, &LoaderError{Kind: "bzImage", Err: err} }
	// The setup header runs from 0x1f1 to 0x268.
	var h [0x268]byte
	if size < int64(len(h)) {
		return fail(ErrReadBzImageHeader)
	}
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return fail(ErrReadBzImageHeader)
	}
	le := binary.LittleEndian
	if le.Uint32(h[0x202:]) != 0x53726448 { // "HdrS"
		return fail(ErrInvalidBzImage)
	}
	version := le.Uint16(h[0x206:])
	loadflags := h[0x211]
	if version < 0x0200 || loadflags&1 == 0 {
		return fail(ErrInvalidBzImage)
	}
	setup := int64(h[0x1f1])
	if setup == 0 {
		setup = 4
	}
	if (setup+1)*512 > size {
		return fail(ErrBzImageUnderflow)
	}
	if code32 := le.Uint32(h[0x214:]); code32 < highmem {
		return nil, &LoaderError{Err: ErrInvalidKernelStart}
	}
	xloadflags := le.Uint16(h[0x236:])
	if version < 0x020c || xloadflags&1 == 0 { // XLF_KERNEL_64
		return nil, ErrBzImageNo64BitEntry
	}
	return &Info{Format: BzImage, Version: version}, nil
}
