package nested

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A deliberately independent, raw-ioctl KVM probe (numbers and layouts from
// linux/kvm.h and asm/kvm.h), so this package proves the harness without
// trusting ember's own bindings.
const (
	kvmGetAPIVersion       = 0xAE00
	kvmCreateVM            = 0xAE01
	kvmCheckExtension      = 0xAE03
	kvmGetVCPUMmapSize     = 0xAE04
	kvmCreateVCPU          = 0xAE41
	kvmSetUserMemoryRegion = 0x4020AE46 // _IOW(0xAE, 0x46, 32 bytes)
	kvmCreateIRQChip       = 0xAE60
	kvmRun                 = 0xAE80
	kvmGetRegs             = 0x8090AE81 // _IOR(0xAE, 0x81, 144 bytes)
	kvmSetRegs             = 0x4090AE82
	kvmGetSregs            = 0x8138AE83 // _IOR(0xAE, 0x83, 312 bytes)
	kvmSetSregs            = 0x4138AE84

	kvmCapIRQChip = 0

	kvmExitIO  = 2
	kvmExitHLT = 5

	// struct kvm_run offsets.
	runExitReason = 8
	runIODir      = 32
	runIOSize     = 33
	runIOPort     = 34
	runIOCount    = 36
	runIODataOff  = 40

	regsSize  = 144 // 18 u64: rax..r15, rip, rflags
	regsRIP   = 16 * 8
	regsFlags = 17 * 8
	sregsSize = 312
)

type userMemoryRegion struct {
	Slot, Flags                       uint32
	GuestPhysAddr, MemorySize, Userva uint64
}

func ioctl(fd int, req uintptr, arg uintptr) (uintptr, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if e != 0 {
		return r, e
	}
	return r, nil
}

// probeExit is one observed KVM_RUN exit.
type probeExit struct {
	Reason uint32
	Port   uint16
	Dir    uint8 // 1 = out
	Size   uint8
	Data   byte
}

func (e probeExit) String() string {
	if e.Reason == kvmExitIO {
		return fmt.Sprintf("IO(dir=%d port=%#x size=%d data=%q)", e.Dir, e.Port, e.Size, e.Data)
	}
	return fmt.Sprintf("exit(%d)", e.Reason)
}

// kvmProbe opens /dev/kvm, checks the API version and KVM_CAP_IRQCHIP,
// creates a VM with an in-kernel irqchip and one vCPU, loads code at guest
// physical 0x1000 and runs it in real mode until it halts (at most
// maxExits exits), returning every exit.
func kvmProbe(code []byte, maxExits int) (apiVersion int, exits []probeExit, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	sys, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("open /dev/kvm: %w", err)
	}
	defer unix.Close(sys)
	v, err := ioctl(sys, kvmGetAPIVersion, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("KVM_GET_API_VERSION: %w", err)
	}
	apiVersion = int(v)
	if c, err := ioctl(sys, kvmCheckExtension, kvmCapIRQChip); err != nil || c == 0 {
		return apiVersion, nil, fmt.Errorf("KVM_CHECK_EXTENSION(KVM_CAP_IRQCHIP) = %d, %v", c, err)
	}
	// The in-kernel irqchip works (a VM of its own: with an in-kernel LAPIC
	// a HLT waits for an interrupt in the kernel instead of exiting).
	chipVM, err := ioctl(sys, kvmCreateVM, 0)
	if err != nil {
		return apiVersion, nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	_, err = ioctl(int(chipVM), kvmCreateIRQChip, 0)
	unix.Close(int(chipVM))
	if err != nil {
		return apiVersion, nil, fmt.Errorf("KVM_CREATE_IRQCHIP: %w", err)
	}

	vmfd, err := ioctl(sys, kvmCreateVM, 0)
	if err != nil {
		return apiVersion, nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	vm := int(vmfd)
	defer unix.Close(vm)

	const memSize = 0x10000
	mem, err := unix.Mmap(-1, 0, memSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return apiVersion, nil, fmt.Errorf("mmap guest memory: %w", err)
	}
	defer unix.Munmap(mem)
	if len(code) > memSize-0x1000 {
		return apiVersion, nil, errors.New("code too large")
	}
	copy(mem[0x1000:], code)
	region := userMemoryRegion{Slot: 0, GuestPhysAddr: 0, MemorySize: memSize, Userva: uint64(uintptr(unsafe.Pointer(&mem[0])))}
	if _, err := ioctl(vm, kvmSetUserMemoryRegion, uintptr(unsafe.Pointer(&region))); err != nil {
		return apiVersion, nil, fmt.Errorf("KVM_SET_USER_MEMORY_REGION: %w", err)
	}

	cpufd, err := ioctl(vm, kvmCreateVCPU, 0)
	if err != nil {
		return apiVersion, nil, fmt.Errorf("KVM_CREATE_VCPU: %w", err)
	}
	cpu := int(cpufd)
	defer unix.Close(cpu)
	size, err := ioctl(sys, kvmGetVCPUMmapSize, 0)
	if err != nil || size < 4096 {
		return apiVersion, nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE = %d, %v", size, err)
	}
	run, err := unix.Mmap(cpu, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return apiVersion, nil, fmt.Errorf("mmap kvm_run: %w", err)
	}
	defer unix.Munmap(run)

	// Real mode with CS base 0, so RIP 0x1000 is guest physical 0x1000.
	var sregs [sregsSize]byte
	if _, err := ioctl(cpu, kvmGetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return apiVersion, nil, fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	binary.LittleEndian.PutUint64(sregs[0:], 0)  // cs.base
	binary.LittleEndian.PutUint16(sregs[12:], 0) // cs.selector
	if _, err := ioctl(cpu, kvmSetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return apiVersion, nil, fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	var regs [regsSize]byte
	binary.LittleEndian.PutUint64(regs[regsRIP:], 0x1000)
	binary.LittleEndian.PutUint64(regs[regsFlags:], 0x2)
	if _, err := ioctl(cpu, kvmSetRegs, uintptr(unsafe.Pointer(&regs[0]))); err != nil {
		return apiVersion, nil, fmt.Errorf("KVM_SET_REGS: %w", err)
	}

	for len(exits) < maxExits {
		if _, err := ioctl(cpu, kvmRun, 0); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue // a Go runtime signal; nothing asked this loop to stop
			}
			return apiVersion, exits, fmt.Errorf("KVM_RUN: %w", err)
		}
		e := probeExit{Reason: binary.LittleEndian.Uint32(run[runExitReason:])}
		if e.Reason == kvmExitIO {
			e.Dir = run[runIODir]
			e.Size = run[runIOSize]
			e.Port = binary.LittleEndian.Uint16(run[runIOPort:])
			count := binary.LittleEndian.Uint32(run[runIOCount:])
			off := binary.LittleEndian.Uint64(run[runIODataOff:])
			if count != 1 || off >= uint64(len(run)) {
				return apiVersion, exits, fmt.Errorf("IO exit with count %d, data offset %#x", count, off)
			}
			e.Data = run[off]
		}
		exits = append(exits, e)
		if e.Reason != kvmExitIO {
			break
		}
	}
	var after [regsSize]byte
	if _, err := ioctl(cpu, kvmGetRegs, uintptr(unsafe.Pointer(&after[0]))); err != nil {
		return apiVersion, exits, fmt.Errorf("KVM_GET_REGS: %w", err)
	}
	if rip := binary.LittleEndian.Uint64(after[regsRIP:]); rip != 0x1000+uint64(len(code)) {
		return apiVersion, exits, fmt.Errorf("RIP after HLT = %#x, want %#x", rip, 0x1000+len(code))
	}
	return apiVersion, exits, nil
}
