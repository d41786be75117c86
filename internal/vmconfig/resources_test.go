package vmconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/strictjson"
)

func allCaps() hypervisor.Capabilities {
	return hypervisor.Capabilities{Balloon: true, BalloonStats: true, Pmem: true, MMDS: true, Entropy: true}
}

func drive(t *testing.T, id string, root bool) BlockDeviceConfig {
	t.Helper()
	p := filepath.Join(t.TempDir(), id+".img")
	os.WriteFile(p, make([]byte, 1024), 0o644)
	return BlockDeviceConfig{DriveID: id, IsRootDevice: root, PathOnHost: &p}
}

func ids(ds []BlockDeviceConfig) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.DriveID)
	}
	return strings.Join(s, ",")
}

func TestDriveOrder(t *testing.T) {
	r := NewResources("test", allCaps(), nil, 51200)
	steps := []struct {
		d       BlockDeviceConfig
		want    string
		wantErr error
	}{
		{drive(t, "a", false), "a", nil},
		{drive(t, "b", false), "a,b", nil},
		{drive(t, "root", true), "root,a,b", nil},
		{drive(t, "c", true), "", ErrRootBlockExists},
		{drive(t, "root", true), "root,a,b", nil}, // replacing the root is fine
		{drive(t, "b", false), "root,a,b", nil},
	}
	for i, s := range steps {
		err := r.SetDrive(s.d)
		if !errors.Is(err, s.wantErr) {
			t.Fatalf("step %d: err = %v, want %v", i, err, s.wantErr)
		}
		if err == nil && ids(r.Drives()) != s.want {
			t.Fatalf("step %d: order %s, want %s", i, ids(r.Drives()), s.want)
		}
	}
	// A drive that becomes the root moves to the front.
	r = NewResources("test", allCaps(), nil, 51200)
	r.SetDrive(drive(t, "a", false))
	r.SetDrive(drive(t, "b", false))
	r.SetDrive(drive(t, "b", true))
	if got := ids(r.Drives()); got != "b,a" {
		t.Errorf("order after promoting b: %s", got)
	}
	// Normalized as GET shows it.
	d := r.Drives()[0]
	if d.IsReadOnly == nil || *d.IsReadOnly || d.IOEngine == nil || *d.IOEngine != IOEngineSync || d.CacheType != CacheUnsafe {
		t.Errorf("not normalized: %+v", d)
	}
}

func TestDriveErrors(t *testing.T) {
	r := NewResources("test", allCaps(), nil, 51200)
	missing := "/nonexistent/disk.img"
	err := r.SetDrive(BlockDeviceConfig{DriveID: "x", PathOnHost: &missing})
	want := "Unable to create the virtio block device: Virtio backend error: Error manipulating the backing file: No such file or directory (os error 2) /nonexistent/disk.img"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v", err)
	}
	sock := "/tmp/vhost.sock"
	ro := true
	if err := r.SetDrive(BlockDeviceConfig{DriveID: "x", Socket: &sock, IsReadOnly: &ro}); !errors.Is(err, ErrInvalidBlockConfig) {
		t.Errorf("socket with is_read_only: %v", err)
	}
	if err := r.SetDrive(BlockDeviceConfig{DriveID: "x", Socket: &sock}); !errors.Is(err, hypervisor.ErrNotSupported) {
		t.Errorf("vhost-user on a backend without it: %v", err)
	}
	if err := r.SetDrive(BlockDeviceConfig{DriveID: "x"}); !errors.Is(err, ErrInvalidBlockConfig) {
		t.Errorf("neither path nor socket: %v", err)
	}
}

func TestNetReplaceOrderAndMAC(t *testing.T) {
	r := NewResources("test", allCaps(), nil, 51200)
	mac := func(s string) *MACAddr { m, _ := ParseMAC(s); return &m }
	for _, n := range []NetworkInterfaceConfig{
		{IfaceID: "a", HostDevName: "t0", GuestMAC: mac("06:00:00:00:00:01")},
		{IfaceID: "b", HostDevName: "t1"},
		{IfaceID: "c", HostDevName: "t2"},
	} {
		if err := r.SetNet(n); err != nil {
			t.Fatal(err)
		}
	}
	err := r.SetNet(NetworkInterfaceConfig{IfaceID: "d", HostDevName: "t3", GuestMAC: mac("06:00:00:00:00:01")})
	if err == nil || err.Error() != "The MAC address is already in use: 06:00:00:00:00:01" {
		t.Errorf("duplicate MAC: %v", err)
	}
	// Replacing "a" removes it by swapping the last device into its place,
	// then appends the new one, as Firecracker does.
	if err := r.SetNet(NetworkInterfaceConfig{IfaceID: "a", HostDevName: "t9", GuestMAC: mac("06:00:00:00:00:01")}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range r.Nets() {
		got = append(got, n.IfaceID)
	}
	if strings.Join(got, ",") != "c,b,a" {
		t.Errorf("order after replace: %v, want c,b,a", got)
	}
}

func TestMachineConfigRules(t *testing.T) {
	r := NewResources("test", allCaps(), nil, 51200)
	u8 := func(v uint8) *uint8 { return &v }
	b := func(v bool) *bool { return &v }
	if err := r.UpdateMachineConfig(&MachineConfigUpdate{VCPUCount: u8(3), SMT: b(true)}); !errors.Is(err, ErrInvalidVCPUCount) {
		t.Errorf("odd vcpus with smt: %v", err)
	}
	if err := r.UpdateMachineConfig(&MachineConfigUpdate{VCPUCount: u8(33)}); !errors.Is(err, ErrInvalidVCPUCount) {
		t.Errorf("33 vcpus: %v", err)
	}
	if err := r.SetBalloon(BalloonDeviceConfig{AmountMiB: 100}); err != nil {
		t.Fatal(err)
	}
	m64 := strictjson.Usize(64)
	if err := r.UpdateMachineConfig(&MachineConfigUpdate{MemSizeMiB: &m64}); !errors.Is(err, ErrIncompatibleBalloon) {
		t.Errorf("memory below the balloon: %v", err)
	}
	if err := r.SetBalloon(BalloonDeviceConfig{AmountMiB: 129}); !errors.Is(err, ErrBalloonTooLarge) {
		t.Errorf("balloon above memory: %v", err)
	}
}

func TestMMDSConfigRules(t *testing.T) {
	r := NewResources("test", allCaps(), nil, 51200)
	r.SetNet(NetworkInterfaceConfig{IfaceID: "eth0", HostDevName: "t0"})
	ip := func(s string) *IPv4Addr { a, _ := parseIPv4(s); v := IPv4Addr(a); return &v }
	for _, tt := range []struct {
		c    MMDSConfig
		want error
	}{
		{MMDSConfig{NetworkInterfaces: []string{}}, ErrMMDSEmptyIfaceList},
		{MMDSConfig{NetworkInterfaces: []string{"eth9"}}, ErrMMDSInvalidIfaceID},
		{MMDSConfig{NetworkInterfaces: []string{"eth0"}, IPv4Address: ip("10.0.0.1")}, ErrMMDSInvalidIPv4},
		{MMDSConfig{NetworkInterfaces: []string{"eth0"}, IPv4Address: ip("169.254.0.5")}, ErrMMDSInvalidIPv4},
		{MMDSConfig{NetworkInterfaces: []string{"eth0"}, IPv4Address: ip("169.254.169.250"), Version: MMDSV2, IMDSCompat: true}, nil},
	} {
		if err := r.SetMMDSConfig(tt.c, "vm"); !errors.Is(err, tt.want) {
			t.Errorf("%+v: err = %v, want %v", tt.c, err, tt.want)
		}
	}
	c := r.MMDSConfig()
	if c == nil || c.Version != MMDSV2 || !c.IMDSCompat || c.IPv4Address.Addr().String() != "169.254.169.250" {
		t.Errorf("rebuilt config = %+v", c)
	}
}
