package main

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strings"
	"time"
)

// plots draws the figures whose distribution says more than a median and
// returns their paths relative to the document, by name.
func (rep *report) plots(dir string) (map[string]string, error) {
	out := map[string]string{}
	save := func(name string, p cdfPlot) error {
		img, err := p.render()
		if err != nil {
			return err
		}
		if err := writePNG(filepath.Join(dir, name+".png"), img); err != nil {
			return err
		}
		out[name] = filepath.Base(dir) + "/" + name + ".png"
		return nil
	}
	if a := rep.api; a != nil {
		p := cdfPlot{title: "API latency over the Unix socket", xlabel: "round trip, µs (log scale)", logX: true}
		cols := [2][2]colorPair{{{colEmber, "ember"}, {colBase, "net/http"}}, {{colEmber2, "ember"}, {colBase2, "net/http"}}}
		for i, ep := range apiEndpoints {
			for s := range 2 {
				p.series = append(p.series, cdfSeries{name: cols[i][s].who + " " + ep.name, values: a.lat[i][s], color: cols[i][s].c})
			}
		}
		if err := save("api-latency-cdf", p); err != nil {
			return nil, err
		}
	}
	if s := rep.startup; s != nil {
		p := cdfPlot{title: "Process start to API socket ready", xlabel: "ms"}
		p.series = []cdfSeries{
			{name: "ember, wall", values: s.wall[0], color: colEmber},
			{name: "ember, CPU", values: s.cpu[0], color: colEmber2},
			{name: "net/http, wall", values: s.wall[1], color: colBase},
			{name: "net/http, CPU", values: s.cpu[1], color: colBase2},
		}
		if err := save("startup-cdf", p); err != nil {
			return nil, err
		}
	}
	if b := rep.boot; b != nil {
		accel := strings.ToUpper(rep.accel)
		p := cdfPlot{title: fmt.Sprintf("Boot to the guest's init (%s, 1 vCPU, 128 MiB)", accel), xlabel: "ms"}
		p.series = []cdfSeries{
			{name: "ember: InstanceStart → init", values: b.boot[0], color: colEmber},
			{name: "bare QEMU: exec → init", values: b.boot[1], color: colBase},
		}
		if err := save("boot-cdf", p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type colorPair struct {
	c   color.RGBA
	who string
}

// markdown writes the whole document.
func (rep *report) markdown(b *strings.Builder, rows []row, plots map[string]string) {
	m := rep.machine
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	accel, reason, qemuVer := rep.accel, rep.accelReason, rep.qemuVersion

	w("# Benchmarks\n\n")
	w("<!-- Written by `go run ./bench` (bench/); rerun it rather than editing this file. -->\n\n")
	w("**Biggest gap:** %s\n\n", biggestGap(rows))
	if own, ok := worstOwn(rows); ok {
		w("Where ember's own code costs most against its baseline: **%s** (%s), ember %s against %s %s, %s the baseline's (see its section below).\n\n",
			mdEscape(strings.TrimSpace(own.figure)), own.section, own.u.fmt(own.ember.Median)+" "+own.u.name,
			own.baseName, own.u.fmt(own.base.Median)+" "+own.u.name, fmtRatio(own.ratio()))
	}

	w("## Where and how\n\n")
	w("- **Date:** %s, %s mode, %s in all (%s).\n", rep.started.UTC().Format("2006-01-02 15:04 MST"), rep.cfg.mode(),
		rep.elapsed.Round(time.Second), strings.Join(rep.durations, ", "))
	w("- **Machine:** %d cores (%s), %d MiB RAM, Linux %s, %s.\n", m.cores, m.cpuModel, m.memMiB, m.kernel, m.goVer)
	virt := "no vmx/svm in /proc/cpuinfo"
	if m.hwVirt {
		virt = "vmx/svm present"
	}
	kvm := "/dev/kvm does not open"
	if m.kvmDev {
		kvm = "/dev/kvm opens"
	}
	if accel != "" {
		w("- **Accelerator:** `%s`, as ember's qemu backend picks it (%q; %s, %s); QEMU %s.", accel, reason, virt, kvm, qemuVer)
	} else {
		w("- **Accelerator:** not recorded (no VM was booted); %s, %s.", virt, kvm)
	}
	if accel == "tcg" {
		w(" **Every guest here is emulated by TCG, not run by KVM**: boot, density and I/O figures are an emulator's and cannot be held against Firecracker's KVM goals one to one; the bare-QEMU column shows what the emulator alone costs.")
	}
	w("\n")
	w("- **Load average** (1, 5, 15 min) before: %s; after: %s; 1-minute figure as each suite started: %s. Other jobs may share the %d cores; the interleaving spreads their effect over both columns. Loads during and after the density suite include the benchmark's own VMs (up to %d TCG guests at once).\n",
		rep.loadBefore, rep.loadAfter, strings.Join(rep.loads, ", "), m.cores, maxN(rep.cfg.densityN))
	w("- **Guest:** the test guest (guest/README.md): Debian's cloud kernel as ELF vmlinux (PVH), busybox initramfs, 1 vCPU, %d MiB, kernel command line `%s` plus the test init's switches; ember adds `pci=off` and, under TCG, `tsc_early_khz`.\n", bootMemMiB, baseBootArgs)
	w("- **Reading the table:** every figure is ember next to its baseline, both measured in this run, interleaved round by round (ember, baseline, ember, baseline, …). Values are medians, with the spread in parentheses: p10–p90 when there are at least 10 samples, min–max below that; n is the number of samples (API latency: requests; elsewhere: rounds). The ratio is ember's median ÷ the baseline's: above 1 ember is slower or bigger, except for throughputs and rates, where below 1 ember is slower.\n\n")

	w("## Summary\n\n")
	w("| Figure | ember | baseline | ember ÷ baseline | n | Firecracker's goal |\n|---|---|---|---|---|---|\n")
	section := ""
	for _, r := range rows {
		if r.section != section {
			section = r.section
			w("| **%s** | | | | | |\n", section)
		}
		em, base, rat := r.cells()
		w("| %s | %s | %s | %s | %s | %s |\n", mdEscape(strings.TrimSpace(r.figure)), mdEscape(em), mdEscape(base), rat, r.n(), mdEscape(r.goal))
	}
	w("\n")

	if rep.api != nil {
		w("## API\n\n")
		w("ember's real binary (default log level, its stdout drained by the benchmark) and `bench/bareapi`, a bare `net/http` server on a Unix socket that does equivalent work: GET / marshals a four-field instance-info JSON and answers 200; PUT /machine-config decodes the JSON strictly, checks it, stores it and answers 204. Both run for the whole suite. The same minimal HTTP/1.1 client (one persistent connection, `Content-Length` framing) drives both. Each of %d rounds sends %d requests per endpoint one after the other to ember, then to the baseline, then measures throughput for %d ms with %d connections each. Latency is the client's round trip; p50 uses all samples, p99 is per round.\n\n",
			rep.cfg.apiRounds, rep.cfg.apiRequests, rep.cfg.apiThroughputFor.Milliseconds(), apiThroughputConns)
		w("ember serves requests one at a time, as Firecracker's single API thread does (docs/architecture.md), while net/http serves the four connections in parallel on both cores; that, more than the cost of one request, is the throughput difference.\n\n")
		w("Goal: Firecracker's CI fails an API call over 700 ms; it publishes no latency target below that.\n\n")
		if p, ok := plots["api-latency-cdf"]; ok {
			w("![API latency CDF](%s)\n\n", p)
		}
	}
	if s := rep.startup; s != nil {
		w("## Start-up\n\n")
		w("Process start (just before fork/exec) to the line `API server started.` on the process's stdout, which both servers print once the socket listens; %d rounds, alternating, after one unmeasured start each. CPU time is the child's rusage (user + system) after it is killed with SIGKILL the moment that line arrives; the sum of its threads' run time from /proc/<pid>/task/*/schedstat read at that moment, for comparison: ember %s, net/http %s. Binaries: ember %s, bareapi %s (both `go build` defaults). For scale, `/bin/true` from fork/exec to exit takes %s of wall time and %s of CPU on this machine, in the same rounds: what any process start costs here before the Go runtime and the server's own work.\n\n",
			rep.cfg.startupRounds, uMS.cell(summarize(s.schedCPU[0])), uMS.cell(summarize(s.schedCPU[1])), mib(s.emberSize), mib(s.bareAPISize),
			uMS.cell(summarize(s.trueWall)), uMS.cell(summarize(s.trueCPU)))
		w("Goal: Firecracker's API socket is available ≤ 8 CPU ms after the process starts (wall clock 6–60 ms, typically ~12 ms).\n\n")
		if p, ok := plots["startup-cdf"]; ok {
			w("![Start-up CDF](%s)\n\n", p)
		}
	}
	if bt := rep.boot; bt != nil {
		w("## Boot\n\n")
		w("ember: start ember, configure the VM with PUT /machine-config and /boot-source, then time from sending PUT /actions InstanceStart to the guest's `EMBER-GUEST: init` line on ember's stdout (the serial console). Bare QEMU: time from exec to the same line on QEMU's stdout. The bare command line is ember's own, read from ember's Debug log line `qemu command:` in the same round and made stand-alone: `-S`, the QMP monitor and QEMU's debug log (`-d cpu_reset -D`) dropped (ember uses them to start the vCPUs, drive QEMU and tell a triple fault from a reset), the console on stdio instead of ember's socket pair, the kernel and initrd by path instead of passed descriptors. Everything else — machine, CPU model, memory, devices, `-append` including ember's `tsc_early_khz` — is identical. %d rounds, alternating.\n\n", rep.cfg.bootRounds)
		if len(bt.argv) > 0 {
			w("ember's QEMU command (first round):\n\n```\n%s\n```\n\nbare QEMU:\n\n```\n%s\n```\n\n", rep.display(bt.argv), rep.display(bt.bareArgv))
		}
		w("The kvm backend row: %s.\n\n", bt.kvmRow)
		w("Goal: Firecracker boots a minimal guest (1 vCPU, 128 MiB, serial off) from InstanceStart to `/sbin/init` in ≤ 125 ms, on bare metal with KVM. Under TCG the guest kernel itself runs about an order of magnitude slower, so compare ember with the bare-QEMU column here and with the goal only once the kvm backend runs on a host with vmx/svm.\n\n")
		if p, ok := plots["boot-cdf"]; ok {
			w("![Boot-time distribution](%s)\n\n", p)
		}

		w("## Memory\n\n")
		w("Sampled %d ms after the guest's `EMBER-GUEST: ready` line, in every boot round, from /proc/<pid>/smaps. Each process's RSS is split by mapping: the guest's RAM is QEMU's one anonymous mapping of exactly the guest's size (%d MiB; its Rss is the guest memory actually touched); TCG's translated-code cache is its anonymous executable mapping; QEMU keeps the kernel and initrd files mapped; the rest is the executable and shared libraries, and anonymous memory (heaps, stacks, device state). \"RSS beyond guest RAM\" is every mapping's Rss except the guest RAM's, as Firecracker's memory monitor counts it; for ember it is ember's own RSS plus its QEMU's. Shared library pages count in full in every process.\n\n", memSettle.Milliseconds(), bootMemMiB)
		w("| median KiB | ember process | ember's QEMU | bare QEMU |\n|---|---|---|---|\n")
		cats := []struct {
			name string
			f    func(memUse) int64
		}{
			{"total RSS", func(u memUse) int64 { return u.Total }},
			{"guest RAM (touched)", func(u memUse) int64 { return u.GuestRAM }},
			{"beyond guest RAM", memUse.Overhead},
			{"· TCG code cache", func(u memUse) int64 { return u.TCG }},
			{"· kernel and initrd mappings", func(u memUse) int64 { return u.BootFile }},
			{"· executable and libraries", func(u memUse) int64 { return u.Binary }},
			{"· anonymous (heap, stacks, devices)", func(u memUse) int64 { return u.Anon }},
		}
		for _, c := range cats {
			w("| %s | %s | %s | %s |\n", c.name, kib(bt.emberRSS, c.f), kib(bt.emberQEMU, c.f), kib(bt.bareQEMU, c.f))
		}
		w("\nGoal: Firecracker's VMM overhead is ≤ 5 MiB (1 vCPU, 128 MiB, excluding guest RAM), checked in CI as the RSS of non-guest mappings.\n\n")
	}
	if len(rep.density) > 0 {
		w("## Density\n\n")
		w("N VMs (1 vCPU, %d MiB each) started at once; the time runs from starting the N processes to the last guest's `EMBER-GUEST: init`. For ember that covers N ember processes coming up, each configured through its API and sent InstanceStart as soon as it is ready; for the baseline, N bare QEMUs with ember's command line. Memory is summed over all processes once every guest printed `ready`. %d rounds per N, alternating. On %d cores N TCG guests share the CPUs, so time grows about linearly with N for both.\n\n", bootMemMiB, rep.cfg.densityRounds, m.cores)
		w("Goal: Firecracker creates 5 microVMs per host core per second (1 vCPU, 128 MiB).\n\n")
	}
	if o := rep.io; o != nil {
		w("## I/O\n\n")
		if o.skipped != "" {
			w("Not measured: %s.\n\n", o.skipped)
		} else {
			w("One guest per round with a %d MiB scratch drive (raw file, ember's default cache_type Unsafe and io_engine Sync) and a virtio-net device on a tap. A script passed with `ember.sh` writes the drive with `dd oflag=direct bs=1M`, drops the guest's caches, reads it back with `iflag=direct`, then sends a %d MiB file from its tmpfs with busybox `nc` to a TCP sink the benchmark runs on the tap's host side. Block figures are timed on the host between marker lines the script prints around each `dd`; the network figure from the sink's first to last byte. The tap, its address %s and the sink live in a network namespace the benchmark creates and deletes; ember and QEMU run inside it (`ip netns exec`). The bare QEMU uses ember's command line with its own scratch file and the tap opened by name. %d rounds, alternating. ember is not in the data path (QEMU does the I/O), so the two columns should agree; a difference would mean ember configured the devices differently.\n\n",
				o.mib, o.netMiB, netHostIP, rep.cfg.ioRounds)
			w("**Stalls:** now and then a guest's TCP transfer stops midway and never resumes: the connection stays up, the host's TCP has acknowledged everything and receives nothing more, not even retransmissions, while the guest keeps running (it prints a line every 2 s during the transfer). Seen with ember and with bare QEMU alike, so it lies in QEMU's emulated virtio-net under TCG or in the guest, not in ember. The sink gives up after %d s without data and the round's guest is replaced by a fresh one (at most %d tries). In this run: ember %d stalled of %d guests, bare QEMU %d of %d.\n\n",
				int(sinkStall.Seconds()), ioAttempts, o.stalls[0], o.attempts[0], o.stalls[1], o.attempts[1])
			if len(o.argv) > 0 {
				w("The guest's script (`ember.sh=` carries it base64-encoded):\n\n```sh\n%s```\n\nember's QEMU command for this guest:\n\n```\n%s\n```\n\n", ioScript(o.mib, o.netMiB), rep.display(o.argv))
			}
			w("Goals: Firecracker states 14.5 Gbit/s of network throughput at ≤ 80 %% of a host core (iperf3, bare metal) and 1 GiB/s of storage throughput (its test is pending). TCG emulates every guest instruction, virtio's included, so these are far off for ember and bare QEMU alike.\n\n")
		}
	}
	w("## Method notes and limits\n\n")
	w("- Time is the host's monotonic clock, taken when the benchmark reads a line from a pipe; the guest's clock is never used.\n")
	w("- Processes run with their output on pipes the benchmark drains at once; ember's guest console reaches the benchmark through ember (QEMU → socket pair → ember → stdout), bare QEMU's directly.\n")
	w("- The kvm backend does not exist yet; its row stays until it does. This machine could not measure it anyway without vmx/svm.\n")
	w("- Rerun with `go run ./bench` (full) or `go run ./bench -quick`; `-only api,startup` runs some suites, `-no-doc` leaves this file alone.\n")
}

func maxN(ns []int) int {
	m := 0
	for _, n := range ns {
		m = max(m, n)
	}
	return m
}

func kib(us []memUse, f func(memUse) int64) string {
	if len(us) == 0 {
		return "—"
	}
	xs := make([]float64, len(us))
	for i, u := range us {
		xs[i] = float64(f(u))
	}
	return fmt.Sprintf("%.0f", summarize(xs).Median)
}

func mib(n int64) string {
	if n <= 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// display renders argv for the document: the run's temporary directory
// as $TMPDIR and ember.sh scripts elided, so the text is stable across runs.
func (rep *report) display(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if rep.tmp != "" {
			a = strings.ReplaceAll(a, rep.tmp, "$TMPDIR")
		}
		words := strings.Split(a, " ")
		for j, w := range words {
			if strings.HasPrefix(w, "ember.sh=") {
				words[j] = "ember.sh=<script, base64>"
			}
		}
		out[i] = strings.Join(words, " ")
	}
	return shellJoin(out)
}

// shellJoin quotes argv for display.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`|&;<>()*?[]{}!#~") {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
