//go:build linux

package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/snapshot"
	"github.com/ember-vmm/ember/internal/syserr"
	"golang.org/x/sys/unix"
)

// snapshotsSupported: guest RAM can be an ember memfd here.
const snapshotsSupported = true

// guestRAM creates guest RAM for spec as a memfd, filled from the memory
// file when restoring. It returns nil for huge_pages Transparent, where
// QEMU keeps its own anonymous RAM and snapshots are refused. vhost-user
// back-ends map the same memfd: QEMU passes them its descriptor.
func guestRAM(spec *hypervisor.Spec, rs *restoreInputs) (*snapRAM, error) {
	if spec.HugePages == hypervisor.HugePagesTransparent {
		if rs != nil {
			return nil, hypervisor.Unsupported(Name, "restoring a snapshot onto transparent huge pages")
		}
		return nil, nil
	}
	size := spec.MemMiB << 20
	flags := unix.MFD_CLOEXEC
	if spec.HugePages == hypervisor.HugePages2M {
		if size%(2<<20) != 0 {
			return nil, fmt.Errorf("huge_pages 2M: mem_size_mib %d is not a multiple of 2", spec.MemMiB)
		}
		flags |= unix.MFD_HUGETLB | unix.MFD_HUGE_2MB
	}
	fd, err := unix.MemfdCreate("ember-guest-ram", flags)
	if err != nil {
		return nil, fmt.Errorf("creating guest memory: %w", err)
	}
	r := &snapRAM{fd: os.NewFile(uintptr(fd), "guest-ram"), size: size, hugetlb: flags&unix.MFD_HUGETLB != 0}
	if spec.TrackDirtyPages {
		r.sums = newPageSums(size)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		r.close()
		return nil, fmt.Errorf("sizing guest memory (%d MiB): %w", spec.MemMiB, err)
	}
	if rs != nil {
		start := time.Now()
		if err := r.fill(rs.memPath); err != nil {
			r.close()
			return nil, err
		}
		r.filled = time.Since(start)
	}
	return r, nil
}

// fillChunk is how much of the memory file one read takes.
const fillChunk = 1 << 20

// fill copies the memory file at path into guest RAM: only the file's
// data extents are read and only non-zero pages stored, so RAM stays as
// sparse as the file. The file is opened read-only and never changed.
func (r *snapRAM) fill(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot open the memory file %s: %s", path, syserr.Display(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot stat the memory file %s: %s", path, syserr.Display(err))
	}
	if !fi.Mode().IsRegular() || uint64(fi.Size()) != r.size {
		return fmt.Errorf("the memory file %s holds %d bytes; the snapshot's guest has %d", path, fi.Size(), r.size)
	}
	// Pages go in with pwrite: faulting them in through a mapping costs
	// a trap per page, which under nested paging is most of the copy.
	// hugetlbfs has no write, so huge pages are filled through a mapping.
	store := func(off uint64, b []byte) error {
		_, err := r.fd.WriteAt(b, int64(off))
		return err
	}
	if r.hugetlb {
		mem, err := unix.Mmap(int(r.fd.Fd()), 0, int(r.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("mapping guest memory: %w", err)
		}
		defer unix.Munmap(mem)
		store = func(off uint64, b []byte) error {
			copy(mem[off:], b)
			return nil
		}
	}
	buf := make([]byte, fillChunk)
	err = dataExtents(f, r.size, func(start, end uint64) error {
		for off := start; off < end; {
			n := min(uint64(len(buf)), end-off)
			if _, err := f.ReadAt(buf[:n], int64(off)); err != nil && !(errors.Is(err, io.EOF) && off+n == r.size) {
				return fmt.Errorf("reading the memory file %s: %s", path, syserr.Display(err))
			}
			// Runs of non-zero pages are stored; zero pages stay holes.
			for p := uint64(0); p < n; {
				q := p
				for q < n && !isZero(buf[q:min(q+snapshot.PageSize, n)]) {
					q += snapshot.PageSize
				}
				if q > p {
					if err := store(off+p, buf[p:min(q, n)]); err != nil {
						return fmt.Errorf("filling guest memory: %w", err)
					}
					if r.sums != nil {
						r.sums.record(off+p, buf[p:min(q, n)])
					}
					p = q
					continue
				}
				p += snapshot.PageSize
			}
			off += n
		}
		return nil
	})
	return err
}

func isZero(b []byte) bool { return bytes.Equal(b, zeroPage[:len(b)]) }

// dataExtents calls fn for each range of f below size that holds data
// (SEEK_DATA/SEEK_HOLE; a file system without holes is data throughout).
func dataExtents(f *os.File, size uint64, fn func(start, end uint64) error) error {
	fd := int(f.Fd())
	for off := uint64(0); off < size; {
		start, err := unix.Seek(fd, int64(off), unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains
		}
		if err != nil {
			return fmt.Errorf("seeking data: %w", err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seeking a hole: %w", err)
		}
		if uint64(start) >= size {
			return nil
		}
		e := min(uint64(end), size)
		if err := fn(uint64(start), e); err != nil {
			return err
		}
		off = e
	}
	return nil
}

// reader returns a snapshot.ReadFunc over guest RAM. Ranges the memfd
// holds no page of read as zeros without a copy.
func (r *snapRAM) reader(regions []snapshot.Region) snapshot.ReadFunc {
	var buf, zeros []byte
	fd := int(r.fd.Fd())
	return func(gpa, n uint64) ([]byte, error) {
		off, err := fileOffset(regions, gpa, n)
		if err != nil {
			return nil, err
		}
		if d, err := unix.Seek(fd, int64(off), unix.SEEK_DATA); errors.Is(err, unix.ENXIO) || err == nil && uint64(d) >= off+n {
			if uint64(len(zeros)) < n {
				zeros = make([]byte, n)
			}
			return zeros[:n], nil
		}
		if uint64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		b := buf[:n]
		if _, err := r.fd.ReadAt(b, int64(off)); err != nil {
			return nil, err
		}
		return b, nil
	}
}

// resident returns, per region, a bitmap of the pages guest RAM holds
// (written at some point, in memory or in swap): what a diff snapshot
// writes when dirty pages are not tracked.
func (r *snapRAM) resident(regions []snapshot.Region) ([][]uint64, error) {
	maps := make([][]uint64, len(regions))
	for i, reg := range regions {
		maps[i] = make([]uint64, (reg.Size/snapshot.PageSize+63)/64)
	}
	err := dataExtents(r.fd, r.size, func(start, end uint64) error {
		var off uint64
		for i, reg := range regions {
			lo, hi := max(start, off), min(end, off+reg.Size)
			for p := lo; p < hi; p += snapshot.PageSize {
				pg := (p - off) / snapshot.PageSize
				maps[i][pg/64] |= 1 << (pg % 64)
			}
			off += reg.Size
		}
		return nil
	})
	return maps, err
}

// changed hashes every page of guest RAM and returns, per region, a bitmap
// of the pages whose hash differs from the baseline in r.sums, and the new
// hashes, which become the baseline once a snapshot has used them.
func (r *snapRAM) changed(regions []snapshot.Region) (dirty [][]uint64, next []uint64, err error) {
	s := r.sums
	next = make([]uint64, len(s.sums))
	for i := range next {
		next[i] = s.zero // a hole reads as zeros
	}
	buf := make([]byte, fillChunk)
	err = dataExtents(r.fd, r.size, func(start, end uint64) error {
		start &^= snapshot.PageSize - 1
		for off := start; off < end; {
			n := min(uint64(len(buf)), end-off)
			if _, err := r.fd.ReadAt(buf[:n], int64(off)); err != nil {
				return fmt.Errorf("reading guest memory: %w", err)
			}
			for p := uint64(0); p+snapshot.PageSize <= n; p += snapshot.PageSize {
				next[(off+p)/snapshot.PageSize] = s.hash(buf[p : p+snapshot.PageSize])
			}
			off += n
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	dirty = make([][]uint64, len(regions))
	var first uint64 // the region's first page in the memfd
	for i, reg := range regions {
		pages := reg.Size / snapshot.PageSize
		dirty[i] = make([]uint64, (pages+63)/64)
		for pg := uint64(0); pg < pages; pg++ {
			if next[first+pg] != s.sums[first+pg] {
				dirty[i][pg/64] |= 1 << (pg % 64)
			}
		}
		first += pages
	}
	return dirty, next, nil
}
