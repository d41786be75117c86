package microhttp

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestListen(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "api.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	// bind leaves 0777 minus the umask, and nothing changes it.
	mask := syscall.Umask(0)
	syscall.Umask(mask)
	if want := os.FileMode(0o777 &^ mask); fi.Mode().Perm() != want || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("mode %v, want socket %v (umask %03o)", fi.Mode(), want, mask)
	}

	// A second bind on a live socket fails with EADDRINUSE...
	if _, err := Listen(path); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second Listen: %v, want EADDRINUSE", err)
	}
	// ...and Close leaves the file, so a stale socket fails the same way.
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("Close removed the socket: %v", err)
	}
	if _, err := Listen(path); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Listen on a stale socket: %v, want EADDRINUSE", err)
	}
	// So does any other existing file.
	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, nil, 0o600)
	if _, err := Listen(plain); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Listen on a file: %v, want EADDRINUSE", err)
	}
	if _, err := Listen(filepath.Join(dir, "missing", "x.sock")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Listen in a missing directory: %v, want ENOENT", err)
	}
}

func TestListenPathRules(t *testing.T) {
	dir := shortDir(t)
	// A leading '@' is an ordinary file name, not an abstract address.
	t.Chdir(dir)
	ln, err := Listen("@api.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := os.Lstat(filepath.Join(dir, "@api.sock")); err != nil {
		t.Errorf("no file for '@api.sock': %v", err)
	}
	c, err := net.Dial("unix", "./@api.sock")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()

	if _, err := Listen(strings.Repeat("a", 108)); err != ErrPathTooLong || err.Error() != "path must be shorter than SUN_LEN" {
		t.Errorf("108-byte path: %v", err)
	}
	long := strings.Repeat("b", 107)
	if ln, err := Listen(long); err != nil {
		t.Errorf("107-byte path: %v", err)
	} else {
		ln.Close()
	}
	if _, err := Listen("a\x00b"); err != ErrPathNUL || err.Error() != "paths must not contain interior null bytes" {
		t.Errorf("NUL in path: %v", err)
	}
}
