package main

import (
	"math"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name             string
		in               []float64
		min, median, max float64
		p10, p90         float64
		label            string
	}{
		{"one", []float64{7}, 7, 7, 7, 7, 7, "min–max"},
		{"odd, unsorted", []float64{3, 1, 2}, 1, 2, 3, 1.2, 2.8, "min–max"},
		{"even", []float64{4, 1, 3, 2}, 1, 2.5, 4, 1.3, 3.7, "min–max"},
		{"ten", []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 1, 5.5, 10, 1.9, 9.1, "p10–p90"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := summarize(tc.in)
			near := func(what string, got, want float64) {
				if math.Abs(got-want) > 1e-9 {
					t.Errorf("%s = %v, want %v", what, got, want)
				}
			}
			near("min", s.Min, tc.min)
			near("median", s.Median, tc.median)
			near("max", s.Max, tc.max)
			near("p10", s.P10, tc.p10)
			near("p90", s.P90, tc.p90)
			if s.N != len(tc.in) {
				t.Errorf("N = %d, want %d", s.N, len(tc.in))
			}
			lo, hi, label := s.spread()
			if label != tc.label {
				t.Errorf("spread label %q, want %q", label, tc.label)
			}
			if tc.label == "min–max" && (lo != s.Min || hi != s.Max) {
				t.Errorf("spread %v–%v, want min–max %v–%v", lo, hi, s.Min, s.Max)
			}
		})
	}
}

func TestSummarizeDoesNotReorderInput(t *testing.T) {
	in := []float64{3, 1, 2}
	summarize(in)
	if in[0] != 3 || in[1] != 1 || in[2] != 2 {
		t.Fatalf("input reordered: %v", in)
	}
}

func TestEmptySummaryRendersDash(t *testing.T) {
	s := summarize(nil)
	if s.N != 0 {
		t.Fatalf("N = %d", s.N)
	}
	if got := uMS.cell(s); got != "—" {
		t.Errorf("cell = %q, want —", got)
	}
	if got := fmtRatio(ratio(s, summarize([]float64{1}))); got != "—" {
		t.Errorf("ratio = %q, want —", got)
	}
}

func TestCellAndRatio(t *testing.T) {
	a := summarize([]float64{10, 12, 14})
	b := summarize([]float64{5, 6, 7})
	if got, want := uMS.cell(a), "12.0 ms (10.0–14.0)"; got != want {
		t.Errorf("cell = %q, want %q", got, want)
	}
	if got, want := fmtRatio(ratio(a, b)), "2.00×"; got != want {
		t.Errorf("ratio = %q, want %q", got, want)
	}
	if got, want := fmtRatio(25), "25×"; got != want {
		t.Errorf("fmtRatio(25) = %q, want %q", got, want)
	}
}

func TestMs(t *testing.T) {
	got := ms([]time.Duration{1500 * time.Microsecond, 2 * time.Second})
	if got[0] != 1.5 || got[1] != 2000 {
		t.Fatalf("ms = %v", got)
	}
}

func TestPerRound(t *testing.T) {
	xs := []float64{1, 2, 3, 10, 20, 30, 99}
	got := perRound(xs, 3, func(r []float64) float64 { return summarize(r).Max })
	if len(got) != 2 || got[0] != 3 || got[1] != 30 {
		t.Fatalf("perRound = %v, want [3 30] (the incomplete last round dropped)", got)
	}
}
