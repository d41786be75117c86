package vmconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/virtio/vsock"
)

// bindReal binds a real vsock device, as the controller does.
func bindReal(c VsockDeviceConfig) (BoundVsock, error) {
	d, err := vsock.New(vsock.Config{GuestCID: uint64(c.GuestCID), UDSPath: c.UDSPath})
	if err != nil {
		return nil, err
	}
	return d, nil
}

func isSocket(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&os.ModeSocket != 0
}

func vsockResources() *Resources {
	caps := allCaps()
	caps.Vsock = true
	r := NewResources("test", caps, nil, 51200)
	r.BindVsock = bindReal
	return r
}

func withBoot(t *testing.T, r *Resources) {
	t.Helper()
	k := filepath.Join(t.TempDir(), "vmlinux")
	os.WriteFile(k, []byte("k"), 0o644)
	if err := r.SetBootSource(BootSourceConfig{KernelImagePath: k}); err != nil {
		t.Fatal(err)
	}
}

func TestVsockBindsAtPut(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	r := vsockResources()
	withBoot(t, r)

	if err := r.SetVsock(VsockDeviceConfig{GuestCID: 3, UDSPath: a}); err != nil {
		t.Fatal(err)
	}
	if !isSocket(a) {
		t.Fatalf("%s is not a listening socket after PUT", a)
	}
	s, err := r.Spec("x")
	if err != nil {
		t.Fatal(err)
	}
	if s.Vsock == nil || s.Vsock.Device == nil || s.Vsock.Device.UDSPath() != a || s.Vsock.Device.GuestCID() != 3 {
		t.Fatalf("spec vsock = %+v", s.Vsock)
	}

	// A re-PUT unlinks the old socket, then binds the new one.
	if err := r.SetVsock(VsockDeviceConfig{GuestCID: 4, UDSPath: b}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old socket still there after re-PUT: %v", err)
	}
	if !isSocket(b) {
		t.Errorf("new socket %s not bound", b)
	}
	// Re-PUT on the same path works: the old file goes before the bind.
	if err := r.SetVsock(VsockDeviceConfig{GuestCID: 5, UDSPath: b}); err != nil {
		t.Fatalf("re-PUT on the same path: %v", err)
	}
	if got := r.Vsock(); got == nil || got.GuestCID != 5 {
		t.Errorf("config after re-PUT = %+v", got)
	}

	// The old socket file vanished: Firecracker's unlink error, and no device.
	os.Remove(b)
	err = r.SetVsock(VsockDeviceConfig{GuestCID: 6, UDSPath: a})
	const want = "Cannot create backend for vsock device: Error binding to the host-side Unix socket: No such file or directory (os error 2)"
	if err == nil || err.Error() != want {
		t.Fatalf("re-PUT after the file vanished: %v, want %q", err, want)
	}
	if r.Vsock() != nil || isSocket(a) {
		t.Errorf("a failed re-PUT left a device: %+v", r.Vsock())
	}
	if s, _ := r.Spec("x"); s.Vsock != nil {
		t.Errorf("spec still has vsock: %+v", s.Vsock)
	}

	// Close unlinks.
	if err := r.SetVsock(VsockDeviceConfig{GuestCID: 3, UDSPath: a}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := os.Stat(a); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Close: %v", err)
	}
}

func TestVsockBindErrors(t *testing.T) {
	dir := t.TempDir()
	taken := filepath.Join(dir, "taken")
	os.WriteFile(taken, nil, 0o644)
	const prefix = "Cannot create backend for vsock device: Error binding to the host-side Unix socket: "
	tests := []struct {
		name, path, want string
	}{
		{"path exists", taken, prefix + "Address in use (os error 98)"},
		{"no such dir", filepath.Join(dir, "nope", "v.sock"), prefix + "No such file or directory (os error 2)"},
		{"too long", filepath.Join(dir, strings.Repeat("x", 120)), prefix + "path must be shorter than SUN_LEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := vsockResources()
			defer r.Close()
			err := r.SetVsock(VsockDeviceConfig{GuestCID: 3, UDSPath: tt.path})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if r.Vsock() != nil {
				t.Errorf("failed PUT recorded %+v", r.Vsock())
			}
		})
	}
}

func TestVsockRefusedWithoutCapability(t *testing.T) {
	r := NewResources("test", allCaps(), nil, 51200)
	called := false
	r.BindVsock = func(VsockDeviceConfig) (BoundVsock, error) { called = true; return nil, nil }
	err := r.SetVsock(VsockDeviceConfig{GuestCID: 3, UDSPath: "v.sock"})
	if !errors.Is(err, hypervisor.ErrNotSupported) || called {
		t.Fatalf("err = %v, binder called = %v", err, called)
	}
}
