// Package ratelimit implements Firecracker's device rate limiters: token
// buckets for bandwidth (bytes) and operations, the blocked state a device
// waits out, and live updates as PATCH applies them.
//
// A TokenBucket holds size tokens refilled continuously over refill_time,
// plus a one-time burst spent first. A Limiter pairs a bandwidth and an ops
// bucket; a missing bucket limits nothing. When a request does not fit, the
// Limiter blocks for RefillTimerDuration; when a request is larger than the
// bucket it is allowed, the bucket is emptied and the Limiter blocks for the
// borrowed share of refill time. While blocked every Consume fails, for both
// kinds, until the block ends.
//
// Time comes from a Clock (SystemClock in production, FakeClock in tests);
// refill arithmetic is in exact 128-bit integers, so no tokens are lost or
// created however the elapsed time is sliced.
package ratelimit

import (
	"math"
	"sync"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/vmconfig"
)

// RefillTimerDuration is how long a Limiter stays blocked after a request
// that does not fit, as Firecracker's refill timer.
const RefillTimerDuration = 100 * time.Millisecond

// Kind selects a Limiter's bucket.
type Kind int

// The token kinds.
const (
	Bytes Kind = iota // the bandwidth bucket
	Ops               // the operations bucket
)

// Options are a Limiter's collaborators; the zero value is the system clock
// and no logging.
type Options struct {
	Clock Clock
	// Log receives Firecracker's error line on each over-consumption.
	Log logger.Log
}

// Limiter is a bandwidth bucket and an ops bucket with the blocked state
// between them.
//
// All methods are safe for concurrent use: a device goroutine calls
// Consume, ManualReplenish and Ready while the API goroutine calls Update
// and another reads State. A device should still be the only consumer of
// its Limiter, since a block set by one caller affects the others.
type Limiter struct {
	mu  sync.Mutex
	clk Clock
	log logger.Log

	bw, ops *TokenBucket

	blocked bool
	until   time.Duration // end of the block, on clk's time line
	// wake is closed when the current block ends; it and its timer exist
	// only once Ready has been asked during that block.
	wake chan struct{}
	stop func() bool
}

// New returns a Limiter for cfg; a nil cfg, or disabled buckets in it
// (size or refill_time 0), limit nothing. The Limiter can still be given
// buckets later by Update.
func New(cfg *vmconfig.RateLimiterConfig, opts Options) *Limiter {
	l := newLimiter(opts)
	if cfg != nil {
		l.bw = l.bucketFromConfig(cfg.Bandwidth)
		l.ops = l.bucketFromConfig(cfg.Ops)
	}
	return l
}

// NewFromSpec is New for the limiter a backend finds in its hypervisor.Spec.
func NewFromSpec(s *hypervisor.RateLimiter, opts Options) *Limiter {
	l := newLimiter(opts)
	if s != nil {
		l.bw = l.bucketFromSpec(s.Bandwidth)
		l.ops = l.bucketFromSpec(s.Ops)
	}
	return l
}

func newLimiter(opts Options) *Limiter {
	clk := opts.Clock
	if clk == nil {
		clk = SystemClock{}
	}
	return &Limiter{clk: clk, log: opts.Log}
}

func (l *Limiter) bucketFromConfig(c *vmconfig.TokenBucketConfig) *TokenBucket {
	if c == nil {
		return nil
	}
	var burst uint64
	if c.OneTimeBurst != nil {
		burst = *c.OneTimeBurst
	}
	return l.newBucket(c.Size, burst, c.RefillTime)
}

func (l *Limiter) bucketFromSpec(t *hypervisor.TokenBucket) *TokenBucket {
	if t == nil {
		return nil
	}
	return l.newBucket(t.Size, t.OneTimeBurst, t.RefillTimeMs)
}

func (l *Limiter) newBucket(size, burst, refillMs uint64) *TokenBucket {
	b := NewTokenBucket(size, burst, refillMs, l.clk)
	if b != nil {
		b.log = l.log
	}
	return b
}

func (l *Limiter) bucket(k Kind) *TokenBucket {
	switch k {
	case Bytes:
		return l.bw
	case Ops:
		return l.ops
	}
	return nil
}

// Consume takes n tokens of kind k and reports whether the caller may go
// ahead. It fails while the Limiter is blocked, whatever the kind; with no
// bucket for k it succeeds. A failure blocks the Limiter for
// RefillTimerDuration; an over-consumption succeeds and blocks it for
// ratio × refill_time (truncated to whole milliseconds, as Firecracker does).
func (l *Limiter) Consume(n uint64, k Kind) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	// The clock is read only when needed: a request that fits the budget
	// costs no clock read at all.
	if l.blocked && l.blockedLocked(l.clk.Now()) {
		return false
	}
	b := l.bucket(k)
	if b == nil {
		return true
	}
	switch r, ratio := b.Reduce(n); r {
	case Failure:
		l.blockLocked(l.clk.Now(), RefillTimerDuration)
		return false
	case OverConsumption:
		l.blockLocked(l.clk.Now(), overConsumptionDelay(ratio, b.refillMs))
	}
	return true
}

// overConsumptionDelay is ratio × refillMs milliseconds, truncated to whole
// milliseconds like Firecracker's float-to-integer cast, and capped at the
// largest Duration (some 292 years, i.e. for ever).
//
// Firecracker arms its timerfd with that value even when it truncates to 0,
// which disarms the timer and leaves the limiter blocked for good; ember
// does not block at all then.
func overConsumptionDelay(ratio float64, refillMs uint64) time.Duration {
	ms := ratio * float64(refillMs)
	if !(ms >= 1) { // also catches NaN
		return 0
	}
	const maxMs = math.MaxInt64 / int64(time.Millisecond)
	if ms >= float64(maxMs+1) {
		return maxDuration
	}
	return time.Duration(uint64(ms)) * time.Millisecond
}

// blockLocked starts a block of d from now; d <= 0 is no block.
func (l *Limiter) blockLocked(now, d time.Duration) {
	if d <= 0 {
		return
	}
	l.blocked = true
	l.until = addSat(now, d)
}

// blockedLocked reports whether a block is in force at now, ending it if
// its time has come.
func (l *Limiter) blockedLocked(now time.Duration) bool {
	if !l.blocked {
		return false
	}
	if now >= l.until {
		l.unblockLocked()
		return false
	}
	return true
}

func (l *Limiter) unblockLocked() {
	l.blocked = false
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
	if l.stop != nil {
		l.stop()
		l.stop = nil
	}
}

// ManualReplenish gives back n tokens of kind k (see
// TokenBucket.ForceReplenish), to undo a Consume whose work did not happen.
// It does not end a block.
func (l *Limiter) ManualReplenish(n uint64, k Kind) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.bucket(k); b != nil {
		b.ForceReplenish(n)
	}
}

// IsBlocked reports whether Consume would fail now because of a block.
func (l *Limiter) IsBlocked() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.blockedLocked(l.clk.Now())
}

// RetryAfter returns how long the current block still lasts (0 when not
// blocked).
func (l *Limiter) RetryAfter() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clk.Now()
	if !l.blockedLocked(now) {
		return 0
	}
	return l.until - now
}

// Ready returns a channel that is closed when the current block ends, or
// nil when the Limiter is not blocked. A nil channel never fires in a
// select, so a device loop can fetch Ready on each turn and select on it
// next to its queue notifications:
//
//	for {
//		select {
//		case <-kick:
//		case <-lim.Ready():
//		case <-ctx.Done():
//			return
//		}
//		process() // calls lim.Consume
//	}
//
// Every caller during one block gets the same channel; the timer behind it
// is created on first request and stopped when the block ends.
func (l *Limiter) Ready() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clk.Now()
	if !l.blockedLocked(now) {
		return nil
	}
	if l.wake == nil {
		ch := make(chan struct{})
		l.wake = ch
		l.stop = l.clk.AfterFunc(l.until-now, func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.wake == ch { // this block, not a later one
				l.unblockLocked()
			}
		})
	}
	return l.wake
}

// Update applies a PATCH body's limiter: a nil u, or a nil bucket in it,
// keeps what is there (state included); a present bucket replaces the old
// one with a full new bucket; a present but disabled bucket (size or
// refill_time 0) removes the limit. A block in force is kept, as
// Firecracker keeps its armed timer.
func (l *Limiter) Update(u *vmconfig.RateLimiterConfig) {
	if u == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if u.Bandwidth != nil {
		l.bw = l.bucketFromConfig(u.Bandwidth)
	}
	if u.Ops != nil {
		l.ops = l.bucketFromConfig(u.Ops)
	}
}

// Config returns the limiter as GET echoes it (Firecracker derives it from
// the live buckets): the configured buckets with one_time_burst null when
// 0, or nil when neither bucket limits anything.
func (l *Limiter) Config() *vmconfig.RateLimiterConfig {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := vmconfig.RateLimiterConfig{Bandwidth: bucketConfig(l.bw), Ops: bucketConfig(l.ops)}
	if c.Bandwidth == nil && c.Ops == nil {
		return nil
	}
	return &c
}

func bucketConfig(b *TokenBucket) *vmconfig.TokenBucketConfig {
	if b == nil {
		return nil
	}
	c := &vmconfig.TokenBucketConfig{Size: b.size, RefillTime: b.refillMs}
	if b.initialBurst != 0 {
		v := b.initialBurst
		c.OneTimeBurst = &v
	}
	return c
}

// Allow takes ops operations and bytes bytes for one request, as a device
// model asks (virtio.Limiter): ops first, then bytes, giving the ops back if
// the bytes do not fit, as Firecracker's devices do. When the request may
// not proceed it returns how long to wait before asking again.
func (l *Limiter) Allow(ops, bytes uint64) (ok bool, wait time.Duration) {
	if ops > 0 && !l.Consume(ops, Ops) {
		return false, l.retryAtLeastOnce()
	}
	if bytes > 0 && !l.Consume(bytes, Bytes) {
		if ops > 0 {
			l.ManualReplenish(ops, Ops)
		}
		return false, l.retryAtLeastOnce()
	}
	return true, 0
}

// retryAtLeastOnce is RetryAfter, never zero: a refused request always
// waits a little, so a device cannot spin on a limiter that just unblocked.
func (l *Limiter) retryAtLeastOnce() time.Duration {
	return max(l.RetryAfter(), time.Millisecond)
}
