package loader

// PageSize is the guest page size the loader aligns to.
const PageSize = 0x1000

// alignUp rounds x up to a multiple of a, a power of two; near the top of
// the address space, where that would wrap, it rounds down instead.
func alignUp(x, a uint64) uint64 {
	if x+a-1 < x {
		return x &^ (a - 1)
	}
	return (x + a - 1) &^ (a - 1)
}
