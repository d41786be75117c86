package loader

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/guestmem"
)

func TestAlignUp(t *testing.T) {
	tests := []struct{ x, a, want uint64 }{
		{0, 4096, 0}, {1, 4096, 4096}, {4096, 4096, 4096}, {4097, 4096, 8192},
		{^uint64(0), 4096, ^uint64(0) &^ 4095},
	}
	for _, tt := range tests {
		if got := alignUp(tt.x, tt.a); got != tt.want {
			t.Errorf("alignUp(%#x, %#x) = %#x, want %#x", tt.x, tt.a, got, tt.want)
		}
	}
}

// TestPrefault checks that the whole pages of a range become resident and
// the partial pages at its ends do not.
func TestPrefault(t *testing.T) {
	const page = 4096
	m, err := guestmem.New([]guestmem.Region{{GPA: 0, Size: 64 * page}}, guestmem.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	all, _ := m.Slice(0, 64*page)
	if err := unix.Madvise(all[:page], unix.MADV_POPULATE_WRITE); err != nil {
		t.Skipf("SKIP LOUDLY: this kernel lacks MADV_POPULATE_WRITE (%v); prefaulting is a no-op here", err)
	}
	prefault(m, 10*page+1, 20*page)
	vec := make([]byte, 64)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&all[0])), uintptr(len(all)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	for i, v := range vec {
		want := i == 0 || i >= 11 && i < 30
		if (v&1 == 1) != want {
			t.Errorf("page %d resident %v, want %v", i, v&1 == 1, want)
		}
	}
}
