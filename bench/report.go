package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"
)

// report gathers the suites' results and renders them.
type report struct {
	cfg        config
	machine    machineInfo
	started    time.Time
	elapsed    time.Duration
	loadBefore string
	loadAfter  string
	durations  []string
	loads      []string // 1-minute load average as each suite started
	tmp        string   // the run's temporary directory, hidden in displayed paths

	// accel is the accelerator ember's qemu backend picked (from its log),
	// with its reason and QEMU's version; "" if no VM was booted.
	accel, accelReason, qemuVersion string

	api     *apiResult
	startup *startupResult
	boot    *bootResult
	density []*densityPoint
	io      *ioResult
}

// row is one line of the summary table.
type row struct {
	section, figure string
	ember, base     summary
	baseName        string // "" when the figure has no baseline
	u               unit
	higherBetter    bool
	goal            string
	// target is Firecracker's goal in u's unit (0: none); the biggest gap
	// is the row furthest from its target.
	target float64
	// emulated marks figures the guest's emulation dominates (boot,
	// creation rate, guest I/O under TCG): not comparable with goals set
	// for KVM on bare metal.
	emulated bool
	context  string // what the gap sentence adds about this figure
	text     string // replaces the numbers (e.g. a backend that is not built)
}

func (r row) ratio() float64 { return ratio(r.ember, r.base) }

// gap is how far ember is from the target, as a factor ≥ 1 when short.
func (r row) gap() float64 {
	if r.target == 0 || r.ember.N == 0 || r.ember.Median <= 0 {
		return math.NaN()
	}
	if r.higherBetter {
		return r.target / r.ember.Median
	}
	return r.ember.Median / r.target
}

func (r row) n() string {
	switch {
	case r.ember.N == 0:
		return ""
	case r.base.N == 0 || r.base.N == r.ember.N:
		return fmt.Sprint(r.ember.N)
	default:
		return fmt.Sprintf("%d/%d", r.ember.N, r.base.N)
	}
}

var (
	uUS    = unit{"µs", 0}
	uMS    = unit{"ms", 1}
	uMS0   = unit{"ms", 0}
	uS     = unit{"s", 2}
	uMiB   = unit{"MiB", 1}
	uReqS  = unit{"req/s", 0}
	uMiBps = unit{"MiB/s", 1}
	uVMs   = unit{"VMs/s", 2}
)

// perRound splits pooled samples into rounds of n and applies f to each.
func perRound(xs []float64, n int, f func([]float64) float64) []float64 {
	var out []float64
	for i := 0; n > 0 && i+n <= len(xs); i += n {
		out = append(out, f(xs[i:i+n]))
	}
	return out
}

func p99(xs []float64) float64 { return summarize(xs).P99 }

func memMiB(us []memUse, f func(memUse) int64) []float64 {
	out := make([]float64, len(us))
	for i, u := range us {
		out[i] = kib2mib(f(u))
	}
	return out
}

// emulated says whether guests ran under emulation (anything but KVM/HVF).
func (rep *report) emulated() bool { return rep.accel != "kvm" && rep.accel != "hvf" }

func (rep *report) rows() []row {
	var rows []row
	emu := rep.emulated()
	if a := rep.api; a != nil {
		for i, ep := range apiEndpoints {
			rows = append(rows,
				row{section: "API", figure: ep.name + " latency p50", ember: summarize(a.lat[i][0]), base: summarize(a.lat[i][1]),
					baseName: "net/http", u: uUS, goal: "every API call ≤ 700 ms in Firecracker's CI"},
				row{section: "API", figure: ep.name + " latency p99", ember: summarize(perRound(a.lat[i][0], rep.cfg.apiRequests, p99)),
					base: summarize(perRound(a.lat[i][1], rep.cfg.apiRequests, p99)), baseName: "net/http", u: uUS, goal: "—"},
				row{section: "API", figure: fmt.Sprintf("%s throughput, %d connections", ep.name, apiThroughputConns), ember: summarize(a.tput[i][0]),
					base: summarize(a.tput[i][1]), baseName: "net/http", u: uReqS, higherBetter: true, goal: "—"},
			)
		}
	}
	if s := rep.startup; s != nil {
		rows = append(rows,
			row{section: "Start-up", figure: "process start → API socket ready, wall", ember: summarize(s.wall[0]), base: summarize(s.wall[1]),
				baseName: "net/http binary", u: uMS, goal: "6–60 ms, typically ~12 ms"},
			row{section: "Start-up", figure: "process start → API socket ready, CPU", ember: summarize(s.cpu[0]), base: summarize(s.cpu[1]),
				baseName: "net/http binary", u: uMS, goal: "≤ 8 CPU ms", target: 8},
		)
	}
	if b := rep.boot; b != nil {
		accel := rep.accel
		if accel == "" {
			accel = "?"
		}
		med := func(us []memUse, f func(memUse) int64) float64 { return summarize(memMiB(us, f)).Median }
		memContext := fmt.Sprintf("of which QEMU's maps of the kernel and initrd are %.0f MiB and TCG's code cache %.0f MiB; ember's own process is %.1f MiB",
			med(b.emberQEMU, func(u memUse) int64 { return u.BootFile }), med(b.emberQEMU, func(u memUse) int64 { return u.TCG }),
			med(b.emberRSS, func(u memUse) int64 { return u.Total }))
		rows = append(rows,
			row{section: "Boot", figure: fmt.Sprintf("InstanceStart → init, qemu backend (%s)", strings.ToUpper(accel)), ember: summarize(b.boot[0]),
				base: summarize(b.boot[1]), baseName: "bare QEMU", u: uMS0, goal: "≤ 125 ms (KVM, bare metal)", target: 125, emulated: emu},
			row{section: "Boot", figure: "  of which the InstanceStart call", ember: summarize(b.startCall), u: uMS0, goal: "—"},
			row{section: "Boot", figure: "InstanceStart → init, kvm backend", text: shortKVM(b.kvmRow), goal: "≤ 125 ms (KVM, bare metal)"},
			row{section: "Memory", figure: "ember process RSS (per VM)", ember: summarize(memMiB(b.emberRSS, func(u memUse) int64 { return u.Total })),
				u: uMiB, goal: "≤ 5 MiB for the whole VMM"},
			row{section: "Memory", figure: "VMM RSS beyond guest RAM (ember + QEMU)", ember: summarize(addMiB(b.emberRSS, b.emberQEMU, memUse.Overhead)),
				base: summarize(memMiB(b.bareQEMU, memUse.Overhead)), baseName: "bare QEMU", u: uMiB, goal: "≤ 5 MiB", target: 5, context: memContext},
			row{section: "Memory", figure: "  same, without TCG's code cache and boot-file maps", ember: summarize(addMiB(b.emberRSS, b.emberQEMU, kvmLikeOverhead)),
				base: summarize(memMiB(b.bareQEMU, kvmLikeOverhead)), baseName: "bare QEMU", u: uMiB, goal: "≤ 5 MiB"},
			row{section: "Memory", figure: "guest RAM touched at ready", ember: summarize(memMiB(b.emberQEMU, func(u memUse) int64 { return u.GuestRAM })),
				base: summarize(memMiB(b.bareQEMU, func(u memUse) int64 { return u.GuestRAM })), baseName: "bare QEMU", u: uMiB, goal: "—"},
		)
	}
	for _, d := range rep.density {
		vms := fmt.Sprintf("%d VMs", d.n)
		if d.n == 1 {
			vms = "1 VM"
		}
		rate := func(ts []float64) []float64 {
			out := make([]float64, len(ts))
			for i, t := range ts {
				out[i] = float64(d.n) / t
			}
			return out
		}
		perVM := func(us []memUse) []float64 {
			out := memMiB(us, memUse.Overhead)
			for i := range out {
				out[i] /= float64(d.n)
			}
			return out
		}
		rows = append(rows,
			row{section: "Density", figure: vms + " at once → all at init", ember: summarize(d.total[0]), base: summarize(d.total[1]),
				baseName: "bare QEMU", u: uS, goal: "—", emulated: emu},
			row{section: "Density", figure: vms + ": creation rate", ember: summarize(rate(d.total[0])), base: summarize(rate(d.total[1])),
				baseName: "bare QEMU", u: uVMs, higherBetter: true,
				goal: fmt.Sprintf("5 VMs/s per core = %d/s here", 5*rep.machine.cores), target: float64(5 * rep.machine.cores), emulated: emu},
			row{section: "Density", figure: vms + ": total RSS", ember: summarize(memMiB(d.mem[0], func(u memUse) int64 { return u.Total })),
				base: summarize(memMiB(d.mem[1], func(u memUse) int64 { return u.Total })), baseName: "bare QEMU", u: uMiB, goal: "—"},
			row{section: "Density", figure: vms + ": RSS beyond guest RAM per VM", ember: summarize(perVM(d.mem[0])),
				base: summarize(perVM(d.mem[1])), baseName: "bare QEMU", u: uMiB, goal: "≤ 5 MiB"},
		)
	}
	if o := rep.io; o != nil {
		if o.skipped != "" {
			rows = append(rows, row{section: "I/O", figure: "block and network throughput", text: "not measured: " + o.skipped})
		} else {
			rows = append(rows,
				row{section: "I/O", figure: fmt.Sprintf("block write, O_DIRECT, %d MiB", o.mib), ember: summarize(o.write[0]), base: summarize(o.write[1]),
					baseName: "bare QEMU", u: uMiBps, higherBetter: true, goal: "1 GiB/s (test pending upstream)", target: 1024, emulated: emu},
				row{section: "I/O", figure: fmt.Sprintf("block read, O_DIRECT, %d MiB", o.mib), ember: summarize(o.read[0]), base: summarize(o.read[1]),
					baseName: "bare QEMU", u: uMiBps, higherBetter: true, goal: "1 GiB/s (test pending upstream)", target: 1024, emulated: emu},
				row{section: "I/O", figure: fmt.Sprintf("network guest → host, TCP, %d MiB", o.netMiB), ember: summarize(o.net[0]), base: summarize(o.net[1]),
					baseName: "bare QEMU", u: uMiBps, higherBetter: true, goal: "14.5 Gbit/s = 1728 MiB/s", target: 14.5e9 / 8 / (1 << 20), emulated: emu},
			)
		}
	}
	return rows
}

// shortKVM is the kvm row's table text: the verdict without the details,
// which the boot section gives.
func shortKVM(s string) string {
	if v, _, ok := strings.Cut(s, ":"); ok {
		return v
	}
	return s
}

// kvmLikeOverhead leaves out what only TCG has (its translated-code cache)
// and QEMU's copies of the boot files, to show what would remain.
func kvmLikeOverhead(u memUse) int64 { return u.Overhead() - u.TCG - u.BootFile }

// addMiB sums f over paired samples of two processes.
func addMiB(a, b []memUse, f func(memUse) int64) []float64 {
	out := make([]float64, 0, len(a))
	for i := range a {
		if i < len(b) {
			out = append(out, kib2mib(f(a[i])+f(b[i])))
		}
	}
	return out
}

// cells renders a row's value columns.
func (r row) cells() (em, base, rat string) {
	if r.text != "" {
		return r.text, "", ""
	}
	em = r.u.cell(r.ember)
	base = "—"
	rat = "—"
	if r.baseName != "" {
		base = r.u.cell(r.base) + " " + r.baseName
		rat = fmtRatio(r.ratio())
	}
	return
}

// renderText is the table printed on stdout.
func renderText(rows []row) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tEMBER\tBASELINE\tEMBER÷BASE\tN\tFIRECRACKER'S GOAL")
	section := ""
	for _, r := range rows {
		if r.section != section {
			section = r.section
			fmt.Fprintf(tw, "[%s]\t\t\t\t\t\n", section)
		}
		em, base, rat := r.cells()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.figure, em, base, rat, r.n(), r.goal)
	}
	tw.Flush()
	b.WriteString("Values: median (p10–p90 when n ≥ 10, else min–max); ember÷base is the ratio of medians.\n")
	return b.String()
}

// biggestGap names the figure furthest from Firecracker's goal among those
// this machine can compare fairly, how much of that distance the baseline
// shares, and how far the emulator-bound figures are.
func biggestGap(rows []row) string {
	var worst, worstEmu *row
	for i := range rows {
		r := &rows[i]
		g := r.gap()
		if math.IsNaN(g) {
			continue
		}
		if r.emulated {
			if worstEmu == nil || g > worstEmu.gap() {
				worstEmu = r
			}
		} else if worst == nil || g > worst.gap() {
			worst = r
		}
	}
	if worst == nil && worstEmu == nil {
		return "no figure with a Firecracker goal was measured in this run."
	}
	emuClause := func(w *row) string {
		return fmt.Sprintf("%s is %s against %s %s, %s %s",
			strings.TrimSpace(w.figure), w.u.fmt(w.ember.Median)+" "+w.u.name, w.u.fmt(w.target), w.u.name, fmtFactor(w.gap()), overOrShort(w))
	}
	if worst == nil {
		return fmt.Sprintf("%s — %s, but the guest is emulated (TCG) and bare QEMU measures %s %s in the same run.",
			worstEmu.section, emuClause(worstEmu), worstEmu.u.fmt(worstEmu.base.Median), worstEmu.u.name)
	}
	w := *worst
	s := fmt.Sprintf("%s — %s is %s %s against Firecracker's goal of %s %s (%s %s)",
		w.section, strings.TrimSpace(w.figure), w.u.fmt(w.ember.Median), w.u.name, w.u.fmt(w.target), w.u.name, fmtFactor(w.gap()), overOrShort(&w))
	if w.context != "" {
		s += ": " + w.context
	}
	if w.baseName != "" && w.base.N > 0 {
		r := w.ratio()
		if w.higherBetter {
			r = 1 / r
		}
		share := "so it comes with the baseline rather than from ember's own code"
		if r > 1.5 {
			share = fmt.Sprintf("so ember itself makes it %s worse", fmtRatio(r))
		}
		s += fmt.Sprintf("; %s alone measures %s %s in the same run, %s", w.baseName, w.u.fmt(w.base.Median), w.u.name, share)
	}
	if worstEmu != nil && worstEmu.gap() > w.gap() {
		s += " (figures the TCG emulator dominates are further off — " + emuClause(worstEmu) +
			" — but bare QEMU matches them, so they measure the emulator, not ember)"
	}
	return s + "."
}

func overOrShort(r *row) string {
	if r.higherBetter {
		return "short"
	}
	return "over"
}

func fmtFactor(f float64) string {
	if f >= 10 {
		return fmt.Sprintf("%.0f×", f)
	}
	return fmt.Sprintf("%.1f×", f)
}

// worstOwn names the figure where ember is furthest behind its baseline.
func worstOwn(rows []row) (row, bool) {
	var worst row
	found := false
	worstR := 0.0
	for _, r := range rows {
		if r.baseName == "" || r.text != "" {
			continue
		}
		q := r.ratio()
		if r.higherBetter {
			q = 1 / q
		}
		if math.IsNaN(q) || math.IsInf(q, 0) {
			continue
		}
		if !found || q > worstR {
			worst, worstR, found = r, q, true
		}
	}
	return worst, found
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// write renders docs/benchmarks.md and the plots.
func (rep *report) write(rows []row) error {
	plotDir := filepath.Join(filepath.Dir(rep.cfg.docPath), "benchmarks")
	plots, err := rep.plots(plotDir)
	if err != nil {
		return err
	}
	var b strings.Builder
	rep.markdown(&b, rows, plots)
	if err := os.MkdirAll(filepath.Dir(rep.cfg.docPath), 0o755); err != nil {
		return err
	}
	prev, err := os.ReadFile(rep.cfg.docPath)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(rep.cfg.docPath, []byte(keepSections(string(prev), b.String())), 0o644)
}

// sectionBegin matches the start of a part of docs/benchmarks.md another
// tool writes, between "<!-- name:begin -->" and "<!-- name:end -->" (the
// benchmarks that run from the e2e suite: kvm in L1, snapshots, network,
// vsock). A rewrite carries every such part over rather than wiping it.
var sectionBegin = regexp.MustCompile(`<!-- ([a-z0-9-]+):begin -->`)

// keepSections returns fresh with every marked section of prev that fresh
// lacks appended at its end, byte for byte, in prev's order.
func keepSections(prev, fresh string) string {
	for _, m := range sectionBegin.FindAllStringSubmatchIndex(prev, -1) {
		name := prev[m[2]:m[3]]
		begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
		i := m[0]
		if strings.Contains(fresh, begin) {
			continue
		}
		j := strings.Index(prev[i:], end)
		if j < 0 {
			continue // unterminated: not ours to guess where it ends
		}
		fresh = strings.TrimRight(fresh, "\n") + "\n\n" + prev[i:i+j+len(end)] + "\n"
	}
	return fresh
}
