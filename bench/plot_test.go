package main

import (
	"bytes"
	"image"
	"image/png"
	"math"
	"path/filepath"
	"testing"
)

func TestGlyphsCoverLabels(t *testing.T) {
	// Every rune the report draws must have a glyph, not the missing box.
	texts := []string{
		"API latency over the Unix socket", "round trip, µs (log scale)", "fraction of samples ≤ x",
		"Process start to API socket ready", "ember: InstanceStart → init", "bare QEMU: exec → init",
		"Boot to the guest's init (TCG, 1 vCPU, 128 MiB)", "net/http PUT /machine-config", "0123456789.-",
	}
	for _, s := range texts {
		for _, r := range s {
			if _, ok := glyphs[r]; !ok {
				t.Errorf("no glyph for %q (in %q)", r, s)
			}
		}
	}
}

func TestParseGlyphsRejectsBadShapes(t *testing.T) {
	for _, bad := range []string{"..... .....", "...... ..... ..... ..... ..... ..... ....."} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("glyph %q accepted", bad)
				}
			}()
			parseGlyphs(map[rune]string{'x': bad})
		}()
	}
}

func TestDrawTextSetsPixels(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 40, 20))
	drawText(img, 1, 1, "1", 2, colText)
	// '1' has its stem in the middle column (x = 2 → pixels 5..6 at scale 2).
	if c := img.RGBAAt(1+2*2, 1+3*2); c != colText {
		t.Errorf("stem pixel is %v", c)
	}
	if c := img.RGBAAt(1, 1+3*2); c == colText {
		t.Error("pixel left of the stem is set")
	}
	if got := textWidth("ab", 2); got != (2*6-1)*2 {
		t.Errorf("textWidth = %d", got)
	}
}

func TestCDFPlotRenders(t *testing.T) {
	for _, logX := range []bool{false, true} {
		p := cdfPlot{title: "t", xlabel: "ms", logX: logX, series: []cdfSeries{
			{name: "ember", values: []float64{3, 1, 2, 5}, color: colEmber},
			{name: "base", values: make2000(), color: colBase},
		}}
		img, err := p.render()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		back, err := png.Decode(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if back.Bounds().Dx() != plotW || back.Bounds().Dy() != plotH {
			t.Errorf("size %v", back.Bounds())
		}
		if n := countColor(img, colEmber); n < 100 {
			t.Errorf("logX=%v: ember's curve has %d pixels", logX, n)
		}
		if n := countColor(img, colBase); n < 100 {
			t.Errorf("logX=%v: the baseline's curve has %d pixels", logX, n)
		}
	}
	if _, err := (cdfPlot{title: "empty"}).render(); err == nil {
		t.Error("an empty plot rendered")
	}
	if _, err := (cdfPlot{title: "nonpositive", logX: true, series: []cdfSeries{{values: []float64{0, -1}}}}).render(); err == nil {
		t.Error("a log plot of non-positive values rendered")
	}
	path := filepath.Join(t.TempDir(), "sub", "p.png")
	img, _ := (cdfPlot{title: "one", series: []cdfSeries{{name: "a", values: []float64{1}, color: colEmber}}}).render()
	if err := writePNG(path, img); err != nil {
		t.Fatal(err)
	}
}

func make2000() []float64 {
	out := make([]float64, 2000)
	for i := range out {
		out[i] = 1 + float64(i%97)
	}
	return out
}

func countColor(img *image.RGBA, c interface{ RGBA() (r, g, b, a uint32) }) int {
	n := 0
	r0, g0, b0, _ := c.RGBA()
	for y := 0; y < img.Bounds().Dy(); y++ {
		for x := 0; x < img.Bounds().Dx(); x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if r == r0 && g == g0 && b == b0 {
				n++
			}
		}
	}
	return n
}

func TestNiceRange(t *testing.T) {
	tests := []struct{ lo, hi, tlo, thi, step float64 }{
		{2172, 2645, 2100, 2700, 100},
		{0.3, 0.9, 0.3, 0.9, 0.1},
		{5, 5, 5, 5.5, 0.1},
	}
	for _, tc := range tests {
		tlo, thi, step := niceRange(tc.lo, tc.hi, 8)
		if math.Abs(tlo-tc.tlo) > 1e-9 || math.Abs(thi-tc.thi) > 1e-9 || math.Abs(step-tc.step) > 1e-9 {
			t.Errorf("niceRange(%v, %v) = %v %v %v, want %v %v %v", tc.lo, tc.hi, tlo, thi, step, tc.tlo, tc.thi, tc.step)
		}
		if tlo > tc.lo+1e-9 || thi < tc.hi-1e-9 {
			t.Errorf("niceRange(%v, %v) = [%v, %v] does not cover the data", tc.lo, tc.hi, tlo, thi)
		}
	}
	if got := tickLabel(0.25, []float64{0, 0.25, 0.5}); got != "0.25" {
		t.Errorf("tickLabel = %q", got)
	}
	if got := tickLabel(2000, []float64{2000, 2500}); got != "2000" {
		t.Errorf("tickLabel = %q", got)
	}
}
