package vmm

import (
	"context"
	"errors"
	"fmt"

	"github.com/ember-vmm/ember/internal/strictjson"
	"github.com/ember-vmm/ember/internal/vmconfig"
)

// ErrConfigFile classifies a --config-file that could not be applied.
var ErrConfigFile = errors.New("config file")

// configError is a --config-file failure with Firecracker's text: either
// "Configuration for VMM from one single json failed: ..." or
// "Could not Start MicroVM from one single json: ...".
type configError struct{ msg string }

func (e *configError) Error() string        { return e.msg }
func (e *configError) Is(target error) bool { return target == ErrConfigFile }

func parseFailed(prefix string, err error) error {
	return &configError{msg: "Configuration for VMM from one single json failed: " + prefix + ": " + err.Error()}
}

// BootFromConfig applies a --config-file (and --metadata) in Firecracker's
// order and starts the VM. It must be called before any API request.
func (c *Controller) BootFromConfig(ctx context.Context, configJSON, metadataJSON []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var cfg vmconfig.VMMConfig
	if err := strictjson.Unmarshal(configJSON, &cfg); err != nil {
		return parseFailed("Invalid JSON", err)
	}
	r := c.res
	if cfg.Logger != nil {
		if err := c.configureLogger(*cfg.Logger); err != nil {
			return parseFailed("Logger error", err)
		}
	}
	if cfg.Metrics != nil {
		if err := c.configureMetrics(*cfg.Metrics); err != nil {
			return parseFailed("Metrics error", err)
		}
	}
	if cfg.MachineConfig != nil {
		u := vmconfig.UpdateFromPut(*cfg.MachineConfig)
		if err := r.UpdateMachineConfig(&u); err != nil {
			return parseFailed("VM config error", err)
		}
	}
	if cfg.CPUConfig != nil {
		if err := cfg.CPUConfig.Load(); err != nil {
			return parseFailed(cfg.CPUConfig.ErrorPrefix(), err)
		}
		if err := r.SetCustomCPUTemplate(); err != nil {
			return parseFailed("VM config error", err)
		}
	}
	if err := r.SetBootSource(cfg.BootSource); err != nil {
		return parseFailed("Boot source error", err)
	}
	if prefix, err := c.applyDevices(&cfg, func() error {
		if metadataJSON != nil {
			return c.putMetadata(metadataJSON)
		}
		return nil
	}); err != nil {
		return parseFailed(prefix, err)
	}
	if err := c.start(ctx); err != nil {
		return &configError{msg: "Could not Start MicroVM from one single json: " + err.Error()}
	}
	c.log.Infof("Successfully started microvm that was configured from one single json")
	return nil
}

// ErrMetadata classifies a --metadata file that is not valid JSON; Firecracker
// panics with this text.
var ErrMetadata = errors.New("MMDS error: metadata provided not valid json")

// PutMetadata loads --metadata into the metadata store before any request
// (the API path; BootFromConfig does it in its own order).
func (c *Controller) PutMetadata(data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.putMetadata(data); err != nil {
		return err
	}
	return nil
}

func (c *Controller) putMetadata(data []byte) error {
	v, err := strictjson.ParseValue(data)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMetadata, err)
	}
	if err := c.res.MMDS().Put(v); err != nil {
		return err
	}
	c.log.Infof("Successfully added metadata to mmds from file")
	return nil
}

// applyDevices applies cfg's devices in Firecracker's order, calling
// metadata between the balloon and mmds-config; on failure it returns the
// prefix Firecracker puts before the error.
func (c *Controller) applyDevices(cfg *vmconfig.VMMConfig, metadata func() error) (string, error) {
	r := c.res
	for _, d := range cfg.Drives {
		if d.CacheType == "" {
			d.CacheType = vmconfig.CacheUnsafe
		}
		if err := r.SetDrive(d); err != nil {
			return "Block device error", err
		}
	}
	for _, n := range cfg.NetworkInterfaces {
		if err := r.SetNet(n); err != nil {
			return "Network device error", err
		}
	}
	if cfg.Vsock != nil {
		if err := r.SetVsock(*cfg.Vsock); err != nil {
			return "Vsock device error", err
		}
	}
	if cfg.Balloon != nil {
		if err := r.SetBalloon(*cfg.Balloon); err != nil {
			return "Balloon device error", err
		}
	}
	if err := metadata(); err != nil {
		return "MMDS error", err
	}
	if cfg.MMDSConfig != nil {
		if err := r.SetMMDSConfig(*cfg.MMDSConfig, c.cfg.ID); err != nil {
			return "MMDS config error", err
		}
	}
	if cfg.Entropy != nil {
		if err := r.SetEntropy(*cfg.Entropy); err != nil {
			return "Entropy device error", err
		}
	}
	for _, p := range cfg.Pmem {
		if err := r.SetPmem(p); err != nil {
			return "Pmem device error", err
		}
	}
	if cfg.MemoryHotplug != nil {
		m := *cfg.MemoryHotplug
		if m.BlockSizeMiB == 0 {
			m.BlockSizeMiB = vmconfig.DefaultBlockSizeMiB
		}
		if m.SlotSizeMiB == 0 {
			m.SlotSizeMiB = vmconfig.DefaultSlotSizeMiB
		}
		if err := r.SetMemoryHotplug(m); err != nil {
			return "Memory hotplug config error", err
		}
	}
	return "", nil
}
