package uffd

import (
	"slices"
	"sort"
)

// rangeSet is a sorted set of disjoint half-open ranges; REMOVE events of
// adjacent ranges merge, so a balloon's many small removals stay few.
type rangeSet struct {
	r [][2]uint64
}

func (rs *rangeSet) add(start, end uint64) {
	if end <= start {
		return
	}
	// First range that ends at or after start may merge with [start, end).
	i := sort.Search(len(rs.r), func(i int) bool { return rs.r[i][1] >= start })
	j := i
	for j < len(rs.r) && rs.r[j][0] <= end {
		start = min(start, rs.r[j][0])
		end = max(end, rs.r[j][1])
		j++
	}
	rs.r = slices.Replace(rs.r, i, j, [2]uint64{start, end})
}

func (rs *rangeSet) contains(addr uint64) bool {
	i := sort.Search(len(rs.r), func(i int) bool { return rs.r[i][1] > addr })
	return i < len(rs.r) && rs.r[i][0] <= addr
}
