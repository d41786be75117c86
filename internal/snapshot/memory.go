package snapshot

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
)

// PageSize is the granularity of the memory file: zero pages become holes,
// and dirty bitmaps count pages of this size.
const PageSize = 4096

// chunkPages bounds how much guest memory one read asks for.
const chunkPages = 256

var zeroPage [PageSize]byte

// ReadFunc returns n bytes of guest RAM at gpa, a range inside one region.
// The slice may alias guest memory (guestmem.Memory.Slice is one); it is
// read before the next call and never kept.
type ReadFunc func(gpa, n uint64) ([]byte, error)

// MemSize returns the length of the memory file of regions.
func MemSize(regions []Region) uint64 {
	var n uint64
	for _, r := range regions {
		n += r.Size
	}
	return n
}

// WriteMemory writes a full memory file at path: guest RAM of regions back
// to back in guest-address order, MemSize(regions) bytes, plain as
// Firecracker's. The file is sized with ftruncate and only non-zero pages
// are written, so zero pages are holes where the filesystem has them. It
// is atomic as Write is: a VM restored from the file at path keeps its
// private mapping of the old file while the new one replaces it.
func WriteMemory(path string, regions []Region, read ReadFunc) error {
	if err := checkRegions(regions); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return writeAtomic(path, func(fd *os.File) error {
		return fillMemory(fd, path, regions, nil, read, false)
	})
}

// WriteMemoryDiff writes the pages dirty marks (one bitmap per region, bit
// i of word i/64 for page i, as KVM's dirty log) into the memory file at
// path. If path is a regular file of the right size the pages are merged
// into it in place, as Firecracker merges a diff layer; that merge cannot
// be atomic, so a failure leaves a mix of old and new pages. Otherwise a new
// file holding only the dirty pages (the rest zero) replaces path
// atomically, as WriteMemory does.
func WriteMemoryDiff(path string, regions []Region, dirty [][]uint64, read ReadFunc) error {
	if err := checkRegions(regions); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(dirty) != len(regions) {
		return fmt.Errorf("%w: %d dirty bitmaps for %d regions", ErrInvalid, len(dirty), len(regions))
	}
	for i, r := range regions {
		if need := (r.Size/PageSize + 63) / 64; uint64(len(dirty[i])) < need {
			return fmt.Errorf("%w: dirty bitmap %d has %d words, region needs %d", ErrInvalid, i, len(dirty[i]), need)
		}
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && uint64(fi.Size()) == MemSize(regions) {
		fd, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: path, Err: cause(err)}
		}
		defer fd.Close()
		if err := fillDirty(fd, path, regions, dirty, read, true); err != nil {
			return err
		}
		if err := fd.Sync(); err != nil {
			return &fs.PathError{Op: "sync_all", Path: path, Err: cause(err)}
		}
		return nil
	}
	return writeAtomic(path, func(fd *os.File) error {
		return fillMemory(fd, path, regions, dirty, read, false)
	})
}

// fillMemory sizes a new file and writes regions into it: every page, or
// only dirty ones when dirty is not nil.
func fillMemory(fd *os.File, path string, regions []Region, dirty [][]uint64, read ReadFunc, merge bool) error {
	if err := fd.Truncate(int64(MemSize(regions))); err != nil {
		return &fs.PathError{Op: "set_length", Path: path, Err: cause(err)}
	}
	if dirty != nil {
		return fillDirty(fd, path, regions, dirty, read, merge)
	}
	var off uint64
	for _, r := range regions {
		for p := uint64(0); p < r.Size/PageSize; p += chunkPages {
			n := min(chunkPages, r.Size/PageSize-p)
			if err := copyPages(fd, path, read, r.GPA+p*PageSize, off+p*PageSize, n, merge); err != nil {
				return err
			}
		}
		off += r.Size
	}
	return nil
}

// fillDirty writes the runs of dirty pages of each region.
func fillDirty(fd *os.File, path string, regions []Region, dirty [][]uint64, read ReadFunc, merge bool) error {
	var off uint64
	for i, r := range regions {
		pages := r.Size / PageSize
		for p := uint64(0); p < pages; {
			if dirty[i][p/64]&(1<<(p%64)) == 0 {
				if dirty[i][p/64] == 0 {
					p = (p/64 + 1) * 64 // skip a clean word at once
				} else {
					p++
				}
				continue
			}
			n := uint64(1)
			for p+n < pages && n < chunkPages && dirty[i][(p+n)/64]&(1<<((p+n)%64)) != 0 {
				n++
			}
			if err := copyPages(fd, path, read, r.GPA+p*PageSize, off+p*PageSize, n, merge); err != nil {
				return err
			}
			p += n
		}
		off += r.Size
	}
	return nil
}

// copyPages copies n pages of guest RAM at gpa to file offset off. Runs of
// non-zero pages are written; runs of zero pages are skipped in a new file
// (already holes) and, when merging, punched out (or zeroed) so old data
// does not survive.
func copyPages(fd *os.File, path string, read ReadFunc, gpa, off, n uint64, merge bool) error {
	b, err := read(gpa, n*PageSize)
	if err != nil {
		return fmt.Errorf("read guest memory at %#x: %w", gpa, err)
	}
	if uint64(len(b)) != n*PageSize {
		return fmt.Errorf("read guest memory at %#x: got %d bytes, want %d", gpa, len(b), n*PageSize)
	}
	for i := uint64(0); i < n; {
		zero := bytes.Equal(b[i*PageSize:(i+1)*PageSize], zeroPage[:])
		j := i + 1
		for j < n && bytes.Equal(b[j*PageSize:(j+1)*PageSize], zeroPage[:]) == zero {
			j++
		}
		start, end := i*PageSize, j*PageSize
		switch {
		case !zero:
			if _, err := fd.WriteAt(b[start:end], int64(off+start)); err != nil {
				return &fs.PathError{Op: "write", Path: path, Err: cause(err)}
			}
		case merge:
			if err := zeroRange(fd, int64(off+start), int64(end-start)); err != nil {
				return &fs.PathError{Op: "write", Path: path, Err: err}
			}
		}
		i = j
	}
	return hook("write", path)
}

// writeZeros writes n bytes of zeros at off, a page at a time.
func writeZeros(fd *os.File, off, n int64) error {
	for done := int64(0); done < n; done += PageSize {
		if _, err := fd.WriteAt(zeroPage[:min(PageSize, n-done)], off+done); err != nil {
			return cause(err)
		}
	}
	return nil
}
