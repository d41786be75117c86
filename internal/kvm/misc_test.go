//go:build linux

package kvm

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestExitReasonString(t *testing.T) {
	for _, c := range []struct {
		r    ExitReason
		want string
	}{
		{ExitIO, "KVM_EXIT_IO"}, {ExitHLT, "KVM_EXIT_HLT"}, {ExitMMIO, "KVM_EXIT_MMIO"},
		{ExitShutdown, "KVM_EXIT_SHUTDOWN"}, {ExitSystemEvent, "KVM_EXIT_SYSTEM_EVENT"},
		{ExitNotify, "KVM_EXIT_NOTIFY"}, {99, "KVM_EXIT_99"},
	} {
		if got := c.r.String(); got != c.want {
			t.Errorf("%d: %q, want %q", uint32(c.r), got, c.want)
		}
	}
	for _, c := range []struct {
		s    SystemEventType
		want string
	}{{SystemEventShutdown, "SHUTDOWN"}, {SystemEventReset, "RESET"}, {SystemEventCrash, "CRASH"},
		{0, "SYSTEM_EVENT_0"}, {42, "SYSTEM_EVENT_42"}} {
		if got := c.s.String(); got != c.want {
			t.Errorf("system event %d: %q, want %q", uint32(c.s), got, c.want)
		}
	}
}

func TestIoctlError(t *testing.T) {
	var err error = &IoctlError{Op: "KVM_RUN", Errno: unix.EINTR}
	if !errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
		t.Fatal("IoctlError does not unwrap to its errno")
	}
	if err.Error() != "KVM_RUN: interrupted system call" {
		t.Fatalf("message %q", err)
	}
	var ie *IoctlError
	if !errors.As(err, &ie) || ie.Op != "KVM_RUN" {
		t.Fatal("errors.As failed")
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("SKIPPED: cannot count descriptors: %v", err)
	}
	return len(ents)
}

func TestOpenErrors(t *testing.T) {
	before := countFDs(t)
	_, err := OpenPath("/nonexistent/kvm")
	if !errors.Is(err, unix.ENOENT) {
		t.Fatalf("missing device: err %v, want ENOENT", err)
	}
	// /dev/null opens but is no KVM device: the version ioctl fails, and
	// the descriptor must not leak.
	_, err = OpenPath("/dev/null")
	if !errors.Is(err, unix.ENOTTY) || !strings.Contains(err.Error(), "KVM_GET_API_VERSION") {
		t.Fatalf("/dev/null: err %v, want ENOTTY from KVM_GET_API_VERSION", err)
	}
	if after := countFDs(t); after != before {
		t.Fatalf("descriptors leaked: %d before, %d after", before, after)
	}
}

func TestClosedDescriptors(t *testing.T) {
	s := &System{fd: -1}
	vm := &VM{fd: -1}
	c := &VCPU{fd: -1}
	if _, err := s.CheckExtension(CapIRQChip); !errors.Is(err, ErrClosed) {
		t.Errorf("System: %v", err)
	}
	if _, err := s.CreateVM(); !errors.Is(err, ErrClosed) {
		t.Errorf("CreateVM: %v", err)
	}
	if err := vm.CreateIRQChip(); !errors.Is(err, ErrClosed) {
		t.Errorf("VM: %v", err)
	}
	if _, err := vm.CreateVCPU(0); !errors.Is(err, ErrClosed) {
		t.Errorf("CreateVCPU: %v", err)
	}
	if err := c.Run(); !errors.Is(err, ErrClosed) {
		t.Errorf("Run: %v", err)
	}
	if _, err := c.GetMPState(); !errors.Is(err, ErrClosed) {
		t.Errorf("VCPU: %v", err)
	}
	for _, err := range []error{s.Close(), vm.Close(), c.Close()} {
		if err != nil {
			t.Errorf("closing twice: %v", err)
		}
	}
}

// TestIoctlOnWrongDevice runs real ioctls against a descriptor that is no
// KVM object: each must fail cleanly with its name and the kernel's errno.
func TestIoctlOnWrongDevice(t *testing.T) {
	fd, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("SKIPPED: /dev/null: %v", err)
	}
	vm := &VM{fd: fd, runSize: 3 * 4096}
	defer vm.Close()
	for name, err := range map[string]error{
		"KVM_SET_GSI_ROUTING": vm.SetGSIRouting([]IRQRoutingEntry{IRQRoutingIRQChip(4, 2, 4)}),
		"KVM_IRQFD":           vm.IRQFD(0, 4),
		"KVM_IOEVENTFD":       vm.IOEventFD(0, IOEvent{Addr: 0x3f8, Len: 1, PIO: true}),
		"KVM_ENABLE_CAP":      vm.EnableCap(CapSplitIRQChip, 0, 24),
		"KVM_CREATE_VCPU":     func() error { _, err := vm.CreateVCPU(0); return err }(),
	} {
		var ie *IoctlError
		if !errors.As(err, &ie) || ie.Op != name || ie.Errno != unix.ENOTTY {
			t.Errorf("%s on /dev/null: %v", name, err)
		}
	}
	if err := vm.EnableCap(CapSplitIRQChip, 0, 1, 2, 3, 4, 5); !errors.Is(err, ErrBadArgument) {
		t.Errorf("five cap arguments: %v", err)
	}
	if err := vm.IRQFD(-1, 4); !errors.Is(err, ErrBadArgument) {
		t.Errorf("negative eventfd: %v", err)
	}
	if err := vm.GetDirtyLog(0, 65, make([]uint64, 1)); !errors.Is(err, ErrBadArgument) {
		t.Errorf("short dirty bitmap: %v", err)
	}
}

func TestEventFD(t *testing.T) {
	e, err := NewEventFD()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.Read(); err != nil || n != 0 {
		t.Fatalf("empty read: %d, %v", n, err)
	}
	if err := e.Signal(); err != nil {
		t.Fatal(err)
	}
	if err := e.Add(4); err != nil {
		t.Fatal(err)
	}
	if n, err := e.Read(); err != nil || n != 5 {
		t.Fatalf("read after 1+4: %d, %v", n, err)
	}
	if n, _ := e.Read(); n != 0 {
		t.Fatalf("counter not cleared: %d", n)
	}
	flags, err := unix.FcntlInt(uintptr(e.Fd()), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("eventfd not close-on-exec: %#x %v", flags, err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Signal(); !errors.Is(err, ErrClosed) {
		t.Fatalf("signal after close: %v", err)
	}
}

func TestIRQRoutingConstructors(t *testing.T) {
	e := IRQRoutingIRQChip(5, 2, 5)
	if e.GSI != 5 || e.Type != IRQRoutingTypeIRQChip || e.U[0] != 2 || e.U[1] != 5 {
		t.Fatalf("irqchip entry %+v", e)
	}
	m := IRQRoutingMSI(33, 0x1_fee0_1000, 0x4041, MSIValidDevID, 7)
	if m.Type != IRQRoutingTypeMSI || m.Flags != MSIValidDevID ||
		m.U[0] != 0xfee01000 || m.U[1] != 1 || m.U[2] != 0x4041 || m.U[3] != 7 {
		t.Fatalf("msi entry %+v", m)
	}
	r := IOEvent{Addr: 0x1000, Len: 4, DataMatch: true, Data: 3}.raw(9, ioeventfdFlagDeassign)
	if r.Flags != ioeventfdFlagDataMatch|ioeventfdFlagDeassign || r.DataMatch != 3 || r.FD != 9 || r.Len != 4 {
		t.Fatalf("ioeventfd %+v", r)
	}
	r = IOEvent{Addr: 0x3f8, Len: 1, PIO: true}.raw(9, 0)
	if r.Flags != ioeventfdFlagPIO || r.DataMatch != 0 {
		t.Fatalf("pio ioeventfd %+v", r)
	}
}
