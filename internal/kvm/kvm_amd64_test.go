//go:build linux && amd64

package kvm

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/nested"
	"golang.org/x/sys/unix"
)

// The tests below drive a real /dev/kvm with tiny real-mode guests, on a
// KVM host or inside the nested L1 harness (see TestKVM). Where /dev/kvm is
// absent they skip loudly.

func openKVM(t *testing.T) *System {
	t.Helper()
	if _, err := os.Stat(DevicePath); errors.Is(err, os.ErrNotExist) {
		t.Skip("SKIPPED: /dev/kvm is not available; these tests need a KVM host or the nested L1 harness")
	}
	s, err := Open()
	if err != nil {
		t.Fatalf("open /dev/kvm: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

const (
	codeAddr = 0x1000
	ramSize  = 0x8000 // 32 KiB: eight pages, [0, 0x8000)
	mmioAddr = 0x9000 // unbacked, so accesses exit as MMIO
)

type testVM struct {
	sys *System
	vm  *VM
	mem *guestmem.Memory
	cpu *VCPU
}

// newTestVM builds a VM with RAM at [0, ramSize), code at codeAddr, and
// one vCPU in real mode about to execute it. setup runs before the vCPU
// exists (identity map, irqchip, ...).
func newTestVM(t *testing.T, code []byte, slotFlags uint32, setup func(*VM)) *testVM {
	t.Helper()
	s := openKVM(t)
	vm, err := s.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	mem, err := guestmem.New([]guestmem.Region{{GPA: 0, Size: ramSize}}, guestmem.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	host, err := mem.HostAddress(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.SetUserMemoryRegion(UserMemoryRegion{Slot: 0, Flags: slotFlags, MemorySize: ramSize, UserspaceAddr: uint64(host)}); err != nil {
		t.Fatal(err)
	}
	if err := mem.WriteAt(code, codeAddr); err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(vm)
	}
	cpu, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cpu.Close() })
	sr, err := cpu.GetSregs()
	if err != nil {
		t.Fatal(err)
	}
	sr.CS.Base, sr.CS.Selector = 0, 0
	sr.DS.Base, sr.DS.Selector = 0, 0
	if err := cpu.SetSregs(sr); err != nil {
		t.Fatal(err)
	}
	if err := cpu.SetRegs(&Regs{RIP: codeAddr, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
	return &testVM{sys: s, vm: vm, mem: mem, cpu: cpu}
}

// exitRecord is one observed exit, in a comparable form.
type exitRecord struct {
	Reason ExitReason
	Port   uint16
	Addr   uint64
	Write  bool
	Data   string
}

// donePort is where guests that have an in-kernel irqchip announce their
// end: with an in-kernel local APIC, HLT waits for an interrupt inside KVM
// instead of exiting.
const donePort = 0x3f9

// runUntilHalt runs the vCPU, recording exits, until HLT or a write to
// donePort. Interrupted runs (EINTR, which the Go runtime's signals can
// cause) are run again, as a VMM's loop does when no stop was asked for. A
// watchdog kicks the vCPU out after runLimit so a stuck guest fails the
// test instead of hanging it. mmioRead answers MMIO reads.
func (v *testVM) runUntilHalt(t *testing.T, mmioRead func(addr uint64, data []byte)) []exitRecord {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	d := v.cpu.RunData()
	tid := unix.Gettid()
	watchdog := time.AfterFunc(runLimit, func() {
		d.SetImmediateExit(true)
		unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
	})
	defer watchdog.Stop()
	var got []exitRecord
	for i := 0; i < 1000; i++ {
		err := v.cpu.Run()
		if errors.Is(err, unix.EINTR) {
			if d.ImmediateExit() {
				d.SetImmediateExit(false)
				t.Fatalf("guest still running after %v; exits so far %+v", runLimit, got)
			}
			continue
		}
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		switch r := d.ExitReason(); r {
		case ExitIO:
			io, err := d.IO()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, exitRecord{Reason: r, Port: io.Port, Write: io.Out, Data: string(io.Data)})
			if io.Port == donePort {
				return got
			}
		case ExitMMIO:
			m, err := d.MMIO()
			if err != nil {
				t.Fatal(err)
			}
			if !m.IsWrite && mmioRead != nil {
				mmioRead(m.Addr, m.Data)
			}
			got = append(got, exitRecord{Reason: r, Addr: m.Addr, Write: m.IsWrite, Data: string(m.Data)})
		case ExitHLT:
			return append(got, exitRecord{Reason: r})
		default:
			t.Fatalf("unexpected exit %v after %+v", r, got)
		}
	}
	t.Fatalf("no end after 1000 exits: %+v", got)
	return nil
}

const runLimit = 20 * time.Second

func checkExits(t *testing.T, got, want []exitRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("exits:\n got %+v\nwant %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("exit %d: got %+v, want %+v (all: %+v)", i, got[i], want[i], got)
		}
	}
}

// TestKVM runs the /dev/kvm tests directly on a KVM host, and otherwise
// inside an L1 VM with nested SVM under QEMU TCG (internal/nested; skipped
// with -short or EMBER_NESTED=never).
func TestKVM(t *testing.T) {
	nested.Run(t, nested.Options{}, func(t *testing.T, _ *nested.Env) {
		openKVM(t)
		runKVMTests(t)
	})
}

// runKVMTests runs every test that needs /dev/kvm, as subtests of t.
func runKVMTests(t *testing.T) {
	t.Run("System", testSystem)
	t.Run("RealModePortIO", testRealModePortIO)
	t.Run("MMIOAndDirtyLog", testMMIOAndDirtyLog)
	t.Run("IOEventFD", testIOEventFD)
	t.Run("ImmediateExit", testImmediateExit)
	t.Run("KickFromAnotherThread", testKick)
	t.Run("VCPUState", testVCPUState)
	t.Run("VMState", testVMState)
	t.Run("ExitLatency", testExitLatency)
}

// outLoopCode writes to port 0x3f8 forever: mov dx,0x3f8; l: out dx,al; jmp l.
var outLoopCode = []byte{0xba, 0xf8, 0x03, 0xee, 0xeb, 0xfd}

// runOutLoop makes n round trips guest -> KVM_EXIT_IO -> guest.
func runOutLoop(tb testing.TB, c *VCPU, n int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	d := c.RunData()
	for i := 0; i < n; {
		err := c.Run()
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		if d.ExitReason() != ExitIO {
			tb.Fatalf("exit %v, want KVM_EXIT_IO", d.ExitReason())
		}
		i++
	}
}

// testExitLatency reports the cost of one port-I/O exit round trip (no
// threshold: it depends on the host, and on nesting).
func testExitLatency(t *testing.T) {
	v := newTestVM(t, outLoopCode, 0, nil)
	const n = 2000
	start := time.Now()
	runOutLoop(t, v.cpu, n)
	t.Logf("%d port-I/O exits in %v: %v per exit", n, time.Since(start), time.Since(start)/n)
}

func BenchmarkPortIOExit(b *testing.B) {
	if _, err := os.Stat(DevicePath); err != nil {
		b.Skip("SKIPPED: /dev/kvm is not available")
	}
	s, err := Open()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	vm, err := s.CreateVM()
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	mem, err := guestmem.New([]guestmem.Region{{GPA: 0, Size: ramSize}}, guestmem.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Close()
	host, _ := mem.HostAddress(0)
	if err := vm.SetUserMemoryRegion(UserMemoryRegion{MemorySize: ramSize, UserspaceAddr: uint64(host)}); err != nil {
		b.Fatal(err)
	}
	mem.WriteAt(outLoopCode, codeAddr)
	c, err := vm.CreateVCPU(0)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sr, err := c.GetSregs()
	if err != nil {
		b.Fatal(err)
	}
	sr.CS.Base, sr.CS.Selector = 0, 0
	if err := c.SetSregs(sr); err != nil {
		b.Fatal(err)
	}
	if err := c.SetRegs(&Regs{RIP: codeAddr, RFLAGS: 2}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	runOutLoop(b, c, b.N)
}

func testSystem(t *testing.T) {
	s := openKVM(t)
	if v, err := s.APIVersion(); err != nil || v != APIVersion {
		t.Fatalf("API version %d, %v", v, err)
	}
	for _, c := range []Cap{CapIRQChip, CapUserMemory, CapImmediateExit, CapIOEventFD, CapIRQFD} {
		if n, err := s.CheckExtension(c); err != nil || n <= 0 {
			t.Errorf("capability %d: %d, %v", c, n, err)
		}
	}
	if n, err := s.VCPUMmapSize(); err != nil || n < sizeofRun {
		t.Fatalf("vCPU mmap size %d, %v", n, err)
	}
	cpuid, err := s.GetSupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	var leaf0, leaf1 bool
	for _, e := range cpuid {
		leaf0 = leaf0 || e.Function == 0
		leaf1 = leaf1 || e.Function == 1
	}
	if len(cpuid) < 4 || !leaf0 || !leaf1 {
		t.Fatalf("supported CPUID of %d entries, leaf 0 %v, leaf 1 %v", len(cpuid), leaf0, leaf1)
	}
	msrs, err := s.GetMSRIndexList()
	if err != nil || len(msrs) == 0 {
		t.Fatalf("MSR index list: %d, %v", len(msrs), err)
	}
	if n, _ := s.CheckExtension(CapGetMSRFeatures); n > 0 {
		feats, err := s.GetMSRFeatureIndexList()
		if err != nil {
			t.Fatal(err)
		}
		if len(feats) > 0 {
			entries := make([]MSREntry, len(feats))
			for i, idx := range feats {
				entries[i].Index = idx
			}
			if _, err := s.GetMSRs(entries); err != nil {
				t.Fatalf("feature MSR values: %v", err)
			}
		}
	}
}

// Real mode: mov dx,0x3f8; mov al,'O'; out dx,al; mov al,'K'; out dx,al; hlt.
var portIOCode = []byte{0xba, 0xf8, 0x03, 0xb0, 'O', 0xee, 0xb0, 'K', 0xee, 0xf4}

// portIODoneCode is portIOCode ending with a write to donePort (inc dx;
// out dx,al) before its HLT, for VMs with an in-kernel irqchip.
var portIODoneCode = []byte{0xba, 0xf8, 0x03, 0xb0, 'O', 0xee, 0xb0, 'K', 0xee, 0x42, 0xee, 0xf4}

func testRealModePortIO(t *testing.T) {
	v := newTestVM(t, portIOCode, 0, nil)
	got := v.runUntilHalt(t, nil)
	checkExits(t, got, []exitRecord{
		{Reason: ExitIO, Port: 0x3f8, Write: true, Data: "O"},
		{Reason: ExitIO, Port: 0x3f8, Write: true, Data: "K"},
		{Reason: ExitHLT},
	})
	r, err := v.cpu.GetRegs()
	if err != nil {
		t.Fatal(err)
	}
	if r.RIP != codeAddr+uint64(len(portIOCode)) || r.RAX&0xff != 'K' || r.RDX&0xffff != 0x3f8 {
		t.Fatalf("after HLT: rip %#x rax %#x rdx %#x", r.RIP, r.RAX, r.RDX)
	}
}

func testMMIOAndDirtyLog(t *testing.T) {
	code := []byte{
		0xb0, 0x5a, // mov al, 0x5a
		0xa2, 0x00, 0x30, // mov [0x3000], al   (dirties page 3)
		0xa2, 0x00, 0x90, // mov [0x9000], al   (MMIO write)
		0xa0, 0x04, 0x90, // mov al, [0x9004]   (MMIO read)
		0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xee, // out dx, al            (echo what the read returned)
		0xf4, // hlt
	}
	v := newTestVM(t, code, MemLogDirtyPages, nil)
	got := v.runUntilHalt(t, func(addr uint64, data []byte) {
		for i := range data {
			data[i] = 0xa5
		}
	})
	checkExits(t, got, []exitRecord{
		{Reason: ExitMMIO, Addr: mmioAddr, Write: true, Data: "\x5a"},
		{Reason: ExitMMIO, Addr: mmioAddr + 4, Data: "\xa5"},
		{Reason: ExitIO, Port: 0x3f8, Write: true, Data: "\xa5"},
		{Reason: ExitHLT},
	})
	b, err := v.mem.Slice(0x3000, 1)
	if err != nil || b[0] != 0x5a {
		t.Fatalf("guest write not in RAM: %v %v", b, err)
	}
	bitmap := make([]uint64, 1)
	if err := v.vm.GetDirtyLog(0, ramSize/4096, bitmap); err != nil {
		t.Fatal(err)
	}
	if bitmap[0]&(1<<3) == 0 || bitmap[0]&(1<<5) != 0 {
		t.Fatalf("dirty bitmap %#b: want page 3 set, page 5 clear", bitmap[0])
	}
	if err := v.vm.GetDirtyLog(0, ramSize/4096, bitmap); err != nil || bitmap[0]&(1<<3) != 0 {
		t.Fatalf("dirty bitmap not reset by the read: %#b, %v", bitmap[0], err)
	}
}

func testIOEventFD(t *testing.T) {
	// mov dx,0x80; mov al,1; out dx,al; mov al,2; out dx,al; hlt
	code := []byte{0xba, 0x80, 0x00, 0xb0, 1, 0xee, 0xb0, 2, 0xee, 0xf4}
	v := newTestVM(t, code, 0, nil)
	ev, err := NewEventFD()
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	match := IOEvent{Addr: 0x80, Len: 1, PIO: true, DataMatch: true, Data: 1}
	if err := v.vm.IOEventFD(ev.Fd(), match); err != nil {
		t.Fatal(err)
	}
	got := v.runUntilHalt(t, nil)
	checkExits(t, got, []exitRecord{{Reason: ExitIO, Port: 0x80, Write: true, Data: "\x02"}, {Reason: ExitHLT}})
	if n, err := ev.Read(); err != nil || n != 1 {
		t.Fatalf("eventfd counter %d, %v: want the matching write only", n, err)
	}
	if err := v.vm.DeassignIOEventFD(ev.Fd(), match); err != nil {
		t.Fatal(err)
	}
	if err := v.vm.DeassignIOEventFD(ev.Fd(), match); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("second deassign: %v, want ENOENT", err)
	}
}

func testImmediateExit(t *testing.T) {
	v := newTestVM(t, portIOCode, 0, nil)
	if n, _ := v.sys.CheckExtension(CapImmediateExit); n <= 0 {
		t.Skip("SKIPPED: KVM_CAP_IMMEDIATE_EXIT not supported by this kernel")
	}
	d := v.cpu.RunData()
	d.SetImmediateExit(true)
	err := v.cpu.Run()
	if !errors.Is(err, unix.EINTR) {
		t.Fatalf("run with immediate_exit: %v, want EINTR", err)
	}
	// The guest did not run: the first OUT is still ahead.
	d.SetImmediateExit(false)
	checkExits(t, v.runUntilHalt(t, nil), []exitRecord{
		{Reason: ExitIO, Port: 0x3f8, Write: true, Data: "O"},
		{Reason: ExitIO, Port: 0x3f8, Write: true, Data: "K"},
		{Reason: ExitHLT},
	})
}

// testKick stops a vCPU spinning in the guest from another goroutine, as
// pause does: immediate_exit, then a signal to the vCPU's thread.
func testKick(t *testing.T) {
	v := newTestVM(t, []byte{0xeb, 0xfe}, 0, nil) // jmp $
	d := v.cpu.RunData()
	tids := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tids <- unix.Gettid()
		for {
			err := v.cpu.Run()
			if errors.Is(err, unix.EINTR) {
				if d.ImmediateExit() {
					done <- nil
					return
				}
				continue // a signal that was not a stop request
			}
			if err == nil {
				err = errors.New("guest exited: " + d.ExitReason().String())
			}
			done <- err
			return
		}
	}()
	tid := <-tids
	time.Sleep(50 * time.Millisecond) // let it enter the guest
	start := time.Now()
	d.SetImmediateExit(true)
	if err := unix.Tgkill(unix.Getpid(), tid, unix.SIGURG); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("vCPU left KVM_RUN %v after the kick", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("vCPU did not leave KVM_RUN within 10s of the kick")
	}
}

func testVCPUState(t *testing.T) {
	v := newTestVM(t, portIODoneCode, 0, func(vm *VM) {
		if err := vm.SetIdentityMapAddr(0xfffbc000); err != nil {
			t.Fatal(err)
		}
		if err := vm.SetTSSAddr(0xfffbd000); err != nil {
			t.Fatal(err)
		}
		if err := vm.CreateIRQChip(); err != nil {
			t.Fatal(err)
		}
	})
	c := v.cpu
	if c.ID() != 0 || c.Fd() < 0 {
		t.Fatalf("id %d fd %d", c.ID(), c.Fd())
	}

	cpuid, err := v.sys.GetSupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetCPUID2(cpuid); err != nil {
		t.Fatal(err)
	}
	back, err := c.GetCPUID2()
	if err != nil || len(back) != len(cpuid) {
		t.Fatalf("CPUID2 round trip: %d of %d entries, %v", len(back), len(cpuid), err)
	}

	regs := &Regs{RAX: 42, RBX: 7, RSP: 0x7000, RIP: codeAddr, RFLAGS: 2}
	if err := c.SetRegs(regs); err != nil {
		t.Fatal(err)
	}
	if r, err := c.GetRegs(); err != nil || *r != *regs {
		t.Fatalf("regs round trip %+v, %v", r, err)
	}

	fpu := &FPU{FCW: 0x37f, MXCSR: 0x1f80}
	fpu.XMM[3][0] = 0x99
	if err := c.SetFPU(fpu); err != nil {
		t.Fatal(err)
	}
	// KVM_SET_FPU does not load MXCSR (only XSAVE does), so it is not
	// compared.
	if f, err := c.GetFPU(); err != nil || f.FCW != 0x37f || f.XMM[3][0] != 0x99 {
		t.Fatalf("FPU round trip: fcw %#x xmm3[0] %#x, %v", f.FCW, f.XMM[3][0], err)
	}

	l, err := c.GetLAPIC()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetDeliveryMode(LAPICRegLVTLINT0, LAPICDeliveryExtINT); err != nil {
		t.Fatal(err)
	}
	if err := l.SetDeliveryMode(LAPICRegLVTLINT1, LAPICDeliveryNMI); err != nil {
		t.Fatal(err)
	}
	if err := c.SetLAPIC(l); err != nil {
		t.Fatal(err)
	}
	l2, err := c.GetLAPIC()
	if err != nil {
		t.Fatal(err)
	}
	for off, mode := range map[int]uint32{LAPICRegLVTLINT0: LAPICDeliveryExtINT, LAPICRegLVTLINT1: LAPICDeliveryNMI} {
		if r, _ := l2.Reg(off); r>>8&7 != mode {
			t.Errorf("LVT %#x = %#x, want delivery mode %d", off, r, mode)
		}
	}

	list, err := v.sys.GetMSRIndexList()
	if err != nil {
		t.Fatal(err)
	}
	entries := make([]MSREntry, 0, len(list))
	for _, idx := range list {
		entries = append(entries, MSREntry{Index: idx})
	}
	n, err := c.GetMSRs(entries)
	if err != nil || n == 0 {
		t.Fatalf("GetMSRs: %d of %d, %v", n, len(entries), err)
	}
	// Boot-time MSRs a VMM sets: SYSENTER_CS, LSTAR, MISC_ENABLE (fast
	// strings).
	boot := []MSREntry{{Index: 0x174, Data: 0x10}, {Index: 0xc0000082, Data: 0xffffffff81000000}, {Index: 0x1a0, Data: 1}}
	if m, err := c.SetMSRs(boot); err != nil || m != len(boot) {
		t.Fatalf("SetMSRs: %d of %d, %v", m, len(boot), err)
	}
	read := []MSREntry{{Index: 0x174}, {Index: 0xc0000082}}
	if m, err := c.GetMSRs(read); err != nil || m != 2 || read[0].Data != 0x10 || read[1].Data != 0xffffffff81000000 {
		t.Fatalf("MSRs read back %+v (%d), %v", read, m, err)
	}

	if st, err := c.GetMPState(); err != nil || st != MPStateRunnable {
		t.Fatalf("MP state %d, %v", st, err)
	}
	if err := c.SetMPState(MPStateRunnable); err != nil {
		t.Fatal(err)
	}
	ev, err := c.GetVCPUEvents()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetVCPUEvents(ev); err != nil {
		t.Fatal(err)
	}
	dr, err := c.GetDebugRegs()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetDebugRegs(dr); err != nil {
		t.Fatal(err)
	}
	xs, err := c.GetXSAVE()
	if err != nil || len(xs) != c.XSAVESize() || len(xs) < 4096 {
		t.Fatalf("XSAVE of %d bytes (size %d), %v", len(xs), c.XSAVESize(), err)
	}
	if err := c.SetXSAVE(xs); err != nil {
		t.Fatal(err)
	}
	if err := c.SetXSAVE(xs[:100]); !errors.Is(err, ErrBadArgument) {
		t.Fatalf("short XSAVE: %v", err)
	}
	if n, _ := v.vm.CheckExtension(CapXCRS); n > 0 {
		x, err := c.GetXCRS()
		if err != nil || (x.NrXCRS > 0 && x.XCRS[0].Value&1 == 0) {
			t.Fatalf("XCRS %+v, %v (XCR0 must have x87)", x, err)
		}
		if err := c.SetXCRS(x); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := v.vm.CheckExtension(CapGetTSCKHz); n > 0 {
		khz, err := c.GetTSCKHz()
		if err != nil || khz == 0 {
			t.Fatalf("TSC kHz %d, %v", khz, err)
		}
		// Setting the frequency it already has needs no TSC scaling.
		if err := c.SetTSCKHz(khz); err != nil {
			t.Fatalf("SetTSCKHz(%d): %v", khz, err)
		}
		if err := c.SetTSCKHz(0); !errors.Is(err, ErrBadArgument) {
			t.Fatalf("SetTSCKHz(0): %v", err)
		}
	}
	if err := c.SetSignalMask(0); err != nil {
		t.Fatal(err)
	}
	if err := c.ClearSignalMask(); err != nil {
		t.Fatal(err)
	}
	// The guest has not enabled kvmclock, so the kernel may refuse.
	if err := c.KVMClockCtrl(); err != nil && !errors.Is(err, unix.EINVAL) {
		t.Fatalf("KVMClockCtrl: %v", err)
	}
	// The vCPU still runs its program after all this.
	got := v.runUntilHalt(t, nil)
	if len(got) != 3 || got[0].Data != "O" || got[2].Port != donePort {
		t.Fatalf("exits after state round trips: %+v", got)
	}
	if err := c.NMI(); err != nil {
		t.Fatal(err)
	}
	if ev, err := c.GetVCPUEvents(); err != nil || (ev.NMI.Pending == 0 && ev.NMI.Injected == 0) {
		t.Fatalf("NMI not pending after KVM_NMI: %+v, %v", ev, err)
	}
}

func testVMState(t *testing.T) {
	v := newTestVM(t, portIODoneCode, 0, func(vm *VM) {
		if err := vm.SetIdentityMapAddr(0xfffbc000); err != nil {
			t.Fatal(err)
		}
		if err := vm.SetTSSAddr(0xfffbd000); err != nil {
			t.Fatal(err)
		}
		if err := vm.CreateIRQChip(); err != nil {
			t.Fatal(err)
		}
		if err := vm.CreatePIT2(PITSpeakerDummy); err != nil {
			t.Fatal(err)
		}
	})
	vm := v.vm
	for id := uint32(IRQChipPICMaster); id <= IRQChipIOAPIC; id++ {
		c, err := vm.GetIRQChip(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := vm.SetIRQChip(c); err != nil {
			t.Fatal(err)
		}
	}
	io, err := vm.GetIRQChip(IRQChipIOAPIC)
	if err != nil {
		t.Fatal(err)
	}
	if st := io.IOAPIC(); st.BaseAddress != 0xfec00000 {
		t.Fatalf("IOAPIC base %#x", st.BaseAddress)
	}
	if _, err := vm.GetIRQChip(3); !errors.Is(err, ErrBadArgument) {
		t.Fatalf("irqchip 3: %v", err)
	}
	pit, err := vm.GetPIT2()
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.SetPIT2(pit); err != nil {
		t.Fatal(err)
	}
	clk, err := vm.GetClock()
	if err != nil {
		t.Fatal(err)
	}
	clk.Flags = 0 // only the clock value is settable
	clk.Clock += uint64(time.Second)
	if err := vm.SetClock(clk); err != nil {
		t.Fatal(err)
	}
	if c2, err := vm.GetClock(); err != nil || c2.Clock < clk.Clock {
		t.Fatalf("clock after SetClock: %+v, %v", c2, err)
	}
	if err := vm.IRQLine(4, true); err != nil {
		t.Fatal(err)
	}
	if err := vm.IRQLine(4, false); err != nil {
		t.Fatal(err)
	}
	ev, err := NewEventFD()
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	if err := vm.IRQFD(ev.Fd(), 5); err != nil {
		t.Fatal(err)
	}
	if err := ev.Signal(); err != nil {
		t.Fatal(err)
	}
	if err := vm.DeassignIRQFD(ev.Fd(), 5); err != nil {
		t.Fatal(err)
	}
	if n, _ := vm.CheckExtension(CapIRQFDResample); n > 0 {
		resample, err := NewEventFD()
		if err != nil {
			t.Fatal(err)
		}
		defer resample.Close()
		if err := vm.IRQFDWithResample(ev.Fd(), resample.Fd(), 6); err != nil {
			t.Fatal(err)
		}
		if err := vm.DeassignIRQFD(ev.Fd(), 6); err != nil {
			t.Fatal(err)
		}
	}
	var routes []IRQRoutingEntry
	for pin := uint32(0); pin < IOAPICNumPins; pin++ {
		routes = append(routes, IRQRoutingIRQChip(pin, IRQChipIOAPIC, pin))
	}
	routes = append(routes, IRQRoutingMSI(24, 0xfee00000, 0x30, 0, 0))
	if err := vm.SetGSIRouting(routes); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.SignalMSI(MSI{AddressLo: 0xfee00000, Data: 0x31}); err != nil {
		t.Fatal(err)
	}
	var sink bytes.Buffer
	for _, e := range v.runUntilHalt(t, nil) {
		sink.WriteString(e.Data)
	}
	if sink.String() != "OKK" {
		t.Fatalf("guest output %q after VM state round trips", sink.String())
	}
}
