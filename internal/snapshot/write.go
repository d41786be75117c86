package snapshot

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Write writes f to the state file at path, atomically: on success the file
// at path (replaced if it existed, as Firecracker overwrites) holds all of
// f; on failure path is as it was and no temporary file remains (but if the
// directory cannot be synced after the rename, the new file is removed: it
// might not survive a crash, so it must not be taken as written). Errors are
// *fs.PathError naming the step ("open", "write", "sync_all", "rename",
// "sync_dir"), or wrap ErrInvalid when f itself is unusable.
func Write(path string, f *File) error {
	b, err := Encode(f)
	if err != nil {
		return err
	}
	return writeAtomic(path, func(fd *os.File) error {
		if _, err := fd.Write(b); err != nil {
			return &fs.PathError{Op: "write", Path: path, Err: cause(err)}
		}
		return nil
	})
}

// testHook, when set, is called at each step of writeAtomic and can fail
// it, so tests reach the error paths a full disk would.
var testHook func(step string) error

func hook(step, path string) error {
	if testHook == nil {
		return nil
	}
	if err := testHook(step); err != nil {
		return &fs.PathError{Op: step, Path: path, Err: err}
	}
	return nil
}

// writeAtomic creates a temporary file beside path, lets fill write it,
// syncs it, renames it to path and syncs the directory. Any failure removes
// the temporary file and leaves path alone.
//
// A symlink at path is followed, so the file it names is replaced. A path
// that is not a regular file (a device, a FIFO) cannot be replaced by a
// rename; it is written in place, as Firecracker does with every path.
func writeAtomic(path string, fill func(*os.File) error) error {
	target := path
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if t, err := filepath.EvalSymlinks(path); err == nil {
			target = t
		}
	}
	if fi, err := os.Stat(target); err == nil {
		switch {
		case fi.IsDir():
			return &fs.PathError{Op: "open", Path: path, Err: syscall.EISDIR}
		case !fi.Mode().IsRegular():
			return writeInPlace(path, fill)
		}
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	fd, tmp, err := createTemp(dir, base)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: cause(err)}
	}
	done := false
	defer func() {
		if !done {
			fd.Close()
			os.Remove(tmp)
		}
	}()
	if err := fill(fd); err != nil {
		return err
	}
	if err := hook("write", path); err != nil {
		return err
	}
	if err := fd.Sync(); err != nil {
		return &fs.PathError{Op: "sync_all", Path: path, Err: cause(err)}
	}
	if err := hook("sync_all", path); err != nil {
		return err
	}
	if err := fd.Close(); err != nil {
		return &fs.PathError{Op: "close", Path: path, Err: cause(err)}
	}
	if err := hook("rename", path); err != nil {
		return err
	}
	if err := os.Rename(tmp, target); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			err = le.Err
		}
		return &fs.PathError{Op: "rename", Path: path, Err: err}
	}
	done = true
	// Without the directory on disk the rename may not survive a crash; a
	// file that may vanish must not be reported as written.
	if err := syncDir(dir); err != nil {
		os.Remove(target)
		return &fs.PathError{Op: "sync_dir", Path: path, Err: err}
	}
	return nil
}

// createTemp makes a new file ".<base>.<random>.tmp" in dir with mode 0666
// less the umask, the mode Firecracker's files get.
func createTemp(dir, base string) (*os.File, string, error) {
	var err error
	for range 10 {
		var r [6]byte
		rand.Read(r[:])
		name := filepath.Join(dir, "."+base+"."+hex.EncodeToString(r[:])+".tmp")
		var fd *os.File
		fd, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if err == nil {
			return fd, name, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	return nil, "", err
}

func writeInPlace(path string, fill func(*os.File) error) error {
	// O_NONBLOCK: a FIFO without a reader fails (ENXIO) instead of hanging.
	fd, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: cause(err)}
	}
	defer fd.Close()
	if err := fill(fd); err != nil {
		return err
	}
	if err := fd.Sync(); err != nil {
		return &fs.PathError{Op: "sync_all", Path: path, Err: cause(err)}
	}
	return nil
}

func syncDir(dir string) error {
	if err := hook("sync_dir", dir); err != nil {
		return cause(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return cause(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		// Some filesystems cannot sync a directory (EINVAL); nothing more
		// can be done there.
		return cause(err)
	}
	return nil
}

// cause returns the error inside an *fs.PathError or similar wrapper, or
// err itself, so the step's own PathError names the path once.
func cause(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}
