package vmm

import (
	"github.com/ember-vmm/ember/internal/strictjson"
	"github.com/ember-vmm/ember/internal/vmconfig"
)

// Action is one request to the controller, as the API layer parsed it.
// Each concrete type corresponds to one of Firecracker's VMM actions.
type Action interface{ action() }

// The actions. Fields carry the decoded request bodies.
type (
	GetInstanceInfo        struct{}
	GetVersion             struct{}
	GetFullConfig          struct{}
	GetMachineConfig       struct{}
	GetMMDS                struct{}
	GetBalloonConfig       struct{}
	GetBalloonStats        struct{}
	GetHintingStatus       struct{}
	GetMemoryHotplugStatus struct{}
	GetEmberState          struct{}

	ConfigureBootSource struct{ Config vmconfig.BootSourceConfig }
	ConfigureLogger     struct{ Config vmconfig.LoggerConfig }
	ConfigureMetrics    struct{ Config vmconfig.MetricsConfig }
	ConfigureSerial     struct{ Config vmconfig.SerialConfig }
	PutCPUConfig        struct{ Template *vmconfig.CPUTemplate }
	UpdateMachineConfig struct{ Update vmconfig.MachineConfigUpdate }

	InsertDrive struct{ Config vmconfig.BlockDeviceConfig }
	UpdateDrive struct {
		Config vmconfig.BlockDeviceUpdateConfig
	}
	InsertNet struct {
		Config vmconfig.NetworkInterfaceConfig
	}
	UpdateNet struct {
		Config vmconfig.NetworkInterfaceUpdateConfig
	}
	InsertPmem struct{ Config vmconfig.PmemConfig }
	UpdatePmem struct {
		Config vmconfig.PmemDeviceUpdateConfig
	}
	HotUnplug     struct{ Kind, ID string }
	SetVsock      struct{ Config vmconfig.VsockDeviceConfig }
	SetEntropy    struct{ Config vmconfig.EntropyDeviceConfig }
	SetBalloon    struct{ Config vmconfig.BalloonDeviceConfig }
	UpdateBalloon struct {
		Config vmconfig.BalloonUpdateConfig
	}
	UpdateBalloonStats struct {
		Config vmconfig.BalloonUpdateStatsConfig
	}
	StartHinting        struct{ Cmd vmconfig.StartHintingCmd }
	StopHinting         struct{}
	SetMemoryHotplug    struct{ Config vmconfig.MemoryHotplugConfig }
	UpdateMemoryHotplug struct {
		Config vmconfig.MemoryHotplugSizeUpdate
	}

	PutMMDS       struct{ Value strictjson.Value }
	PatchMMDS     struct{ Value strictjson.Value }
	SetMMDSConfig struct{ Config vmconfig.MMDSConfig }

	CreateSnapshot struct{ Params vmconfig.CreateSnapshotParams }
	LoadSnapshot   struct{ Params vmconfig.LoadSnapshotParams }

	StartMicroVM   struct{}
	SendCtrlAltDel struct{}
	FlushMetrics   struct{}
	Pause          struct{}
	Resume         struct{}
)

func (GetInstanceInfo) action()        {}
func (GetVersion) action()             {}
func (GetFullConfig) action()          {}
func (GetMachineConfig) action()       {}
func (GetMMDS) action()                {}
func (GetBalloonConfig) action()       {}
func (GetBalloonStats) action()        {}
func (GetHintingStatus) action()       {}
func (GetMemoryHotplugStatus) action() {}
func (GetEmberState) action()          {}
func (ConfigureBootSource) action()    {}
func (ConfigureLogger) action()        {}
func (ConfigureMetrics) action()       {}
func (ConfigureSerial) action()        {}
func (PutCPUConfig) action()           {}
func (UpdateMachineConfig) action()    {}
func (InsertDrive) action()            {}
func (UpdateDrive) action()            {}
func (InsertNet) action()              {}
func (UpdateNet) action()              {}
func (InsertPmem) action()             {}
func (UpdatePmem) action()             {}
func (HotUnplug) action()              {}
func (SetVsock) action()               {}
func (SetEntropy) action()             {}
func (SetBalloon) action()             {}
func (UpdateBalloon) action()          {}
func (UpdateBalloonStats) action()     {}
func (StartHinting) action()           {}
func (StopHinting) action()            {}
func (SetMemoryHotplug) action()       {}
func (UpdateMemoryHotplug) action()    {}
func (PutMMDS) action()                {}
func (PatchMMDS) action()              {}
func (SetMMDSConfig) action()          {}
func (CreateSnapshot) action()         {}
func (LoadSnapshot) action()           {}
func (StartMicroVM) action()           {}
func (SendCtrlAltDel) action()         {}
func (FlushMetrics) action()           {}
func (Pause) action()                  {}
func (Resume) action()                 {}
