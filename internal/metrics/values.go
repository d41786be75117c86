package metrics

import (
	"sync/atomic"
	"time"
)

// Counter counts events. A metrics line carries the increase since the
// previous line that was written, as Firecracker's SharedIncMetric does;
// Count still returns the running total. Safe for concurrent use; the zero
// value is ready.
type Counter struct {
	cur  atomic.Uint64
	prev atomic.Uint64 // cur at the last written line; touched only while flushing
}

// Inc adds one.
func (c *Counter) Inc() { c.cur.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.cur.Add(n) }

// Count returns the running total since creation.
func (c *Counter) Count() uint64 { return c.cur.Load() }

// delta returns the running total and its increase since the last written line.
func (c *Counter) delta() (total, d uint64) {
	total = c.cur.Load()
	return total, total - c.prev.Load()
}

// Gauge holds an absolute value, written as is on every line (Firecracker's
// SharedStoreMetric). Safe for concurrent use; the zero value is ready.
type Gauge struct {
	v atomic.Uint64
}

// Set stores v.
func (g *Gauge) Set(v uint64) { g.v.Store(v) }

// Get returns the stored value.
func (g *Gauge) Get() uint64 { return g.v.Load() }

// LatencyAgg aggregates durations in microseconds and is written as
// {"min_us":…,"max_us":…,"sum_us":…}. As in Firecracker, sum_us is a
// per-line delta while min_us and max_us are absolute over the process
// lifetime (they are never reset), and 0 means "no sample yet": a later sample
// replaces a zero minimum.
type LatencyAgg struct {
	min Gauge
	max Gauge
	sum Counter
}

// Record adds one sample of us microseconds.
func (l *LatencyAgg) Record(us uint64) {
	l.sum.Add(us)
	for {
		cur := l.min.v.Load()
		if cur != 0 && cur <= us {
			break
		}
		if l.min.v.CompareAndSwap(cur, us) {
			break
		}
	}
	for {
		cur := l.max.v.Load()
		if cur != 0 && cur >= us {
			break
		}
		if l.max.v.CompareAndSwap(cur, us) {
			break
		}
	}
}

// Since records the time elapsed since start, so a timed section reads
// `defer agg.Since(time.Now())`.
func (l *LatencyAgg) Since(start time.Time) {
	d := time.Since(start)
	if d < 0 {
		d = 0
	}
	l.Record(uint64(d.Microseconds()))
}

// Min returns the smallest sample seen (0 before any sample).
func (l *LatencyAgg) Min() uint64 { return l.min.Get() }

// Max returns the largest sample seen.
func (l *LatencyAgg) Max() uint64 { return l.max.Get() }

// Sum returns the running total of all samples.
func (l *LatencyAgg) Sum() uint64 { return l.sum.Count() }
