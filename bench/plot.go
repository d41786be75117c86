package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// Plot colours: ember in warm tones, baselines in cool ones.
var (
	colEmber  = color.RGBA{0xd9, 0x48, 0x01, 0xff}
	colEmber2 = color.RGBA{0x8c, 0x1d, 0x04, 0xff}
	colBase   = color.RGBA{0x21, 0x66, 0xac, 0xff}
	colBase2  = color.RGBA{0x1b, 0x9e, 0x77, 0xff}
	colAxis   = color.RGBA{0x33, 0x33, 0x33, 0xff}
	colGrid   = color.RGBA{0xe3, 0xe3, 0xe3, 0xff}
	colText   = color.RGBA{0x11, 0x11, 0x11, 0xff}
	colWhite  = color.RGBA{0xff, 0xff, 0xff, 0xff}
)

// cdfSeries is one empirical distribution to draw.
type cdfSeries struct {
	name   string
	values []float64
	color  color.RGBA
}

// cdfPlot draws empirical CDFs: x the measured value, y the fraction of
// samples at or below it. Small samples also get a dot per sample.
type cdfPlot struct {
	title, xlabel string
	logX          bool
	series        []cdfSeries
}

const (
	plotW, plotH                       = 960, 600
	marginL, marginR, marginT, marginB = 110, 30, 60, 80
)

// render draws the plot. It fails when there is nothing to draw.
func (p cdfPlot) render() (*image.RGBA, error) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range p.series {
		for _, v := range s.values {
			if p.logX && v <= 0 {
				continue
			}
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 0) {
		return nil, fmt.Errorf("plot %q: no samples", p.title)
	}
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	fillRect(img, 0, 0, plotW, plotH, colWhite)
	x0, x1 := marginL, plotW-marginR
	y0, y1 := plotH-marginB, marginT // y0 is the bottom (value 0)

	var ticks []float64
	var toX func(v float64) int
	if p.logX {
		llo, lhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if lhi == llo {
			lhi++
		}
		toX = func(v float64) int {
			return x0 + int(math.Round((math.Log10(v)-llo)/(lhi-llo)*float64(x1-x0)))
		}
		for e := llo; e <= lhi; e++ {
			for _, m := range []float64{1, 2, 5} {
				if v := m * math.Pow(10, e); math.Log10(v) <= lhi+1e-9 {
					ticks = append(ticks, v)
				}
			}
		}
	} else {
		tlo, thi, step := niceRange(lo, hi, 8)
		toX = func(v float64) int {
			return x0 + int(math.Round((v-tlo)/(thi-tlo)*float64(x1-x0)))
		}
		for v := tlo; v <= thi+step/2; v += step {
			ticks = append(ticks, v)
		}
	}
	toY := func(f float64) int { return y0 - int(math.Round(f*float64(y0-y1))) }

	// Grid and axes.
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
		y := toY(f)
		hline(img, x0, x1, y, colGrid)
		lbl := strconv.FormatFloat(f, 'f', -1, 64)
		drawText(img, x0-10-textWidth(lbl, 2), y-textHeight(2)/2, lbl, 2, colText)
	}
	for _, t := range ticks {
		x := toX(t)
		vline(img, x, y1, y0, colGrid)
		vline(img, x, y0, y0+6, colAxis)
		lbl := tickLabel(t, ticks)
		drawText(img, x-textWidth(lbl, 2)/2, y0+12, lbl, 2, colText)
	}
	hline(img, x0, x1, y0, colAxis)
	vline(img, x0, y1, y0, colAxis)
	drawText(img, (plotW-textWidth(p.title, 3))/2, 18, p.title, 3, colText)
	drawText(img, (x0+x1-textWidth(p.xlabel, 2))/2, plotH-30, p.xlabel, 2, colText)
	drawTextUp(img, 14, (y0+y1)/2+textWidth("fraction of samples ≤ x", 2)/2, "fraction of samples ≤ x", 2, colText)

	// Curves.
	for _, s := range p.series {
		vals := slices.Clone(s.values)
		if p.logX {
			vals = slices.DeleteFunc(vals, func(v float64) bool { return v <= 0 })
		}
		slices.Sort(vals)
		n := len(vals)
		if n == 0 {
			continue
		}
		// Thousands of samples: draw the CDF through 1000 quantiles.
		idx := make([]int, 0, min(n, 1000))
		if n <= 1000 {
			for i := range n {
				idx = append(idx, i)
			}
		} else {
			for k := range 1000 {
				idx = append(idx, k*(n-1)/999)
			}
		}
		px, py := toX(vals[idx[0]]), toY(0)
		for _, i := range idx {
			x := toX(vals[i])
			yPrev, y := toY(float64(i)/float64(n)), toY(float64(i+1)/float64(n))
			thickLine(img, px, py, x, yPrev, s.color)
			thickLine(img, x, yPrev, x, y, s.color)
			px, py = x, y
		}
		if n <= 60 {
			for i, v := range vals {
				dot(img, toX(v), toY(float64(i+1)/float64(n)), 4, s.color)
			}
		}
	}

	// Legend, bottom right, where CDFs leave room.
	ly := y0 - 16 - len(p.series)*26
	lx := x1 - 16 - 40
	for _, s := range p.series {
		lx = min(lx, x1-16-40-textWidth(s.name, 2)-10)
	}
	fillRect(img, lx-10, ly-10, x1-lx, len(p.series)*26+14, colWhite)
	for i, s := range p.series {
		y := ly + i*26
		thickLine(img, lx, y+7, lx+30, y+7, s.color)
		drawText(img, lx+40, y, s.name, 2, colText)
	}
	return img, nil
}

// niceRange widens [lo, hi] to round tick positions, about n of them.
func niceRange(lo, hi float64, n int) (tlo, thi, step float64) {
	if hi <= lo {
		hi = lo + math.Max(math.Abs(lo)*0.1, 1e-9)
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch r := raw / mag; {
	case r <= 1:
		step = mag
	case r <= 2:
		step = 2 * mag
	case r <= 2.5:
		step = 2.5 * mag
	case r <= 5:
		step = 5 * mag
	default:
		step = 10 * mag
	}
	// The epsilon keeps 0.3/0.1 = 2.9999… from widening the range a step.
	return math.Floor(lo/step+1e-9) * step, math.Ceil(hi/step-1e-9) * step, step
}

// tickLabel prints t with as many decimals as the tick spacing needs.
func tickLabel(t float64, ticks []float64) string {
	dec := 0
	for _, v := range ticks {
		for d := 0; d < 4; d++ {
			if math.Abs(v*math.Pow(10, float64(d))-math.Round(v*math.Pow(10, float64(d)))) < 1e-6 {
				dec = max(dec, d)
				break
			}
			if d == 3 {
				dec = 3
			}
		}
	}
	return strconv.FormatFloat(t, 'f', dec, 64)
}

func hline(img *image.RGBA, xa, xb, y int, c color.RGBA) { fillRect(img, xa, y, xb-xa+1, 1, c) }
func vline(img *image.RGBA, x, ya, yb int, c color.RGBA) { fillRect(img, x, ya, 1, yb-ya+1, c) }

// thickLine draws a 2-pixel line with Bresenham's algorithm.
func thickLine(img *image.RGBA, xa, ya, xb, yb int, c color.RGBA) {
	dx, dy := abs(xb-xa), -abs(yb-ya)
	sx, sy := sign(xb-xa), sign(yb-ya)
	e := dx + dy
	for {
		fillRect(img, xa, ya, 2, 2, c)
		if xa == xb && ya == yb {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			xa += sx
		}
		if e2 <= dx {
			e += dx
			ya += sy
		}
	}
}

func dot(img *image.RGBA, x, y, r int, c color.RGBA) {
	for yy := -r; yy <= r; yy++ {
		for xx := -r; xx <= r; xx++ {
			if xx*xx+yy*yy <= r*r {
				fillRect(img, x+xx, y+yy, 1, 1, c)
			}
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// writePNG encodes img to path, creating its directory.
func writePNG(path string, img image.Image) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
