package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// A command line in the form ember's qemu backend logs it at Debug.
const loggedIOCommand = `2026-11-25T19:32:58.934359192 [anonymous-instance:main] qemu command: /usr/bin/qemu-system-x86_64 -no-user-config -nodefaults -display none -machine microvm,acpi=on,isa-serial=off -accel tcg -d cpu_reset -D /dev/fd/3 -cpu max -smp cpus=1,sockets=1,cores=1,threads=1 -m 128M -global virtio-mmio.force-legacy=false -S -action reboot=shutdown,shutdown=pause -chardev socket,id=qmp,fd=4 -mon chardev=qmp,mode=control -chardev socket,id=console,fd=5 -device '{"chardev":"console","driver":"isa-serial","index":0}' -device i8042 -kernel /dev/fd/6 -initrd /dev/fd/7 -append 'console=ttyS0 reboot=k panic=1 pci=off quiet ember.sh=ZWNobyAnaGknCg== pci=off tsc_early_khz=2096021' -blockdev '{"cache":{"direct":false,"no-flush":true},"driver":"raw","file":{"aio":"threads","cache":{"direct":false,"no-flush":true},"driver":"file","filename":"/tmp/x/ember-scratch.img","locking":"off","node-name":"drive0-file0","read-only":false},"node-name":"drive0","read-only":false}' -device '{"bus":"virtio-mmio-bus.23","config-wce":false,"discard":false,"drive":"drive0","driver":"virtio-blk-device","id":"blk0","indirect_desc":false,"num-queues":1,"rerror":"report","serial":"6402912345","werror":"report","write-cache":"off","write-zeroes":false}' -netdev '{"fd":"8","id":"net0","type":"tap","vhost":false}' -device '{"bus":"virtio-mmio-bus.22","driver":"virtio-net-device","id":"net0-dev","mac":"06:00:ac:10:cb:02","netdev":"net0"}' -object '{"qom-type":"memory-backend-ram","id":"ram","size":134217728}'`

func TestEmberQEMUArgvAndBareArgv(t *testing.T) {
	argv, err := emberQEMUArgv(loggedIOCommand)
	if err != nil {
		t.Fatal(err)
	}
	if argv[0] != "/usr/bin/qemu-system-x86_64" || !slices.Contains(argv, "-append") {
		t.Fatalf("parsed argv looks wrong: %q", argv)
	}
	i := slices.Index(argv, "-append")
	if want := "console=ttyS0 reboot=k panic=1 pci=off quiet ember.sh=ZWNobyAnaGknCg== pci=off tsc_early_khz=2096021"; argv[i+1] != want {
		t.Errorf("-append %q, want %q", argv[i+1], want)
	}

	bare, err := bareArgv(argv, bareInputs{
		Kernel: "/g/vmlinux", Initrd: "/g/initramfs.cpio.gz",
		Drives: map[string]string{"/tmp/x/ember-scratch.img": "/tmp/x/bare-scratch.img"},
		Taps:   []string{"benchtap0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(bare, "\n")
	for _, gone := range []string{"-S", "qmp", "-mon", "cpu_reset", "-D", "/dev/fd/", `"fd"`, "ember-scratch"} {
		for _, a := range bare {
			if a == gone || (len(gone) > 2 && strings.Contains(a, gone)) {
				t.Errorf("bare argv still has %q (in %q)", gone, a)
			}
		}
	}
	for _, want := range []string{
		"stdio,id=console,signal=off", "/g/vmlinux", "/g/initramfs.cpio.gz", "/tmp/x/bare-scratch.img",
		`"ifname":"benchtap0"`, `"script":"no"`, `"downscript":"no"`,
		// Numbers stay exact through the JSON rewrite, and untouched options stay.
		`"size":134217728`, "tsc_early_khz=2096021", "microvm,acpi=on,isa-serial=off", "-cpu\nmax", "i8042",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("bare argv lacks %q:\n%s", want, joined)
		}
	}
}

func TestBareArgvRefusesUnknownDescriptors(t *testing.T) {
	tests := []struct {
		name string
		argv []string
		in   bareInputs
	}{
		{"object on a descriptor", []string{"q", "-object", `{"qom-type":"memory-backend-file","id":"m","mem-path":"/dev/fd/9"}`}, bareInputs{}},
		{"add-fd", []string{"q", "-add-fd", "fd=9,set=1"}, bareInputs{}},
		{"drive on a descriptor", []string{"q", "-blockdev", `{"driver":"raw","file":{"driver":"file","filename":"/dev/fd/9"}}`}, bareInputs{}},
		{"tap without a name", []string{"q", "-netdev", `{"type":"tap","id":"n","fd":"9"}`}, bareInputs{}},
		{"taps left over", []string{"q", "-m", "128M"}, bareInputs{Taps: []string{"t0"}}},
		{"kernel without a path", []string{"q", "-kernel", "/dev/fd/5"}, bareInputs{}},
		{"option without value", []string{"q", "-m"}, bareInputs{}},
		{"stray word", []string{"q", "oops"}, bareInputs{}},
		{"empty", nil, bareInputs{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := bareArgv(tc.argv, tc.in); !errors.Is(err, ErrArgv) {
				t.Fatalf("bareArgv = %q, %v; want ErrArgv", got, err)
			}
		})
	}
}

func TestSplitShellRoundTrip(t *testing.T) {
	cases := [][]string{
		{"a", "b c", "it's", `{"k":"v w"}`, "$HOME", "x\\y", "tab\there", "semi;colon"},
		{"/usr/bin/q", "-append", "console=ttyS0 quiet"},
	}
	for _, argv := range cases {
		got, err := splitShell(shellJoin(argv))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, argv) {
			t.Errorf("round trip of %q gave %q", argv, got)
		}
	}
	got, err := splitShell(`a "b \"c\" d" e\ f ''`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", `b "c" d`, "e f", ""}; !slices.Equal(got, want) {
		t.Errorf("splitShell = %q, want %q", got, want)
	}
	for _, bad := range []string{`a 'b`, `a "b`, `a \`} {
		if _, err := splitShell(bad); !errors.Is(err, ErrArgv) {
			t.Errorf("splitShell(%q) err = %v, want ErrArgv", bad, err)
		}
	}
	if _, err := emberQEMUArgv("no command here"); !errors.Is(err, ErrArgv) {
		t.Errorf("emberQEMUArgv without the prefix: %v", err)
	}
}
