package qemu

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/logger"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// inputsFor fills launch inputs with placeholders matching spec.
func inputsFor(spec *hypervisor.Spec, a accel, tsc uint64) launchInputs {
	in := launchInputs{Accel: a, TSCkHz: tsc}
	if usesVhostUser(spec) {
		in.RAM = tapPlaceholder // as guestRAM's memfd
	}
	for i := range spec.Drives {
		in.DriveSerials = append(in.DriveSerials, "2049"+strings.Repeat("0", i)+"1234")
	}
	for i, n := range spec.Nets {
		if goNet(&n) {
			if in.NetVU == nil {
				in.NetVU = make([]string, len(spec.Nets))
			}
			in.NetVU[i] = "/run/ember,x/vhost-user-" + strconv.Itoa(i) + ".sock"
		}
		in.Taps = append(in.Taps, nil)
		mac := n.GuestMAC
		if mac == "" {
			mac = "0a:00:00:00:00:99"
		}
		in.MACs = append(in.MACs, mac)
	}
	return in
}

// tapPlaceholder stands for an open tap in specs the builder only reads.
var tapPlaceholder, _ = os.Open(os.DevNull)

func minimalSpec() *hypervisor.Spec {
	return &hypervisor.Spec{
		VCPUs: 1, MemMiB: 128,
		Boot: hypervisor.Boot{KernelPath: "/images/vmlinux", Cmdline: "console=ttyS0 reboot=k panic=1 pci=off"},
	}
}

func fullSpec() *hypervisor.Spec {
	return &hypervisor.Spec{
		ID: "full", VCPUs: 2, MemMiB: 512, SMT: true, HugePages: hypervisor.HugePages2M,
		Boot: hypervisor.Boot{
			KernelPath: "/images/bzImage", InitrdPath: "/images/initrd.cpio.gz",
			Cmdline: "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda rw -- init-arg",
		},
		Balloon: &hypervisor.Balloon{AmountMiB: 64, DeflateOnOOM: true, StatsPollingIntervalS: 1, FreePageReporting: true},
		Drives: []hypervisor.Drive{
			{ID: "rootfs", PathOnHost: "/images/rootfs.ext4", Root: true, Cache: hypervisor.CacheWriteback, IOEngine: hypervisor.IOAsync},
			{ID: "data", PathOnHost: "/images/data.img", ReadOnly: true, Cache: hypervisor.CacheUnsafe, IOEngine: hypervisor.IOSync},
		},
		Nets: []hypervisor.Net{
			{ID: "eth0", TapName: "tap0", Tap: tapPlaceholder, GuestMAC: "06:00:AC:10:00:02", MTU: 1400},
			{ID: "eth1", TapName: "tap1", Tap: tapPlaceholder},
		},
		Entropy: &hypervisor.Entropy{},
	}
}

// vhostUserSpec mixes devices on ember's models (a limited drive, an MMDS
// interface, a limited interface, vsock, a limited entropy device) with
// devices on QEMU's own paths, over 2 MiB huge pages.
func vhostUserSpec() *hypervisor.Spec {
	lim := &hypervisor.RateLimiter{Bandwidth: &hypervisor.TokenBucket{Size: 1 << 20, RefillTimeMs: 1000}}
	return &hypervisor.Spec{
		ID: "vhost-user", VCPUs: 1, MemMiB: 256, HugePages: hypervisor.HugePages2M,
		Boot: hypervisor.Boot{KernelPath: "/images/vmlinux", Cmdline: "console=ttyS0 reboot=k panic=1"},
		Drives: []hypervisor.Drive{
			{ID: "rootfs", PathOnHost: "/images/rootfs.ext4", Root: true},
			{ID: "scratch", PathOnHost: "/images/scratch.img", RateLimiter: lim},
		},
		Nets: []hypervisor.Net{
			{ID: "eth0", TapName: "tap0", Tap: tapPlaceholder, GuestMAC: "06:00:ac:10:00:02", MMDS: &hypervisor.MMDS{Version: "V2", IPv4: "169.254.169.254"}},
			{ID: "eth1", TapName: "tap1", Tap: tapPlaceholder},
			{ID: "eth2", TapName: "tap2", Tap: tapPlaceholder, MTU: 1400, TxLimiter: lim},
		},
		Vsock:   &hypervisor.Vsock{GuestCID: 3, UDSPath: "/run/v.sock"},
		Entropy: &hypervisor.Entropy{RateLimiter: lim},
	}
}

func TestArgvGolden(t *testing.T) {
	shared := vhostUserSpec()
	shared.HugePages = hypervisor.HugePagesNone
	shared.Drives = shared.Drives[1:]
	shared.Nets = nil
	shared.Vsock, shared.Entropy = nil, nil
	vsockOnly := minimalSpec()
	vsockOnly.Vsock = &hypervisor.Vsock{GuestCID: 3, UDSPath: "/run/v.sock"}
	vsockOnly.Entropy = &hypervisor.Entropy{}
	thp := minimalSpec()
	thp.HugePages = hypervisor.HugePagesTransparent
	thp.VCPUs = 4
	tests := []struct {
		name  string
		spec  *hypervisor.Spec
		accel accel
		tsc   uint64
	}{
		{"minimal-tcg", minimalSpec(), accelTCG, 2096021},
		{"minimal-kvm", minimalSpec(), accelKVM, 0},
		{"thp-hvf", thp, accelHVF, 0},
		{"full-tcg", fullSpec(), accelTCG, 3000000},
		{"vhost-user-hugepages-tcg", vhostUserSpec(), accelTCG, 0},
		{"vhost-user-drive-kvm", shared, accelKVM, 0},
		{"vsock-kvm", vsockOnly, accelKVM, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := buildPlan(tc.spec, inputsFor(tc.spec, tc.accel, tc.tsc))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, a := range p.args {
				b.WriteString(a)
				b.WriteByte('\n')
			}
			b.WriteString("# passed descriptors: ")
			b.WriteString(strings.Repeat("x", len(p.files)))
			b.WriteByte('\n')
			got := b.String()
			golden := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("argv differs from %s (run with -update after checking):\n--- got\n%s--- want\n%s", golden, got, want)
			}
			for i, a := range p.args {
				if strings.HasPrefix(a, "{") && !json.Valid([]byte(a)) {
					t.Errorf("argument %d is not valid JSON: %s", i, a)
				}
			}
		})
	}
}

// TestArgvStructure checks the properties the golden files are meant to
// hold, so a careless -update cannot bless a broken command line.
func TestArgvStructure(t *testing.T) {
	spec := fullSpec()
	p, err := buildPlan(spec, inputsFor(spec, accelTCG, 3000000))
	if err != nil {
		t.Fatal(err)
	}
	opt := func(name string) []string {
		var vals []string
		for i := 0; i+1 < len(p.args); i++ {
			if p.args[i] == name {
				vals = append(vals, p.args[i+1])
			}
		}
		return vals
	}
	has := func(name string) bool {
		for _, a := range p.args {
			if a == name {
				return true
			}
		}
		return false
	}
	if !has("-S") {
		t.Error("QEMU must start paused (-S)")
	}
	if got := opt("-append"); len(got) != 1 || got[0] != "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda rw tsc_early_khz=3000000 -- init-arg" {
		t.Errorf("-append %q", got)
	}
	if got := opt("-smp"); len(got) != 1 || !strings.Contains(got[0], "threads=2") {
		t.Errorf("SMT not applied: %q", got)
	}
	// Devices take virtio-mmio slots top-down in attach order.
	var buses []string
	var drivers []string
	for _, d := range opt("-device") {
		var v map[string]any
		if json.Unmarshal([]byte(d), &v) != nil {
			continue
		}
		if b, ok := v["bus"].(string); ok {
			buses = append(buses, b)
			drivers = append(drivers, v["driver"].(string))
		}
	}
	wantDrivers := []string{"virtio-balloon-device", "virtio-blk-device", "virtio-blk-device", "virtio-net-device", "virtio-net-device", "virtio-rng-device"}
	if strings.Join(drivers, " ") != strings.Join(wantDrivers, " ") {
		t.Errorf("attach order %v, want %v", drivers, wantDrivers)
	}
	for i, b := range buses {
		if want := "virtio-mmio-bus." + strconv.Itoa(mmioTransports-1-i); b != want {
			t.Errorf("device %d on %s, want %s", i, b, want)
		}
	}
	if len(p.files) != 6 { // qmp, console, kernel, initrd, 2 taps
		t.Errorf("%d descriptors passed, want 6", len(p.files))
	}
}

// TestEscaping proves that a hostile path reaches QEMU as one JSON string:
// whatever commas, equals signs, quotes or option names it contains, the
// decoded option has exactly the keys ember wrote and the path intact.
func TestEscaping(t *testing.T) {
	hostile := []string{
		`/tmp/a,b=c`,
		`/tmp/x,file.locking=on,driver=host_device`,
		`/tmp/q"uote\back,,slash`,
		"/tmp/new\nline",
		`/tmp/{"driver":"nbd"}`,
	}
	for _, path := range hostile {
		spec := minimalSpec()
		spec.Boot.KernelPath = path
		spec.Boot.InitrdPath = path + ".initrd"
		spec.Drives = []hypervisor.Drive{{ID: "rootfs", PathOnHost: path, Root: true}}
		spec.Nets = []hypervisor.Net{{ID: "eth0", Tap: tapPlaceholder, GuestMAC: `06:00:00:00:00:01,netdev=evil`}}
		in := inputsFor(spec, accelTCG, 0)
		in.DriveSerials[0] = `ser,ial=x`
		p, err := buildPlan(spec, in)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range p.args {
			if strings.Contains(a, path) && !strings.HasPrefix(a, "{") {
				t.Errorf("path %q appears outside JSON in argument %d: %q", path, i, a)
			}
		}
		var blockdev map[string]any
		var blk, net map[string]any
		for i := 0; i+1 < len(p.args); i++ {
			var v map[string]any
			if json.Unmarshal([]byte(p.args[i+1]), &v) != nil {
				continue
			}
			switch {
			case p.args[i] == "-blockdev":
				blockdev = v
			case v["driver"] == "virtio-blk-device":
				blk = v
			case v["driver"] == "virtio-net-device":
				net = v
			}
		}
		file, _ := blockdev["file"].(map[string]any)
		if file == nil || file["filename"] != path || file["driver"] != "file" || file["locking"] != "off" || len(file) != 7 {
			t.Errorf("path %q: file node %v", path, file)
		}
		if blk["serial"] != `ser,ial=x` || net["mac"] != `06:00:00:00:00:01,netdev=evil` || net["netdev"] != "net0" {
			t.Errorf("path %q: device values altered: %v %v", path, blk["serial"], net)
		}
		if got := p.fdPaths["/dev/fd/5"]; got != path {
			t.Errorf("kernel passed as %q", got)
		}
		if got := p.fdPaths["/dev/fd/6"]; got != path+".initrd" {
			t.Errorf("initrd passed as %q", got)
		}
	}
}

func TestCheckSpec(t *testing.T) {
	tests := []struct {
		name        string
		mut         func(*hypervisor.Spec)
		unsupported bool
	}{
		{"vsock with thp", func(s *hypervisor.Spec) {
			s.HugePages = hypervisor.HugePagesTransparent
			s.Vsock = &hypervisor.Vsock{GuestCID: 3, UDSPath: "/v.sock"}
		}, true},
		{"rng limiter with thp", func(s *hypervisor.Spec) {
			s.HugePages = hypervisor.HugePagesTransparent
			s.Entropy = &hypervisor.Entropy{RateLimiter: &hypervisor.RateLimiter{}}
		}, true},
		{"pmem", func(s *hypervisor.Spec) { s.Pmems = []hypervisor.Pmem{{ID: "p", PathOnHost: "/p"}} }, true},
		{"hotplug", func(s *hypervisor.Spec) { s.MemoryHotplug = &hypervisor.MemoryHotplug{TotalSizeMiB: 1024} }, true},
		{"pci", func(s *hypervisor.Spec) { s.PCI = true }, true},
		{"boot timer", func(s *hypervisor.Spec) { s.BootTimer = true }, true},
		{"dirty pages with thp", func(s *hypervisor.Spec) {
			s.TrackDirtyPages, s.HugePages = true, hypervisor.HugePagesTransparent
		}, true},
		{"vhost-user-blk", func(s *hypervisor.Spec) {
			s.Drives = []hypervisor.Drive{{ID: "r", Socket: "/s.sock", Root: true}}
		}, true},
		{"mmds with thp", func(s *hypervisor.Spec) {
			s.HugePages = hypervisor.HugePagesTransparent
			s.Nets = []hypervisor.Net{{ID: "n", Tap: tapPlaceholder, MMDS: &hypervisor.MMDS{Version: "V2"}}}
		}, true},
		{"block limiter without path", func(s *hypervisor.Spec) {
			s.Drives = []hypervisor.Drive{{ID: "r", RateLimiter: &hypervisor.RateLimiter{}}}
		}, false},
		{"mmds without tap", func(s *hypervisor.Spec) {
			s.Nets = []hypervisor.Net{{ID: "n", MMDS: &hypervisor.MMDS{Version: "V2"}}}
		}, false},
		{"hinting", func(s *hypervisor.Spec) { s.Balloon = &hypervisor.Balloon{FreePageHinting: true} }, true},
		{"no vcpus", func(s *hypervisor.Spec) { s.VCPUs = 0 }, false},
		{"no memory", func(s *hypervisor.Spec) { s.MemMiB = 0 }, false},
		{"odd smt", func(s *hypervisor.Spec) { s.VCPUs, s.SMT = 3, true }, false},
		{"no kernel", func(s *hypervisor.Spec) { s.Boot.KernelPath = "" }, false},
		{"no tap", func(s *hypervisor.Spec) { s.Nets = []hypervisor.Net{{ID: "n"}} }, false},
		{"bad cache", func(s *hypervisor.Spec) { s.Drives = []hypervisor.Drive{{ID: "r", PathOnHost: "/r", Cache: "Fast"}} }, false},
		{"bad engine", func(s *hypervisor.Spec) {
			s.Drives = []hypervisor.Drive{{ID: "r", PathOnHost: "/r", IOEngine: "Turbo"}}
		}, false},
		{"bad huge pages", func(s *hypervisor.Spec) { s.HugePages = "1G" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := minimalSpec()
			tc.mut(s)
			err := checkSpec(s)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := errors.Is(err, hypervisor.ErrNotSupported); got != tc.unsupported {
				t.Errorf("%v: ErrNotSupported=%v, want %v", err, got, tc.unsupported)
			}
		})
	}
	for _, s := range []*hypervisor.Spec{fullSpec(), vhostUserSpec()} {
		if err := checkSpec(s); err != nil {
			t.Errorf("spec %s refused: %v", s.ID, err)
		}
	}
}

func TestTooManyDevices(t *testing.T) {
	s := minimalSpec()
	for i := range mmioTransports + 1 {
		s.Drives = append(s.Drives, hypervisor.Drive{ID: "d" + strconv.Itoa(i), PathOnHost: "/d"})
	}
	if _, err := buildPlan(s, inputsFor(s, accelTCG, 0)); err == nil || !strings.Contains(err.Error(), "too many virtio devices") {
		t.Errorf("err = %v", err)
	}
}

func TestChooseAccel(t *testing.T) {
	intel := []byte("processor\t: 0\nflags\t\t: fpu vme de pse tsc msr vmx ssse3\ncpu MHz\t\t: 2400.000\n")
	amd := []byte("processor\t: 0\nflags\t\t: fpu svm lm\n")
	none := []byte("processor\t: 0\nflags\t\t: fpu vme hypervisor lm\n")
	opens := func() error { return nil }
	missing := func() error { return &os.PathError{Op: "open", Path: "/dev/kvm", Err: syscall.ENOENT} }
	tests := []struct {
		name   string
		p      hostProbe
		want   accel
		reason string
	}{
		{"intel kvm", hostProbe{GOOS: "linux", GOARCH: "amd64", CPUInfo: intel, OpenKVM: opens}, accelKVM, "/dev/kvm opens"},
		{"amd kvm", hostProbe{GOOS: "linux", GOARCH: "amd64", CPUInfo: amd, OpenKVM: opens}, accelKVM, "/dev/kvm opens"},
		{"kvm without vmx/svm", hostProbe{GOOS: "linux", GOARCH: "amd64", CPUInfo: none, OpenKVM: opens}, accelTCG, "neither vmx nor svm"},
		{"vmx without /dev/kvm", hostProbe{GOOS: "linux", GOARCH: "amd64", CPUInfo: intel, OpenKVM: missing}, accelTCG, "no such file or directory"},
		{"no cpuinfo", hostProbe{GOOS: "linux", GOARCH: "amd64", OpenKVM: opens}, accelTCG, "neither vmx nor svm"},
		{"arm64 linux", hostProbe{GOOS: "linux", GOARCH: "arm64", CPUInfo: intel, OpenKVM: opens}, accelTCG, "arm64 host"},
		{"intel mac", hostProbe{GOOS: "darwin", GOARCH: "amd64"}, accelHVF, "Hypervisor.framework"},
		{"apple silicon", hostProbe{GOOS: "darwin", GOARCH: "arm64"}, accelTCG, "arm64 Mac"},
		{"vmx only in a model name", hostProbe{GOOS: "linux", GOARCH: "amd64", CPUInfo: []byte("model name\t: vmx svm\nflags\t\t: fpu\n"), OpenKVM: opens}, accelTCG, "neither"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := chooseAccel(tc.p)
			if got != tc.want || !strings.Contains(reason, tc.reason) {
				t.Errorf("got %s (%s), want %s (…%s…)", got, reason, tc.want, tc.reason)
			}
		})
	}
	if _, err := parseAccel("xen"); err == nil {
		t.Error("parseAccel accepted xen")
	}
	if a, err := parseAccel("tcg"); err != nil || a != accelTCG {
		t.Errorf("parseAccel(tcg) = %v, %v", a, err)
	}
}

func TestHostTSC(t *testing.T) {
	tests := []struct {
		cpuinfo string
		want    uint64
	}{
		{"processor\t: 0\ncpu MHz\t\t: 2096.021\ncpu MHz\t\t: 999.0\n", 2096021},
		{"cpu MHz\t\t: 3000\n", 3000000},
		{"cpu MHz\t\t: 2400.1\n", 2400100},
		{"cpu MHz\t\t: 1999.99999\n", 1999999},
		{"cpu MHz\t\t: fast\n", 0},
		{"flags\t\t: fpu\n", 0},
		{"", 0},
	}
	for _, tc := range tests {
		if got := hostTSCkHz([]byte(tc.cpuinfo)); got != tc.want {
			t.Errorf("%q: got %d, want %d", tc.cpuinfo, got, tc.want)
		}
	}
}

func TestWithKernelArg(t *testing.T) {
	tests := []struct{ in, want string }{
		{"console=ttyS0", "console=ttyS0 tsc_early_khz=1"},
		{"", "tsc_early_khz=1"},
		{"a b -- c d", "a b tsc_early_khz=1 -- c d"},
		{"a -- b -- c", "a tsc_early_khz=1 -- b -- c"},
		{"a tsc_early_khz=5 b", "a tsc_early_khz=5 b"},
		{"a -- tsc_early_khz=5", "a tsc_early_khz=1 -- tsc_early_khz=5"},
		{"a  ", "a tsc_early_khz=1"},
		{" --", "tsc_early_khz=1 --"},
		{"-- init", "tsc_early_khz=1 -- init"},
		{"a --", "a tsc_early_khz=1 --"},
		{"a --b", "a --b tsc_early_khz=1"},
	}
	for _, tc := range tests {
		if got := withKernelArg(tc.in, "tsc_early_khz=1"); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStatValue(t *testing.T) {
	if statValue("") != nil || statValue("-1") != nil || statValue("18446744073709551615") != nil {
		t.Error("unreported statistics must be nil")
	}
	if v := statValue("4096"); v == nil || *v != 4096 {
		t.Errorf("statValue(4096) = %v", v)
	}
}

func TestQuoteArgs(t *testing.T) {
	got := quoteArgs([]string{"qemu", "-append", "a b", `{"x":1}`, "it's", ""})
	want := `qemu -append 'a b' '{"x":1}' 'it'\''s' ''`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestFindBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := findBinary("")
	if !errors.Is(err, hypervisor.ErrUnavailable) || !strings.Contains(err.Error(), "qemu-system-x86") {
		t.Errorf("missing QEMU: %v", err)
	}
	_, err = findBinary("/nonexistent/qemu")
	if !errors.Is(err, hypervisor.ErrUnavailable) || !strings.Contains(err.Error(), "/nonexistent/qemu") {
		t.Errorf("missing given binary: %v", err)
	}
	if err := (&Backend{}).Available(nil); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Errorf("Available without QEMU: %v", err)
	}
	_, err = (&Backend{}).Create(t.Context(), minimalSpec(), hypervisor.Env{})
	if !errors.Is(err, hypervisor.ErrUnavailable) || !strings.Contains(err.Error(), "qemu-system-x86 package") {
		t.Errorf("Create without QEMU: %v", err)
	}
}

func TestRegistered(t *testing.T) {
	b, ok := hypervisor.Lookup("qemu")
	if !ok || b.Name() != "qemu" {
		t.Fatal("qemu backend not registered")
	}
	c := b.Capabilities()
	if c.Pmem || c.MemoryHotplug {
		t.Errorf("claims what it does not do: %+v", c)
	}
	if !c.Balloon || !c.SendCtrlAltDel || !c.DrivePathUpdate || !c.Entropy || !c.MMDS || !c.NetRateLimiter || !c.BlockRateLimiter ||
		!c.Vsock || !c.EntropyRateLimiter {
		t.Errorf("hides what it does: %+v", c)
	}
}

func TestStderrLog(t *testing.T) {
	var out strings.Builder
	lg := logger.New("t", &out)
	s := &stderrLog{log: lg.Thread("main")}
	s.Write([]byte("qemu: first line\nsecond "))
	s.Write([]byte("half\n\n"))
	s.Write([]byte(strings.Repeat("x", 2*stderrTail)))
	got := out.String()
	for _, want := range []string{"] qemu: qemu: first line\n", "] qemu: second half\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n"); n != 3 {
		t.Errorf("%d log lines, want 3 (two lines and one cut endless line):\n%s", n, got)
	}
	if tail := s.tail(); len(tail) != stderrTail || !strings.HasSuffix(tail, "xxx") {
		t.Errorf("tail is %d bytes", len(tail))
	}
}
