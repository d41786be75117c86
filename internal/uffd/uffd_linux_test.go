//go:build linux

package uffd

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// needUserfaultfd skips, loudly, where this process may not create a
// userfaultfd that also serves kernel-mode faults.
func needUserfaultfd(t *testing.T) {
	t.Helper()
	f, err := Register(nil)
	if err != nil {
		t.Skipf("SKIPPED: cannot create a userfaultfd serving kernel faults here (needs root/CAP_SYS_PTRACE): %v (%v)", err, errors.Unwrap(err))
	}
	f.Close()
}

// memFile writes size random bytes to a temporary memory file.
func memFile(t *testing.T, size int) (*os.File, []byte) {
	t.Helper()
	want := make([]byte, size)
	rand.Read(want)
	f, err := os.Create(filepath.Join(t.TempDir(), "mem"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	return f, want
}

// guestRAM maps size bytes the way the VMM maps guest RAM for a Uffd load.
func guestRAM(t *testing.T, size int, huge bool) []byte {
	t.Helper()
	flags := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_NORESERVE
	if huge {
		// No MAP_NORESERVE here: with no free huge pages the mmap fails
		// cleanly instead of the copy failing later.
		flags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_HUGETLB
	}
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		t.Fatalf("mmap %d bytes (huge %v): %v", size, huge, err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

func addr(b []byte) uint64 { return uint64(uintptrOf(b)) }

// inProcessHandler makes sure the in-process handler keeps a P while a
// test goroutine waits in a fault from Go code (see Serve).
func inProcessHandler(t *testing.T) {
	if old := runtime.GOMAXPROCS(0); old < 2 {
		runtime.GOMAXPROCS(2)
		t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	}
}

// handOver does a VMM's part: it registers ms with a new userfaultfd and
// hands it to the handler listening at path.
func handOver(t *testing.T, ctx context.Context, path string, ms []Mapping) (*os.File, *net.UnixConn) {
	t.Helper()
	uf, err := Register(ms)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := Handshake(ctx, path, ms, uf)
	if err != nil {
		uf.Close()
		t.Fatal(err)
	}
	return uf, conn
}

// handlerAt listens at a fresh socket and serves one VMM with h in the
// background; the returned channel yields Serve's result.
func handlerAt(t *testing.T, ctx context.Context, h *Handler) (string, <-chan error) {
	t.Helper()
	inProcessHandler(t)
	path := filepath.Join(t.TempDir(), "uffd.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		conn, err := l.AcceptUnix()
		l.Close()
		if err != nil {
			done <- err
			return
		}
		err = h.Serve(ctx, conn)
		conn.Close() // before reporting, so descriptor counts see it gone
		done <- err
	}()
	return path, done
}

func waitServe(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s")
		return nil
	}
}

// kernelRead copies b into a file with pwrite, so the kernel (not Go code)
// takes b's page faults, and returns what the file received.
func kernelRead(t *testing.T, b []byte) []byte {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "kernel-read")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := unix.Pwrite(int(f.Fd()), b, 0)
	if err != nil || n != len(b) {
		t.Fatalf("pwrite from guest RAM: %d, %v", n, err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func comparePages(t *testing.T, what string, got, want []byte, pageSize int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	for p := 0; p < len(want); p += pageSize {
		if !bytes.Equal(got[p:p+pageSize], want[p:p+pageSize]) {
			t.Fatalf("%s: page at offset %#x differs from the memory file", what, p)
		}
	}
}

func TestRoundTrip4K(t *testing.T) {
	needUserfaultfd(t)
	const ps = PageSize4K
	// A is read by Go code, B by the kernel, C by racing goroutines.
	sizes := []int{64 * ps, 32 * ps, 16 * ps}
	total := 0
	for _, s := range sizes {
		total += s
	}
	mem, want := memFile(t, total)
	var regions [][]byte
	var ms []Mapping
	off := 0
	for _, s := range sizes {
		r := guestRAM(t, s, false)
		regions = append(regions, r)
		ms = append(ms, Mapping{BaseHostVirtAddr: addr(r), Size: uint64(s), Offset: uint64(off), PageSize: ps, PageSizeKiB: ps})
		off += s
	}
	wantA, wantB, wantC := want[:sizes[0]], want[sizes[0]:sizes[0]+sizes[1]], want[sizes[0]+sizes[1]:]
	a, b, c := regions[0], regions[1], regions[2]

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := NewHandler(mem)
	path, done := handlerAt(t, ctx, h)
	uf, conn := handOver(t, ctx, path, ms)
	defer uf.Close()

	comparePages(t, "Go reads of region A", goRead(a, ps), wantA, ps)
	comparePages(t, "kernel reads of region B", kernelRead(t, b), wantB, ps)
	// Racing readers fault in the kernel (a Go fault inside copy would
	// hold its P, see goRead); same pages at once exercise EEXIST.
	var wg sync.WaitGroup
	results := make([][]byte, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = kernelReadNoT(c)
		}()
	}
	wg.Wait()
	for i, r := range results {
		comparePages(t, "racing reader "+strconv.Itoa(i)+" of region C", r, wantC, ps)
	}
	st := waitStats(t, h, func(st Stats) bool { return st.Copied >= uint64(total/ps) })
	if st.Copied != uint64(total/ps) {
		t.Fatalf("handler copied %d pages, want every one of %d exactly once (stats %+v)", st.Copied, total/ps, st)
	}
	if st.Faults < st.Copied || st.Zeroed != 0 || st.Removes != 0 {
		t.Fatalf("stats %+v after plain reads", st)
	}
	t.Logf("after reads: %+v", st)

	// Give ranges back as a balloon does: they must come back as zeros,
	// to Go code and to the kernel, while their neighbours keep their data.
	if err := unix.Madvise(a[8*ps:16*ps], unix.MADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	if err := unix.Madvise(b[:4*ps], unix.MADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 8*ps)
	comparePages(t, "region A after MADV_DONTNEED", goRead(a[8*ps:16*ps], ps), zeros, ps)
	comparePages(t, "region A around the removed range", a[:8*ps], wantA[:8*ps], ps)
	comparePages(t, "region A around the removed range", a[16*ps:], wantA[16*ps:], ps)
	comparePages(t, "kernel reads of region B after MADV_DONTNEED", kernelRead(t, b[:4*ps]), zeros[:4*ps], ps)
	st = waitStats(t, h, func(st Stats) bool { return st.Zeroed >= 12 })
	if st.Removes < 2 || st.Zeroed != 12 || st.Copied != uint64(total/ps) {
		t.Fatalf("stats %+v: want 2+ removes, 12 zeroed pages, no new copies", st)
	}

	// The VMM exits: Serve ends cleanly.
	conn.Close()
	if err := waitServe(t, done); err != nil {
		t.Fatalf("Serve after the VMM's EOF: %v", err)
	}
}

func TestRoundTrip2M(t *testing.T) {
	needUserfaultfd(t)
	const ps = PageSize2M
	const pages = 2
	if free := hugePagesFree(t); free < pages {
		t.Skipf("SKIPPED: 2 MiB hugetlb round trip needs %d free huge pages, HugePages_Free is %d (raise vm.nr_hugepages)", pages, free)
	}
	mem, want := memFile(t, pages*ps)
	ram := guestRAM(t, pages*ps, true)
	ms := []Mapping{{BaseHostVirtAddr: addr(ram), Size: pages * ps, PageSize: ps, PageSizeKiB: ps}}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := NewHandler(mem)
	path, done := handlerAt(t, ctx, h)
	uf, conn := handOver(t, ctx, path, ms)
	defer uf.Close()
	comparePages(t, "Go read of huge page 0", goRead(ram[:ps], ps), want[:ps], ps)
	comparePages(t, "kernel read of huge page 1", kernelRead(t, ram[ps:]), want[ps:], ps)
	if st := waitStats(t, h, func(st Stats) bool { return st.Copied >= pages }); st.Copied != pages {
		t.Fatalf("stats %+v: want %d huge pages copied", st, pages)
	}
	if err := unix.Madvise(ram[:ps], unix.MADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	comparePages(t, "huge page 0 after MADV_DONTNEED", goRead(ram[:ps], ps), make([]byte, ps), ps)
	if st := waitStats(t, h, func(st Stats) bool { return st.Zeroed >= 1 }); st.Zeroed != 1 || st.Removes < 1 {
		t.Fatalf("stats %+v: want 1 zeroed huge page", st)
	}
	conn.Close()
	if err := waitServe(t, done); err != nil {
		t.Fatalf("Serve after the VMM's EOF: %v", err)
	}
}

// waitStats waits up to 5s for h's counters to satisfy ok, since the
// handler counts a page just after the fill that woke the reader.
func waitStats(t *testing.T, h *Handler, ok func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := h.Stats()
		if ok(st) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(time.Millisecond)
	}
}

func hugePagesFree(t *testing.T) int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skipf("SKIPPED: no /proc/meminfo: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "HugePages_Free:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

func TestHandshakeGolden(t *testing.T) {
	ms := []Mapping{
		{BaseHostVirtAddr: 0x7f2a40000000, Size: 0xc0000000, Offset: 0, PageSize: PageSize4K, PageSizeKiB: PageSize4K},
		{BaseHostVirtAddr: 0x7f2b40000000, Size: 0x40000000, Offset: 0xc0000000, PageSize: PageSize4K, PageSizeKiB: PageSize4K},
		{BaseHostVirtAddr: 0x7f3000000000, Size: 0x400000, Offset: 0x100000000, PageSize: PageSize2M, PageSizeKiB: PageSize2M},
	}
	path := filepath.Join(t.TempDir(), "h.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Any descriptor does for the VMM side; the handler checks its kind.
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	conn, err := Handshake(context.Background(), path, ms, devnull)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := peer.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	fds := receivedFDs(oob[:oobn])
	for _, fd := range fds {
		unix.Close(fd)
	}
	if len(fds) != 1 {
		t.Fatalf("%d descriptors attached, want 1", len(fds))
	}
	// The handler learns the VMM's pid from the connection.
	rc, _ := peer.SyscallConn()
	var cred *unix.Ucred
	rc.Control(func(fd uintptr) { cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err != nil || int(cred.Pid) != os.Getpid() {
		t.Fatalf("SO_PEERCRED: %+v, %v; want pid %d", cred, err, os.Getpid())
	}

	got := buf[:n]
	golden := filepath.Join("testdata", "handshake.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantBytes, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, wantBytes) {
		t.Fatalf("handshake bytes\n got %s\nwant %s", got, wantBytes)
	}
	back, err := decodeMappings(got, 0x100400000)
	if err != nil || len(back) != len(ms) || back[2] != ms[2] {
		t.Fatalf("golden does not decode back: %v %+v", err, back)
	}
}

// openFDs lists this process's open descriptors.
func openFDs(t *testing.T) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := make(map[string]bool, len(ents))
	for _, e := range ents {
		fds[e.Name()] = true
	}
	return fds
}

// checkNoNewFDs fails if a descriptor open now was not open before. A
// descriptor closed meanwhile (a finalizer's work) is no leak.
func checkNoNewFDs(t *testing.T, before map[string]bool) {
	t.Helper()
	for fd := range openFDs(t) {
		if !before[fd] {
			target, _ := os.Readlink("/proc/self/fd/" + fd)
			t.Fatalf("descriptor %s (%s) leaked", fd, target)
		}
	}
}

func TestServeRefusesBadHandshake(t *testing.T) {
	needUserfaultfd(t)
	mem, _ := memFile(t, 64<<10)
	good := `[{"base_host_virt_addr":1048576,"size":65536,"offset":0,"page_size":4096,"page_size_kib":4096}]`
	many := "[" + strings.Repeat(`{"base_host_virt_addr":1048576,"size":4096,"offset":0,"page_size":4096},`, 64) +
		`{"base_host_virt_addr":1048576,"size":4096,"offset":0,"page_size":4096}]`
	tests := []struct {
		name    string
		data    string
		fds     string // "uffd", "none", "devnull", "two"
		wantErr string
	}{
		{"bad JSON", `[{"size":`, "uffd", "not a JSON array"},
		{"no fd", good, "none", "no userfaultfd descriptor attached"},
		{"65 mappings", many, "uffd", "65 mappings, at most 64"},
		{"offset beyond the file", `[{"base_host_virt_addr":1048576,"size":4096,"offset":65536,"page_size":4096}]`, "uffd", "exceeds the memory file"},
		{"unaligned", `[{"base_host_virt_addr":1048577,"size":4096,"offset":0,"page_size":4096}]`, "uffd", "multiples of page_size"},
		{"not a userfaultfd", good, "devnull", "not a userfaultfd"},
		{"two descriptors", good, "two", "2 descriptors attached"},
		{"closed before sending", "", "none", "connection closed before the mappings arrived"},
	}
	// Warm up the runtime's poller and friends so they do not count.
	warm, _ := Register(nil)
	warm.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := openFDs(t)
			func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				h := NewHandler(mem)
				path, done := handlerAt(t, ctx, h)
				c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				var attach []int
				switch tt.fds {
				case "uffd", "two":
					for range map[string]int{"uffd": 1, "two": 2}[tt.fds] {
						uf, err := Register(nil)
						if err != nil {
							t.Fatal(err)
						}
						defer uf.Close()
						attach = append(attach, rawFD(t, uf))
					}
				case "devnull":
					f, err := os.Open(os.DevNull)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					attach = append(attach, int(f.Fd()))
				}
				if tt.data == "" {
					c.Close()
				} else {
					var oob []byte
					if len(attach) > 0 {
						oob = unix.UnixRights(attach...)
					}
					if _, _, err := c.WriteMsgUnix([]byte(tt.data), oob, nil); err != nil {
						t.Fatal(err)
					}
				}
				err = waitServe(t, done)
				if err == nil || !errors.Is(err, ErrBadHandshake) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Serve: %v; want ErrBadHandshake containing %q", err, tt.wantErr)
				}
				t.Logf("refused: %v", err)
			}()
			checkNoNewFDs(t, before)
		})
	}
}

// rawFD returns f's descriptor without Fd's switch to blocking mode.
func rawFD(t *testing.T, f *os.File) int {
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	rc.Control(func(u uintptr) { fd = int(u) })
	return fd
}

func TestHandshakeErrors(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close() // the socket file stays, nobody listens
	live := filepath.Join(dir, "live.sock")
	l2, err := net.ListenUnix("unix", &net.UnixAddr{Name: live, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	devnull, _ := os.Open(os.DevNull)
	defer devnull.Close()
	ms := []Mapping{{BaseHostVirtAddr: 4096, Size: 4096, PageSize: 4096, PageSizeKiB: 4096}}

	tests := []struct {
		name string
		path string
		fd   *os.File
		kind error
		want string
	}{
		{"missing socket", filepath.Join(dir, "nope.sock"), devnull, ErrConnect,
			"Failed to connect to UDS Unix stream: No such file or directory (os error 2)"},
		{"nobody listening", stale, devnull, ErrConnect,
			"Failed to connect to UDS Unix stream: Connection refused (os error 111)"},
		{"no descriptor", live, nil, ErrSend,
			"Failed to sends file descriptor: Bad file descriptor (os error 9)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := Handshake(context.Background(), tt.path, ms, tt.fd)
			if err == nil {
				conn.Close()
				t.Fatal("Handshake succeeded")
			}
			if err.Error() != tt.want || !errors.Is(err, tt.kind) {
				t.Fatalf("error %q (is %v: %v), want %q", err, tt.kind, errors.Is(err, tt.kind), tt.want)
			}
		})
	}
}

func TestRegisterErrors(t *testing.T) {
	needUserfaultfd(t)
	ram := guestRAM(t, 2*PageSize4K, false)
	tests := []struct {
		name string
		ms   []Mapping
	}{
		{"unaligned base", []Mapping{{BaseHostVirtAddr: addr(ram) + 1, Size: PageSize4K}}},
		{"unmapped range", []Mapping{{BaseHostVirtAddr: 4096, Size: PageSize4K}}},
		{"second region bad", []Mapping{{BaseHostVirtAddr: addr(ram), Size: PageSize4K}, {BaseHostVirtAddr: addr(ram) + PageSize4K, Size: 100}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := openFDs(t)
			f, err := Register(tt.ms)
			if err == nil {
				f.Close()
				t.Fatal("Register succeeded")
			}
			const want = "Failed to register memory address range with the userfaultfd object: System error"
			if err.Error() != want || !errors.Is(err, ErrRegister) {
				t.Fatalf("error %q, want %q", err, want)
			}
			if !errors.Is(err, unix.EINVAL) {
				t.Fatalf("cause of %q is not EINVAL", err)
			}
			checkNoNewFDs(t, before)
		})
	}
}

func TestServeStops(t *testing.T) {
	needUserfaultfd(t)
	mem, _ := memFile(t, 16*PageSize4K)

	t.Run("cancel while waiting for the handshake", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		path, done := handlerAt(t, ctx, NewHandler(mem))
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		time.Sleep(20 * time.Millisecond)
		cancel()
		if err := waitServe(t, done); !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve: %v, want context.Canceled", err)
		}
	})

	t.Run("cancel while serving", func(t *testing.T) {
		ram := guestRAM(t, 16*PageSize4K, false)
		ms := []Mapping{{BaseHostVirtAddr: addr(ram), Size: uint64(len(ram)), PageSize: PageSize4K, PageSizeKiB: PageSize4K}}
		ctx, cancel := context.WithCancel(context.Background())
		path, done := handlerAt(t, ctx, NewHandler(mem))
		uf, conn := handOver(t, ctx, path, ms)
		defer uf.Close()
		defer conn.Close()
		goRead(ram[:PageSize4K], PageSize4K) // one fault served, then idle
		time.Sleep(20 * time.Millisecond)
		cancel()
		if err := waitServe(t, done); !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve: %v, want context.Canceled", err)
		}
	})

	t.Run("fault outside the mappings sent", func(t *testing.T) {
		ram := guestRAM(t, 16*PageSize4K, false)
		other := guestRAM(t, 16*PageSize4K, false)
		registered := []Mapping{{BaseHostVirtAddr: addr(ram), Size: uint64(len(ram)), PageSize: PageSize4K, PageSizeKiB: PageSize4K}}
		claimed := []Mapping{{BaseHostVirtAddr: addr(other), Size: uint64(len(other)), PageSize: PageSize4K, PageSizeKiB: PageSize4K}}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		path, done := handlerAt(t, ctx, NewHandler(mem))
		uf, err := Register(registered)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := Handshake(ctx, path, claimed, uf)
		if err != nil {
			uf.Close()
			t.Fatal(err)
		}
		defer conn.Close()
		touched := make(chan struct{})
		go func() {
			kernelReadNoT(ram[:PageSize4K])
			close(touched)
		}()
		err = waitServe(t, done)
		if err == nil || !strings.Contains(err.Error(), "outside every mapping") {
			t.Fatalf("Serve: %v, want a fault outside every mapping", err)
		}
		// The last reference going away releases the stuck fault.
		uf.Close()
		select {
		case <-touched:
		case <-time.After(10 * time.Second):
			t.Fatal("faulting read still blocked after the userfaultfd was closed")
		}
	})
}

// kernelReadNoT faults b in from the kernel (write to a pipe) without a
// testing.T, for use off the test goroutine; it returns what the pipe got.
func kernelReadNoT(b []byte) []byte {
	r, w, err := os.Pipe()
	if err != nil {
		return nil
	}
	defer r.Close()
	got := make(chan []byte, 1)
	go func() {
		data, _ := io.ReadAll(r)
		got <- data
	}()
	for off := 0; off < len(b); {
		n, err := unix.Write(int(w.Fd()), b[off:])
		if err != nil {
			break
		}
		off += n
	}
	w.Close()
	return <-got
}

var sink byte

// goRead faults b's pages in from Go code, one load per page, then returns
// a copy. Only one goroutine at a time does this, and inProcessHandler
// leaves the handler a P: a goroutine faulting from Go code holds its P until
// served (inside copy or bytes.Equal it cannot even be preempted).
func goRead(b []byte, pageSize int) []byte {
	for p := 0; p < len(b); p += pageSize {
		sink += b[p]
	}
	return bytes.Clone(b)
}
