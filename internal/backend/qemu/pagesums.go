package qemu

import (
	"hash/maphash"

	"github.com/ember-vmm/ember/internal/snapshot"
)

// pageSums is track_dirty_pages on QEMU, which keeps no dirty log of the
// guest RAM it maps. It holds a 64-bit hash of every page of guest RAM as
// it was at the baseline (the boot, the load, or the last snapshot), and a
// page has changed since then exactly when its hash has: what a Diff
// snapshot must write. It sees every writer (the guest, QEMU, ember's
// vhost-user devices), since it compares contents, not accesses; a page
// written with what it already held does not count, which changes nothing
// in the merged memory file. Two contents sharing a 64-bit hash would hide
// a change: a chance of 2^-64 per changed page. The cost is 8 bytes per
// 4 KiB page (0.2 % of guest RAM) and a read of guest RAM per snapshot.
type pageSums struct {
	seed maphash.Seed
	sums []uint64 // per page of the memfd, in file order
	zero uint64   // the hash of a zero page
}

var zeroPage [snapshot.PageSize]byte

// newPageSums returns sums for size bytes of zeros: a guest at boot.
func newPageSums(size uint64) *pageSums {
	s := &pageSums{seed: maphash.MakeSeed(), sums: make([]uint64, size/snapshot.PageSize)}
	s.zero = s.hash(zeroPage[:])
	for i := range s.sums {
		s.sums[i] = s.zero
	}
	return s
}

func (s *pageSums) hash(page []byte) uint64 { return maphash.Bytes(s.seed, page) }

// record sets the baseline of the pages b holds, starting at offset off
// of the memfd.
func (s *pageSums) record(off uint64, b []byte) {
	for p := uint64(0); p+snapshot.PageSize <= uint64(len(b)); p += snapshot.PageSize {
		s.sums[(off+p)/snapshot.PageSize] = s.hash(b[p : p+snapshot.PageSize])
	}
}

// recording wraps read, the reader a Full snapshot copies guest RAM with,
// so that it also hashes each page it returns into next (indexed like
// sums): a Full reads every page, so next is then the new baseline
// without a second pass over guest RAM.
func (s *pageSums) recording(regions []snapshot.Region, read snapshot.ReadFunc, next []uint64) snapshot.ReadFunc {
	return func(gpa, n uint64) ([]byte, error) {
		b, err := read(gpa, n)
		if err != nil {
			return nil, err
		}
		off, err := fileOffset(regions, gpa, n)
		if err != nil {
			return nil, err
		}
		for p := uint64(0); p+snapshot.PageSize <= uint64(len(b)); p += snapshot.PageSize {
			next[(off+p)/snapshot.PageSize] = s.hash(b[p : p+snapshot.PageSize])
		}
		return b, nil
	}
}
