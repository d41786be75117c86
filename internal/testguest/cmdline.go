package testguest

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Marker lines the test init prints on the console (see guest/README.md).
const (
	// MarkerPrefix starts every line the guest's init scripts print for tests.
	MarkerPrefix = "EMBER-GUEST: "
	// MarkerInit is the test init's first output; boot time is measured to it.
	MarkerInit = MarkerPrefix + "init"
	// MarkerReady follows once every switch has been handled.
	MarkerReady = MarkerPrefix + "ready"
	// MarkerCtrlAltDel is printed when Ctrl-Alt-Del reaches the guest, just
	// before it reboots.
	MarkerCtrlAltDel = MarkerPrefix + "ctrl-alt-del"
	// MarkerFatal starts the line the initramfs prints before rebooting when
	// it cannot reach the root file system.
	MarkerFatal = MarkerPrefix + "fatal:"
)

// End actions for End: what the test init does after MarkerReady.
const (
	EndPoweroff = "poweroff" // poweroff -f (ends QEMU; Firecracker-style monitors keep running)
	EndReboot   = "reboot"   // reboot -f: with reboot=k, an i8042 reset that ends the VM
	EndHalt     = "halt"     // halt -f: the CPUs stop, the VM stays
	EndShell    = "shell"    // interactive busybox sh on the console; poweroff when it exits
	EndWait     = "wait"     // idle forever (the default)
)

// MaxCmdline is the x86 kernel's command-line limit in bytes, terminator
// included; Script output counts against it.
const MaxCmdline = 2048

// Script returns the switch that makes the test init run sh (a busybox sh
// script) after networking and before MarkerReady; the init then prints
// "EMBER-GUEST: sh <n> exit <status>". Repeat the switch to run several.
func Script(sh string) string {
	return "ember.sh=" + base64.StdEncoding.EncodeToString([]byte(sh))
}

// Net returns the switch that gives eth0 the address cidr ("10.0.0.2/30") and
// brings it up; the guest prints "EMBER-GUEST: net ok eth0 <cidr>" (or fail).
func Net(cidr string) string { return "ember.net=" + cidr }

// NetOn is Net for another interface ("eth1").
func NetOn(ifname, cidr string) string { return "ember.net=" + cidr + "@" + ifname }

// Gateway returns the switch that adds a default route via ip.
func Gateway(ip string) string { return "ember.gw=" + ip }

// Ping returns the switch that pings ip after networking is up; the guest
// prints "EMBER-GUEST: ping ok" or "EMBER-GUEST: ping fail".
func Ping(ip string) string { return "ember.ping=" + ip }

// Counter returns the switch that prints "EMBER-GUEST: tick <n>" every 100 ms
// forever, from MarkerReady on.
func Counter() string { return "ember.counter=1" }

// MemInfo returns the switch that prints "EMBER-GUEST: mem <MemTotal kB>
// <MemFree kB>" once at boot.
func MemInfo() string { return "ember.meminfo=1" }

// MemInfoEvery returns the switch that prints the mem line at boot and then
// every ms milliseconds.
func MemInfoEvery(ms int) string { return fmt.Sprintf("ember.meminfo=%dms", ms) }

// End returns the switch choosing what happens after MarkerReady; action is
// one of the End* constants.
func End(action string) string { return "ember.end=" + action }

var (
	tscOnce sync.Once
	tscKHz  int
	tscErr  error
)

// HostTSCkHz returns the host's TSC frequency in kHz. Under TCG a guest's TSC
// runs at the host's rate, and a Linux guest that must calibrate it against
// the PIT on a busy host can hang early in boot; passing the rate with
// TSCEarlyArg avoids that.
func HostTSCkHz() (int, error) {
	tscOnce.Do(func() { tscKHz, tscErr = hostTSCkHz() })
	return tscKHz, tscErr
}

func hostTSCkHz() (int, error) {
	// Some kernels export the calibrated rate; it beats cpuinfo, which can
	// show a scaled current frequency rather than the TSC's.
	if b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/tsc_freq_khz"); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && v > 0 {
			return v, nil
		}
	}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0, fmt.Errorf("testguest: host TSC rate: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || mhz <= 0 || math.IsInf(mhz, 0) {
			return 0, fmt.Errorf("testguest: host TSC rate: bad cpu MHz %q", val)
		}
		return int(math.Round(mhz * 1000)), nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("testguest: host TSC rate: %w", err)
	}
	return 0, fmt.Errorf("testguest: host TSC rate: no \"cpu MHz\" in /proc/cpuinfo")
}

// TSCEarlyArg returns "tsc_early_khz=<host kHz>" for a guest run under TCG,
// or "" when the host's rate is unknown.
func TSCEarlyArg() string {
	khz, err := HostTSCkHz()
	if err != nil {
		return ""
	}
	return "tsc_early_khz=" + strconv.Itoa(khz)
}
