package kvm

// x86-only ioctls (some are declared in linux/kvm.h but only x86
// implements them).
const (
	kvmGetMSRIndexList        = ioWR | sizeofMSRListHeader<<iocSizeShift | kvmio | 0x02
	kvmGetSupportedCPUID      = ioWR | sizeofCPUID2Header<<iocSizeShift | kvmio | 0x05
	kvmGetMSRFeatureIndexList = ioWR | sizeofMSRListHeader<<iocSizeShift | kvmio | 0x0a
	kvmSetTSSAddr             = ioNone | kvmio | 0x47
	kvmSetIdentityMapAddr     = ioW | sizeU64<<iocSizeShift | kvmio | 0x48
	kvmGetIRQChip             = ioWR | sizeofIRQChip<<iocSizeShift | kvmio | 0x62
	kvmSetIRQChip             = ioR | sizeofIRQChip<<iocSizeShift | kvmio | 0x63 // _IOR in the kernel, sic
	kvmCreatePIT2             = ioW | sizeofPITConfig<<iocSizeShift | kvmio | 0x77
	kvmSetClock               = ioW | sizeofClockData<<iocSizeShift | kvmio | 0x7b
	kvmGetClock               = ioR | sizeofClockData<<iocSizeShift | kvmio | 0x7c
	kvmGetRegs                = ioR | sizeofRegs<<iocSizeShift | kvmio | 0x81
	kvmSetRegs                = ioW | sizeofRegs<<iocSizeShift | kvmio | 0x82
	kvmGetSregs               = ioR | sizeofSregs<<iocSizeShift | kvmio | 0x83
	kvmSetSregs               = ioW | sizeofSregs<<iocSizeShift | kvmio | 0x84
	kvmGetMSRs                = ioWR | sizeofMSRsHeader<<iocSizeShift | kvmio | 0x88
	kvmSetMSRs                = ioW | sizeofMSRsHeader<<iocSizeShift | kvmio | 0x89
	kvmGetFPU                 = ioR | sizeofFPU<<iocSizeShift | kvmio | 0x8c
	kvmSetFPU                 = ioW | sizeofFPU<<iocSizeShift | kvmio | 0x8d
	kvmGetLAPIC               = ioR | sizeofLAPICState<<iocSizeShift | kvmio | 0x8e
	kvmSetLAPIC               = ioW | sizeofLAPICState<<iocSizeShift | kvmio | 0x8f
	kvmSetCPUID2              = ioW | sizeofCPUID2Header<<iocSizeShift | kvmio | 0x90
	kvmGetCPUID2              = ioWR | sizeofCPUID2Header<<iocSizeShift | kvmio | 0x91
	kvmNMI                    = ioNone | kvmio | 0x9a
	kvmGetPIT2                = ioR | sizeofPITState2<<iocSizeShift | kvmio | 0x9f
	kvmSetPIT2                = ioW | sizeofPITState2<<iocSizeShift | kvmio | 0xa0
	kvmGetVCPUEvents          = ioR | sizeofVCPUEvents<<iocSizeShift | kvmio | 0x9f
	kvmSetVCPUEvents          = ioW | sizeofVCPUEvents<<iocSizeShift | kvmio | 0xa0
	kvmGetDebugRegs           = ioR | sizeofDebugRegs<<iocSizeShift | kvmio | 0xa1
	kvmSetDebugRegs           = ioW | sizeofDebugRegs<<iocSizeShift | kvmio | 0xa2
	kvmSetTSCKHz              = ioNone | kvmio | 0xa2
	kvmGetTSCKHz              = ioNone | kvmio | 0xa3
	kvmGetXSAVE               = ioR | sizeofXSAVE<<iocSizeShift | kvmio | 0xa4
	kvmSetXSAVE               = ioW | sizeofXSAVE<<iocSizeShift | kvmio | 0xa5
	kvmGetXCRS                = ioR | sizeofXCRS<<iocSizeShift | kvmio | 0xa6
	kvmSetXCRS                = ioW | sizeofXCRS<<iocSizeShift | kvmio | 0xa7
	kvmKVMClockCtrl           = ioNone | kvmio | 0xad
	kvmGetXSAVE2              = ioR | sizeofXSAVE<<iocSizeShift | kvmio | 0xcf
)
