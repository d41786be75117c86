package kvm

// Cap is a KVM capability number, for CheckExtension and EnableCap.
type Cap uint32

// Capabilities a VMM asks about. Numbers are the kernel's KVM_CAP_*.
const (
	CapIRQChip                Cap = 0
	CapHLT                    Cap = 1
	CapUserMemory             Cap = 3
	CapSetTSSAddr             Cap = 4
	CapExtCPUID               Cap = 7
	CapClocksource            Cap = 8
	CapNrVCPUs                Cap = 9
	CapNrMemslots             Cap = 10
	CapPIT                    Cap = 11
	CapNopIODelay             Cap = 12
	CapMPState                Cap = 14
	CapCoalescedMMIO          Cap = 15
	CapSyncMMU                Cap = 16
	CapUserNMI                Cap = 22
	CapSetGuestDebug          Cap = 23
	CapReinjectControl        Cap = 24
	CapIRQRouting             Cap = 25
	CapIRQInjectStatus        Cap = 26
	CapMCE                    Cap = 31
	CapIRQFD                  Cap = 32
	CapPIT2                   Cap = 33
	CapSetBootCPUID           Cap = 34
	CapPITState2              Cap = 35
	CapIOEventFD              Cap = 36
	CapSetIdentityMapAddr     Cap = 37
	CapAdjustClock            Cap = 39
	CapInternalErrorData      Cap = 40
	CapVCPUEvents             Cap = 41
	CapDebugRegs              Cap = 50
	CapEnableCap              Cap = 54
	CapXSAVE                  Cap = 55
	CapXCRS                   Cap = 56
	CapAsyncPF                Cap = 59
	CapTSCControl             Cap = 60
	CapGetTSCKHz              Cap = 61
	CapMaxVCPUs               Cap = 66
	CapOneReg                 Cap = 70
	CapTSCDeadlineTimer       Cap = 72
	CapSyncRegs               Cap = 74
	CapKVMClockCtrl           Cap = 76
	CapSignalMSI              Cap = 77
	CapReadonlyMem            Cap = 81
	CapIRQFDResample          Cap = 82
	CapDeviceCtrl             Cap = 89
	CapExtEmulCPUID           Cap = 95
	CapEnableCapVM            Cap = 98
	CapIOEventFDNoLength      Cap = 100
	CapCheckExtensionVM       Cap = 105
	CapDisableQuirks          Cap = 116
	CapX86SMM                 Cap = 117
	CapSplitIRQChip           Cap = 121
	CapIOEventFDAnyLength     Cap = 122
	CapMaxVCPUID              Cap = 128
	CapX2APICAPI              Cap = 129
	CapMSIDevID               Cap = 131
	CapImmediateExit          Cap = 136
	CapX86DisableExits        Cap = 143
	CapGetMSRFeatures         Cap = 153
	CapNestedState            Cap = 157
	CapCoalescedPIO           Cap = 162
	CapExceptionPayload       Cap = 164
	CapManualDirtyLogProtect2 Cap = 168
	CapHaltPoll               Cap = 182
	CapX86UserSpaceMSR        Cap = 188
	CapX86MSRFilter           Cap = 189
	CapDirtyLogRing           Cap = 192
	CapSregs2                 Cap = 200
	CapExitOnEmulationFailure Cap = 204
	CapXSAVE2                 Cap = 208
	CapSystemEventData        Cap = 215
	CapX86TripleFaultEvent    Cap = 218
)
