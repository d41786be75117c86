package kernelimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// elf64 builds a minimal little-endian ELF64 header with one PT_NOTE
// program header pointing at notes.
func elf64(entry uint64, notes []byte) []byte {
	b := make([]byte, 64+56)
	copy(b, "\x7fELF")
	b[4], b[5] = 2, 1
	le := binary.LittleEndian
	le.PutUint64(b[24:], entry)
	le.PutUint64(b[32:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], 1)
	le.PutUint32(b[64:], 4) // PT_NOTE
	le.PutUint64(b[64+8:], uint64(len(b)))
	le.PutUint64(b[64+32:], uint64(len(notes)))
	return append(b, notes...)
}

func pvhNoteBytes(entry uint32) []byte {
	n := make([]byte, 12+4+4)
	le := binary.LittleEndian
	le.PutUint32(n[0:], 4)  // "Xen\0"
	le.PutUint32(n[4:], 4)  // desc size
	le.PutUint32(n[8:], 18) // XEN_ELFNOTE_PHYS32_ENTRY
	copy(n[12:], "Xen\x00")
	le.PutUint32(n[16:], entry)
	return n
}

func bzImage(version uint16, xload uint16, code32 uint32) []byte {
	b := make([]byte, 8192)
	b[0x1f1] = 4
	le := binary.LittleEndian
	le.PutUint32(b[0x202:], 0x53726448)
	le.PutUint16(b[0x206:], version)
	b[0x211] = 1
	le.PutUint32(b[0x214:], code32)
	le.PutUint16(b[0x236:], xload)
	return b
}

func TestInspect(t *testing.T) {
	tests := []struct {
		name    string
		img     []byte
		want    string // protocol, or the error text
		wantErr error
	}{
		{"pvh elf", elf64(0x1000000, pvhNoteBytes(0x1000040)), "PVH boot protocol", nil},
		{"elf without pvh", elf64(0x1000000, nil), "Linux 64-bit boot protocol", nil},
		{"elf entry below 1 MiB", elf64(0x1000, nil), "Kernel Loader: failed to load ELF kernel image: Kernel Loader: Invalid entry address", ErrInvalidEntryAddress},
		{"elf with truncated note", elf64(0x1000000, pvhNoteBytes(1)[:14]), "Kernel Loader: failed to load ELF kernel image: Kernel Loader: Invalid PVH note header", ErrInvalidPVHNote},
		{"zeros", make([]byte, 1<<20), "Kernel Loader: failed to load bzImage kernel image: Kernel Loader: Invalid bzImage", ErrInvalidBzImage},
		{"tiny", []byte("hi"), "Kernel Loader: failed to load ELF kernel image: Kernel Loader: Unable to read elf header", ErrReadELFHeader},
		{"short non-elf", []byte("not a kernel at all"), "Kernel Loader: failed to load bzImage kernel image: Kernel Loader: Unable to read bzImage header", ErrReadBzImageHeader},
		{"bzImage 2.15", bzImage(0x020f, 1, 0x100000), "Linux 64-bit boot protocol (bzImage)", nil},
		{"bzImage without 64-bit entry", bzImage(0x020f, 0, 0x100000), "bzImage does not provide a 64-bit entry point", ErrBzImageNo64BitEntry},
		{"bzImage 2.10", bzImage(0x020a, 1, 0x100000), "bzImage does not provide a 64-bit entry point", ErrBzImageNo64BitEntry},
		{"bzImage loaded low", bzImage(0x020f, 1, 0x1000), "Kernel Loader: invalid kernel start address", ErrInvalidKernelStart},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Inspect(bytes.NewReader(tt.img), int64(len(tt.img)))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || err.Error() != tt.want {
					t.Fatalf("err = %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := info.Protocol(); got != tt.want {
				t.Errorf("protocol = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestGuestKernels inspects the real test guest's kernels when they have
// been built (guest/build.sh).
func TestGuestKernels(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	dir := os.Getenv("EMBER_GUEST_DIR")
	if dir == "" {
		dir = filepath.Join(filepath.Dir(file), "..", "..", "build", "guest")
	}
	for name, want := range map[string]string{"vmlinux": "PVH boot protocol", "bzImage": "Linux 64-bit boot protocol (bzImage)"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Skipf("SKIPPED: the test guest is not built (%v); guest/build.sh builds it", err)
		}
		st, _ := f.Stat()
		info, err := Inspect(f, st.Size())
		f.Close()
		if err != nil || info.Protocol() != want {
			t.Errorf("%s: %v, %v; want %s", name, info, err, want)
		}
	}
}

func FuzzInspect(f *testing.F) {
	f.Add(elf64(0x1000000, pvhNoteBytes(0x1000040)))
	f.Add(bzImage(0x020f, 1, 0x100000))
	f.Fuzz(func(t *testing.T, b []byte) {
		Inspect(bytes.NewReader(b), int64(len(b)))
	})
}
