package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/kernelimage"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const (
	mib = 1 << 20
	gib = 1 << 30
)

func TestMemoryRegions(t *testing.T) {
	r := func(gpa, size uint64) guestmem.Region { return guestmem.Region{GPA: gpa, Size: size} }
	tests := []struct {
		size uint64
		want []guestmem.Region
	}{
		{128 * mib, []guestmem.Region{r(0, 128*mib)}},
		{3 * gib, []guestmem.Region{r(0, 3*gib)}},
		{3*gib + 4096, []guestmem.Region{r(0, 3*gib), r(4*gib, 4096)}},
		{8 * gib, []guestmem.Region{r(0, 3*gib), r(4*gib, 5*gib)}},
		{253 * gib, []guestmem.Region{r(0, 3*gib), r(4*gib, 250*gib)}},
		{255 * gib, []guestmem.Region{r(0, 3*gib), r(4*gib, 252*gib)}},
		{300 * gib, []guestmem.Region{r(0, 3*gib), r(4*gib, 252*gib), r(512*gib, 45*gib)}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			got, err := MemoryRegions(tt.size)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("MemoryRegions(%#x) = %v, want %v", tt.size, got, tt.want)
			}
			var sum uint64
			for _, g := range got {
				sum += g.Size
				if g.GPA < 4*gib && g.End() > MMIO32Start || g.GPA < MMIO64Start+MMIO64Size && g.End() > MMIO64Start {
					t.Errorf("region %v overlaps an MMIO gap", g)
				}
			}
			if sum != tt.size {
				t.Errorf("regions add up to %#x, want %#x", sum, tt.size)
			}
		})
	}
	for _, bad := range []uint64{0, ^uint64(0)} {
		if _, err := MemoryRegions(bad); !errors.Is(err, ErrMemoryTooSmall) {
			t.Errorf("MemoryRegions(%#x) error = %v, want ErrMemoryTooSmall", bad, err)
		}
	}
}

func TestE820(t *testing.T) {
	fixed := []E820Entry{
		{0, 0x9fc00, E820RAM}, {0x9fc00, 0x40400, E820Reserved}, {0xeec0_0000, 256 * mib, E820Reserved},
	}
	tests := []struct {
		mem  uint64
		want []E820Entry
	}{
		{128 * mib, append(fixed[:3:3], E820Entry{mib, 127 * mib, E820RAM})},
		{4 * gib, append(fixed[:3:3], E820Entry{mib, 3*gib - mib, E820RAM}, E820Entry{4 * gib, gib, E820RAM})},
	}
	for _, tt := range tests {
		regions, err := MemoryRegions(tt.mem)
		if err != nil {
			t.Fatal(err)
		}
		got, err := E820(regions)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("E820(%d MiB) = %v, want %v", tt.mem/mib, got, tt.want)
		}
	}
	for _, bad := range [][]guestmem.Region{nil, {{GPA: 0, Size: mib}}, {{GPA: mib, Size: 64 * mib}}} {
		if _, err := E820(bad); !errors.Is(err, ErrMemoryTooSmall) {
			t.Errorf("E820(%v) error = %v, want ErrMemoryTooSmall", bad, err)
		}
	}
}

func TestGDT(t *testing.T) {
	// Descriptor values as the Linux and PVH boot protocols document them.
	tests := []struct {
		p    Protocol
		want [4]uint64
	}{
		{Linux64, [4]uint64{0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0x008f_8b00_0000_ffff}},
		{PVH, [4]uint64{0, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0x0000_8b00_0000_0067}},
	}
	for _, tt := range tests {
		if got := bootGDT(tt.p); got != tt.want {
			t.Errorf("%v GDT = %#x, want %#x", tt.p, got, tt.want)
		}
	}
	seg := segmentFromGDT(0x00af_9b00_0000_ffff, 1)
	want := Segment{Base: 0, Limit: 0xffff_ffff, Selector: 8, Type: 0xb, Present: 1, S: 1, L: 1, G: 1}
	if seg != want {
		t.Errorf("64-bit code segment = %+v, want %+v", seg, want)
	}
	if s := segmentFromGDT(0x0000_8b00_0000_0067, 3); s.Limit != 0x67 || s.G != 0 || s.Type != 0xb || s.S != 0 {
		t.Errorf("PVH TSS = %+v", s)
	}
	if s := segmentFromGDT(0, 0); s.Unusable != 1 {
		t.Errorf("null segment usable: %+v", s)
	}
	if s := segmentFromGDT(gdtEntry(0x4093, 0x1234_5678, 0xabcde), 2); s.Base != 0x1234_5678 || s.Limit != 0xabcde || s.DB != 1 || s.Selector != 16 {
		t.Errorf("base/limit round trip: %+v", s)
	}
}

func TestInitialState(t *testing.T) {
	r, s := initialState(Linux64, 0x1000000)
	if r != (Regs{RIP: 0x1000000, RSP: 0x8ff0, RBP: 0x8ff0, RSI: 0x7000, RFLAGS: 2}) {
		t.Errorf("Linux regs = %+v", r)
	}
	if s.CR0 != 0x8000_0011 || s.CR3 != 0x9000 || s.CR4 != 0x20 || s.EFER != 0x500 {
		t.Errorf("Linux CR0 %#x CR3 %#x CR4 %#x EFER %#x", s.CR0, s.CR3, s.CR4, s.EFER)
	}
	if s.CS.L != 1 || s.CS.Selector != 8 || s.DS.Selector != 0x10 || s.TR.Selector != 0x18 || s.SS != s.DS {
		t.Errorf("Linux segments: CS %+v DS %+v TR %+v", s.CS, s.DS, s.TR)
	}
	if s.GDT != (DescriptorTable{0x500, 31}) || s.IDT != (DescriptorTable{0x520, 7}) {
		t.Errorf("GDT %+v IDT %+v", s.GDT, s.IDT)
	}

	r, s = initialState(PVH, 0x1000140)
	if r != (Regs{RIP: 0x1000140, RBX: 0x6000, RFLAGS: 2}) {
		t.Errorf("PVH regs = %+v", r)
	}
	if s.CR0 != 0x11 || s.CR3 != 0 || s.CR4 != 0 || s.EFER != 0 {
		t.Errorf("PVH CR0 %#x CR3 %#x CR4 %#x EFER %#x", s.CR0, s.CR3, s.CR4, s.EFER)
	}
	if s.CS.L != 0 || s.CS.DB != 1 || s.CS.Limit != 0xffff_ffff || s.TR.Limit != 0x67 {
		t.Errorf("PVH segments: CS %+v TR %+v", s.CS, s.TR)
	}
}

// newMem maps size bytes of guest RAM laid out as the guest sees it.
func newMem(t testing.TB, size uint64) *guestmem.Memory {
	t.Helper()
	regions, err := MemoryRegions(size)
	if err != nil {
		t.Fatal(err)
	}
	m, err := guestmem.New(regions, guestmem.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// segment is one PT_LOAD of a synthetic ELF kernel.
type segment struct {
	paddr  uint64
	data   []byte
	memsz  uint64 // 0: len(data)
	offset int64  // file offset override (0: packed after the headers)
}

// elfKernel builds an ELF64 kernel image with the given loads and, when
// pvh is not 0, a PVH note with that entry.
func elfKernel(entry uint64, pvh uint32, loads ...segment) []byte {
	le := binary.LittleEndian
	nph := len(loads)
	if pvh != 0 {
		nph++
	}
	b := make([]byte, 64+56*nph)
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], 0x3e) // x86-64
	le.PutUint64(b[24:], entry)
	le.PutUint64(b[32:], 64)
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], uint16(nph))
	for i, s := range loads {
		ph := b[64+56*i:]
		off := uint64(len(b))
		if s.offset != 0 {
			off = uint64(s.offset)
		} else {
			b = append(b, s.data...)
			ph = b[64+56*i:]
		}
		memsz := s.memsz
		if memsz == 0 {
			memsz = uint64(len(s.data))
		}
		le.PutUint32(ph[0:], 1) // PT_LOAD
		le.PutUint64(ph[8:], off)
		le.PutUint64(ph[16:], 0xffffffff80000000+s.paddr)
		le.PutUint64(ph[24:], s.paddr)
		le.PutUint64(ph[32:], uint64(len(s.data)))
		le.PutUint64(ph[40:], memsz)
	}
	if pvh != 0 {
		note := make([]byte, 20)
		le.PutUint32(note[0:], 4)
		le.PutUint32(note[4:], 4)
		le.PutUint32(note[8:], 18) // XEN_ELFNOTE_PHYS32_ENTRY
		copy(note[12:], "Xen\x00")
		le.PutUint32(note[16:], pvh)
		ph := b[64+56*len(loads):]
		le.PutUint32(ph[0:], 4) // PT_NOTE
		le.PutUint64(ph[8:], uint64(len(b)))
		le.PutUint64(ph[32:], uint64(len(note)))
		b = append(b, note...)
	}
	return b
}

// bzImageKernel builds a bzImage with protocol 2.15 and the given
// protected-mode payload.
func bzImageKernel(payload []byte, initSize uint32) []byte {
	const setupSects = 4
	b := make([]byte, (setupSects+1)*512, (setupSects+1)*512+len(payload))
	le := binary.LittleEndian
	b[0x1f1] = setupSects
	le.PutUint16(b[0x1fe:], 0xaa55)
	b[0x200], b[0x201] = 0xeb, 0x6a // jmp to 0x26c: the header ends there
	le.PutUint32(b[0x202:], 0x53726448)
	le.PutUint16(b[0x206:], 0x020f)
	b[0x211] = 1 // LOADED_HIGH
	le.PutUint32(b[0x214:], 0x100000)
	le.PutUint32(b[0x22c:], 0x7fffffff)
	le.PutUint32(b[0x230:], 0x200000)
	b[0x234] = 1
	le.PutUint16(b[0x236:], 0x7f)
	le.PutUint64(b[0x258:], 0x1000000)
	le.PutUint32(b[0x260:], initSize)
	le.PutUint32(b[0x268:], 0x12345678) // kernel_info_offset, copied as is
	return append(b, payload...)
}

func image(b []byte) Image { return Image{R: bytes.NewReader(b), Size: int64(len(b))} }

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func read(t *testing.T, m *guestmem.Memory, gpa, n uint64) []byte {
	t.Helper()
	b := make([]byte, n)
	if err := m.ReadAt(b, gpa); err != nil {
		t.Fatal(err)
	}
	return b
}

// hexdump prints b as 16-byte lines at base, collapsing repeats to "*".
func hexdump(base uint64, b []byte) string {
	var sb strings.Builder
	var prev []byte
	star := false
	for off := 0; off < len(b); off += 16 {
		line := b[off:min(off+16, len(b))]
		if prev != nil && bytes.Equal(line, prev) && off+16 < len(b) {
			if !star {
				sb.WriteString("*\n")
				star = true
			}
			continue
		}
		star = false
		fmt.Fprintf(&sb, "%08x  % x\n", base+uint64(off), line)
		prev = line
	}
	return sb.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it); got:\n%s", path, got)
	}
}

// bootArea dumps what the loader writes below 1 MiB.
func bootArea(t *testing.T, m *guestmem.Memory, cmdline string) string {
	var sb strings.Builder
	for _, r := range []struct {
		name     string
		gpa, len uint64
	}{
		{"GDT+IDT", GDTAddr, 0x28},
		{"PVH start info+modlist", PVHInfoAddr, 0x60},
		{"zero page / memmap", ZeroPageAddr, 0x1000},
		{"page tables", PML4Addr, 0x3000},
		{"cmdline", CmdlineAddr, uint64(len(cmdline) + 1)},
	} {
		fmt.Fprintf(&sb, "# %s\n%s", r.name, hexdump(r.gpa, read(t, m, r.gpa, r.len)))
	}
	return sb.String()
}

func TestLoad(t *testing.T) {
	text := pattern(0x3000, 1)
	data := pattern(0x1800, 9)
	elf := elfKernel(0x1000000, 0, segment{paddr: 0x1000000, data: text}, segment{paddr: 0x1200000, data: data, memsz: 0x10000})
	pvh := elfKernel(0x1000000, 0x1000040, segment{paddr: 0x1000000, data: text}, segment{paddr: 0x1200000, data: data, memsz: 0x10000})
	bz := bzImageKernel(text, 0x800000)
	initrd := pattern(0x2345, 3)
	const cmdline = "console=ttyS0 reboot=k panic=1"

	tests := []struct {
		name      string
		kernel    []byte
		initrd    []byte
		mem       uint64
		format    kernelimage.Format
		protocol  Protocol
		describe  string
		entry     uint64
		kernelEnd uint64
		initrdAt  uint64
	}{
		{"elf", elf, initrd, 64 * mib, kernelimage.ELF, Linux64, "Linux 64-bit boot protocol", 0x1000000, 0x1210000, 64*mib - 0x3000},
		{"pvh", pvh, initrd, 64 * mib, kernelimage.ELF, PVH, "PVH boot protocol", 0x1000040, 0x1210000, 64*mib - 0x3000},
		{"bzimage", bz, initrd, 64 * mib, kernelimage.BzImage, Linux64, "Linux 64-bit boot protocol (bzImage)", 0x100200, 0x1800000, 64*mib - 0x3000},
		{"elf-no-initrd", elf, nil, 64 * mib, kernelimage.ELF, Linux64, "Linux 64-bit boot protocol", 0x1000000, 0x1210000, 0},
		{"pvh-no-initrd", pvh, nil, 64 * mib, kernelimage.ELF, PVH, "PVH boot protocol", 0x1000040, 0x1210000, 0},
		// bzImage initrds stay below initrd_addr_max (2 GiB here).
		{"bzimage-big-mem", bz, initrd, 3 * gib, kernelimage.BzImage, Linux64, "Linux 64-bit boot protocol (bzImage)", 0x100200, 0x1800000, 2*gib - 0x3000},
		{"elf-big-mem", elf, initrd, 5 * gib, kernelimage.ELF, Linux64, "Linux 64-bit boot protocol", 0x1000000, 0x1210000, 3*gib - 0x3000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMem(t, tt.mem)
			cfg := Config{Kernel: image(tt.kernel), Cmdline: cmdline}
			if tt.initrd != nil {
				cfg.Initrd = image(tt.initrd)
			}
			b, err := Load(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if b.Format != tt.format || b.Protocol != tt.protocol || b.Entry != tt.entry || b.Describe() != tt.describe {
				t.Errorf("got format %v protocol %v entry %#x (%s), want %v %v %#x (%s)",
					b.Format, b.Protocol, b.Entry, b.Describe(), tt.format, tt.protocol, tt.entry, tt.describe)
			}
			if b.KernelEnd != tt.kernelEnd || b.InitrdAddr != tt.initrdAt || b.InitrdSize != uint64(len(tt.initrd)) {
				t.Errorf("kernel end %#x initrd %#x+%#x, want %#x, %#x+%#x",
					b.KernelEnd, b.InitrdAddr, b.InitrdSize, tt.kernelEnd, tt.initrdAt, len(tt.initrd))
			}
			if b.Regs.RIP != tt.entry {
				t.Errorf("RIP %#x, want the entry %#x", b.Regs.RIP, tt.entry)
			}
			if b.FPU != InitialFPU {
				t.Errorf("FPU %+v", b.FPU)
			}
			// The kernel bytes are where they belong.
			if tt.format == kernelimage.ELF {
				if !bytes.Equal(read(t, m, 0x1000000, uint64(len(text))), text) || !bytes.Equal(read(t, m, 0x1200000, uint64(len(data))), data) {
					t.Error("ELF segments not loaded at their physical addresses")
				}
			} else if !bytes.Equal(read(t, m, 0x100000, uint64(len(text))), text) {
				t.Error("bzImage payload not loaded at code32_start")
			}
			if tt.initrd != nil && !bytes.Equal(read(t, m, b.InitrdAddr, b.InitrdSize), tt.initrd) {
				t.Error("initrd not loaded")
			}
			if got := read(t, m, CmdlineAddr, uint64(len(cmdline)+1)); string(got) != cmdline+"\x00" {
				t.Errorf("cmdline in guest = %q", got)
			}
			checkBootParams(t, m, b, tt.initrd != nil)
			if tt.mem == 64*mib {
				golden(t, tt.name+".golden", bootArea(t, m, cmdline))
			}
		})
	}
}

// checkBootParams decodes the zero page or start info the way a guest
// kernel reads it.
func checkBootParams(t *testing.T, m *guestmem.Memory, b *Boot, initrd bool) {
	t.Helper()
	le := binary.LittleEndian
	if b.Protocol == PVH {
		si := read(t, m, PVHInfoAddr, startInfoSize)
		if le.Uint32(si[0:]) != 0x336ec578 || le.Uint32(si[4:]) != 1 || le.Uint64(si[0x18:]) != CmdlineAddr {
			t.Errorf("start info header % x", si)
		}
		n := le.Uint32(si[0x30:])
		if le.Uint64(si[0x28:]) != MemmapAddr || int(n) != len(b.E820) {
			t.Errorf("memmap at %#x with %d entries, want %d", le.Uint64(si[0x28:]), n, len(b.E820))
		}
		mm := read(t, m, MemmapAddr, uint64(n)*24)
		for i, e := range b.E820 {
			if got := (E820Entry{le.Uint64(mm[i*24:]), le.Uint64(mm[i*24+8:]), le.Uint32(mm[i*24+16:])}); got != e {
				t.Errorf("memmap[%d] = %+v, want %+v", i, got, e)
			}
		}
		mods := le.Uint32(si[0x0c:])
		if !initrd {
			if mods != 0 || le.Uint64(si[0x10:]) != 0 {
				t.Errorf("%d modules without an initrd", mods)
			}
			return
		}
		mod := read(t, m, le.Uint64(si[0x10:]), 32)
		if mods != 1 || le.Uint64(mod[0:]) != b.InitrdAddr || le.Uint64(mod[8:]) != b.InitrdSize {
			t.Errorf("modules %d, first % x", mods, mod)
		}
		return
	}
	zp := read(t, m, ZeroPageAddr, 4096)
	if zp[0x210] != 0xff || le.Uint16(zp[0x1fe:]) != 0xaa55 || le.Uint32(zp[0x202:]) != 0x53726448 {
		t.Errorf("zero page header: loader %#x flag %#x magic %#x", zp[0x210], le.Uint16(zp[0x1fe:]), le.Uint32(zp[0x202:]))
	}
	if le.Uint32(zp[0x228:]) != CmdlineAddr || le.Uint64(zp[0x70:]) != RSDPAddr {
		t.Errorf("cmd_line_ptr %#x acpi_rsdp_addr %#x", le.Uint32(zp[0x228:]), le.Uint64(zp[0x70:]))
	}
	if !initrd && (le.Uint32(zp[0x218:]) != 0 || le.Uint32(zp[0x21c:]) != 0) {
		t.Error("ramdisk set without an initrd")
	}
	if initrd && (uint64(le.Uint32(zp[0x218:])) != b.InitrdAddr || uint64(le.Uint32(zp[0x21c:])) != b.InitrdSize) {
		t.Errorf("ramdisk %#x+%#x", le.Uint32(zp[0x218:]), le.Uint32(zp[0x21c:]))
	}
	if int(zp[0x1e8]) != len(b.E820) {
		t.Fatalf("e820_entries %d, want %d", zp[0x1e8], len(b.E820))
	}
	for i, e := range b.E820 {
		o := 0x2d0 + 20*i
		if got := (E820Entry{le.Uint64(zp[o:]), le.Uint64(zp[o+8:]), le.Uint32(zp[o+16:])}); got != e {
			t.Errorf("e820[%d] = %+v, want %+v", i, got, e)
		}
	}
	if b.Format == kernelimage.BzImage && le.Uint32(zp[0x268:]) != 0x12345678 {
		t.Error("the setup header was not copied into the zero page")
	}
	// The identity map covers the first GiB.
	pt := read(t, m, PML4Addr, 0x3000)
	if le.Uint64(pt[0:]) != 0xa003 || le.Uint64(pt[0x1000:]) != 0xb003 || le.Uint64(pt[0x2000+511*8:]) != 511<<21|0x83 {
		t.Error("page tables")
	}
}

func TestLoadErrors(t *testing.T) {
	text := pattern(0x3000, 1)
	good := elfKernel(0x1000000, 0, segment{paddr: 0x1000000, data: text})
	truncated := good[:len(good)-1]
	const kernelMsg = "System configuration error: Cannot load kernel due to invalid memory configuration or invalid kernel image: Kernel Loader: "
	noEntry64 := bzImageKernel(text, 0)
	binary.LittleEndian.PutUint16(noEntry64[0x236:], 0)

	tests := []struct {
		name    string
		mem     uint64
		kernel  Image
		initrd  Image
		cmdline string
		kind    error
		msg     string
	}{
		{"not a kernel", 64 * mib, image(make([]byte, 8192)), Image{}, "", ErrKernelImage,
			kernelMsg + "failed to load bzImage kernel image: Kernel Loader: Invalid bzImage"},
		{"empty file", 64 * mib, image(nil), Image{}, "", ErrKernelImage,
			kernelMsg + "failed to load ELF kernel image: Kernel Loader: Unable to read elf header"},
		{"no kernel", 64 * mib, Image{}, Image{}, "", ErrKernelImage,
			"System configuration error: Cannot copy kernel file fd"},
		{"truncated elf", 64 * mib, image(truncated), Image{}, "", ErrKernelImage,
			kernelMsg + "failed to load ELF kernel image: Kernel Loader: Unable to read kernel image"},
		{"reader shorter than its size", 64 * mib, Image{bytes.NewReader(truncated), int64(len(good))}, Image{}, "", ErrKernelImage,
			kernelMsg + "failed to load ELF kernel image: Kernel Loader: Unable to read kernel image"},
		{"truncated bzImage", 64 * mib, image(bzImageKernel(nil, 0)[:0x400]), Image{}, "", ErrKernelImage,
			kernelMsg + "failed to load bzImage kernel image: Kernel Loader: Underflow occurred during an arithmetic operation"},
		{"bzImage without 64-bit entry", 64 * mib, image(noEntry64), Image{}, "", ErrKernelImage,
			"System configuration error: bzImage does not provide a 64-bit entry point"},
		{"segment below 1 MiB", 64 * mib, image(elfKernel(0x1000000, 0, segment{paddr: 0x1000000, data: text}, segment{paddr: 0x7000, data: text})), Image{}, "", ErrKernelImage,
			kernelMsg + "failed to load ELF kernel image: Kernel Loader: Invalid Program Header Address"},
		{"overlapping segments", 64 * mib, image(elfKernel(0x1000000, 0, segment{paddr: 0x1000000, data: text}, segment{paddr: 0x1002000, data: text})), Image{}, "", ErrKernelImage,
			kernelMsg + "failed to load ELF kernel image: Kernel Loader: Invalid Program Header Address"},
		{"entry outside the segments", 64 * mib, image(elfKernel(0x2000000, 0, segment{paddr: 0x1000000, data: text})), Image{}, "", ErrKernelImage,
			kernelMsg + "failed to load ELF kernel image: Kernel Loader: Invalid entry address"},
		{"pvh entry outside the segments", 64 * mib, image(elfKernel(0x1000000, 0x3000000, segment{paddr: 0x1000000, data: text})), Image{}, "", ErrKernelImage,
			kernelMsg + "failed to load ELF kernel image: Kernel Loader: Invalid entry address"},
		{"memory too small for the segment", 16 * mib, image(good), Image{}, "", ErrMemoryTooSmall,
			kernelMsg + "memory to load kernel image is not enough"},
		{"memory too small for the bss", 32 * mib, image(elfKernel(0x1000000, 0, segment{paddr: 0x1000000, data: text, memsz: 32 * mib})), Image{}, "", ErrMemoryTooSmall,
			kernelMsg + "memory to load kernel image is not enough"},
		{"segment in the MMIO gap", 4 * gib, image(elfKernel(0x1000000, 0, segment{paddr: 0x1000000, data: text}, segment{paddr: 0xbfff_f000, data: text})), Image{}, "", ErrMemoryTooSmall,
			kernelMsg + "memory to load kernel image is not enough"},
		{"memory too small for decompression", 20 * mib, image(bzImageKernel(text, 0x800000)), Image{}, "", ErrMemoryTooSmall,
			kernelMsg + "memory to load kernel image is not enough"},
		{"memory below 1 MiB", mib, image(good), Image{}, "", ErrMemoryTooSmall,
			"System configuration error: Invalid e820 setup params. (guest RAM must start at 0 and extend past 1 MiB)"},
		{"initrd bigger than memory", 64 * mib, image(good), Image{bytes.NewReader(nil), 65 * mib}, "", ErrInitrdTooBig,
			"Error with initrd initialization: Failed to compute the initrd address.."},
		{"initrd over the kernel", 64 * mib, image(good), Image{bytes.NewReader(nil), 48 * mib}, "", ErrInitrdTooBig,
			"Error with initrd initialization: Failed to compute the initrd address.."},
		{"negative initrd size", 64 * mib, image(good), Image{bytes.NewReader(nil), -1}, "", ErrInitrdTooBig,
			"Error with initrd initialization: Failed to compute the initrd address.."},
		{"initrd shorter than its size", 64 * mib, image(good), Image{bytes.NewReader(make([]byte, 100)), 4096}, "", ErrInitrdRead,
			"Error with initrd initialization: Cannot load initrd due to an invalid image: unexpected EOF."},
		{"cmdline too long", 64 * mib, image(good), Image{}, strings.Repeat("a", 2048), ErrCmdline,
			"Invalid kernel command line: Inserting string would make command line too long."},
		{"cmdline with NUL", 64 * mib, image(good), Image{}, "a\x00b", ErrCmdline,
			"Invalid kernel command line: Null terminator detected in the command line structure."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMem(t, tt.mem)
			b, err := Load(m, Config{Kernel: tt.kernel, Initrd: tt.initrd, Cmdline: tt.cmdline})
			if err == nil {
				t.Fatalf("Load succeeded: %+v", b)
			}
			var le *Error
			if !errors.As(err, &le) || !errors.Is(err, tt.kind) {
				t.Fatalf("error %T %v, want an *Error of kind %v", err, err, tt.kind)
			}
			if err.Error() != tt.msg {
				t.Errorf("message\n got %q\nwant %q", err.Error(), tt.msg)
			}
		})
	}
	// The longest command line that fits is accepted.
	if _, err := Load(newMem(t, 64*mib), Config{Kernel: image(good), Cmdline: strings.Repeat("a", 2047)}); err != nil {
		t.Errorf("2047-byte command line: %v", err)
	}
}

// guestKernels returns the test guest's kernel images, skipping loudly
// when they have not been built.
func guestKernels(t *testing.T) (vmlinux, bzImage, initrd string) {
	dir := os.Getenv("EMBER_GUEST_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "build", "guest")
	}
	vmlinux, bzImage, initrd = filepath.Join(dir, "vmlinux"), filepath.Join(dir, "bzImage"), filepath.Join(dir, "initramfs.cpio.gz")
	for _, p := range []string{vmlinux, bzImage, initrd} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("SKIP LOUDLY: the test guest is not built (%v); real kernels are NOT loaded (run guest/build.sh)", err)
		}
	}
	return vmlinux, bzImage, initrd
}

func openImage(t *testing.T, path string) Image {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return Image{R: f, Size: st.Size()}
}

func TestLoadGuestKernels(t *testing.T) {
	vmlinux, bzImage, initrd := guestKernels(t)
	vm := openImage(t, vmlinux)
	info, err := kernelimage.Inspect(vm.R, vm.Size)
	if err != nil || info.PVHEntry == 0 {
		t.Fatalf("the test guest's vmlinux should have a PVH entry: %+v %v", info, err)
	}
	tests := []struct {
		name     string
		kernel   string
		protocol Protocol
		entry    uint64
	}{
		{"vmlinux", vmlinux, PVH, uint64(info.PVHEntry)},
		{"bzImage", bzImage, Linux64, 0x100200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMem(t, 256*mib)
			b, err := Load(m, Config{Kernel: openImage(t, tt.kernel), Initrd: openImage(t, initrd), Cmdline: "console=ttyS0 reboot=k panic=1"})
			if err != nil {
				t.Fatal(err)
			}
			if b.Protocol != tt.protocol || b.Entry != tt.entry || b.Regs.RIP != tt.entry {
				t.Errorf("protocol %v entry %#x, want %v %#x", b.Protocol, b.Entry, tt.protocol, tt.entry)
			}
			if b.InitrdAddr < b.KernelEnd || b.InitrdAddr+b.InitrdSize > 256*mib || b.InitrdAddr%PageSize != 0 {
				t.Errorf("initrd at %#x+%#x, kernel ends at %#x", b.InitrdAddr, b.InitrdSize, b.KernelEnd)
			}
			t.Logf("%s: %s, entry %#x, kernel %#x..%#x, initrd %#x+%#x", tt.name, b.Describe(), b.Entry, b.KernelStart, b.KernelEnd, b.InitrdAddr, b.InitrdSize)
		})
	}
	// 32 MiB cannot hold this kernel: a clear refusal, not a broken boot.
	if _, err := Load(newMem(t, 32*mib), Config{Kernel: openImage(t, vmlinux)}); !errors.Is(err, ErrMemoryTooSmall) {
		t.Errorf("vmlinux in 32 MiB: %v, want ErrMemoryTooSmall", err)
	}
}

// BenchmarkLoadGuestKernel measures Load of the test guest's kernels and
// initramfs into fresh 256 MiB guests (mapping and unmapping the guest RAM
// is not counted).
func BenchmarkLoadGuestKernel(b *testing.B) {
	dir := os.Getenv("EMBER_GUEST_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "build", "guest")
	}
	open := func(name string) Image {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			b.Skipf("SKIP LOUDLY: the test guest is not built (%v); nothing measured", err)
		}
		b.Cleanup(func() { f.Close() })
		st, err := f.Stat()
		if err != nil {
			b.Fatal(err)
		}
		return Image{f, st.Size()}
	}
	regions, err := MemoryRegions(256 * mib)
	if err != nil {
		b.Fatal(err)
	}
	for _, kernel := range []string{"vmlinux", "bzImage"} {
		b.Run(kernel, func(b *testing.B) {
			cfg := Config{Kernel: open(kernel), Initrd: open("initramfs.cpio.gz"), Cmdline: "console=ttyS0 reboot=k panic=1"}
			b.SetBytes(cfg.Kernel.Size + cfg.Initrd.Size)
			for b.Loop() {
				b.StopTimer()
				m, err := guestmem.New(regions, guestmem.Options{})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := Load(m, cfg); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				m.Close()
				b.StartTimer()
			}
		})
	}
}

// fuzzMem is shared by fuzz iterations: mapping guest RAM each time would
// dominate the run.
var fuzzMem *guestmem.Memory

func FuzzLoad(f *testing.F) {
	text := pattern(0x100, 1)
	f.Add(elfKernel(0x1000000, 0, segment{paddr: 0x1000000, data: text}), []byte("initrd"))
	f.Add(elfKernel(0x1000000, 0x1000010, segment{paddr: 0x1000000, data: text}), []byte{})
	f.Add(bzImageKernel(text, 0x100000), []byte("initrd"))
	f.Add(elfKernel(0x1000000, 0, segment{paddr: 0x1000000, data: text, memsz: 1 << 40}), []byte{})
	f.Add([]byte("\x7fELF"), []byte{})
	f.Fuzz(func(t *testing.T, kernel, initrd []byte) {
		if fuzzMem == nil {
			regions, _ := MemoryRegions(32 * mib)
			m, err := guestmem.New(regions, guestmem.Options{})
			if err != nil {
				t.Fatal(err)
			}
			fuzzMem = m
		}
		b, err := Load(fuzzMem, Config{Kernel: image(kernel), Initrd: image(initrd), Cmdline: "x"})
		if err != nil {
			var le *Error
			if !errors.As(err, &le) || le.Kind == nil || le.Msg == "" {
				t.Fatalf("error %v is not a classified *Error", err)
			}
			return
		}
		if b.Entry < HimemStart || b.Entry >= 32*mib || b.InitrdAddr+b.InitrdSize > 32*mib {
			t.Fatalf("accepted a boot outside RAM: %+v", b)
		}
	})
}
