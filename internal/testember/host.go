package testember

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// NewNetns creates a network namespace named prefix plus a random suffix
// (lo up) and deletes it, with everything in it, when the test ends.
func NewNetns(t testing.TB, prefix string) string {
	t.Helper()
	name := prefix + RandHex(t, 4)
	IP(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	IP(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// IP runs the ip command and fails the test on error. A "-n" "" pair (no
// namespace: the current one) is dropped.
func IP(t testing.TB, args ...string) string {
	t.Helper()
	if len(args) >= 2 && args[0] == "-n" && args[1] == "" {
		args = args[2:]
	}
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// LinkExists reports whether network namespace ns has a link called name.
func LinkExists(t testing.TB, ns, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s link show: %v: %s", ns, err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "7: name: <FLAGS> ..." or "7: name@peer: ..."
		f := strings.Fields(sc.Text())
		if len(f) > 1 && strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0] == name {
			return true
		}
	}
	return false
}

// RandHex is n random bytes in hex.
func RandHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// WriteFile writes data to path, creating its directories, and returns
// path.
func WriteFile(t testing.TB, path string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
