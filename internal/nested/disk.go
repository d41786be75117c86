package nested

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ember-vmm/ember/internal/testguest"
)

// ErrDisk is returned (wrapped) when the guest-asset disk cannot be built.
var ErrDisk = errors.New("nested: guest disk")

// guestDiskFiles are the test guest's files put on the disk, under their own
// names, so testguest.ReadManifest works on the mounted directory in L1.
var guestDiskFiles = []string{"vmlinux", "bzImage", "initramfs.cpio.gz", "rootfs.ext4", "manifest"}

// manifestKey hashes the manifest's output lines: they name each output's
// sha256, so equal keys mean equal files (apt bookkeeping lines are ignored).
func manifestKey(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, "manifest"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "output ") {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 3 {
				fmt.Fprintf(h, "%s %s\n", fields[1], fields[2])
				n++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if n == 0 {
		return "", fmt.Errorf("no output lines in %s/manifest", dir)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// prepareGuestDisk returns an ext4 image holding the test guest's files,
// built with mke2fs -d once per guest build and shared read-only by every
// L1 (built under a temporary name and renamed, so a reader never sees a
// partial image and a rebuild never disturbs a running L1).
func prepareGuestDisk(ctx context.Context, a testguest.Assets) (string, error) {
	key, err := manifestKey(a.Dir)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrDisk, err)
	}
	root := cacheRoot(a)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("%w: %v", ErrDisk, err)
	}
	img := filepath.Join(root, "guest-"+key+".ext4")
	if _, err := os.Stat(img); err == nil {
		return img, nil
	}
	unlock, err := lockFile(filepath.Join(root, ".lock"))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrDisk, err)
	}
	defer unlock()
	if _, err := os.Stat(img); err == nil {
		return img, nil
	}
	mke2fs, err := exec.LookPath("mke2fs")
	if err != nil {
		return "", fmt.Errorf("%w: mke2fs not found (apt-get install e2fsprogs)", ErrDisk)
	}
	stage, err := os.MkdirTemp(root, ".guest-")
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrDisk, err)
	}
	defer os.RemoveAll(stage)
	files := filepath.Join(stage, "files")
	if err := os.Mkdir(files, 0o755); err != nil {
		return "", fmt.Errorf("%w: %v", ErrDisk, err)
	}
	var total int64
	for _, name := range guestDiskFiles {
		src := filepath.Join(a.Dir, name)
		st, err := os.Stat(src)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrDisk, err)
		}
		total += st.Size()
		// A hard link costs nothing; copy only across file systems.
		if err := os.Link(src, filepath.Join(files, name)); err != nil {
			if err := copyFile(filepath.Join(files, name), src); err != nil {
				return "", fmt.Errorf("%w: %v", ErrDisk, err)
			}
		}
	}
	// Room for the files, ext4's metadata and a margin; no journal: the
	// disk is only ever mounted read-only.
	sizeKiB := (total/1024)*11/10 + 16*1024
	tmp := filepath.Join(stage, "guest.ext4")
	cmd := exec.CommandContext(ctx, mke2fs, "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-b", "4096",
		"-L", "ember-nested", "-E", "root_owner=0:0", "-d", files, tmp, fmt.Sprintf("%dk", sizeKiB))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: mke2fs: %v: %s", ErrDisk, err, bytes.TrimSpace(out))
	}
	if err := os.Rename(tmp, img); err != nil {
		return "", fmt.Errorf("%w: %v", ErrDisk, err)
	}
	// Disks of older guest builds are dead weight now.
	if old, _ := filepath.Glob(filepath.Join(root, "guest-*.ext4")); len(old) > 0 {
		for _, o := range old {
			if o != img {
				os.Remove(o)
			}
		}
	}
	return img, nil
}
