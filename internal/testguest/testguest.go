// Package testguest gives ember's tests a real Linux guest to boot: a Debian
// kernel (as an ELF vmlinux with a PVH entry and as a bzImage), an initramfs
// and an ext4 root file system, all built by guest/build.sh from Debian's
// packages, plus helpers to drive the guest's test init through kernel
// command-line switches and to read its console.
//
// Invariants: Require runs guest/build.sh at most once per process, under an
// flock on the asset directory so parallel test binaries never build at the
// same time; it returns only assets the build's manifest describes and that
// exist. Tests never write to the shared assets: RootfsCopy hands out a
// private copy of the root file system.
package testguest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Errors returned (wrapped) while preparing the assets.
var (
	// ErrNoRepo means the repository holding guest/build.sh was not found.
	ErrNoRepo = errors.New("testguest: repository root not found")
	// ErrBuild means guest/build.sh failed.
	ErrBuild = errors.New("testguest: guest build failed")
	// ErrManifest means the build's manifest is missing, malformed or
	// names files that do not exist.
	ErrManifest = errors.New("testguest: bad guest manifest")
)

// Assets are the paths of one built guest.
type Assets struct {
	// Dir holds everything below; EMBER_GUEST_DIR or <repo>/build/guest.
	Dir string
	// Vmlinux is the uncompressed ELF kernel with a PVH entry note.
	Vmlinux string
	// BzImage is the same kernel in the bzImage format.
	BzImage string
	// Initramfs is a gzip'd newc cpio archive: busybox, the virtio modules,
	// /init (root= handling) and the test init.
	Initramfs string
	// Rootfs is an ext4 image with busybox and the test init as /sbin/init.
	// Shared: boot copies of it (RootfsCopy) or attach it read-only.
	Rootfs string
	// KernelVersion is the kernel release, as uname -r reports it in the guest.
	KernelVersion string
	// KernelPackage and KernelPackageVersion name the Debian package the
	// kernel came from.
	KernelPackage, KernelPackageVersion string
	// RootfsUUID is the ext4 file system UUID of Rootfs (root=UUID=... works).
	RootfsUUID string
}

// manifestFormat is the manifest format guest/build.sh writes.
const manifestFormat = "1"

// buildTimeout bounds one run of guest/build.sh (normally well under 2 minutes).
const buildTimeout = 10 * time.Minute

var (
	requireOnce   sync.Once
	requireAssets Assets
	requireErr    error
)

// Require returns the guest assets, running guest/build.sh first (once per
// process) so that missing or stale assets are rebuilt. It fails the test if
// the build fails.
func Require(t testing.TB) Assets {
	t.Helper()
	requireOnce.Do(func() {
		var log string
		requireAssets, log, requireErr = prepare(context.Background())
		if log != "" {
			t.Logf("%s", log)
		}
	})
	if requireErr != nil {
		t.Fatalf("%v", requireErr)
	}
	return requireAssets
}

// RootfsCopy returns the path of a private, writable copy of the root file
// system image in t.TempDir().
func RootfsCopy(t testing.TB) string {
	t.Helper()
	a := Require(t)
	dst := filepath.Join(t.TempDir(), "rootfs.ext4")
	if err := copyFile(dst, a.Rootfs); err != nil {
		t.Fatalf("testguest: copy rootfs: %v", err)
	}
	return dst
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	// *os.File to *os.File uses copy_file_range, so this stays in the kernel.
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// prepare locates the repository, runs the build under the directory lock
// and reads the manifest. The returned log is the build's last output line.
func prepare(ctx context.Context) (Assets, string, error) {
	root, err := repoRoot()
	if err != nil {
		return Assets{}, "", err
	}
	dir := os.Getenv("EMBER_GUEST_DIR")
	if dir == "" {
		dir = filepath.Join(root, "build", "guest")
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return Assets{}, "", fmt.Errorf("%w: %v", ErrBuild, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Assets{}, "", fmt.Errorf("%w: %v", ErrBuild, err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return Assets{}, "", fmt.Errorf("%w: %v", ErrBuild, err)
	}
	defer unlock()

	log, err := runBuild(ctx, filepath.Join(root, "guest", "build.sh"), dir)
	if err != nil {
		return Assets{}, log, err
	}
	a, err := ReadManifest(dir)
	return a, log, err
}

// lockDir takes an exclusive flock on a file in dir; guest/build.sh locks
// a different file itself, so holding this one while it runs cannot deadlock.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".require.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

func runBuild(ctx context.Context, script, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(os.Environ(), "EMBER_GUEST_DIR="+dir)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	last := text
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		last = text[i+1:]
	}
	if err != nil {
		return last, fmt.Errorf("%w: %s: %v\n%s", ErrBuild, script, err, tail(text, 40))
	}
	return last, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// repoRoot finds the directory holding guest/build.sh: from this file's
// compile-time path when it is absolute, else from `go env GOMOD`.
func repoRoot() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
		if isRepo(root) {
			return root, nil
		}
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			if root := filepath.Dir(gomod); isRepo(root) {
				return root, nil
			}
		}
	}
	return "", ErrNoRepo
}

func isRepo(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "guest", "build.sh"))
	return err == nil && st.Mode().IsRegular()
}

// ReadManifest reads the manifest guest/build.sh wrote in dir and returns
// the assets it describes, checking that each file exists.
func ReadManifest(dir string) (Assets, error) {
	f, err := os.Open(filepath.Join(dir, "manifest"))
	if err != nil {
		return Assets{}, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	defer f.Close()
	return parseManifest(dir, f)
}

func parseManifest(dir string, r io.Reader) (Assets, error) {
	keys := map[string]string{}
	outputs := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return Assets{}, fmt.Errorf("%w: line %d: %q has no value", ErrManifest, n, line)
		}
		if fields[0] == "output" {
			if len(fields) != 6 {
				return Assets{}, fmt.Errorf("%w: line %d: want \"output NAME SHA256 SIZE MTIME INODE\", got %q", ErrManifest, n, line)
			}
			outputs[fields[1]] = true
			continue
		}
		keys[fields[0]] = strings.Join(fields[1:], " ")
	}
	if err := sc.Err(); err != nil {
		return Assets{}, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	if got := keys["format"]; got != manifestFormat {
		return Assets{}, fmt.Errorf("%w: format %q, want %q", ErrManifest, got, manifestFormat)
	}
	for _, k := range []string{"kernel_release", "kernel_package", "kernel_package_version", "rootfs_uuid"} {
		if keys[k] == "" {
			return Assets{}, fmt.Errorf("%w: no %s", ErrManifest, k)
		}
	}
	a := Assets{
		Dir:                  dir,
		Vmlinux:              filepath.Join(dir, "vmlinux"),
		BzImage:              filepath.Join(dir, "bzImage"),
		Initramfs:            filepath.Join(dir, "initramfs.cpio.gz"),
		Rootfs:               filepath.Join(dir, "rootfs.ext4"),
		KernelVersion:        keys["kernel_release"],
		KernelPackage:        keys["kernel_package"],
		KernelPackageVersion: keys["kernel_package_version"],
		RootfsUUID:           keys["rootfs_uuid"],
	}
	for _, p := range []string{a.Vmlinux, a.BzImage, a.Initramfs, a.Rootfs} {
		name := filepath.Base(p)
		if !outputs[name] {
			return Assets{}, fmt.Errorf("%w: no output line for %s", ErrManifest, name)
		}
		if st, err := os.Stat(p); err != nil {
			return Assets{}, fmt.Errorf("%w: %v", ErrManifest, err)
		} else if !st.Mode().IsRegular() || st.Size() == 0 {
			return Assets{}, fmt.Errorf("%w: %s is not a non-empty file", ErrManifest, p)
		}
	}
	return a, nil
}
