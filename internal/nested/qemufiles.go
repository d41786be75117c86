package nested

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// QEMUFiles lists what this host's QEMU needs to run inside L1, as
// Options.Files entries: its binary (qemu/bin/qemu-system-x86_64), every
// shared library ldd names with the dynamic loader as
// qemu/lib/ld-linux-x86-64.so.2, and the microvm firmware under
// qemu/share/. QEMU is dynamically linked, so inside L1 it must be started
// through the shipped loader:
//
//	ld-linux-x86-64.so.2 --library-path <dir of qemu/lib> <qemu/bin/...> -L <dir of qemu/share> ...
//
// It skips the test (loudly) when QEMU or ldd is missing and fails it when
// their output cannot be used. Call it outside L1 only.
func QEMUFiles(t testing.TB) map[string]string {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("SKIP LOUDLY: qemu-system-x86_64 not found; QEMU inside L1 NOT tested")
	}
	ldd, err := exec.LookPath("ldd")
	if err != nil {
		t.Skip("SKIP: no ldd to list QEMU's libraries; QEMU inside L1 NOT tested")
	}
	out, err := exec.Command(ldd, qemu).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", qemu, err)
	}
	files := map[string]string{"qemu/bin/qemu-system-x86_64": qemu}
	loader := false
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		var p string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			p = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			p = f[0]
		default:
			continue
		}
		name := filepath.Base(p)
		if strings.HasPrefix(name, "ld-linux") {
			name, loader = "ld-linux-x86-64.so.2", true
		}
		files["qemu/lib/"+name] = p
	}
	if !loader {
		t.Fatalf("ldd %s names no ld-linux loader:\n%s", qemu, out)
	}
	for _, fw := range []string{"bios-microvm.bin", "linuxboot_dma.bin", "pvh.bin", "kvmvapic.bin"} {
		p := filepath.Join("/usr/share/qemu", fw)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("QEMU firmware: %v", err)
		}
		files["qemu/share/"+fw] = p
	}
	return files
}
