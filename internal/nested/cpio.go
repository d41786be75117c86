package nested

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// ErrArchive is returned (wrapped) when an initramfs entry cannot be written.
var ErrArchive = errors.New("nested: initramfs archive")

// cpioWriter writes a newc ("070701") cpio archive, the format the kernel
// unpacks into its initial root file system. Parent directories are emitted
// before their first child, once each, so callers just add files.
type cpioWriter struct {
	w    io.Writer
	n    int64 // bytes written, for padding
	ino  int
	dirs map[string]bool
	err  error
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1000, dirs: map[string]bool{".": true, "/": true, "": true}}
}

// cpio mode bits (from stat.h; the format stores them as-is).
const (
	cpioRegular = 0o100000
	cpioDir     = 0o040000
	cpioSymlink = 0o120000
)

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	if err != nil {
		c.err = fmt.Errorf("%w: %v", ErrArchive, err)
	}
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) header(name string, mode uint32, size int64) {
	if size < 0 || size > 0xffffffff {
		c.err = fmt.Errorf("%w: %s: size %d does not fit a newc header", ErrArchive, name, size)
		return
	}
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	// ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(h))
	c.write([]byte(name + "\x00"))
	c.pad()
}

// clean checks an archive path: relative, slash-separated, no "..".
func cleanArchivePath(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: path %q must be relative", ErrArchive, name)
	}
	c := path.Clean(name)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") || strings.ContainsRune(c, 0) {
		return "", fmt.Errorf("%w: bad path %q", ErrArchive, name)
	}
	return c, nil
}

func (c *cpioWriter) parents(name string) {
	dir := path.Dir(name)
	if c.dirs[dir] {
		return
	}
	c.parents(dir)
	c.dirs[dir] = true
	c.header(dir, cpioDir|0o755, 0)
}

// Dir adds a directory.
func (c *cpioWriter) Dir(name string, perm os.FileMode) {
	name, err := cleanArchivePath(name)
	if err != nil {
		c.setErr(err)
		return
	}
	if c.dirs[name] {
		return
	}
	c.parents(name)
	c.dirs[name] = true
	c.header(name, cpioDir|uint32(perm.Perm()), 0)
}

// Bytes adds a regular file with the given contents.
func (c *cpioWriter) Bytes(name string, perm os.FileMode, data []byte) {
	name, err := cleanArchivePath(name)
	if err != nil {
		c.setErr(err)
		return
	}
	c.parents(name)
	c.header(name, cpioRegular|uint32(perm.Perm()), int64(len(data)))
	c.write(data)
	c.pad()
}

// Symlink adds a symbolic link to target.
func (c *cpioWriter) Symlink(name, target string) {
	name, err := cleanArchivePath(name)
	if err != nil {
		c.setErr(err)
		return
	}
	c.parents(name)
	c.header(name, cpioSymlink|0o777, int64(len(target)))
	c.write([]byte(target))
	c.pad()
}

// File adds the regular file at src, streaming its contents; perm 0 keeps
// the source's permission bits.
func (c *cpioWriter) File(name, src string, perm os.FileMode) {
	if c.err != nil {
		return
	}
	name, err := cleanArchivePath(name)
	if err != nil {
		c.setErr(err)
		return
	}
	f, err := os.Open(src)
	if err != nil {
		c.setErr(fmt.Errorf("%w: %v", ErrArchive, err))
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		c.setErr(fmt.Errorf("%w: %v", ErrArchive, err))
		return
	}
	if !st.Mode().IsRegular() {
		c.setErr(fmt.Errorf("%w: %s is not a regular file", ErrArchive, src))
		return
	}
	if perm == 0 {
		perm = st.Mode().Perm()
	}
	c.parents(name)
	c.header(name, cpioRegular|uint32(perm.Perm()), st.Size())
	if c.err != nil {
		return
	}
	// The size is in the header already: a file that changes length while
	// being copied would corrupt the archive, so insist on exactly size bytes.
	n, err := io.Copy(c.w, io.LimitReader(f, st.Size()))
	c.n += n
	if err == nil && n != st.Size() {
		err = fmt.Errorf("%s shrank while being archived", src)
	}
	if err != nil {
		c.setErr(fmt.Errorf("%w: %v", ErrArchive, err))
		return
	}
	c.pad()
}

// Files adds each src of files (archive name → host path) in name order.
func (c *cpioWriter) Files(prefix string, files map[string]string) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		rel, err := cleanArchivePath(n)
		if err != nil {
			c.setErr(err)
			return
		}
		c.File(path.Join(prefix, rel), files[n], 0)
	}
}

// Close writes the trailer; it does not close the underlying writer.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0)
	return c.err
}

func (c *cpioWriter) setErr(err error) {
	if c.err == nil {
		c.err = err
	}
}
