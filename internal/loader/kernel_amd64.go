package loader

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/kernelimage"
)

func le16(b []byte, off int) uint16 { return binary.LittleEndian.Uint16(b[off:]) }
func le32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
func le64(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

// loadELF loads the PT_LOAD segments of a vmlinux at their physical
// addresses. kernelimage.Inspect has checked the ELF and program headers.
func loadELF(mem *guestmem.Memory, img Image, info *kernelimage.Info) (*kernel, error) {
	const ptLoad = 1
	var eh [64]byte
	if _, err := img.R.ReadAt(eh[:], 0); err != nil {
		return nil, loaderError(ErrKernelImage, "ELF", kernelimage.ErrReadELFHeader)
	}
	phoff, phnum := le64(eh[:], 32), int(le16(eh[:], 56))
	k := &kernel{format: kernelimage.ELF, protocol: Linux64, entry: info.Entry, start: ^uint64(0)}
	if info.PVHEntry != 0 {
		k.protocol, k.entry = PVH, uint64(info.PVHEntry)
	}
	regions := mem.Regions()
	type load struct{ off, paddr, filesz, size uint64 }
	var loads []load
	for i := 0; i < phnum; i++ {
		var ph [56]byte
		if _, err := img.R.ReadAt(ph[:], int64(phoff)+int64(i)*56); err != nil {
			return nil, loaderError(ErrKernelImage, "ELF", kernelimage.ErrReadProgramHeader)
		}
		typ, off, paddr := le32(ph[:], 0), le64(ph[:], 8), le64(ph[:], 24)
		filesz, memsz := le64(ph[:], 32), le64(ph[:], 40)
		if typ != ptLoad || filesz == 0 {
			continue
		}
		if off+filesz < off || off+filesz > uint64(img.Size) {
			return nil, loaderError(ErrKernelImage, "ELF", ErrReadKernelImage)
		}
		size := max(filesz, memsz)
		// Below 1 MiB lie the boot structures the loader writes.
		if paddr < HimemStart || paddr+size < paddr {
			return nil, loaderError(ErrKernelImage, "ELF", ErrProgramHeaderAddress)
		}
		if !isRAM(regions, paddr, size) {
			return nil, memoryError(fmt.Sprintf("segment %d at %#x+%#x is beyond guest RAM", i, paddr, size))
		}
		loads = append(loads, load{off, paddr, filesz, size})
	}
	// Segments must not overlap in guest memory, which also bounds the
	// copying to the size of guest RAM however many headers there are.
	slices.SortFunc(loads, func(a, b load) int { return cmp.Compare(a.paddr, b.paddr) })
	for i := 1; i < len(loads); i++ {
		if loads[i].paddr < loads[i-1].paddr+loads[i-1].size {
			return nil, loaderError(ErrKernelImage, "ELF", ErrProgramHeaderAddress)
		}
	}
	entryLoaded := false
	for _, l := range loads {
		if err := readInto(mem, img, int64(l.off), l.paddr, l.filesz); err != nil {
			return nil, loaderError(ErrKernelImage, "ELF", ErrReadKernelImage)
		}
		k.start = min(k.start, l.paddr)
		k.end = max(k.end, l.paddr+l.size)
		if k.entry >= l.paddr && k.entry-l.paddr < l.filesz {
			entryLoaded = true
		}
	}
	// An entry point outside what was loaded would run zeroed RAM.
	if !entryLoaded {
		return nil, loaderError(ErrKernelImage, "ELF", kernelimage.ErrInvalidEntryAddress)
	}
	return k, nil
}

// The setup header's span in the zero page and the offsets the loader
// reads or fills in.
const (
	setupStart       = 0x1f1
	setupEnd         = 0x26c // end of kernel_info_offset, boot protocol 2.15
	hdrSetupSects    = 0x1f1
	hdrBootFlag      = 0x1fe
	hdrJump          = 0x200
	hdrMagic         = 0x202
	hdrVersion       = 0x206
	hdrTypeOfLoader  = 0x210
	hdrCode32Start   = 0x214
	hdrRamdiskImage  = 0x218
	hdrRamdiskSize   = 0x21c
	hdrCmdLinePtr    = 0x228
	hdrInitrdAddrMax = 0x22c
	hdrKernelAlign   = 0x230
	hdrCmdlineSize   = 0x238
	hdrPrefAddress   = 0x258
	hdrInitSize      = 0x260
)

// loadBzImage loads the protected-mode part of a bzImage at code32_start;
// it is entered in 64-bit mode 0x200 bytes in. kernelimage.Inspect has
// checked the setup header (magic, version >= 2.12, XLF_KERNEL_64, setup
// size within the file, code32_start >= 1 MiB).
func loadBzImage(mem *guestmem.Memory, img Image) (*kernel, error) {
	var hdr [setupEnd]byte
	if _, err := img.R.ReadAt(hdr[:], 0); err != nil {
		return nil, loaderError(ErrKernelImage, "bzImage", kernelimage.ErrReadBzImageHeader)
	}
	setupSects := uint64(hdr[hdrSetupSects])
	if setupSects == 0 {
		setupSects = 4
	}
	setupSize := (setupSects + 1) * 512
	size := uint64(img.Size) - setupSize
	load := uint64(le32(hdr[:], hdrCode32Start))

	// Decompression runs at the preferred address (or the load address
	// aligned up, if higher) and needs init_size bytes there.
	end := load + size
	if initSize := uint64(le32(hdr[:], hdrInitSize)); initSize != 0 {
		run := load
		if a := uint64(le32(hdr[:], hdrKernelAlign)); a != 0 && a&(a-1) == 0 {
			run = alignUp(load, a)
		}
		run = max(run, le64(hdr[:], hdrPrefAddress))
		if run+initSize < run {
			return nil, memoryError(fmt.Sprintf("init_size %#x at %#x overflows", initSize, run))
		}
		end = max(end, run+initSize)
	}
	if !isRAM(mem.Regions(), load, end-load) {
		return nil, memoryError(fmt.Sprintf("the kernel needs RAM from %#x to %#x", load, end))
	}
	if err := readInto(mem, img, int64(setupSize), load, size); err != nil {
		return nil, loaderError(ErrKernelImage, "bzImage", ErrReadBzImageKernel)
	}
	// The zero page gets the setup header as far as this kernel defines it
	// (it ends at 0x202 plus the jump's offset byte).
	n := min(setupEnd, hdrMagic+int(hdr[hdrJump+1]))
	return &kernel{
		format: kernelimage.BzImage, protocol: Linux64, entry: load + 0x200,
		start: load, end: end, setup: append([]byte(nil), hdr[setupStart:n]...),
	}, nil
}
