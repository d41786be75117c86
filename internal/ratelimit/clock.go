package ratelimit

import (
	"sort"
	"sync"
	"time"
)

// Clock is the time source of buckets and limiters: a monotonic reading
// and one-shot callbacks on the same time line. A fake one makes every
// refill and every unblock deterministic in tests.
type Clock interface {
	// Now is the time since an arbitrary, fixed origin; it never decreases.
	Now() time.Duration
	// AfterFunc runs f once, on its own goroutine or from the clock's
	// driver, when Now has advanced by at least d. stop cancels it and
	// reports whether it did so before f ran.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// SystemClock is the host's monotonic clock.
type SystemClock struct{}

// origin anchors SystemClock; time.Since uses the monotonic reading.
var origin = time.Now()

// Now returns the monotonic time since the process started.
func (SystemClock) Now() time.Duration { return time.Since(origin) }

// AfterFunc is time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// FakeClock is a Clock that moves only when told to. Callbacks run
// synchronously inside Advance, in deadline order, without the clock's lock
// held, so they may call back into the clock or lock a limiter. It is safe
// for concurrent use. The zero value starts at 0.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Duration
	seq    uint64
	timers map[uint64]fakeTimer
}

type fakeTimer struct {
	at  time.Duration
	seq uint64
	f   func()
}

// Now returns the fake time.
func (c *FakeClock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f for Now()+d. A callback that is already due (d <= 0)
// runs at the next Advance, even Advance(0): running it here could deadlock
// a caller that holds its own lock.
func (c *FakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timers == nil {
		c.timers = make(map[uint64]fakeTimer)
	}
	c.seq++
	id := c.seq
	c.timers[id] = fakeTimer{at: addSat(c.now, d), seq: id, f: f}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.timers[id]
		delete(c.timers, id)
		return ok
	}
}

// Advance moves the clock forward by d (negative d counts as 0) and runs
// every callback that became due, earliest first.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	if d > 0 {
		c.now = addSat(c.now, d)
	}
	var due []fakeTimer
	for id, t := range c.timers {
		if t.at <= c.now {
			due = append(due, t)
			delete(c.timers, id)
		}
	}
	c.mu.Unlock()
	sort.Slice(due, func(i, j int) bool {
		if due[i].at != due[j].at {
			return due[i].at < due[j].at
		}
		return due[i].seq < due[j].seq
	})
	for _, t := range due {
		t.f()
	}
}

// Pending returns how many callbacks are scheduled and not yet run.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// addSat adds a non-negative d to t, stopping at the largest Duration.
func addSat(t, d time.Duration) time.Duration {
	if d > 0 && t > maxDuration-d {
		return maxDuration
	}
	return t + d
}

const maxDuration = time.Duration(1<<63 - 1)
