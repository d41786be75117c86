package kvm

// Ioctl request numbers are built as the kernel's _IOC macro builds them
// (asm-generic encoding, shared by amd64 and arm64): direction in bits
// 30-31, argument size in bits 16-29, the KVM type 0xAE in bits 8-15 and
// the command number in bits 0-7. The sizes are the kernel structs' sizes;
// the tests check each number against the C headers.
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2

	iocDirShift  = 30
	iocSizeShift = 16
	iocTypeShift = 8

	kvmio = 0xAE << iocTypeShift

	ioNone  = iocNone << iocDirShift
	ioW     = iocWrite << iocDirShift
	ioR     = iocRead << iocDirShift
	ioWR    = (iocRead | iocWrite) << iocDirShift
	sizeU64 = 8
)

// Arch-independent ioctls.
const (
	kvmGetAPIVersion       = ioNone | kvmio // command 0x00
	kvmCreateVM            = ioNone | kvmio | 0x01
	kvmCheckExtension      = ioNone | kvmio | 0x03
	kvmGetVCPUMmapSize     = ioNone | kvmio | 0x04
	kvmCreateVCPU          = ioNone | kvmio | 0x41
	kvmGetDirtyLog         = ioW | sizeofDirtyLog<<iocSizeShift | kvmio | 0x42
	kvmSetUserMemoryRegion = ioW | sizeofUserMemoryRegion<<iocSizeShift | kvmio | 0x46
	kvmCreateIRQChip       = ioNone | kvmio | 0x60
	kvmIRQLine             = ioW | sizeofIRQLevel<<iocSizeShift | kvmio | 0x61
	kvmSetGSIRouting       = ioW | sizeofIRQRoutingHeader<<iocSizeShift | kvmio | 0x6a
	kvmIRQFD               = ioW | sizeofIRQFD<<iocSizeShift | kvmio | 0x76
	kvmIOEventFD           = ioW | sizeofIOEventFD<<iocSizeShift | kvmio | 0x79
	kvmRun                 = ioNone | kvmio | 0x80
	kvmSetSignalMask       = ioW | sizeofSignalMaskHeader<<iocSizeShift | kvmio | 0x8b
	kvmGetMPState          = ioR | sizeofMPState<<iocSizeShift | kvmio | 0x98
	kvmSetMPState          = ioW | sizeofMPState<<iocSizeShift | kvmio | 0x99
	kvmEnableCap           = ioW | sizeofEnableCap<<iocSizeShift | kvmio | 0xa3
	kvmSignalMSI           = ioW | sizeofMSI<<iocSizeShift | kvmio | 0xa5
)
