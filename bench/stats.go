package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// summary describes one set of samples: the median and the spread the
// report shows next to it.
type summary struct {
	N                  int
	Min, P10, Median   float64
	P90, P99, Max, Avg float64
}

// summarize sorts a copy of xs and computes its order statistics. An empty
// input gives a zero summary with N == 0, which the report prints as "—".
func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	return summary{
		N:      len(s),
		Min:    s[0],
		P10:    percentileSorted(s, 10),
		Median: percentileSorted(s, 50),
		P90:    percentileSorted(s, 90),
		P99:    percentileSorted(s, 99),
		Max:    s[len(s)-1],
		Avg:    sum / float64(len(s)),
	}
}

// percentileSorted is the p-th percentile of sorted s with linear
// interpolation between closest ranks (p in [0, 100]).
func percentileSorted(s []float64, p float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	if len(s) == 1 {
		return s[0]
	}
	rank := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	if lo < 0 {
		lo = 0
	}
	if hi >= len(s) {
		hi = len(s) - 1
	}
	frac := rank - float64(lo)
	return s[lo] + (s[hi]-s[lo])*frac
}

// spread returns the range the report prints next to a median: p10–p90
// once there are enough samples for those to mean something, min–max
// below that. The label says which.
func (s summary) spread() (lo, hi float64, label string) {
	if s.N >= 10 {
		return s.P10, s.P90, "p10–p90"
	}
	return s.Min, s.Max, "min–max"
}

// ms converts durations to float milliseconds, the unit most figures use.
func ms(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// unit formats values of one kind of figure.
type unit struct {
	name   string // "ms", "MiB", "req/s", ...
	digits int    // decimals
}

func (u unit) fmt(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return fmt.Sprintf("%.*f", u.digits, v)
}

// cell renders "median unit (lo–hi)".
func (u unit) cell(s summary) string {
	if s.N == 0 {
		return "—"
	}
	lo, hi, _ := s.spread()
	return fmt.Sprintf("%s %s (%s–%s)", u.fmt(s.Median), u.name, u.fmt(lo), u.fmt(hi))
}

// ratio is a/b, NaN when either is missing.
func ratio(a, b summary) float64 {
	if a.N == 0 || b.N == 0 || b.Median == 0 {
		return math.NaN()
	}
	return a.Median / b.Median
}

func fmtRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "—"
	}
	if r >= 10 {
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}
