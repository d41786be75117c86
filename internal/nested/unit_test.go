package nested

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// cpioEntry is one parsed newc entry.
type cpioEntry struct {
	Name string
	Mode uint32
	Data []byte
}

// readCPIO parses newc archives independently of the writer, checking the
// alignment rules the kernel's unpacker enforces. It stops at the trailer.
func readCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("entry at offset %d is not 4-byte aligned", off)
		}
		if len(b)-off < 110 {
			t.Fatalf("truncated header at %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) uint64 {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("bad header field %d at %d: %v", i, off, err)
			}
			return v
		}
		mode, size, namesize := uint32(field(1)), int(field(6)), int(field(11))
		nameEnd := off + 110 + namesize
		if namesize < 1 || nameEnd > len(b) || b[nameEnd-1] != 0 {
			t.Fatalf("bad name at %d", off)
		}
		name := string(b[off+110 : nameEnd-1])
		data := (nameEnd + 3) &^ 3
		if data+size > len(b) {
			t.Fatalf("%s: data past the end", name)
		}
		if name == "TRAILER!!!" {
			return out
		}
		out = append(out, cpioEntry{Name: name, Mode: mode, Data: b[data : data+size]})
		off = (data + size + 3) &^ 3
	}
}

func TestCPIOWriter(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	if err := os.WriteFile(src, []byte("hello, L1\x00\x01\x02"), 0o751); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	c.Bytes("init", 0o755, []byte("#!/bin/sh\n"))
	c.Bytes("a/b/c.txt", 0o644, []byte("abc"))
	c.Dir("a/empty", 0o700)
	c.File("a/b/copy.bin", src, 0)
	c.Symlink("a/link", "b/c.txt")
	c.Files("files", map[string]string{"z/one": src, "two": src})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", buf.Len())
	}
	got := readCPIO(t, buf.Bytes())
	type row struct {
		name string
		mode uint32
		data string
	}
	want := []row{
		{"init", cpioRegular | 0o755, "#!/bin/sh\n"},
		{"a", cpioDir | 0o755, ""},
		{"a/b", cpioDir | 0o755, ""},
		{"a/b/c.txt", cpioRegular | 0o644, "abc"},
		{"a/empty", cpioDir | 0o700, ""},
		{"a/b/copy.bin", cpioRegular | 0o751, "hello, L1\x00\x01\x02"},
		{"a/link", cpioSymlink | 0o777, "b/c.txt"},
		{"files", cpioDir | 0o755, ""},
		{"files/two", cpioRegular | 0o751, "hello, L1\x00\x01\x02"},
		{"files/z", cpioDir | 0o755, ""},
		{"files/z/one", cpioRegular | 0o751, "hello, L1\x00\x01\x02"},
	}
	var have []row
	for _, e := range got {
		have = append(have, row{e.Name, e.Mode, string(e.Data)})
	}
	if !reflect.DeepEqual(have, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", have, want)
	}

	// GNU cpio, where present, must agree (it is what builds the guest's
	// initramfs, and it checks the format strictly).
	if cpio, err := exec.LookPath("cpio"); err == nil {
		out := t.TempDir()
		cmd := exec.Command(cpio, "-idm", "--quiet", "--no-absolute-filenames")
		cmd.Dir = out
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cpio -id: %v: %s", err, msg)
		}
		if b, err := os.ReadFile(filepath.Join(out, "files/z/one")); err != nil || string(b) != "hello, L1\x00\x01\x02" {
			t.Errorf("cpio extracted files/z/one = %q, %v", b, err)
		}
		if l, err := os.Readlink(filepath.Join(out, "a/link")); err != nil || l != "b/c.txt" {
			t.Errorf("cpio extracted a/link -> %q, %v", l, err)
		}
	}
}

func TestCPIOWriterRejects(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		add  func(c *cpioWriter)
	}{
		{"absolute", func(c *cpioWriter) { c.Bytes("/etc/passwd", 0o644, nil) }},
		{"dotdot", func(c *cpioWriter) { c.Bytes("a/../../x", 0o644, nil) }},
		{"empty", func(c *cpioWriter) { c.Bytes("", 0o644, nil) }},
		{"dot", func(c *cpioWriter) { c.Dir(".", 0o755) }},
		{"missing source", func(c *cpioWriter) { c.File("x", filepath.Join(dir, "nope"), 0) }},
		{"directory source", func(c *cpioWriter) { c.File("x", dir, 0) }},
		{"bad files name", func(c *cpioWriter) { c.Files("f", map[string]string{"../up": "/dev/null"}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCPIOWriter(io.Discard)
			tc.add(c)
			if err := c.Close(); !errors.Is(err, ErrArchive) {
				t.Errorf("Close() = %v, want ErrArchive", err)
			}
		})
	}
}

func TestRunPattern(t *testing.T) {
	for _, tc := range []struct {
		name  string
		match []string
		not   []string
	}{
		{"TestA", []string{"TestA"}, []string{"TestAB", "XTestA"}},
		{"TestA/sub_1", []string{"TestA/sub_1"}, []string{"TestA/sub_10", "TestA/sub_1/x"}},
		{"TestA/a.b+c(d)", []string{"TestA/a.b+c(d)"}, []string{"TestA/aXb+c(d)"}},
	} {
		pat := runPattern(tc.name)
		// go test matches each slash-separated element separately.
		check := func(name string) bool {
			pe, ne := strings.Split(pat, "/"), strings.Split(name, "/")
			if len(ne) != len(pe) {
				return false
			}
			for i := range pe {
				if !regexp.MustCompile(pe[i]).MatchString(ne[i]) {
					return false
				}
			}
			return true
		}
		for _, m := range tc.match {
			if !check(m) {
				t.Errorf("runPattern(%q) = %q does not match %q", tc.name, pat, m)
			}
		}
		for _, m := range tc.not {
			if check(m) {
				t.Errorf("runPattern(%q) = %q matches %q", tc.name, pat, m)
			}
		}
	}
}

func TestInnerStatus(t *testing.T) {
	for _, tc := range []struct {
		name, lines, status, reason string
	}{
		{"TestA", "=== RUN   TestA\n--- PASS: TestA (0.10s)\nPASS", "PASS", ""},
		{"TestA", "=== RUN   TestA\n    x_test.go:9: boom\n--- FAIL: TestA (0.10s)\nFAIL", "FAIL", ""},
		{"TestA", "=== RUN   TestA\n    x_test.go:9: SKIP: no disk\n--- SKIP: TestA (0.00s)\nPASS", "SKIP", "x_test.go:9: SKIP: no disk"},
		{"TestA/b", "=== RUN   TestA\n=== RUN   TestA/b\n--- PASS: TestA (0.00s)\n    --- PASS: TestA/b (0.00s)\nPASS", "PASS", ""},
		{"TestA", "--- PASS: TestAB (0.00s)\ntesting: warning: no tests to run\nPASS", "", ""},
		{"TestA", "", "", ""},
	} {
		s, r := innerStatus(strings.Split(tc.lines, "\n"), tc.name)
		if s != tc.status || r != tc.reason {
			t.Errorf("innerStatus(%q, %s) = %q, %q; want %q, %q", tc.lines, tc.name, s, r, tc.status, tc.reason)
		}
	}
}

func TestEmulatorFault(t *testing.T) {
	lost := "    vsock_test.go:9: " + markLostInterrupt + "vector 0x23 waits"
	for _, tc := range []struct {
		name   string
		run    l1Run
		failed error
		want   string
	}{
		{"lost interrupt, inner failed", l1Run{result: "exit 1", innerAt: 1, inner: []string{"=== RUN   TestKVM", lost}}, nil, "LOST AN INTERRUPT OF ITS L2 GUEST"},
		{"lost interrupt, inner passed anyway", l1Run{result: "exit 0", innerAt: 1, inner: []string{lost}}, nil, ""},
		{"plain failure", l1Run{result: "exit 1", innerAt: 1, inner: []string{"    x_test.go:9: boom"}}, nil, ""},
		{"froze", l1Run{innerAt: 1}, fmt.Errorf("x: %w", ErrFrozen), "FROZE"},
		{"never started", l1Run{}, nil, ""},
	} {
		if got := tc.run.emulatorFault(tc.failed, nil); got != tc.want {
			t.Errorf("%s: emulatorFault = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("SKIP: no sh to check quoting against")
	}
	for _, s := range []string{"", "plain", "two words", "it's", `"$HOME" $(id) ` + "`x`", "a\nb", `\'\`, "^TestA$/^b$"} {
		out, err := exec.Command(sh, "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("sh printf %s = %q, %v; want %q", shellQuote(s), out, err, s)
		}
	}
}

func TestInnerScript(t *testing.T) {
	s := innerScript("^TestA$/^it's$", 95*time.Second, []string{"A=b c"})
	for _, want := range []string{
		"exec env -i ",
		"'" + EnvInner + "=1'",
		"'" + EnvDir + "=" + l1Dir + "'",
		"'A=b c'",
		l1TestBin + " -test.run '^TestA$/^it'\\''s$' -test.v -test.count=1 -test.timeout=95s",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script %q lacks %q", s, want)
		}
	}
}

func TestOptionsDefaultsAndValidation(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.MemoryMiB != DefaultMemoryMiB || o.CPUs != DefaultCPUs || o.Timeout != DefaultTimeout || o.BootTimeout != DefaultBootTimeout {
		t.Errorf("defaults: %+v", o)
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"files ok", Options{Files: map[string]string{"bin/x": file}}, true},
		{"small memory", Options{MemoryMiB: 64}, false},
		{"negative cpus", Options{CPUs: -1}, false},
		{"too many cpus", Options{CPUs: 99}, false},
		{"negative timeout", Options{Timeout: -time.Second}, false},
		{"env without =", Options{Env: []string{"FOO"}}, false},
		{"env empty key", Options{Env: []string{"=x"}}, false},
		{"file name escapes", Options{Files: map[string]string{"../x": file}}, false},
		{"file name absolute", Options{Files: map[string]string{"/x": file}}, false},
		{"file missing", Options{Files: map[string]string{"x": file + ".nope"}}, false},
		{"file is a directory", Options{Files: map[string]string{"x": t.TempDir()}}, false},
		{"kernel arg with space", Options{KernelArgs: []string{"a b"}}, false},
		{"optional modules", Options{Modules: []string{"tun", "bridge"}}, true},
		{"unknown module", Options{Modules: []string{"kvm_intel"}}, false},
	} {
		_, err := tc.o.withDefaults()
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, ErrOptions) {
			t.Errorf("%s: err = %v, want ErrOptions", tc.name, err)
		}
	}
}

func TestVirtFlag(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"processor\t: 0\nflags\t\t: fpu vme svm lm\n", "svm"},
		{"flags\t\t: fpu vmx\nflags\t\t: fpu svm\n", "vmx"},
		{"flags\t\t: fpu vme hypervisor\n", ""},
		{"processor\t: 0\n", ""},
		{"flags\t\t: svmx vmxe\n", ""},
	} {
		got, err := virtFlag(strings.NewReader(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("virtFlag(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestLoadOrder(t *testing.T) {
	graph := map[string][]string{
		"kvm_amd": {"kvm"}, "kvm": {"irqbypass"}, "irqbypass": nil,
		"bridge": {"stp", "llc"}, "stp": {"llc"}, "llc": nil,
		"a": {"b"}, "b": {"a"}, "broken": {"gone"},
	}
	known := func(n string) bool { _, ok := graph[n]; return ok }
	deps := func(n string) ([]string, error) { return graph[n], nil }
	for _, tc := range []struct {
		want []string
		out  []string
		err  string
	}{
		{[]string{"kvm_amd"}, []string{"irqbypass", "kvm", "kvm_amd"}, ""},
		{[]string{"bridge", "kvm"}, []string{"llc", "stp", "bridge", "irqbypass", "kvm"}, ""},
		{[]string{"a"}, nil, "cycle"},
		{[]string{"broken"}, nil, "broken needs gone"},
		{[]string{"nothing"}, nil, "no module nothing"},
	} {
		got, err := loadOrder(tc.want, known, deps)
		if tc.err != "" {
			if !errors.Is(err, ErrModules) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("loadOrder(%v) error = %v, want one containing %q", tc.want, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.out) {
			t.Errorf("loadOrder(%v) = %v, %v; want %v", tc.want, got, err, tc.out)
		}
	}
}

func TestModInfoDepends(t *testing.T) {
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		t.Skip("SKIP: objcopy (binutils) not installed; .modinfo parsing is not checked")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		info string
		want []string
	}{
		{"license=GPL\x00depends=kvm,irq-bypass\x00name=kvm_amd\x00", []string{"kvm", "irq_bypass"}},
		{"license=GPL\x00depends=\x00name=tun\x00", nil},
		{"license=GPL\x00", nil},
	} {
		info := filepath.Join(dir, "info")
		if err := os.WriteFile(info, []byte(tc.info), 0o644); err != nil {
			t.Fatal(err)
		}
		ko := filepath.Join(dir, "m.ko")
		os.Remove(ko)
		if out, err := exec.Command(objcopy, "--add-section", ".modinfo="+info, self, ko).CombinedOutput(); err != nil {
			t.Fatalf("objcopy: %v: %s", err, out)
		}
		got, err := modInfoDepends(ko)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("modInfoDepends(%q) = %q, %v; want %q", tc.info, got, err, tc.want)
		}
	}
	if _, err := modInfoDepends(self); !errors.Is(err, ErrModules) {
		t.Errorf("a file without .modinfo: err = %v, want ErrModules", err)
	}
	if _, err := modInfoDepends(filepath.Join(dir, "info")); !errors.Is(err, ErrModules) {
		t.Errorf("a non-ELF file: err = %v, want ErrModules", err)
	}
}

func TestCheckStatic(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckStatic(text); err == nil || errors.Is(err, ErrNotStatic) {
		t.Errorf("CheckStatic(shell script) = %v, want a not-ELF error", err)
	}
	// Find one dynamic and one static executable on this machine.
	for _, tc := range []struct {
		paths  []string
		static bool
	}{
		{[]string{"/bin/sh", "/usr/bin/env", "/bin/ls"}, false},
		{[]string{"/bin/busybox", "/usr/bin/busybox"}, true},
	} {
		var p string
		for _, c := range tc.paths {
			if CheckStatic(c) == nil == tc.static {
				p = c
				break
			}
		}
		if p == "" {
			t.Errorf("none of %v is a %s ELF executable as CheckStatic sees it", tc.paths, map[bool]string{true: "static", false: "dynamic"}[tc.static])
			continue
		}
		err := CheckStatic(p)
		if tc.static && err != nil {
			t.Errorf("CheckStatic(%s) = %v", p, err)
		}
		if !tc.static && (!errors.Is(err, ErrNotStatic) || !strings.Contains(err.Error(), "ld-linux")) {
			t.Errorf("CheckStatic(%s) = %v, want ErrNotStatic naming ld-linux", p, err)
		}
	}
}

func TestRebuildStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP (-short): compiles this package's tests")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("SKIP: no go tool on PATH")
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	bin, err := rebuildStatic(context.Background(), wd, cache)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckStatic(bin); err != nil {
		t.Errorf("rebuilt test binary: %v", err)
	}
	// The binary really is this package's tests.
	out, err := exec.Command(bin, "-test.list", "^TestRebuildStatic$").Output()
	if err != nil || strings.TrimSpace(string(out)) != "TestRebuildStatic" {
		t.Errorf("%s -test.list = %q, %v", bin, out, err)
	}
	if again, err := rebuildStatic(context.Background(), wd, cache); err != nil || again != bin {
		t.Errorf("second rebuild = %q, %v; want the cached %q", again, err, bin)
	}
	ents, _ := os.ReadDir(filepath.Join(cache, "testbin"))
	if len(ents) != 1 {
		t.Errorf("testbin holds %d files, want 1 (temporary files must not be left)", len(ents))
	}
}

func TestBuildInitrd(t *testing.T) {
	dir := t.TempDir()
	// A base "initramfs" of odd length: what follows must start 4-aligned.
	base := filepath.Join(dir, "base.cpio.gz")
	if err := os.WriteFile(base, []byte("GZIPDATA!"), 0o644); err != nil {
		t.Fatal(err)
	}
	mods := moduleCache{Dir: filepath.Join(dir, "mods")}
	os.Mkdir(mods.Dir, 0o755)
	for name, data := range map[string]string{
		"kvm.ko": "K", "kvm-amd.ko": "A", "kvm_amd.load": "kvm.ko\nkvm-amd.ko\n",
		"llc.ko": "L", "bridge.ko": "B", "bridge.load": "llc.ko\nbridge.ko\n",
		"tun.ko": "T", "tun.load": "tun.ko\n", "complete": "x",
	} {
		if err := os.WriteFile(filepath.Join(mods.Dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "test.bin")
	extra := filepath.Join(dir, "ember")
	os.WriteFile(bin, []byte("BIN"), 0o600)
	os.WriteFile(extra, []byte("EMBER"), 0o755)
	out := filepath.Join(dir, "initrd")
	// veth has no .load: built into the kernel, nothing to ship.
	o := Options{Files: map[string]string{"ember": extra}, Guest: true, Modules: []string{"bridge", "veth"}}
	if err := buildInitrd(out, testguest.Assets{Initramfs: base}, mods, bin, o, "tok", "SCRIPT"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("GZIPDATA!\x00\x00\x00070701")) {
		t.Fatalf("initrd does not start with the base padded to 4 bytes: %q", b[:min(len(b), 20)])
	}
	files := map[string]cpioEntry{}
	for _, e := range readCPIO(t, b[12:]) {
		files[e.Name] = e
	}
	for name, want := range map[string]string{
		"init":                        string(l1Init),
		"nested/config":               "NESTED_TOKEN='tok'\nNESTED_GUEST_DISK=/dev/vda\nNESTED_MODULES='bridge veth'\n",
		"nested/run":                  "SCRIPT",
		"nested/bin/test":             "BIN",
		"nested/files/ember":          "EMBER",
		"nested/modules/kvm.ko":       "K",
		"nested/modules/kvm_amd.load": "kvm.ko\nkvm-amd.ko\n",
		"nested/modules/kvm-amd.ko":   "A",
		"nested/modules/bridge.load":  "llc.ko\nbridge.ko\n",
		"nested/modules/llc.ko":       "L",
	} {
		e, ok := files[name]
		if !ok {
			t.Errorf("initrd lacks %s", name)
			continue
		}
		if string(e.Data) != want {
			t.Errorf("%s = %q, want %q", name, e.Data, want)
		}
	}
	for _, name := range []string{"nested/modules/tun.ko", "nested/modules/tun.load", "nested/modules/complete"} {
		if _, ok := files[name]; ok {
			t.Errorf("initrd has %s, which was not asked for", name)
		}
	}
	if m := files["nested/bin/test"].Mode; m&0o111 == 0 {
		t.Errorf("test binary mode %o is not executable", m)
	}
	if m := files["init"].Mode; m != cpioRegular|0o755 {
		t.Errorf("init mode %o", m)
	}
	if err := buildInitrd(out, testguest.Assets{Initramfs: base}, mods, bin, o, "tok", "SCRIPT"); err == nil {
		t.Errorf("buildInitrd over an existing file succeeded")
	}
}
