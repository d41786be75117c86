package loader

import (
	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/guestmem"
)

// prefault populates the whole pages of guest RAM in [gpa, gpa+n) in one
// call before the loader fills them: faulting a kernel in page by page
// costs more than copying it, notably when the host is itself virtual.
// It is only an optimisation: kernels without MADV_POPULATE_WRITE (before
// Linux 5.14) or hugetlbfs alignment rules make it a no-op.
func prefault(mem *guestmem.Memory, gpa, n uint64) {
	start := alignUp(gpa, PageSize)
	end := (gpa + n) &^ (PageSize - 1)
	if end <= start {
		return
	}
	if b, err := mem.Slice(start, end-start); err == nil {
		unix.Madvise(b, unix.MADV_POPULATE_WRITE)
	}
}
