package nested

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// ErrNotStatic is returned (wrapped) for an executable that needs a dynamic
// loader; L1 has none.
var ErrNotStatic = errors.New("nested: executable is dynamically linked")

// ErrTestBinary is returned (wrapped) when no static test binary can be had.
var ErrTestBinary = errors.New("nested: test binary")

// CheckStatic reports whether path is an ELF executable that runs without a
// dynamic loader (no PT_INTERP program header), the only kind L1 can run.
// A Go binary is static when built with CGO_ENABLED=0, as testember builds
// ember. It returns nil for a static ELF, an ErrNotStatic error naming the
// interpreter otherwise, and another error when path is not ELF.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("nested: %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp := make([]byte, p.Filesz)
			if _, err := p.ReadAt(interp, 0); err != nil {
				return fmt.Errorf("%w: %s (and its interpreter is unreadable: %v)", ErrNotStatic, path, err)
			}
			return fmt.Errorf("%w: %s asks for %s; build it with CGO_ENABLED=0", ErrNotStatic, path, bytes.TrimRight(interp, "\x00"))
		}
	}
	return nil
}

var (
	testBinMu    sync.Mutex
	testBinCache = map[[2]string]string{} // {package dir, cache dir} → static test binary
)

// staticTestBinary returns a test binary of the running test's package that
// L1 can run. The running binary is used as-is when it is static, as it is
// whenever the package links no cgo (or under CGO_ENABLED=0). Otherwise
// (a package that imports net, with a C compiler present) the package is
// rebuilt once per process with `go test -c` and CGO_ENABLED=0 — same
// sources, same GOFLAGS, pure-Go resolver — into cacheDir, one file per
// package, replaced on each build so nothing accumulates.
func staticTestBinary(ctx context.Context, cacheDir string) (bin string, rebuilt bool, err error) {
	self, err := os.Executable()
	if err != nil {
		return "", false, fmt.Errorf("%w: %v", ErrTestBinary, err)
	}
	err = CheckStatic(self)
	if err == nil {
		return self, false, nil
	}
	if !errors.Is(err, ErrNotStatic) {
		return "", false, fmt.Errorf("%w: %v", ErrTestBinary, err)
	}
	// go test runs a test binary in its package's source directory.
	pkgDir, err := os.Getwd()
	if err != nil {
		return "", false, fmt.Errorf("%w: %v", ErrTestBinary, err)
	}
	bin, err = rebuildStatic(ctx, pkgDir, cacheDir)
	return bin, true, err
}

func rebuildStatic(ctx context.Context, pkgDir, cacheDir string) (string, error) {
	testBinMu.Lock()
	defer testBinMu.Unlock()
	if bin, ok := testBinCache[[2]string{pkgDir, cacheDir}]; ok {
		return bin, nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("%w: the test binary is dynamically linked and no go tool is on PATH to rebuild it with CGO_ENABLED=0", ErrTestBinary)
	}
	dir := filepath.Join(cacheDir, "testbin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("%w: %v", ErrTestBinary, err)
	}
	sum := sha256.Sum256([]byte(pkgDir))
	bin := filepath.Join(dir, filepath.Base(pkgDir)+"-"+hex.EncodeToString(sum[:6])+".test")
	tmp, err := os.CreateTemp(dir, ".build-")
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrTestBinary, err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.CommandContext(ctx, goTool, "test", "-c", "-o", tmp.Name(), ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: CGO_ENABLED=0 go test -c in %s: %v\n%s", ErrTestBinary, pkgDir, err, out)
	}
	if err := CheckStatic(tmp.Name()); err != nil {
		return "", fmt.Errorf("%w: rebuilt with CGO_ENABLED=0 and still: %v", ErrTestBinary, err)
	}
	// Rename over the old one: an L1 of another process that is still
	// archiving the old file keeps reading its (unlinked) inode.
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", fmt.Errorf("%w: %v", ErrTestBinary, err)
	}
	testBinCache[[2]string{pkgDir, cacheDir}] = bin
	return bin, nil
}
