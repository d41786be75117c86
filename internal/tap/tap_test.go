package tap

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/ember-vmm/ember/internal/syserr"
	"golang.org/x/sys/unix"
)

func TestErrorText(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Op: OpOpenTun, Err: syscall.ENOENT}, "Couldn't open /dev/net/tun: No such file or directory (os error 2)"},
		{&Error{Op: OpInvalidName, Name: strings.Repeat("x", 16), Err: ErrInvalidName}, "Invalid interface name"},
		{&Error{Op: OpSetIff, Name: "tap0", Err: syscall.EBUSY}, "Error while creating ifreq structure: Resource busy (os error 16). Invalid TUN/TAP Backend provided by tap0. Check our documentation on setting up the network devices."},
		{&Error{Op: OpSetOffload, Err: syscall.EINVAL}, "Error while setting the offload flags: Invalid argument (os error 22)"},
		{&Error{Op: OpSetVnetHdrSize, Err: syscall.EINVAL}, "Error while setting size of the vnet header: Invalid argument (os error 22)"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Op %d:\n got %q\nwant %q", tc.err.Op, got, tc.want)
		}
	}
}

func TestInvalidName(t *testing.T) {
	for _, name := range []string{strings.Repeat("a", 16), "ta\x00p"} {
		f, err := Open(name)
		if err == nil {
			f.Close()
			t.Fatalf("Open(%q) succeeded", name)
		}
		var te *Error
		if !errors.As(err, &te) || te.Op != OpInvalidName || !errors.Is(err, ErrInvalidName) {
			t.Errorf("Open(%q): %v", name, err)
		}
		if err.Error() != "Invalid interface name" {
			t.Errorf("text %q", err)
		}
	}
}

// inPrivateNetns runs fn on an OS thread moved into a fresh network
// namespace, so the taps it creates never touch the host's network. The
// thread is discarded afterwards (its goroutine exits while locked), which
// also destroys the namespace.
func inPrivateNetns(t *testing.T, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING tap test: needs root to create a network namespace and taps")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("SKIPPING tap test: /dev/net/tun is missing: %v", err)
	}
	done := make(chan any)
	go func() {
		defer func() { done <- recover() }()
		runtime.LockOSThread()
		// No UnlockOSThread: the thread must die with this goroutine.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			panic("unshare(CLONE_NEWNET): " + err.Error())
		}
		fn()
	}()
	if p := <-done; p != nil {
		t.Fatal(p)
	}
}

func TestOpen(t *testing.T) {
	var (
		name, name2 string
		flags       uint16
		hdr         int
		busy        error
		offErr      error
		openErr     error
	)
	inPrivateNetns(t, func() {
		f, err := Open("embertap0")
		if err != nil {
			openErr = err
			return
		}
		defer f.Close()
		name, _ = Name(f)
		rc, _ := f.SyscallConn()
		rc.Control(func(fd uintptr) {
			ifr, _ := unix.NewIfreq("")
			if unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr) == nil {
				flags = ifr.Uint16()
			}
			hdr, _ = unix.IoctlGetInt(int(fd), unix.TUNGETVNETHDRSZ)
		})
		offErr = SetOffload(f, OffloadCsum|OffloadTSO4|OffloadTSO6|OffloadUFO)

		// A second open of an attached tap is refused, as in Firecracker.
		g, err := Open("embertap0")
		if err == nil {
			g.Close()
		}
		busy = err

		// An empty name lets the kernel pick one.
		h, err := Open("")
		if err == nil {
			name2, _ = Name(h)
			h.Close()
		}
	})
	if openErr != nil {
		t.Fatal(openErr)
	}
	if name != "embertap0" {
		t.Errorf("attached to %q", name)
	}
	want := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if flags&want != want || flags&unix.IFF_TUN != 0 {
		t.Errorf("flags %#x, want %#x set", flags, want)
	}
	if hdr != VnetHdrSize {
		t.Errorf("vnet header size %d, want %d", hdr, VnetHdrSize)
	}
	if offErr != nil {
		t.Errorf("SetOffload: %v", offErr)
	}
	if busy == nil {
		t.Fatal("second Open of the same tap succeeded")
	}
	if !errors.Is(busy, syscall.EBUSY) {
		t.Errorf("second Open: %v, want EBUSY", busy)
	}
	if got := syserr.Display(busy); got != "Resource busy (os error 16)" {
		t.Errorf("syserr.Display = %q", got)
	}
	if !strings.HasPrefix(busy.Error(), "Error while creating ifreq structure: Resource busy (os error 16). Invalid TUN/TAP Backend provided by embertap0.") {
		t.Errorf("text %q", busy)
	}
	if !strings.HasPrefix(name2, "tap") {
		t.Errorf("kernel-named tap is %q", name2)
	}
}
