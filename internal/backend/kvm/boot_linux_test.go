//go:build linux && amd64

package kvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/loader"
	"github.com/ember-vmm/ember/internal/nested"
	"github.com/ember-vmm/ember/internal/testguest"
)

// bootArgs replace Firecracker's default, whose nomodule keeps the test
// guest from loading its virtio modules.
const bootArgs = "console=ttyS0 reboot=k panic=1 pci=off"

// guestVM is a machine built straight from a Spec, with its console.
type guestVM struct {
	m   hypervisor.Machine
	con *testguest.Console
	w   *io.PipeWriter
}

func newGuestVM(t *testing.T, spec *hypervisor.Spec) *guestVM {
	t.Helper()
	r, w := io.Pipe()
	con := testguest.NewConsole(r)
	m, err := (&Backend{}).Create(context.Background(), spec, hypervisor.Env{Console: w, RuntimeDir: t.TempDir()})
	if err != nil {
		w.Close()
		t.Fatalf("Create: %v", err)
	}
	v := &guestVM{m: m, con: con, w: w}
	if os.Getenv("EMBER_TEST_CONSOLE") != "" {
		stop := make(chan struct{})
		go v.stream(t, stop)
		t.Cleanup(func() { close(stop) })
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		w.Close()
		if t.Failed() {
			t.Logf("guest console tail:\n%s", con.Tail(40))
		}
	})
	return v
}

// stream logs console lines as they come (EMBER_TEST_CONSOLE=1), for
// following a boot that hangs.
func (v *guestVM) stream(t *testing.T, stop <-chan struct{}) {
	for n := 0; ; {
		select {
		case <-stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
		lines := v.con.Lines()
		for ; n < len(lines); n++ {
			t.Logf("console: %s", lines[n])
		}
	}
}

func (v *guestVM) wait(t *testing.T, substr string, d time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	line, err := v.con.Wait(ctx, substr)
	if err != nil {
		t.Fatalf("waiting for %q: %v\n%s", substr, err, v.vcpuStates())
	}
	return line
}

// vcpuStates pauses the machine and describes where each vCPU is, for a
// guest that stopped making progress.
func (v *guestVM) vcpuStates() string {
	m, ok := v.m.(*machine)
	if !ok {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Pause(ctx); err != nil {
		return fmt.Sprintf("vCPU states: cannot pause: %v", err)
	}
	var b strings.Builder
	for _, c := range m.vcpus {
		regs, err := c.cpu.GetRegs()
		if err != nil {
			fmt.Fprintf(&b, "vCPU %d: %v\n", c.id, err)
			continue
		}
		mp, _ := c.cpu.GetMPState()
		ev, _ := c.cpu.GetVCPUEvents()
		fmt.Fprintf(&b, "vCPU %d: rip %#x rsp %#x rflags %#x mp_state %d events %+v\n", c.id, regs.RIP, regs.RSP, regs.RFLAGS, mp, ev)
	}
	return b.String()
}

func (v *guestVM) waitExit(t *testing.T, d time.Duration) hypervisor.ExitStatus {
	t.Helper()
	select {
	case <-v.m.Done():
		return v.m.Exit()
	case <-time.After(d):
		t.Fatalf("the VM did not end within %v", d)
	}
	return hypervisor.ExitStatus{}
}

// TestBootLinux boots the test guest's Debian kernel, in both formats and
// with one and two vCPUs, to its init, checks the guest sees its vCPUs, and
// that the guest's reboot ends the machine as a reset.
func TestBootLinux(t *testing.T) {
	opts := nested.Options{Guest: true, Timeout: 4 * time.Minute, Env: []string{"EMBER_TEST_CONSOLE=" + os.Getenv("EMBER_TEST_CONSOLE"), "EMBER_KVM_SMP=" + os.Getenv("EMBER_KVM_SMP")}}
	if os.Getenv("EMBER_KVM_SMP") != "" {
		opts.CPUs = 2 // room for both of the guest's vCPUs
	}
	nested.Run(t, opts, func(t *testing.T, env *nested.Env) {
		g := env.Guest()
		for _, tc := range []struct {
			name   string
			kernel string
			vcpus  uint8
		}{
			{"vmlinux-1cpu", g.Vmlinux, 1},
			{"bzImage-1cpu", g.BzImage, 1},
			{"vmlinux-2cpu", g.Vmlinux, 2},
			{"bzImage-2cpu", g.BzImage, 2},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if tc.vcpus > 1 && env.Nested && os.Getenv("EMBER_KVM_SMP") == "" {
					t.Skip("SKIPPING the 2-vCPU boot inside L1: on this loaded TCG host some such boots stall mid-boot (the L2 guest, " +
						"or all of L1 with it) under nested SVM, not yet explained; set EMBER_KVM_SMP=1 to run it. On a KVM host it always runs.")
				}
				spec := &hypervisor.Spec{
					VCPUs:  tc.vcpus,
					MemMiB: 128,
					Boot: hypervisor.Boot{
						KernelPath: tc.kernel,
						InitrdPath: g.Initramfs,
						Cmdline:    bootArgs + " " + testguest.End(testguest.EndReboot) + " " + testguest.Script(`echo "EMBER-GUEST: cpus $(grep -c ^processor /proc/cpuinfo)"`),
					},
				}
				v := newGuestVM(t, spec)
				start := time.Now()
				if err := v.m.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
				v.wait(t, testguest.MarkerInit, 60*time.Second)
				t.Logf("Start to %q in %v", testguest.MarkerInit, time.Since(start).Round(time.Millisecond))
				cpus := v.wait(t, "EMBER-GUEST: cpus ", 30*time.Second)
				if want := "cpus " + string(rune('0'+tc.vcpus)); !strings.HasSuffix(cpus, want) {
					t.Errorf("guest reports %q, want %q", cpus, want)
				}
				if st := v.waitExit(t, 60*time.Second); st.Reason != hypervisor.ExitReset {
					t.Errorf("exit %v (%v), want a guest reset", st.Reason, st.Err)
				}
			})
		}
	})
}

// TestBadKernel refuses images the loader cannot boot with its error, and
// leaves nothing behind.
func TestBadKernel(t *testing.T) {
	nested.Run(t, nested.Options{Guest: true}, func(t *testing.T, env *nested.Env) {
		g := env.Guest()
		notKernel := t.TempDir() + "/not-a-kernel"
		if err := os.WriteFile(notKernel, []byte("this is not a kernel image at all, neither ELF nor bzImage"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name    string
			kernel  string
			initrd  string
			memMiB  uint64
			wantErr error
		}{
			{"not a kernel", notKernel, "", 128, loader.ErrKernelImage},
			{"memory too small for the kernel", g.Vmlinux, "", 2, loader.ErrMemoryTooSmall},
			{"initrd does not fit", g.Vmlinux, g.Rootfs, 64, loader.ErrInitrdTooBig},
		} {
			t.Run(tc.name, func(t *testing.T) {
				spec := &hypervisor.Spec{VCPUs: 1, MemMiB: tc.memMiB, Boot: hypervisor.Boot{KernelPath: tc.kernel, InitrdPath: tc.initrd, Cmdline: bootArgs}}
				m, err := (&Backend{}).Create(context.Background(), spec, hypervisor.Env{Console: io.Discard})
				if err == nil {
					m.Close()
					t.Fatal("Create succeeded")
				}
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("error %q (%T) is not %v", err, err, tc.wantErr)
				}
				t.Logf("refused: %v", err)
			})
		}
	})
}
