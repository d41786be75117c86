//go:build linux

package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/snapshot"
)

func TestRAMRegions(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		size uint64
		want []snapshot.Region
	}{
		{128 << 20, []snapshot.Region{{GPA: 0, Size: 128 << 20}}},
		{3 * gib, []snapshot.Region{{GPA: 0, Size: 3 * gib}}},
		{4 * gib, []snapshot.Region{{GPA: 0, Size: 3 * gib}, {GPA: 4 * gib, Size: gib}}},
	}
	for _, tc := range tests {
		got := ramRegions(tc.size)
		if !sameRegions(got, tc.want) {
			t.Errorf("ramRegions(%d) = %v, want %v", tc.size, got, tc.want)
		}
		if snapshot.MemSize(got) != tc.size {
			t.Errorf("ramRegions(%d) covers %d bytes", tc.size, snapshot.MemSize(got))
		}
	}
	r := ramRegions(4 * gib)
	for _, tc := range []struct {
		gpa, n, off uint64
		ok          bool
	}{
		{0, 4096, 0, true},
		{3*gib - 4096, 4096, 3*gib - 4096, true},
		{3*gib - 4096, 8192, 0, false}, // runs into the hole below 4 GiB
		{4 * gib, 4096, 3 * gib, true},
		{5*gib - 4096, 4096, 4*gib - 4096, true},
		{5 * gib, 4096, 0, false},
	} {
		off, err := fileOffset(r, tc.gpa, tc.n)
		if (err == nil) != tc.ok || tc.ok && off != tc.off {
			t.Errorf("fileOffset(%#x, %#x) = %#x, %v; want %#x, ok %v", tc.gpa, tc.n, off, err, tc.off, tc.ok)
		}
	}
}

// TestGuestRAMRoundTrip writes pages into an ember memfd, saves it as a
// memory file (full and diff), and fills a fresh memfd from the file: the
// same bytes come back, zero pages stay holes and untouched pages are not
// in the diff.
func TestGuestRAMRoundTrip(t *testing.T) {
	spec := &hypervisor.Spec{VCPUs: 1, MemMiB: 8}
	ram, err := guestRAM(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ram.close()
	page := func(b byte) []byte { return bytes.Repeat([]byte{b}, snapshot.PageSize) }
	writes := map[int64][]byte{0: page(1), 7: page(2), 8: page(0), 2047: page(3)}
	for pg, b := range writes {
		if _, err := ram.fd.WriteAt(b, pg*snapshot.PageSize); err != nil {
			t.Fatal(err)
		}
	}
	regions := ramRegions(ram.size)
	dirty, err := ram.resident(regions)
	if err != nil {
		t.Fatal(err)
	}
	for pg := 0; pg < 2048; pg++ {
		_, written := writes[int64(pg)]
		if got := dirty[0][pg/64]&(1<<(pg%64)) != 0; got != written {
			t.Errorf("page %d: resident %v, written %v", pg, got, written)
		}
	}
	dir := t.TempDir()
	full := filepath.Join(dir, "full.mem")
	if err := snapshot.WriteMemory(full, regions, ram.reader(regions)); err != nil {
		t.Fatal(err)
	}
	diff := filepath.Join(dir, "diff.mem")
	if err := snapshot.WriteMemoryDiff(diff, regions, dirty, ram.reader(regions)); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{full, diff} {
		back, err := guestRAM(spec, &restoreInputs{memPath: path})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, ram.size)
		if _, err := back.fd.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, ram.size)
		ram.fd.ReadAt(want, 0)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: restored RAM differs", filepath.Base(path))
		}
		// Only the three non-zero pages were stored.
		var st os.FileInfo
		if st, err = back.fd.Stat(); err == nil {
			if blocks := statBlocks(st); blocks*512 > 3*snapshot.PageSize {
				t.Errorf("%s: restored RAM holds %d bytes, want 3 pages", filepath.Base(path), blocks*512)
			}
		}
		back.close()
	}
	// A memory file of another size is refused.
	if _, err := guestRAM(&hypervisor.Spec{VCPUs: 1, MemMiB: 16}, &restoreInputs{memPath: full}); err == nil || !strings.Contains(err.Error(), "holds") {
		t.Errorf("a memory file of the wrong size: %v", err)
	}
	// Transparent huge pages stay QEMU's; a restore onto them is refused.
	if r, err := guestRAM(&hypervisor.Spec{VCPUs: 1, MemMiB: 8, HugePages: hypervisor.HugePagesTransparent}, nil); r != nil || err != nil {
		t.Errorf("THP guest RAM: %v, %v", r, err)
	}
	if _, err := guestRAM(&hypervisor.Spec{VCPUs: 1, MemMiB: 8, HugePages: hypervisor.HugePagesTransparent}, &restoreInputs{memPath: full}); err == nil {
		t.Error("restore onto THP accepted")
	}
}

// TestPageSums: with track_dirty_pages, exactly the pages whose contents
// changed since the baseline (the boot, a load, the last snapshot) count
// as dirty, whoever wrote them.
func TestPageSums(t *testing.T) {
	spec := &hypervisor.Spec{VCPUs: 1, MemMiB: 8, TrackDirtyPages: true}
	ram, err := guestRAM(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ram.close()
	regions := ramRegions(ram.size)
	page := func(b byte) []byte { return bytes.Repeat([]byte{b}, snapshot.PageSize) }
	steps := []struct {
		name   string
		writes map[int64][]byte
		want   []int // dirty pages
	}{
		{"boot: zeros are not changes", map[int64][]byte{5: page(0)}, nil},
		{"first writes", map[int64][]byte{0: page(1), 7: page(2), 2047: page(3)}, []int{0, 7, 2047}},
		{"nothing written", nil, nil},
		{"same contents again", map[int64][]byte{7: page(2)}, nil},
		{"a page zeroed, one changed, one new", map[int64][]byte{0: page(0), 2047: page(4), 100: page(5)}, []int{0, 100, 2047}},
	}
	for _, st := range steps {
		for pg, b := range st.writes {
			if _, err := ram.fd.WriteAt(b, pg*snapshot.PageSize); err != nil {
				t.Fatal(err)
			}
		}
		dirty, next, err := ram.changed(regions)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for pg := 0; pg < 2048; pg++ {
			if dirty[0][pg/64]&(1<<(pg%64)) != 0 {
				got = append(got, pg)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(st.want) {
			t.Errorf("%s: dirty pages %v, want %v", st.name, got, st.want)
		}
		ram.sums.sums = next // as a snapshot does
	}
	// A Full snapshot is the next baseline, hashed as it is written.
	if _, err := ram.fd.WriteAt(page(6), 9*snapshot.PageSize); err != nil {
		t.Fatal(err)
	}
	next := make([]uint64, len(ram.sums.sums))
	full := filepath.Join(t.TempDir(), "full.mem")
	if err := snapshot.WriteMemory(full, regions, ram.sums.recording(regions, ram.reader(regions), next)); err != nil {
		t.Fatal(err)
	}
	ram.sums.sums = next
	if dirty, _, err := ram.changed(regions); err != nil {
		t.Fatal(err)
	} else if dirty[0][0] != 0 {
		t.Errorf("after a Full snapshot, pages %#x of word 0 count as changed", dirty[0][0])
	}
	// A load's baseline is the memory file: nothing has changed yet.
	mem := filepath.Join(t.TempDir(), "vm.mem")
	if err := snapshot.WriteMemory(mem, regions, ram.reader(regions)); err != nil {
		t.Fatal(err)
	}
	back, err := guestRAM(spec, &restoreInputs{memPath: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer back.close()
	dirty, _, err := back.changed(regions)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range dirty[0] {
		if w != 0 {
			t.Errorf("after a load, pages %#x of word %d count as changed", w, i)
		}
	}
}

// TestRestoreArgvGolden: a restore starts QEMU with the boot's devices in
// the same slots, guest RAM from ember's descriptor, -incoming defer and
// no boot images.
func TestRestoreArgvGolden(t *testing.T) {
	spec := fullSpec()
	spec.HugePages = hypervisor.HugePagesNone
	ram, _ := os.Open(os.DevNull)
	defer ram.Close()
	in := inputsFor(spec, accelTCG, 3000000)
	in.RAM, in.Incoming = ram, true
	p, err := buildPlan(spec, in)
	if err != nil {
		t.Fatal(err)
	}
	boot := inputsFor(spec, accelTCG, 3000000)
	boot.RAM = ram
	bp, err := buildPlan(spec, boot)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(p.args, "\n") + "\n"
	golden := filepath.Join("testdata", "restore-tcg.golden")
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
	// Every device argument of the boot is in the restore, in order.
	var bootDevs, restoreDevs []string
	for _, x := range []struct {
		args []string
		devs *[]string
	}{{bp.args, &bootDevs}, {p.args, &restoreDevs}} {
		for i, a := range x.args {
			if i > 0 && (x.args[i-1] == "-device" || x.args[i-1] == "-object" || x.args[i-1] == "-blockdev") {
				*x.devs = append(*x.devs, a)
			}
		}
	}
	if strings.Join(bootDevs, "\n") != strings.Join(restoreDevs, "\n") {
		t.Errorf("restore devices differ from boot's:\n%s\n---\n%s", restoreDevs, bootDevs)
	}
	for _, a := range p.args {
		if a == "-kernel" || a == "-initrd" || a == "-append" {
			t.Errorf("a restore passes %s", a)
		}
	}
}

func statBlocks(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks
	}
	return 0
}

// TestSnapshotable: a VM with a device QEMU cannot migrate (vsock, a
// limited entropy device), or whose RAM QEMU owns, is refused as
// unsupported, naming why; drives and interfaces on ember's devices are
// not in the way.
func TestSnapshotable(t *testing.T) {
	lim := &hypervisor.RateLimiter{Ops: &hypervisor.TokenBucket{Size: 10, RefillTimeMs: 100}}
	withVsock, withRng, goNetDrive := minimalSpec(), minimalSpec(), minimalSpec()
	withVsock.Vsock = &hypervisor.Vsock{GuestCID: 3, UDSPath: "/v.sock"}
	withRng.Entropy = &hypervisor.Entropy{RateLimiter: lim}
	goNetDrive.Nets = []hypervisor.Net{{ID: "eth0", Tap: tapPlaceholder, MMDS: &hypervisor.MMDS{Version: "V2"}, RxLimiter: lim}}
	goNetDrive.Drives = []hypervisor.Drive{{ID: "d", PathOnHost: "/d.img", RateLimiter: lim}}
	tests := []struct {
		name string
		m    *machine
		want string // "" for no refusal
	}{
		{"vsock", &machine{snap: &snapState{ram: &snapRAM{}, blocked: unmigratable(withVsock)}}, "vhost-user-vsock-device"},
		{"limited entropy", &machine{snap: &snapState{ram: &snapRAM{}, blocked: unmigratable(withRng)}}, "vhost-user-rng"},
		{"transparent huge pages", &machine{snap: &snapState{}}, "huge_pages Transparent"},
		{"MMDS, limited interface and drive", &machine{procDone: make(chan struct{}), done: make(chan struct{}), godevs: &goDevices{}, snap: &snapState{ram: &snapRAM{}, blocked: unmigratable(goNetDrive)}}, ""},
	}
	for _, tc := range tests {
		err := tc.m.snapshotable()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want no refusal", tc.name, err)
		case tc.want != "" && (!errors.Is(err, hypervisor.ErrNotSupported) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want a refusal naming %q", tc.name, err, tc.want)
		}
	}
	for _, spec := range []*hypervisor.Spec{withVsock, withRng} {
		_, err := (&Backend{}).Restore(ctxT(t), spec, hypervisor.Env{}, &snapshot.File{}, hypervisor.RestoreRequest{MemPath: "/nonexistent"})
		if !errors.Is(err, hypervisor.ErrNotSupported) {
			t.Errorf("restoring a VM with vsock %v, entropy %v: %v", spec.Vsock != nil, spec.Entropy != nil, err)
		}
	}
}

// BenchmarkFill measures copying a 128 MiB memory file, half of it
// non-zero, into guest RAM.
func BenchmarkFill(b *testing.B) {
	path := filepath.Join(b.TempDir(), "vm.mem")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	f.Truncate(128 << 20)
	data := bytes.Repeat([]byte{0xa5}, 1<<20)
	for off := int64(0); off < 128<<20; off += 2 << 20 {
		f.WriteAt(data, off)
	}
	f.Close()
	spec := &hypervisor.Spec{VCPUs: 1, MemMiB: 128}
	b.SetBytes(64 << 20)
	for b.Loop() {
		r, err := guestRAM(spec, &restoreInputs{memPath: path})
		if err != nil {
			b.Fatal(err)
		}
		r.close()
	}
}
