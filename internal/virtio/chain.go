package virtio

// Chain is one descriptor chain taken from a queue: the buffers the device
// reads (Out, driver to device) followed by those it writes (In, device to
// driver). The slices alias guest memory, so the driver can change them
// while the device works: copy anything before validating it.
type Chain struct {
	Head   uint16
	Out    [][]byte
	In     [][]byte
	OutLen uint64
	InLen  uint64
	// OutAddr and InAddr hold the guest-physical address of each buffer.
	OutAddr []uint64
	InAddr  []uint64
}

func (c *Chain) reset(head uint16) {
	clear(c.Out)
	clear(c.In)
	c.Head, c.Out, c.In, c.OutLen, c.InLen = head, c.Out[:0], c.In[:0], 0, 0
	c.OutAddr, c.InAddr = c.OutAddr[:0], c.InAddr[:0]
}

// ReadOut copies the device-readable bytes starting at off into p and
// returns how many it copied (fewer than len(p) at the end of the buffers).
func (c *Chain) ReadOut(p []byte, off uint64) int {
	return walk(c.Out, off, p, func(b, p []byte) int { return copy(p, b) })
}

// WriteIn copies p into the device-writable bytes starting at off and
// returns how many it copied.
func (c *Chain) WriteIn(p []byte, off uint64) int {
	return walk(c.In, off, p, func(b, p []byte) int { return copy(b, p) })
}

// walk pairs the stream bufs from off with p and calls f on each piece.
func walk(bufs [][]byte, off uint64, p []byte, f func(b, p []byte) int) int {
	n := 0
	for _, b := range bufs {
		if n == len(p) {
			break
		}
		l := uint64(len(b))
		if off >= l {
			off -= l
			continue
		}
		n += f(b[off:], p[n:])
		off = 0
	}
	return n
}

// Range appends to dst the pieces of bufs (taken as one byte stream) that
// cover [off, off+n), clipped to the stream's end, and returns dst. It
// suits scatter-gather system calls (preadv, writev) straight into guest
// memory.
func Range(bufs [][]byte, off, n uint64, dst [][]byte) [][]byte {
	for _, b := range bufs {
		if n == 0 {
			break
		}
		l := uint64(len(b))
		if off >= l {
			off -= l
			continue
		}
		k := min(l-off, n)
		dst = append(dst, b[off:off+k])
		off, n = 0, n-k
	}
	return dst
}

// Len returns the total length of bufs.
func Len(bufs [][]byte) uint64 {
	var n uint64
	for _, b := range bufs {
		n += uint64(len(b))
	}
	return n
}
