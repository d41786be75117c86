package main

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/ember-vmm/ember/internal/testguest"
)

func sm(xs ...float64) summary { return summarize(xs) }

func TestBiggestGap(t *testing.T) {
	rows := []row{
		{section: "Start-up", figure: "CPU", ember: sm(20), base: sm(18), baseName: "net/http binary", u: uMS, target: 8},
		{section: "Memory", figure: "VMM RSS", ember: sm(136), base: sm(130), baseName: "bare QEMU", u: uMiB, target: 5, context: "mostly QEMU"},
		{section: "Boot", figure: "boot", ember: sm(2400), base: sm(2300), baseName: "bare QEMU", u: uMS0, target: 125, emulated: true},
		{section: "I/O", figure: "net", ember: sm(10), base: sm(8), baseName: "bare QEMU", u: uMiBps, higherBetter: true, target: 1728, emulated: true},
		{section: "API", figure: "no goal", ember: sm(1000), base: sm(10), baseName: "net/http", u: uUS},
	}
	got := biggestGap(rows)
	for _, want := range []string{"Memory — VMM RSS is 136.0 MiB against Firecracker's goal of 5.0 MiB (27× over): mostly QEMU",
		"bare QEMU alone measures 130.0 MiB", "rather than from ember's own code", "net is 10.0 MiB/s", "173× short"} {
		if !strings.Contains(got, want) {
			t.Errorf("gap sentence lacks %q:\n%s", want, got)
		}
	}
	// ember far behind its baseline is said so.
	rows[1].base = sm(10)
	if got := biggestGap(rows); !strings.Contains(got, "ember itself makes it 14× worse") {
		t.Errorf("gap sentence does not blame ember:\n%s", got)
	}
	if got := biggestGap(nil); !strings.Contains(got, "no figure") {
		t.Errorf("empty: %q", got)
	}
	own, ok := worstOwn(rows)
	if !ok || own.figure != "no goal" {
		t.Errorf("worstOwn = %q, %v; want the API row (100× its baseline)", own.figure, ok)
	}
}

func TestRowGapDirection(t *testing.T) {
	lower := row{ember: sm(16), target: 8}
	higher := row{ember: sm(5), target: 10, higherBetter: true}
	if g := lower.gap(); g != 2 {
		t.Errorf("lower-is-better gap = %v, want 2", g)
	}
	if g := higher.gap(); g != 2 {
		t.Errorf("higher-is-better gap = %v, want 2", g)
	}
}

func TestRenderTextHasEveryRow(t *testing.T) {
	rows := []row{
		{section: "Boot", figure: "boot", ember: sm(1, 2, 3), base: sm(2, 3, 4), baseName: "bare QEMU", u: uMS0, goal: "≤ 125 ms"},
		{section: "Boot", figure: "kvm", text: "not built"},
	}
	out := renderText(rows)
	for _, want := range []string{"[Boot]", "2 ms (1–3)", "3 ms (2–4) bare QEMU", "0.67×", "not built", "≤ 125 ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestIOScriptFitsTheCommandLine(t *testing.T) {
	sw := testguest.Script(ioScript(128, 32))
	cmdline := strings.Join([]string{baseBootArgs, testguest.Net(netGuestCIDR), sw, testguest.End(testguest.EndWait),
		"pci=off", "tsc_early_khz=4000000"}, " ")
	if len(cmdline)+1 > testguest.MaxCmdline {
		t.Fatalf("kernel command line is %d bytes, limit %d", len(cmdline)+1, testguest.MaxCmdline)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sw, "ember.sh="))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"count=128 oflag=direct", "count=128 iflag=direct", "count=32", "nc " + netHostIP, ioWStart, ioNEnd} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("script lacks %q:\n%s", want, raw)
		}
	}
}

func TestShortKVM(t *testing.T) {
	if got := shortKVM("not built: The kvm backend is not built into this ember binary (ember's message)"); got != "not built" {
		t.Errorf("shortKVM = %q", got)
	}
}

func TestKeepSections(t *testing.T) {
	section := "<!-- kvm-bench:begin -->\n## kvm\n\n| a | b |\n<!-- kvm-bench:end -->"
	for _, tc := range []struct {
		name, prev, fresh, want string
	}{
		{"no previous file", "", "# Report\n", "# Report\n"},
		{"previous without section", "# Old\n", "# Report\n", "# Report\n"},
		{"section carried over", "# Old\ntext\n\n" + section + "\n", "# Report\n", "# Report\n\n" + section + "\n"},
		{"section mid-file", "# Old\n" + section + "\nmore old text\n", "# Report\n\n", "# Report\n\n" + section + "\n"},
		{"fresh has its own", "# Old\n" + section + "\n", "# Report\n<!-- kvm-bench:begin -->new<!-- kvm-bench:end -->\n",
			"# Report\n<!-- kvm-bench:begin -->new<!-- kvm-bench:end -->\n"},
		{"every named section, in order", "# Old\n" + section + "\n<!-- net-bench:begin -->\nnet\n<!-- net-bench:end -->\n", "# Report\n",
			"# Report\n\n" + section + "\n\n<!-- net-bench:begin -->\nnet\n<!-- net-bench:end -->\n"},
		{"unterminated left alone", "# Old\n<!-- kvm-bench:begin -->\nhalf", "# Report\n", "# Report\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := keepSections(tc.prev, tc.fresh); got != tc.want {
				t.Errorf("keepSections:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}
