package qemu

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ember-vmm/ember/internal/hypervisor"
)

// FuzzBuildPlan builds QEMU's command line from a Spec whose user strings
// (kernel and initrd paths, boot arguments, drive paths, ids, serials,
// MACs) are arbitrary bytes, commas, equals signs, quotes, newlines and
// NULs included, and whose shape (vCPUs, memory, devices, flags) comes from
// fuzz bytes. The builder may refuse a Spec; when it does not, no user
// string may add an option: every argument is a known option or the value
// of one; key=value values are fixed text with numbers; every -blockdev,
// -device, -netdev and -object value that is JSON is exactly one JSON
// object whose keys are the builder's own and whose user-supplied members
// decode to the user's string; boot files are passed as descriptors and
// never by name; the boot arguments reach -append as one argument.
func FuzzBuildPlan(f *testing.F) {
	f.Add([]byte{2, 1, 0x1f, 2, 2, 0xff, 0}, "/images/vmlinux", "/images/initrd", "console=ttyS0 -- init", "/disk,x=y", "rootfs", "1234", "06:00:00:00:00:01", uint64(3000000))
	f.Add([]byte{1, 0, 0, 1, 0, 0}, "k", "", "", `a"},{"driver":"x`, "id", "", "", uint64(0))
	f.Add([]byte{33, 0xff, 0xff, 9, 9}, "k\x00", "i\n", "a\x00b\nc", "p,file.driver=ssh,,", "x=y,z", "s\"}", "m,n", uint64(1))
	f.Add([]byte{2, 1, 0x14, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3}, "/k", "", "console=ttyS0", "/v\",x", "id", "", "", uint64(0))
	f.Fuzz(func(t *testing.T, shape []byte, kernel, initrd, cmdline, path, id, serial, mac string, tsc uint64) {
		spec, in := specFrom(shape, kernel, initrd, cmdline, path, id, serial, mac, tsc)
		p, err := buildPlan(spec, in)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("refusal without text")
			}
			return
		}
		checkPlan(t, spec, in, p)
	})
}

// byteAt returns b[i], or 0 past its end.
func byteAt(b []byte, i int) byte {
	if i < len(b) {
		return b[i]
	}
	return 0
}

func specFrom(shape []byte, kernel, initrd, cmdline, path, id, serial, mac string, tsc uint64) (*hypervisor.Spec, launchInputs) {
	flags := byteAt(shape, 2)
	spec := &hypervisor.Spec{
		ID:     id,
		VCPUs:  byteAt(shape, 0),
		MemMiB: uint64(byteAt(shape, 1)) << (byteAt(shape, 5) % 40),
		SMT:    flags&1 != 0,
		Boot:   hypervisor.Boot{KernelPath: kernel, InitrdPath: initrd, Cmdline: cmdline},
	}
	spec.HugePages = []hypervisor.HugePages{"", hypervisor.HugePagesNone, hypervisor.HugePagesTransparent, hypervisor.HugePages2M}[flags>>1&3]
	if flags&8 != 0 {
		spec.Balloon = &hypervisor.Balloon{AmountMiB: 1, DeflateOnOOM: flags&32 != 0, FreePageReporting: flags&64 != 0}
	}
	if flags&16 != 0 {
		spec.Entropy = &hypervisor.Entropy{}
	}
	// ember's own devices over vhost-user (their sockets are descriptors;
	// uds_path is the device's and never reaches QEMU).
	if vf := byteAt(shape, 15); vf&1 != 0 {
		spec.Vsock = &hypervisor.Vsock{GuestCID: 3, UDSPath: "/run/ember-vsock-" + path}
	}
	if vf := byteAt(shape, 15); vf&2 != 0 {
		if spec.Entropy == nil {
			spec.Entropy = &hypervisor.Entropy{}
		}
		spec.Entropy.RateLimiter = &hypervisor.RateLimiter{Ops: &hypervisor.TokenBucket{Size: 1, RefillTimeMs: 1}}
	}
	in := launchInputs{Accel: []accel{accelTCG, accelKVM, accelHVF}[int(byteAt(shape, 6))%3], TSCkHz: tsc}
	for i := 0; i < int(byteAt(shape, 3))%4; i++ {
		df := byteAt(shape, 7+i)
		spec.Drives = append(spec.Drives, hypervisor.Drive{
			ID: id + strconv.Itoa(i), PathOnHost: path + strings.Repeat(",", i),
			Root: df&1 != 0, ReadOnly: df&2 != 0,
			Cache:    []hypervisor.CacheType{"", hypervisor.CacheUnsafe, hypervisor.CacheWriteback}[int(df>>2)%3],
			IOEngine: []hypervisor.IOEngine{"", hypervisor.IOSync, hypervisor.IOAsync}[int(df>>4)%3],
		})
		in.DriveSerials = append(in.DriveSerials, serial)
	}
	for i := 0; i < int(byteAt(shape, 4))%4; i++ {
		spec.Nets = append(spec.Nets, hypervisor.Net{ID: id, TapName: path, Tap: tapPlaceholder, GuestMAC: mac, MTU: uint16(byteAt(shape, 11+i)) * 97})
		in.Taps = append(in.Taps, nil)
		in.MACs = append(in.MACs, mac)
	}
	return spec, in
}

// Options the builder uses, with whether each takes a value.
var planOptions = map[string]bool{
	"-no-user-config": false, "-nodefaults": false, "-S": false,
	"-display": true, "-machine": true, "-accel": true, "-cpu": true, "-smp": true, "-m": true,
	"-global": true, "-action": true, "-chardev": true, "-mon": true, "-device": true,
	"-object": true, "-blockdev": true, "-netdev": true, "-kernel": true, "-initrd": true,
	"-append": true, "-d": true, "-D": true, "-sandbox": true,
}

// Values of non-JSON options: fixed text and numbers only.
var plainValue = map[string]*regexp.Regexp{
	"-display": regexp.MustCompile(`^none$`),
	"-machine": regexp.MustCompile(`^microvm,acpi=on,isa-serial=off(,memory-backend=ram)?$`),
	"-accel":   regexp.MustCompile(`^(tcg|kvm|hvf)$`),
	"-cpu":     regexp.MustCompile(`^(host|max|max,vendor=GenuineIntel)$`),
	"-smp":     regexp.MustCompile(`^cpus=\d+,sockets=1,cores=\d+,threads=[12]$`),
	"-m":       regexp.MustCompile(`^\d+M$`),
	"-global":  regexp.MustCompile(`^virtio-mmio\.force-legacy=false$`),
	"-action":  regexp.MustCompile(`^reboot=shutdown,shutdown=pause$`),
	"-chardev": regexp.MustCompile(`^socket,id=(qmp|console|vu-vsock|vu-rng),fd=\d+$`),
	"-mon":     regexp.MustCompile(`^chardev=qmp,mode=control$`),
	"-kernel":  regexp.MustCompile(`^/dev/fd/\d+$`),
	"-initrd":  regexp.MustCompile(`^/dev/fd/\d+$`),
	"-d":       regexp.MustCompile(`^cpu_reset$`),
	"-D":       regexp.MustCompile(`^/dev/fd/\d+$`),
	"-sandbox": regexp.MustCompile(`^on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny$`),
}

// Keys each JSON option value may have, by its driver (or qom-type, or
// netdev type).
var jsonKeys = map[string][]string{
	"isa-serial":            {"driver", "chardev", "index"},
	"virtio-balloon-device": {"driver", "id", "bus", "deflate-on-oom", "free-page-reporting", "page-poison", "indirect_desc", "event_idx"},
	"virtio-blk-device":     {"driver", "id", "bus", "drive", "write-cache", "num-queues", "discard", "write-zeroes", "config-wce", "indirect_desc", "werror", "rerror", "serial"},
	"virtio-net-device": {"driver", "id", "bus", "netdev", "mac", "ctrl_vq", "ctrl_rx", "ctrl_vlan", "ctrl_rx_extra", "ctrl_mac_addr",
		"ctrl_guest_offloads", "guest_announce", "mq", "status", "gso", "guest_ecn", "host_ecn", "indirect_desc", "host_mtu"},
	"virtio-rng-device":       {"driver", "id", "bus", "rng", "indirect_desc", "event_idx"},
	"vhost-user-vsock-device": {"driver", "id", "bus", "chardev", "seqpacket", "indirect_desc", "queue_reset"},
	"vhost-user-rng":          {"driver", "id", "bus", "chardev", "indirect_desc", "event_idx", "queue_reset"},
	"raw":                     {"driver", "node-name", "file", "read-only", "cache"},
	"file":                    {"driver", "node-name", "filename", "aio", "read-only", "cache", "locking"},
	"tap":                     {"type", "id", "fd", "vhost"},
	"rng-random":              {"qom-type", "id", "filename"},
	"memory-backend-memfd":    {"qom-type", "id", "size", "share", "hugetlb", "hugetlbsize"},
	"memory-backend-ram":      {"qom-type", "id", "size"},
}

// asJSON is how encoding/json (and so QEMU) reads back a Go string: each
// byte that is not UTF-8 becomes U+FFFD.
func asJSON(s string) string { return string([]rune(s)) }

func checkPlan(t *testing.T, spec *hypervisor.Spec, in launchInputs, p *plan) {
	t.Helper()
	counts := map[string]int{}
	var appendArg []string
	for i := 0; i < len(p.args); i++ {
		opt := p.args[i]
		takes, known := planOptions[opt]
		if !known {
			t.Fatalf("argument %d %q is not an option the builder uses: %q", i, opt, p.args)
		}
		counts[opt]++
		if !takes {
			continue
		}
		if i+1 >= len(p.args) {
			t.Fatalf("option %s without a value", opt)
		}
		i++
		val := p.args[i]
		switch opt {
		case "-append":
			appendArg = append(appendArg, val)
		case "-device", "-object", "-blockdev", "-netdev":
			if opt == "-device" && val == "i8042" {
				continue
			}
			checkJSONArg(t, opt, val, spec, in)
		default:
			if !plainValue[opt].MatchString(val) {
				t.Fatalf("%s %q carries more than the builder's own text", opt, val)
			}
			if opt == "-kernel" && p.fdPaths[val] != spec.Boot.KernelPath || opt == "-initrd" && p.fdPaths[val] != spec.Boot.InitrdPath {
				t.Fatalf("%s %s maps to %q", opt, val, p.fdPaths[val])
			}
		}
	}
	// Exactly the devices the Spec asks for: none added, none lost.
	wantDevices := 2 + len(spec.Drives) + len(spec.Nets) // with isa-serial and i8042
	if spec.Balloon != nil {
		wantDevices++
	}
	if spec.Entropy != nil {
		wantDevices++
	}
	if spec.Vsock != nil {
		wantDevices++
		for _, a := range p.args {
			if strings.Contains(a, spec.Vsock.UDSPath) {
				t.Fatalf("vsock uds_path reached QEMU in %q", a)
			}
		}
	}
	if counts["-device"] != wantDevices || counts["-blockdev"] != len(spec.Drives) || counts["-netdev"] != len(spec.Nets) {
		t.Fatalf("option counts %v for %d drives, %d nets", counts, len(spec.Drives), len(spec.Nets))
	}
	if counts["-kernel"] != 1 || counts["-initrd"] != b2i(spec.Boot.InitrdPath != "") || len(appendArg) != 1 {
		t.Fatalf("option counts %v", counts)
	}
	checkAppend(t, spec.Boot.Cmdline, in.TSCkHz, appendArg[0])
	for _, a := range p.args {
		for _, user := range []string{spec.Boot.KernelPath, spec.Boot.InitrdPath} {
			if len(user) > 8 && strings.Contains(a, user) && !strings.Contains(spec.Boot.Cmdline, user) {
				t.Fatalf("boot file path %q appears in argument %q", user, a)
			}
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func checkJSONArg(t *testing.T, opt, val string, spec *hypervisor.Spec, in launchInputs) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(val), &m); err != nil || !strings.HasPrefix(val, "{") {
		t.Fatalf("%s %q is not one JSON object: %v", opt, val, err)
	}
	kind, _ := m["driver"].(string)
	if opt == "-object" {
		kind, _ = m["qom-type"].(string)
	}
	if opt == "-netdev" {
		kind, _ = m["type"].(string)
	}
	allowed, ok := jsonKeys[kind]
	if !ok {
		t.Fatalf("%s of unknown kind %q: %s", opt, kind, val)
	}
	for k := range m {
		if !slices.Contains(allowed, k) {
			t.Fatalf("%s %s has key %q", opt, kind, k)
		}
	}
	switch kind {
	case "virtio-blk-device":
		if s, ok := m["serial"]; ok && (s != asJSON(in.DriveSerials[0]) || in.DriveSerials[0] == "") {
			t.Fatalf("serial %q, user gave %q", s, in.DriveSerials[0])
		}
	case "virtio-net-device":
		if m["mac"] != asJSON(in.MACs[0]) {
			t.Fatalf("mac %q, user gave %q", m["mac"], in.MACs[0])
		}
	case "raw":
		file, ok := m["file"].(map[string]any)
		if !ok {
			t.Fatalf("raw node without a nested file node: %s", val)
		}
		for k := range file {
			if !slices.Contains(jsonKeys["file"], k) {
				t.Fatalf("file node has key %q", k)
			}
		}
		name, _ := file["filename"].(string)
		found := false
		for _, d := range spec.Drives {
			found = found || name == asJSON(d.PathOnHost)
		}
		if !found || file["driver"] != "file" {
			t.Fatalf("file node %v names no drive of the spec", file)
		}
	}
}

// checkAppend checks that the boot arguments reach -append as given, with
// at most the TSC rate added to the kernel part.
func checkAppend(t *testing.T, cmdline string, tsc uint64, got string) {
	t.Helper()
	if tsc == 0 {
		if got != cmdline {
			t.Fatalf("-append %q, boot arguments %q", got, cmdline)
		}
		return
	}
	// Words after the first "--" word are init's. Words are split the way
	// the kernel's parser splits them: on its isspace bytes (Linux's ctype
	// table: space, \t, \n, \v, \f, \r and Latin-1's 0xa0), byte by byte.
	words := func(s string) []string {
		var out []string
		start := -1
		for i := 0; i <= len(s); i++ {
			sep := i == len(s) || strings.IndexByte(" \t\n\v\f\r\xa0", s[i]) >= 0
			switch {
			case sep && start >= 0:
				out = append(out, s[start:i])
				start = -1
			case !sep && start < 0:
				start = i
			}
		}
		return out
	}
	split := func(s string) (kernel, init []string, has bool) {
		f := words(s)
		if i := slices.Index(f, "--"); i >= 0 {
			return f[:i], f[i+1:], true
		}
		return f, nil, false
	}
	_, wantInit, hasInit := split(cmdline)
	gotKernelWords, gotInit, gotHasInit := split(got)
	gotKernel := strings.Join(gotKernelWords, " ")
	if hasInit != gotHasInit || !slices.Equal(gotInit, wantInit) {
		t.Fatalf("-append %q lost the init arguments of %q", got, cmdline)
	}
	if got != cmdline && !slices.Contains(words(gotKernel), tscArg(tsc)) {
		t.Fatalf("-append %q changed %q without adding %s", got, cmdline, tscArg(tsc))
	}
}
