package kvmstate

import (
	"encoding/binary"
	"errors"
	"os"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/kvm"
	"github.com/ember-vmm/ember/internal/nested"
	"golang.org/x/sys/unix"
)

// TestKVM saves a running real-mode guest, restores it into a fresh VM and
// checks it continues exactly. It runs against /dev/kvm directly on a KVM
// host and otherwise inside the nested L1 VM (skipped with -short or
// EMBER_NESTED=never).
func TestKVM(t *testing.T) {
	nested.Run(t, nested.Options{}, func(t *testing.T, _ *nested.Env) {
		if _, err := os.Stat(kvm.DevicePath); err != nil {
			t.Skipf("SKIPPED: %v; these tests need a KVM host or the nested L1 harness", err)
		}
		t.Run("SaveRestore", testSaveRestore)
		t.Run("Errors", testErrors)
	})
}

const (
	codeAddr    = 0x1000
	counterAddr = 0x500 // the guest stores its counter here
	patternAddr = 0x600 // 16 bytes the guest loads into XMM1
	ramSize     = 0x8000
	outPort     = 0xe9
	outEvery    = 0x1000
	runLimit    = 20 * time.Second
)

// counterCode is a real-mode program: it programs PIT channel 0 (mode 2,
// count 0x1234), writes SYSENTER_EIP = 0x12345678 itself, loads XMM1 from
// patternAddr, then counts in EBX forever, storing the count at counterAddr
// and in XMM0 on every iteration and writing it to outPort every outEvery.
//
//	0x00 cli
//	0x01 mov al,0x34 ; out 0x43,al ; mov al,0x34 ; out 0x40,al ; mov al,0x12 ; out 0x40,al
//	0x0d mov ecx,0x176 ; mov eax,0x12345678 ; xor edx,edx ; wrmsr
//	0x1e movups xmm1,[0x600]
//	0x23 xor ebx,ebx ; mov dx,0xe9
//	0x29 loop: inc ebx ; mov [0x500],ebx ; movd xmm0,ebx ; test ebx,0xfff ; jnz loop
//	0x3d mov eax,ebx ; out dx,eax
//	0x42 jmp loop
var counterCode = []byte{
	0xfa, 0xb0, 0x34, 0xe6, 0x43, 0xb0, 0x34, 0xe6, 0x40, 0xb0, 0x12, 0xe6,
	0x40, 0x66, 0xb9, 0x76, 0x01, 0x00, 0x00, 0x66, 0xb8, 0x78, 0x56, 0x34,
	0x12, 0x66, 0x31, 0xd2, 0x0f, 0x30, 0x0f, 0x10, 0x0e, 0x00, 0x06, 0x66,
	0x31, 0xdb, 0xba, 0xe9, 0x00, 0x66, 0x43, 0x66, 0x89, 0x1e, 0x00, 0x05,
	0x66, 0x0f, 0x6e, 0xc3, 0x66, 0xf7, 0xc3, 0xff, 0x0f, 0x00, 0x00, 0x75,
	0xec, 0x66, 0x89, 0xd8, 0x66, 0xef, 0xeb, 0xe5,
}

const (
	outInsnEnd = codeAddr + 0x42 // RIP once the OUT has completed
	outInsn    = codeAddr + 0x40 // RIP while the OUT is pending
)

var xmmPattern = []byte{0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f}

// Values the test plants in state to see them survive.
// guestTSCStart is the source guest's TSC at start: about ten minutes at
// 2 GHz, far from what a fresh VM's TSC reads.
const guestTSCStart = 1 << 40

var plantedMSRs = []kvm.MSREntry{
	{Index: 0xc0000082, Data: 0xffffffff81000000}, // LSTAR
	{Index: 0xc0000102, Data: 0xffff888012345678}, // KERNEL_GS_BASE (canonical, as KVM insists)
	{Index: 0xc0000081, Data: 0x0023001000000000}, // STAR
}

const (
	lapicTimerLVT   = 1<<16 | 1<<17 | 0x40 // masked, periodic, vector 0x40
	lapicTimerInit  = 0x7fffffff
	ioapicPin       = 10
	ioapicRedirMark = 1<<16 | 0x3a // masked, vector 0x3a
)

// newVM is what a VMM sets up before restoring or booting: identity map,
// TSS, irqchip, PIT, and RAM holding image.
func newVM(t *testing.T, sys *kvm.System, image []byte) (*kvm.VM, *guestmem.Memory) {
	t.Helper()
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	for _, f := range []func() error{
		func() error { return vm.SetIdentityMapAddr(0xfffbc000) },
		func() error { return vm.SetTSSAddr(0xfffbd000) },
		vm.CreateIRQChip,
		func() error { return vm.CreatePIT2(kvm.PITSpeakerDummy) },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	mem, err := guestmem.New([]guestmem.Region{{GPA: 0, Size: ramSize}}, guestmem.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	host, err := mem.HostAddress(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.SetUserMemoryRegion(kvm.UserMemoryRegion{MemorySize: ramSize, UserspaceAddr: uint64(host)}); err != nil {
		t.Fatal(err)
	}
	if err := mem.WriteAt(image, 0); err != nil {
		t.Fatal(err)
	}
	return vm, mem
}

func newVCPU(t *testing.T, vm *kvm.VM) *kvm.VCPU {
	t.Helper()
	c, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// runOuts runs c until it has written n values to outPort and returns
// them. Any other exit fails the test; a watchdog ends a stuck guest.
func runOuts(t *testing.T, c *kvm.VCPU, n int) []uint32 {
	t.Helper()
	d := c.RunData()
	tid := unix.Gettid()
	watchdog := time.AfterFunc(runLimit, func() {
		d.SetImmediateExit(true)
		unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
	})
	defer watchdog.Stop()
	var got []uint32
	for len(got) < n {
		err := c.Run()
		if errors.Is(err, unix.EINTR) {
			if d.ImmediateExit() {
				d.SetImmediateExit(false)
				t.Fatalf("guest still running after %v; outputs %v", runLimit, got)
			}
			continue
		}
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		if r := d.ExitReason(); r != kvm.ExitIO {
			regs, _ := c.GetRegs()
			t.Fatalf("unexpected exit %v after outputs %v (regs %+v)", r, got, regs)
		}
		io, err := d.IO()
		if err != nil {
			t.Fatal(err)
		}
		if !io.Out || io.Port != outPort || io.Size != 4 || len(io.Data) != 4 {
			t.Fatalf("unexpected port access %+v", io)
		}
		got = append(got, binary.LittleEndian.Uint32(io.Data))
	}
	return got
}

func wantOuts(t *testing.T, got []uint32, first uint32) {
	t.Helper()
	for i, v := range got {
		if want := first + uint32(i)*outEvery; v != want {
			t.Fatalf("outputs %#x: output %d is %#x, want %#x", got, i, v, want)
		}
	}
}

func hasXSAVE(cpuid []kvm.CPUIDEntry) bool {
	for _, e := range cpuid {
		if e.Function == 1 && e.Index == 0 {
			return e.ECX&(1<<26) != 0
		}
	}
	return false
}

// startGuest prepares c to run counterCode with SSE on and the LAPIC
// timer, MSRs and IOAPIC entry the test checks later.
func startGuest(t *testing.T, vm *kvm.VM, c *kvm.VCPU, cpuid []kvm.CPUIDEntry) {
	t.Helper()
	if err := c.SetCPUID2(cpuid); err != nil {
		t.Fatal(err)
	}
	sr, err := c.GetSregs()
	if err != nil {
		t.Fatal(err)
	}
	sr.CS.Base, sr.CS.Selector = 0, 0
	sr.DS.Base, sr.DS.Selector = 0, 0
	sr.CR0 = sr.CR0&^(1<<2) | 1<<1 // no x87 emulation, monitor coprocessor
	sr.CR4 |= 1<<9 | 1<<10         // OSFXSR, OSXMMEXCPT: SSE usable
	if hasXSAVE(cpuid) {
		sr.CR4 |= 1 << 18 // OSXSAVE
	}
	if err := c.SetSregs(sr); err != nil {
		t.Fatal(err)
	}
	if err := c.SetRegs(&kvm.Regs{RIP: codeAddr, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
	if hasXSAVE(cpuid) {
		x := &kvm.XCRS{NrXCRS: 1}
		x.XCRS[0] = kvm.XCR{XCR: 0, Value: 3} // x87 | SSE
		if err := c.SetXCRS(x); err != nil {
			t.Fatal(err)
		}
	}
	l, err := c.GetLAPIC()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		off int
		v   uint32
	}{{kvm.LAPICRegLVTTimer, lapicTimerLVT}, {kvm.LAPICRegTimerDivide, 0xb}, {kvm.LAPICRegTimerInitCount, lapicTimerInit}} {
		if err := l.SetReg(r.off, r.v); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SetLAPIC(l); err != nil {
		t.Fatal(err)
	}
	if n, err := c.SetMSRs(plantedMSRs); err != nil || n != len(plantedMSRs) {
		t.Fatalf("planting MSRs: %d, %v", n, err)
	}
	// Start the guest's TSC far from zero. KVM takes a host write within a
	// second's worth of cycles of the TSC it expects as an attempt to keep
	// vCPUs in sync and ignores its value; a guest that ran a fraction of a
	// second would then restore with a TSC near zero, as a fresh VM's is.
	if n, err := c.SetMSRs([]kvm.MSREntry{{Index: msrTSC, Data: guestTSCStart}}); err != nil || n != 1 {
		t.Fatalf("setting the TSC: %d, %v", n, err)
	}
	chip, err := vm.GetIRQChip(kvm.IRQChipIOAPIC)
	if err != nil {
		t.Fatal(err)
	}
	io := chip.IOAPIC()
	io.RedirTbl[ioapicPin] = ioapicRedirMark
	chip.SetIOAPIC(io)
	if err := vm.SetIRQChip(chip); err != nil {
		t.Fatal(err)
	}
}

func guestImage() []byte {
	img := make([]byte, ramSize)
	copy(img[codeAddr:], counterCode)
	copy(img[patternAddr:], xmmPattern)
	return img
}

func msrMap(m []kvm.MSREntry) map[uint32]uint64 {
	out := make(map[uint32]uint64, len(m))
	for _, e := range m {
		out[e.Index] = e.Data
	}
	return out
}

func testSaveRestore(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sys, err := kvm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	cpuid, err := sys.GetSupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	base, err := MSRsToSave(sys)
	if err != nil {
		t.Fatal(err)
	}
	msrs := MergeMSRs(base, CPUIDMSRs(cpuid))
	t.Logf("saving %d MSRs (%d from KVM's list)", len(msrs), len(base))

	// The source VM runs until its third output and is stopped there.
	srcVM, srcMem := newVM(t, sys, guestImage())
	src := newVCPU(t, srcVM)
	startGuest(t, srcVM, src, cpuid)
	wantOuts(t, runOuts(t, src, 3), outEvery)

	// Until the OUT is completed inside KVM, RIP still points at it.
	if r, err := src.GetRegs(); err != nil || r.RIP != outInsn {
		t.Fatalf("RIP before completing the exit: %+v, %v; want %#x", r, err, outInsn)
	}
	if err := CompletePendingExit(src); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	vs, err := SaveVCPU(src, msrs)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := SaveVM(srcVM)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("saved in %v: %d CPUID entries, %d MSRs, %d-byte XSAVE, TSC %d kHz, clock flags %#x",
		time.Since(start), len(vs.CPUID), len(vs.MSRs), len(vs.XSAVE), vs.TSCKHz, ms.Clock.Flags)
	if vs.Regs.RIP != outInsnEnd || vs.Regs.RBX != 3*outEvery {
		t.Fatalf("saved RIP %#x RBX %#x, want %#x and %#x", vs.Regs.RIP, vs.Regs.RBX, outInsnEnd, 3*outEvery)
	}
	if got := msrMap(vs.MSRs)[0x176]; got != 0x12345678 {
		t.Fatalf("saved SYSENTER_EIP %#x, want the guest's 0x12345678", got)
	}

	// Through the encoding, as a snapshot file would carry it.
	enc, err := Marshal(&State{VM: ms, VCPUs: []*VCPUState{vs}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("encoded state: %d bytes", len(enc))
	dec, err := Unmarshal(enc)
	if err != nil {
		t.Fatal(err)
	}
	image := make([]byte, ramSize)
	if err := srcMem.ReadAt(image, 0); err != nil {
		t.Fatal(err)
	}
	src.Close()
	srcVM.Close()

	// A fresh VM and vCPU, restored in Firecracker's order.
	dstVM, dstMem := newVM(t, sys, image)
	dst := newVCPU(t, dstVM)
	if err := RestoreVCPU(dst, dec.VCPUs[0]); err != nil {
		t.Fatal(err)
	}
	if err := RestoreVM(dstVM, dec.VM, RestoreVMOptions{}); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, dst, dstVM, vs, ms, msrs)

	// The program carries on from where it was.
	wantOuts(t, runOuts(t, dst, 2), 4*outEvery)
	var counter [4]byte
	if err := dstMem.ReadAt(counter[:], counterAddr); err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(counter[:]); got != 5*outEvery {
		t.Fatalf("counter in memory %#x, want %#x", got, 5*outEvery)
	}
	if r, err := dst.GetRegs(); err != nil || r.RBX != 5*outEvery {
		t.Fatalf("RBX after resuming: %+v, %v", r, err)
	}
}

// checkRestored compares the restored vCPU and VM with what was saved.
func checkRestored(t *testing.T, c *kvm.VCPU, vm *kvm.VM, vs *VCPUState, ms *VMState, msrs []uint32) {
	t.Helper()
	if r, err := c.GetRegs(); err != nil || *r != vs.Regs {
		t.Errorf("registers: %+v, %v; want %+v", r, err, vs.Regs)
	}
	if sr, err := c.GetSregs(); err != nil || *sr != vs.Sregs {
		t.Errorf("special registers: %+v, %v; want %+v", sr, err, vs.Sregs)
	}
	if st, err := c.GetMPState(); err != nil || st != vs.MPState {
		t.Errorf("MP state %v, %v; want %v", st, err, vs.MPState)
	}
	if x, err := c.GetXCRS(); err != nil || *x != vs.XCRS {
		t.Errorf("XCRs %+v, %v; want %+v", x, err, vs.XCRS)
	} else if hasXSAVE(vs.CPUID) && (x.NrXCRS == 0 || x.XCRS[0].Value != 3) {
		t.Errorf("XCR0 %+v, want 3", x)
	}
	if dr, err := c.GetDebugRegs(); err != nil || *dr != vs.DebugRegs {
		t.Errorf("debug registers %+v, %v; want %+v", dr, err, vs.DebugRegs)
	}
	xs, err := c.GetXSAVE()
	if err != nil {
		t.Fatal(err)
	}
	// XMM n sits at byte 160+16n of the legacy FXSAVE region.
	var xmm0 [16]byte
	binary.LittleEndian.PutUint32(xmm0[:], 3*outEvery)
	if string(xs[160:176]) != string(xmm0[:]) || string(xs[176:192]) != string(xmmPattern) {
		t.Errorf("XMM0 % x XMM1 % x; want % x and % x", xs[160:176], xs[176:192], xmm0, xmmPattern)
	}
	if string(xs[:576]) != string(vs.XSAVE[:576]) {
		t.Errorf("XSAVE legacy region and header differ after restore")
	}

	got, err := getMSRs(c, msrs)
	if err != nil {
		t.Fatal(err)
	}
	want := msrMap(vs.MSRs)
	for idx, v := range msrMap(got) {
		switch idx {
		case msrTSC:
			// The guest TSC keeps counting from the saved value.
			if v < want[idx] || v-want[idx] > 100_000_000_000 {
				t.Errorf("TSC %d after restore, saved %d", v, want[idx])
			}
		case msrTSCDeadline:
			// Only meaningful in TSC-deadline mode, which this guest is not in.
		default:
			if v != want[idx] {
				t.Errorf("MSR %#x = %#x after restore, saved %#x", idx, v, want[idx])
			}
		}
	}
	for _, m := range plantedMSRs {
		if want[m.Index] != m.Data {
			t.Errorf("planted MSR %#x saved as %#x, want %#x", m.Index, want[m.Index], m.Data)
		}
	}

	l, err := c.GetLAPIC()
	if err != nil {
		t.Fatal(err)
	}
	lvt, _ := l.Reg(kvm.LAPICRegLVTTimer)
	icr, _ := l.Reg(kvm.LAPICRegTimerInitCount)
	ccr, _ := l.Reg(kvm.LAPICRegTimerCurrCount)
	if lvt != lapicTimerLVT || icr != lapicTimerInit || ccr == 0 || ccr > icr {
		t.Errorf("LAPIC timer: LVT %#x initial %#x current %#x", lvt, icr, ccr)
	}
	time.Sleep(20 * time.Millisecond)
	l2, err := c.GetLAPIC()
	if err != nil {
		t.Fatal(err)
	}
	if ccr2, _ := l2.Reg(kvm.LAPICRegTimerCurrCount); ccr2 == ccr || ccr2 == 0 {
		t.Errorf("LAPIC timer not counting after restore: %#x then %#x", ccr, ccr2)
	}
	for _, off := range []int{kvm.LAPICRegID, kvm.LAPICRegSpurious, kvm.LAPICRegLVTLINT0, kvm.LAPICRegLVTLINT1, kvm.LAPICRegTimerDivide} {
		a, _ := l.Reg(off)
		b, _ := vs.LAPIC.Reg(off)
		if a != b {
			t.Errorf("LAPIC register %#x = %#x after restore, saved %#x", off, a, b)
		}
	}

	now, err := SaveVM(vm)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(now.PICMaster, ms.PICMaster) || !reflect.DeepEqual(now.PICSlave, ms.PICSlave) {
		t.Errorf("PICs %+v %+v after restore, saved %+v %+v", now.PICMaster, now.PICSlave, ms.PICMaster, ms.PICSlave)
	}
	if now.IOAPIC.RedirTbl != ms.IOAPIC.RedirTbl || ms.IOAPIC.RedirTbl[ioapicPin] != ioapicRedirMark {
		t.Errorf("IOAPIC redirection table %#x after restore, saved %#x", now.IOAPIC.RedirTbl, ms.IOAPIC.RedirTbl)
	}
	ch, sch := now.PIT.Channels[0], ms.PIT.Channels[0]
	if sch.Mode != 2 || sch.Count != 0x1234 {
		t.Errorf("saved PIT channel 0 %+v, want mode 2 count 0x1234 as the guest programmed it", sch)
	}
	ch.CountLoadTime, sch.CountLoadTime = 0, 0 // host time, rebased by KVM
	if ch != sch {
		t.Errorf("PIT channel 0 %+v after restore, saved %+v", ch, sch)
	}
	if now.Clock.Clock < ms.Clock.Clock || now.Clock.Clock-ms.Clock.Clock > uint64(10*time.Second) {
		t.Errorf("kvmclock %d after restore, saved %d", now.Clock.Clock, ms.Clock.Clock)
	}
}

func testErrors(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sys, err := kvm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	cpuid, err := sys.GetSupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	vm, _ := newVM(t, sys, guestImage())
	c := newVCPU(t, vm)
	startGuest(t, vm, c, cpuid)

	if _, err := SaveVCPU(c, []uint32{0x174, 0xdeadbeef}); !errors.Is(err, ErrMSR) {
		t.Errorf("saving an MSR KVM lacks: %v, want ErrMSR", err)
	}
	vs, err := SaveVCPU(c, []uint32{0x174})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := SaveVM(vm)
	if err != nil {
		t.Fatal(err)
	}
	if err := RestoreVCPU(c, nil); !errors.Is(err, ErrFormat) {
		t.Errorf("nil vCPU state: %v", err)
	}
	if err := RestoreVM(vm, nil, RestoreVMOptions{}); !errors.Is(err, ErrFormat) {
		t.Errorf("nil VM state: %v", err)
	}
	bad := *vs
	bad.MSRs = append([]kvm.MSREntry{}, vs.MSRs...)
	bad.MSRs = append(bad.MSRs, kvm.MSREntry{Index: 0xdeadbeef, Data: 1})
	if err := RestoreVCPU(c, &bad); !errors.Is(err, ErrMSR) {
		t.Errorf("restoring an MSR KVM lacks: %v, want ErrMSR", err)
	}
	bad = *vs
	bad.XSAVE = append(append([]byte{}, vs.XSAVE...), make([]byte, 4096)...)
	bad.XSAVE[len(bad.XSAVE)-1] = 1
	if err := RestoreVCPU(c, &bad); !errors.Is(err, ErrIncompatible) {
		t.Errorf("oversized XSAVE: %v, want ErrIncompatible", err)
	}
	noRealtime := *ms
	noRealtime.Clock.Flags &^= kvm.ClockRealtime
	if err := RestoreVM(vm, &noRealtime, RestoreVMOptions{ClockRealtime: true}); !errors.Is(err, ErrIncompatible) {
		t.Errorf("realtime clock not saved: %v, want ErrIncompatible", err)
	}
	if ms.Clock.Flags&kvm.ClockRealtime != 0 {
		// With realtime the clock moves on by the wall time since the save.
		time.Sleep(200 * time.Millisecond)
		if err := RestoreVM(vm, ms, RestoreVMOptions{ClockRealtime: true}); err != nil {
			t.Fatal(err)
		}
		clk, err := vm.GetClock()
		if err != nil {
			t.Fatal(err)
		}
		if clk.Clock < ms.Clock.Clock+uint64(200*time.Millisecond) {
			t.Errorf("realtime restore: clock %d, saved %d 200 ms ago", clk.Clock, ms.Clock.Clock)
		}
	} else {
		t.Log("host kvmclock has no KVM_CLOCK_REALTIME; realtime restore not exercised")
	}
	// A VM without an in-kernel irqchip has no LAPIC to restore into.
	bare, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	bc := newVCPU(t, bare)
	if err := RestoreVCPU(bc, vs); err == nil {
		t.Error("restore into a vCPU without a LAPIC succeeded")
	}
	// The state still restores correctly into the original vCPU.
	if err := RestoreVCPU(c, vs); err != nil {
		t.Fatal(err)
	}
}
