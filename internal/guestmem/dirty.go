package guestmem

import (
	"sync/atomic"
)

// PageSize is the granularity of dirty and resident page bitmaps.
const PageSize = 4096

// Dirty pages. KVM's dirty log sees only what vCPUs write; what ember
// itself writes into guest RAM (devices filling buffers, used rings) it
// records here when Options.TrackDirty is set: WriteAt, Store16 and
// Store32 mark their pages themselves, and code that writes through a
// Slice calls MarkDirty. The bitmaps have KVM's layout (bit i of word i/64
// is page i of a region), so the two can be ORed.

// dirtyWords returns how many 64-bit words a bitmap of r needs.
func dirtyWords(size uint64) uint64 { return (size/PageSize + 63) / 64 }

// MarkDirty records that [gpa, gpa+n) was written, when dirty tracking is
// on; otherwise, and for addresses outside RAM, it does nothing.
func (m *Memory) MarkDirty(gpa, n uint64) {
	if !m.trackDirty || n == 0 {
		return
	}
	end := gpa + n
	if end < gpa {
		end = ^uint64(0)
	}
	for gpa < end {
		r, ok := m.find(gpa)
		if !ok {
			return
		}
		last := min(end, r.End())
		for p := (gpa - r.GPA) / PageSize; p <= (last-1-r.GPA)/PageSize; p++ {
			w := &r.dirty[p/64]
			if bit := uint64(1) << (p % 64); atomic.LoadUint64(w)&bit == 0 {
				atomic.OrUint64(w, bit)
			}
		}
		gpa = last
	}
}

// TrackingDirty reports whether Options.TrackDirty was set.
func (m *Memory) TrackingDirty() bool { return m.trackDirty }

// TakeDirty returns the pages marked dirty since the last call, one bitmap
// per region in address order, and clears them. Without dirty tracking it
// returns nil.
func (m *Memory) TakeDirty() [][]uint64 {
	if !m.trackDirty {
		return nil
	}
	out := make([][]uint64, len(m.regions))
	for i := range m.regions {
		r := &m.regions[i]
		out[i] = make([]uint64, len(r.dirty))
		for j := range r.dirty {
			out[i][j] = atomic.SwapUint64(&r.dirty[j], 0)
		}
	}
	return out
}
