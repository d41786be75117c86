package vmconfig

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/strictjson"
)

// FuzzConfigFile feeds arbitrary bytes to what --config-file goes through:
// strict decoding into VMMConfig, then every section applied to a fresh
// Resources in Firecracker's order, under an arbitrary set of backend
// capabilities. Nothing may panic; failures are errors with text; a decoded
// file encodes and decodes back to the same value; and a configuration that
// applied cleanly is shown by FullConfig (GET /vm/config) as JSON that is a
// valid config file again.
//
// Host paths in the file are never opened as given: each is redirected to
// a regular file, a directory or a missing name in a private directory, so
// the fuzzer cannot make the test open devices or FIFOs.
func FuzzConfigFile(f *testing.F) {
	f.Add([]byte(`{"boot-source":{"kernel_image_path":"k","boot_args":"console=ttyS0"},"drives":[{"drive_id":"rootfs","path_on_host":"r","is_root_device":true}]}`), uint32(0))
	f.Add([]byte(`{"boot-source":{"kernel_image_path":"kkk","initrd_path":"iii"},"drives":[],"machine-config":{"vcpu_count":2,"mem_size_mib":256,"smt":true,"huge_pages":"2M"},"network-interfaces":[{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"06:00:00:00:00:01","mtu":1500}],"mmds-config":{"version":"V2","network_interfaces":["eth0"],"ipv4_address":"169.254.1.2"},"balloon":{"amount_mib":64,"deflate_on_oom":true,"stats_polling_interval_s":1},"entropy":{},"vsock":{"guest_cid":3,"uds_path":"v"},"pmem":[{"id":"p","path_on_host":"p"}],"memory-hotplug":{"total_size_mib":1024},"cpu-config":"ccc","logger":{"level":"Debug"},"metrics":{"metrics_path":"m"},"unknown-key":1}`), ^uint32(0))
	f.Add([]byte(`{"boot-source":{"kernel_image_path":"k"},"drives":[{"drive_id":"a","is_root_device":false,"socket":"s"}],"cpu-config":{"kvm_capabilities":["1"]}}`), uint32(1<<19))
	f.Add([]byte(`{"drives":[]}`), uint32(0))

	dir := f.TempDir()
	targets := []string{filepath.Join(dir, "file"), filepath.Join(dir, "dir"), filepath.Join(dir, "missing")}
	// The regular file doubles as a kernel, a disk and a CPU template ({}).
	if err := os.WriteFile(targets[0], []byte("{}"), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Mkdir(targets[1], 0o755); err != nil {
		f.Fatal(err)
	}
	redirect := func(p string) string {
		if p == "" {
			return ""
		}
		return targets[len(p)%len(targets)]
	}

	f.Fuzz(func(t *testing.T, data []byte, caps uint32) {
		var cfg VMMConfig
		if err := strictjson.Unmarshal(data, &cfg); err != nil {
			var se *strictjson.Error
			if !errors.As(err, &se) || err.Error() == "" {
				t.Fatalf("decode error %T %q", err, err)
			}
			return
		}
		roundTrip(t, &cfg)

		r := NewResources("fuzz", capsFrom(caps), fakeTap, 0)
		defer r.Close()
		if err := apply(r, &cfg, redirect); err != nil {
			if err.Error() == "" {
				t.Fatalf("error without text: %#v", err)
			}
			return
		}
		full := r.FullConfig()
		enc, err := strictjson.Marshal(full)
		if err != nil {
			t.Fatalf("FullConfig does not encode: %v", err)
		}
		var again VMMConfig
		if err := strictjson.Unmarshal(enc, &again); err != nil {
			t.Fatalf("GET /vm/config output is not a valid config file: %v\n%s", err, enc)
		}
	})
}

// roundTrip checks that cfg, with the defaults the config-file path fills
// in after decoding (a drive's cache_type, virtio-mem's block and slot
// sizes, huge_pages, the MMDS version: decoding leaves them empty when
// absent and the code applying them supplies Firecracker's default), encodes, and that the encoding is a fixed point: decoding it and
// encoding again gives the same bytes.
func roundTrip(t *testing.T, cfg *VMMConfig) {
	t.Helper()
	c := *cfg
	c.Drives = append([]BlockDeviceConfig(nil), cfg.Drives...)
	for i := range c.Drives {
		if c.Drives[i].CacheType == "" {
			c.Drives[i].CacheType = CacheUnsafe
		}
	}
	if m := cfg.MachineConfig; m != nil && m.HugePages == "" {
		mc := *m
		mc.HugePages = HugePagesNone
		c.MachineConfig = &mc
	}
	if m := cfg.MMDSConfig; m != nil && m.Version == "" {
		mc := *m
		mc.Version = MMDSV1
		c.MMDSConfig = &mc
	}
	if m := cfg.MemoryHotplug; m != nil {
		h := *m
		if h.BlockSizeMiB == 0 {
			h.BlockSizeMiB = DefaultBlockSizeMiB
		}
		if h.SlotSizeMiB == 0 {
			h.SlotSizeMiB = DefaultSlotSizeMiB
		}
		c.MemoryHotplug = &h
	}
	enc, err := strictjson.Marshal(&c)
	if err != nil {
		t.Fatalf("decoded config does not encode: %v", err)
	}
	var back VMMConfig
	if err := strictjson.Unmarshal(enc, &back); err != nil {
		t.Fatalf("encoded config %s does not decode: %v", enc, err)
	}
	again, err := strictjson.Marshal(&back)
	if err != nil || !bytes.Equal(enc, again) {
		t.Fatalf("round trip changed the config (%v):\n%s\n%s", err, enc, again)
	}
}

// apply does what starting from a config file does with the resources, in
// Firecracker's order (logger and metrics belong to the process, not to
// Resources), and returns the first failure.
func apply(r *Resources, cfg *VMMConfig, redirect func(string) string) error {
	if cfg.MachineConfig != nil {
		u := UpdateFromPut(*cfg.MachineConfig)
		if err := r.UpdateMachineConfig(&u); err != nil {
			return err
		}
	}
	if c := cfg.CPUConfig; c != nil {
		if p, ok := c.Path(); ok {
			// Decode the redirected path the way the file would have held it.
			var moved CPUConfigOrPath
			if err := strictjson.Unmarshal([]byte(strconv.Quote(redirect(p))), &moved); err != nil {
				return err
			}
			c = &moved
		}
		if err := c.Load(); err != nil {
			if c.ErrorPrefix() == "" {
				return errors.New("a failed Load names no error prefix")
			}
			return err
		}
		if err := r.SetCustomCPUTemplate(); err != nil {
			return err
		}
	}
	b := cfg.BootSource
	b.KernelImagePath = redirect(b.KernelImagePath)
	if b.InitrdPath != nil {
		p := redirect(*b.InitrdPath)
		b.InitrdPath = &p
	}
	if err := r.SetBootSource(b); err != nil {
		return err
	}
	for _, d := range cfg.Drives {
		if d.PathOnHost != nil {
			p := redirect(*d.PathOnHost)
			d.PathOnHost = &p
		}
		if d.CacheType == "" {
			d.CacheType = CacheUnsafe
		}
		if err := r.SetDrive(d); err != nil {
			return err
		}
	}
	for _, n := range cfg.NetworkInterfaces {
		if err := r.SetNet(n); err != nil {
			return err
		}
	}
	if cfg.Vsock != nil {
		if err := r.SetVsock(*cfg.Vsock); err != nil {
			return err
		}
	}
	if cfg.Balloon != nil {
		if err := r.SetBalloon(*cfg.Balloon); err != nil {
			return err
		}
	}
	if cfg.MMDSConfig != nil {
		if err := r.SetMMDSConfig(*cfg.MMDSConfig, "fuzz-instance"); err != nil {
			return err
		}
	}
	if cfg.Entropy != nil {
		if err := r.SetEntropy(*cfg.Entropy); err != nil {
			return err
		}
	}
	for _, p := range cfg.Pmem {
		p.PathOnHost = redirect(p.PathOnHost)
		if err := r.SetPmem(p); err != nil {
			return err
		}
	}
	if m := cfg.MemoryHotplug; m != nil {
		c := *m
		if c.BlockSizeMiB == 0 {
			c.BlockSizeMiB = DefaultBlockSizeMiB
		}
		if c.SlotSizeMiB == 0 {
			c.SlotSizeMiB = DefaultSlotSizeMiB
		}
		if err := r.SetMemoryHotplug(c); err != nil {
			return err
		}
	}
	if r.boot == nil {
		return ErrMissingKernelConfig
	}
	return nil
}

// capsFrom turns bits into backend capabilities, one bit per field.
func capsFrom(bits uint32) hypervisor.Capabilities {
	var c hypervisor.Capabilities
	v := reflect.ValueOf(&c).Elem()
	for i := 0; i < v.NumField() && i < 32; i++ {
		v.Field(i).SetBool(bits&(1<<i) != 0)
	}
	return c
}

// fakeTap opens /dev/null for a tap whose name is even in length and fails
// otherwise, so both paths of SetNet run without touching the network.
func fakeTap(name string) (*os.File, error) {
	if len(name)%2 == 1 {
		return nil, os.ErrNotExist
	}
	return os.Open(os.DevNull)
}
