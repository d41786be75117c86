package testguest

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRequireBuildsValidAssets(t *testing.T) {
	a := Require(t)
	if a.KernelVersion == "" || a.KernelPackage == "" || a.KernelPackageVersion == "" {
		t.Errorf("kernel identity incomplete: %+v", a)
	}
	t.Logf("kernel %s from %s %s", a.KernelVersion, a.KernelPackage, a.KernelPackageVersion)

	t.Run("vmlinux is ELF with a PVH entry note", func(t *testing.T) {
		head := readHead(t, a.Vmlinux, 4)
		if !bytes.Equal(head, []byte("\x7fELF")) {
			t.Fatalf("magic %q, want ELF", head)
		}
		entry, err := pvhEntry(a.Vmlinux)
		if err != nil {
			t.Fatal(err)
		}
		if entry == 0 {
			t.Fatal("PVH entry note holds address 0")
		}
	})
	t.Run("bzImage has the HdrS setup header", func(t *testing.T) {
		head := readHead(t, a.BzImage, 0x206)
		if got := string(head[0x202:0x206]); got != "HdrS" {
			t.Fatalf("setup header magic %q, want HdrS", got)
		}
	})
	t.Run("initramfs is a gzip'd cpio with init, test init and modules", func(t *testing.T) {
		if head := readHead(t, a.Initramfs, 2); !bytes.Equal(head, []byte{0x1f, 0x8b}) {
			t.Fatalf("magic % x, want gzip 1f 8b", head)
		}
		names, err := cpioNames(a.Initramfs)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"init", "sbin/init", "bin/busybox", "bin/sh", "dev/console",
			"lib/modules/" + a.KernelVersion + "/ember.load",
			"lib/modules/" + a.KernelVersion + "/modules.dep",
		} {
			if !names[want] {
				t.Errorf("initramfs lacks %s", want)
			}
		}
	})
	t.Run("rootfs is ext4 with the manifest's UUID", func(t *testing.T) {
		sb := readHead(t, a.Rootfs, 2048)[1024:]
		if magic := binary.LittleEndian.Uint16(sb[0x38:]); magic != 0xef53 {
			t.Fatalf("superblock magic %#x, want 0xef53", magic)
		}
		u := sb[0x68:0x78]
		got := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
		if got != a.RootfsUUID {
			t.Fatalf("file system UUID %s, manifest says %s", got, a.RootfsUUID)
		}
	})
	t.Run("second build is a no-op", func(t *testing.T) {
		root, err := repoRoot()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("bash", filepath.Join(root, "guest", "build.sh"), "--check")
		cmd.Env = append(os.Environ(), "EMBER_GUEST_DIR="+a.Dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build.sh --check after Require: %v\n%s", err, out)
		}
	})
}

func readHead(t *testing.T, path string, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

// pvhEntry returns the 32-bit entry point of the Xen PHYS32_ENTRY note
// (type 18) that PVH boot uses.
func pvhEntry(path string) (uint64, error) {
	f, err := elf.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			return 0, err
		}
		for len(data) >= 12 {
			namesz := int(binary.LittleEndian.Uint32(data[0:]))
			descsz := int(binary.LittleEndian.Uint32(data[4:]))
			typ := binary.LittleEndian.Uint32(data[8:])
			nameEnd := 12 + (namesz+3)&^3
			descEnd := nameEnd + (descsz+3)&^3
			if namesz < 0 || descsz < 0 || descEnd > len(data) {
				break
			}
			name := strings.TrimRight(string(data[12:12+namesz]), "\x00")
			if name == "Xen" && typ == 18 {
				desc := data[nameEnd : nameEnd+descsz]
				switch len(desc) {
				case 4:
					return uint64(binary.LittleEndian.Uint32(desc)), nil
				case 8:
					return binary.LittleEndian.Uint64(desc), nil
				}
				return 0, fmt.Errorf("PVH note has a %d-byte address", len(desc))
			}
			data = data[descEnd:]
		}
	}
	return 0, errors.New("no Xen PHYS32_ENTRY (PVH) note")
}

// cpioNames lists the entries of a gzip'd newc archive.
func cpioNames(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		if off+110 > len(data) || string(data[off:off+6]) != "070701" {
			return nil, fmt.Errorf("bad newc header at %d", off)
		}
		field := func(i int) (int, error) {
			v, err := strconv.ParseUint(string(data[off+6+8*i:off+14+8*i]), 16, 32)
			return int(v), err
		}
		size, err1 := field(6)
		namesize, err2 := field(11)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		nameEnd := off + 110 + namesize
		if namesize < 1 || nameEnd > len(data) {
			return nil, fmt.Errorf("bad name size at %d", off)
		}
		name := string(data[off+110 : nameEnd-1])
		if name == "TRAILER!!!" {
			return names, nil
		}
		names[strings.TrimPrefix(name, "./")] = true
		off = align(align(nameEnd) + size)
	}
}

func TestRootfsCopyIsPrivate(t *testing.T) {
	a := Require(t)
	orig, err := os.ReadFile(a.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	p := RootfsCopy(t)
	if p == a.Rootfs || filepath.Dir(p) == a.Dir {
		t.Fatalf("copy %s is not private", p)
	}
	cp, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig, cp) {
		t.Fatal("copy differs from the original")
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("copy not writable: %v", err)
	}
	if _, err := f.WriteAt([]byte("scribble"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	after, err := os.ReadFile(a.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig, after) {
		t.Fatal("writing the copy changed the shared image")
	}
	if p2 := RootfsCopy(t); p2 == p {
		t.Fatalf("two copies share the path %s", p)
	}
}

func TestParseManifest(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"vmlinux", "bzImage", "initramfs.cpio.gz", "rootfs.ext4"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	outputs := func(names ...string) string {
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintf(&b, "output %s 00ff 1 2 3\n", n)
		}
		return b.String()
	}
	const head = "# comment\nformat 1\nkernel_release 6.1.0-9-cloud-amd64\n" +
		"kernel_package linux-image-6.1.0-9-cloud-amd64\nkernel_package_version 6.1.1-1\n" +
		"rootfs_uuid 01234567-89ab-cdef-0123-456789abcdef\n"
	all := outputs("vmlinux", "bzImage", "initramfs.cpio.gz", "rootfs.ext4")
	tests := []struct {
		name, text, wantErr string
	}{
		{"complete", head + all, ""},
		{"blank lines and comments", "\n\n" + head + "\n# x\n" + all, ""},
		{"empty", "", "format"},
		{"other format", strings.Replace(head, "format 1", "format 2", 1) + all, `format "2"`},
		{"no kernel release", strings.Replace(head, "kernel_release 6.1.0-9-cloud-amd64\n", "", 1) + all, "kernel_release"},
		{"key without value", head + "rootfs_label\n" + all, "has no value"},
		{"short output line", head + "output vmlinux abc\n", "output NAME"},
		{"missing output", head + outputs("vmlinux", "bzImage", "rootfs.ext4"), "initramfs.cpio.gz"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := parseManifest(dir, strings.NewReader(tc.text))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if a.KernelVersion != "6.1.0-9-cloud-amd64" || a.Vmlinux != filepath.Join(dir, "vmlinux") ||
					a.RootfsUUID != "01234567-89ab-cdef-0123-456789abcdef" || a.KernelPackageVersion != "6.1.1-1" {
					t.Fatalf("parsed %+v", a)
				}
				return
			}
			if !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want ErrManifest mentioning %q", err, tc.wantErr)
			}
		})
	}
	t.Run("output file missing on disk", func(t *testing.T) {
		other := t.TempDir()
		_, err := parseManifest(other, strings.NewReader(head+all))
		if !errors.Is(err, ErrManifest) || !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "no such file") {
			t.Fatalf("error %v, want ErrManifest for a missing file", err)
		}
	})
	t.Run("no manifest", func(t *testing.T) {
		if _, err := ReadManifest(t.TempDir()); !errors.Is(err, ErrManifest) {
			t.Fatalf("error %v, want ErrManifest", err)
		}
	})
}

func TestSwitches(t *testing.T) {
	tests := []struct{ got, want string }{
		{Net("10.0.0.2/30"), "ember.net=10.0.0.2/30"},
		{NetOn("eth1", "10.0.1.2/24"), "ember.net=10.0.1.2/24@eth1"},
		{Gateway("10.0.0.1"), "ember.gw=10.0.0.1"},
		{Ping("10.0.0.1"), "ember.ping=10.0.0.1"},
		{Counter(), "ember.counter=1"},
		{MemInfo(), "ember.meminfo=1"},
		{MemInfoEvery(250), "ember.meminfo=250ms"},
		{End(EndReboot), "ember.end=reboot"},
		{Script(""), "ember.sh="},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, sh := range []string{"echo hi", "a='x y'; echo \"$a\" > /tmp/f\nsync\n", "printf '\\377\\000'"} {
		s := Script(sh)
		if strings.ContainsAny(s, " \t\n\"") {
			t.Errorf("Script(%q) = %q: the kernel would split or unquote it", sh, s)
		}
		dec, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "ember.sh="))
		if err != nil || string(dec) != sh {
			t.Errorf("Script(%q) decodes to %q, %v", sh, dec, err)
		}
	}
}

func TestHostTSCkHz(t *testing.T) {
	khz, err := HostTSCkHz()
	if err != nil {
		t.Skipf("SKIP: host TSC rate unknown here: %v", err)
	}
	if khz < 100_000 || khz > 10_000_000 {
		t.Fatalf("host TSC %d kHz is implausible", khz)
	}
	if got, want := TSCEarlyArg(), "tsc_early_khz="+strconv.Itoa(khz); got != want {
		t.Fatalf("TSCEarlyArg() = %q, want %q", got, want)
	}
}

func TestConsole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	c := NewConsole(pr)
	go func() {
		io.WriteString(pw, "boot noise\r\nEMBER-GUEST: init\nEMBER-GUEST: tick 1\n")
		time.Sleep(20 * time.Millisecond)
		io.WriteString(pw, "EMBER-GUEST: tick 2\nEMBER-GUEST: tick 3\npartial")
		pw.Close()
	}()
	line, err := c.Wait(ctx, MarkerInit)
	if err != nil || line != MarkerInit {
		t.Fatalf("Wait init = %q, %v", line, err)
	}
	i, line, err := c.WaitFrom(ctx, 0, "tick")
	if err != nil || line != "EMBER-GUEST: tick 1" {
		t.Fatalf("first tick = %q, %v", line, err)
	}
	_, line, err = c.WaitFrom(ctx, i+1, "tick")
	if err != nil || line != "EMBER-GUEST: tick 2" {
		t.Fatalf("next tick = %q, %v", line, err)
	}
	if _, err := c.Wait(ctx, "never printed"); !errors.Is(err, ErrConsoleClosed) {
		t.Fatalf("wait past EOF: %v, want ErrConsoleClosed", err)
	}
	<-c.Done()
	if got := c.Lines(); len(got) != 6 || got[0] != "boot noise" || got[5] != "partial" {
		t.Fatalf("lines %q", got)
	}
	if c.Err() != nil {
		t.Fatalf("Err after EOF = %v", c.Err())
	}
	if got := c.Tail(2); got != "EMBER-GUEST: tick 3\npartial" {
		t.Fatalf("Tail(2) = %q", got)
	}

	t.Run("context ends the wait", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		c := NewConsole(pr)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := c.Wait(ctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want deadline", err)
		}
	})
}
