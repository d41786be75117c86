//go:build linux

package guestmem

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ResidentPages returns a bitmap per region (KVM's dirty-log layout) of the
// pages resident in host memory (mincore): without a dirty log, the pages a
// guest may have written. For a file-backed mapping it also counts file
// pages only read, which errs on the side of writing too much.
func (m *Memory) ResidentPages() ([][]uint64, error) {
	out := make([][]uint64, len(m.regions))
	for i, r := range m.regions {
		vec := make([]byte, r.Size/PageSize)
		if err := mincore(r.mem, vec); err != nil {
			return nil, err
		}
		bm := make([]uint64, dirtyWords(r.Size))
		for p, v := range vec {
			if v&1 != 0 {
				bm[p/64] |= 1 << (p % 64)
			}
		}
		out[i] = bm
	}
	return out, nil
}

// mincore fills vec with one byte per page of b, bit 0 set for a resident
// page (x/sys/unix has no wrapper for it).
func mincore(b, vec []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		return e
	}
	return nil
}
