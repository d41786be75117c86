package loader

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ember-vmm/ember/internal/bootargs"
	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/kernelimage"
)

// Firecracker's message prefixes.
const (
	msgSystemConfig = "System configuration error: "
	msgKernelLoad   = msgSystemConfig + "Cannot load kernel due to invalid memory configuration or invalid kernel image: "
	msgInitrd       = "Error with initrd initialization: "
	msgCmdline      = "Invalid kernel command line: "
)

// Protocol is how the guest kernel is entered.
type Protocol int

// The protocols.
const (
	// Linux64 is the 64-bit Linux boot protocol: long mode, zero page in RSI.
	Linux64 Protocol = iota + 1
	// PVH is Xen's PVH entry: 32-bit protected mode, start info in RBX.
	PVH
)

// String names the protocol as Firecracker's log line does.
func (p Protocol) String() string {
	switch p {
	case Linux64:
		return "Linux 64-bit boot protocol"
	case PVH:
		return "PVH boot protocol"
	}
	return fmt.Sprintf("Protocol(%d)", int(p))
}

// Image is a file to load: its contents and size.
type Image struct {
	R    io.ReaderAt
	Size int64
}

// Config is what to boot.
type Config struct {
	Kernel Image
	// Initrd is optional (R nil for none).
	Initrd Image
	// Cmdline is the complete kernel command line.
	Cmdline string
}

// Boot is a loaded guest, ready to run.
type Boot struct {
	// Format is the kernel image's format (ELF or bzImage).
	Format kernelimage.Format
	// Protocol is how the kernel is entered.
	Protocol Protocol
	// Entry is the guest address execution starts at.
	Entry uint64
	// KernelStart..KernelEnd is the RAM the kernel occupies once loaded
	// (for a bzImage, once decompressed).
	KernelStart, KernelEnd uint64
	// InitrdAddr and InitrdSize locate the initrd (0, 0 for none).
	InitrdAddr, InitrdSize uint64
	// E820 is the memory map passed to the guest.
	E820 []E820Entry
	// Regs and Sregs are the boot vCPU's initial state; FPU its x87/SSE
	// control state.
	Regs  Regs
	Sregs Sregs
	FPU   FPU
}

// Describe returns the protocol as Firecracker's debug line names it
// ("Kernel loaded using <Describe()>").
func (b *Boot) Describe() string {
	if b.Format == kernelimage.BzImage {
		return b.Protocol.String() + " (bzImage)"
	}
	return b.Protocol.String()
}

// kernel is a loaded kernel before the boot structures are written.
type kernel struct {
	format     kernelimage.Format
	protocol   Protocol
	entry      uint64
	start, end uint64
	// setup is a bzImage's setup header, bytes 0x1f1.. of its zero page.
	setup []byte
}

// Load loads the kernel, initrd and command line into mem and writes the
// boot structures for the kernel's protocol. The MP table and the ACPI
// tables are not written here (see packages mptable and acpi). A refusal
// is an *Error whose text is the fault message to report after "Start
// microvm error: ".
func Load(mem *guestmem.Memory, cfg Config) (*Boot, error) {
	regions := mem.Regions()
	e820, err := E820(regions)
	if err != nil {
		return nil, err
	}
	lowEnd := regions[0].End()
	if err := checkCmdline(cfg.Cmdline); err != nil {
		return nil, err
	}
	if cfg.Kernel.R == nil || cfg.Kernel.Size < 0 {
		return nil, &Error{Kind: ErrKernelImage, Msg: msgSystemConfig + "Cannot copy kernel file fd"}
	}

	k, err := loadKernel(mem, cfg.Kernel)
	if err != nil {
		return nil, err
	}
	b := &Boot{
		Format: k.format, Protocol: k.protocol, Entry: k.entry,
		KernelStart: k.start, KernelEnd: k.end, E820: e820, FPU: InitialFPU,
	}
	if cfg.Initrd.R != nil {
		if b.InitrdAddr, err = loadInitrd(mem, cfg.Initrd, k, lowEnd); err != nil {
			return nil, err
		}
		b.InitrdSize = uint64(cfg.Initrd.Size)
	}
	if err := mem.WriteAt(append([]byte(cfg.Cmdline), 0), CmdlineAddr); err != nil {
		return nil, &Error{Kind: ErrMemoryTooSmall, Err: err,
			Msg: msgSystemConfig + "Cannot load command line string: Kernel Loader: failed writing command line to guest memory"}
	}

	switch k.protocol {
	case PVH:
		err = writeStartInfo(mem, e820, b.InitrdAddr, b.InitrdSize)
	default:
		err = writeZeroPage(mem, e820, k.setup, len(cfg.Cmdline)+1, b.InitrdAddr, b.InitrdSize)
	}
	if err == nil {
		err = writeDescriptorTables(mem, k.protocol)
	}
	if err == nil && k.protocol == Linux64 {
		err = writePageTables(mem)
	}
	if err != nil {
		return nil, &Error{Kind: ErrMemoryTooSmall, Err: err, Msg: msgSystemConfig + "Error writing the zero page of guest memory."}
	}
	b.Regs, b.Sregs = initialState(k.protocol, k.entry)
	return b, nil
}

// checkCmdline refuses what the kernel could not be given: a line that
// does not fit its buffer with the NUL, or that holds a NUL.
func checkCmdline(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return &Error{Kind: ErrCmdline, Err: bootargs.ErrNullTerminator, Msg: msgCmdline + bootargs.ErrNullTerminator.Error()}
	}
	if len(s)+1 > CmdlineMax {
		return &Error{Kind: ErrCmdline, Err: bootargs.ErrTooLarge, Msg: msgCmdline + bootargs.ErrTooLarge.Error()}
	}
	return nil
}

// loadKernel checks the image's headers as Firecracker's loader does and
// loads it.
func loadKernel(mem *guestmem.Memory, img Image) (*kernel, error) {
	info, err := kernelimage.Inspect(img.R, img.Size)
	var le *kernelimage.LoaderError
	switch {
	case errors.As(err, &le):
		return nil, &Error{Kind: ErrKernelImage, Err: err, Msg: msgKernelLoad + le.Error()}
	case err != nil:
		return nil, &Error{Kind: ErrKernelImage, Err: err, Msg: msgSystemConfig + err.Error()}
	}
	if info.Format == kernelimage.ELF {
		return loadELF(mem, img, info)
	}
	return loadBzImage(mem, img)
}

// loaderError is the error of a kernel the format's loader ("ELF" or
// "bzImage") refuses for cause, classified as kind.
func loaderError(kind error, format string, cause error) *Error {
	le := &kernelimage.LoaderError{Kind: format, Err: cause}
	return &Error{Kind: kind, Err: le, Msg: msgKernelLoad + le.Error()}
}

// Causes of a failed kernel load, with the texts of Firecracker's loader.
var (
	ErrReadKernelImage      = errors.New("Unable to read kernel image")
	ErrReadBzImageKernel    = errors.New("Unable to read bzImage compressed kernel")
	ErrProgramHeaderAddress = errors.New("Invalid Program Header Address")
	ErrKernelMemory         = errors.New("memory to load kernel image is not enough")
)

// memoryError is the error of a kernel that does not fit guest RAM.
func memoryError(detail string) *Error {
	le := &kernelimage.LoaderError{Err: ErrKernelMemory}
	return &Error{Kind: ErrMemoryTooSmall, Err: fmt.Errorf("%w (%s)", le, detail), Msg: msgKernelLoad + le.Error()}
}

// readInto reads n bytes at off of img into guest RAM at gpa, straight
// into the mapping, region by region.
func readInto(mem *guestmem.Memory, img Image, off int64, gpa, n uint64) error {
	regions := mem.Regions()
	for n > 0 {
		k := uint64(0)
		for _, r := range regions {
			if gpa >= r.GPA && gpa < r.End() {
				k = min(n, r.End()-gpa)
			}
		}
		buf, err := mem.Slice(gpa, k)
		if err != nil || k == 0 {
			return fmt.Errorf("%w: %#x+%#x", guestmem.ErrOutOfRange, gpa, n)
		}
		prefault(mem, gpa, k)
		if m, err := img.R.ReadAt(buf, off); m < len(buf) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		off += int64(k)
		gpa, n = gpa+k, n-k
	}
	return nil
}

// isRAM reports whether [gpa, gpa+n) is guest RAM throughout.
func isRAM(regions []guestmem.Region, gpa, n uint64) bool {
	if gpa+n < gpa {
		return false
	}
	for _, r := range regions {
		if n == 0 {
			return true
		}
		if gpa < r.GPA || gpa >= r.End() {
			continue
		}
		k := min(n, r.End()-gpa)
		gpa, n = gpa+k, n-k
	}
	return n == 0
}

// loadInitrd copies the initrd to the top of low RAM (below the kernel's
// initrd_addr_max for a bzImage), page aligned, above the kernel.
func loadInitrd(mem *guestmem.Memory, img Image, k *kernel, lowEnd uint64) (uint64, error) {
	size := uint64(img.Size)
	top := lowEnd
	if len(k.setup) >= hdrInitrdAddrMax+4-setupStart {
		if limit := uint64(le32(k.setup, hdrInitrdAddrMax-setupStart)); limit != 0 && limit+1 < top {
			top = limit + 1
		}
	}
	floor := alignUp(k.end, PageSize)
	if img.Size < 0 || size > top || (top-size)&^(PageSize-1) < floor {
		return 0, &Error{Kind: ErrInitrdTooBig,
			Err: fmt.Errorf("%w: %d bytes, %d free between the kernel's end %#x and %#x",
				ErrInitrdTooBig, img.Size, top-min(top, floor), floor, top),
			Msg: msgInitrd + "Failed to compute the initrd address.."}
	}
	addr := (top - size) &^ (PageSize - 1)
	if err := readInto(mem, img, 0, addr, size); err != nil {
		return 0, &Error{Kind: ErrInitrdRead, Err: err,
			Msg: msgInitrd + "Cannot load initrd due to an invalid image: " + err.Error() + "."}
	}
	return addr, nil
}
