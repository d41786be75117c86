package ratelimit

import (
	"math"
	"math/bits"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
)

const nsPerMs = uint64(time.Millisecond)

// Reduction is the outcome of TokenBucket.Reduce.
type Reduction int

// The outcomes of Reduce, as Firecracker names them.
const (
	// Success: the tokens were taken.
	Success Reduction = iota
	// Failure: not enough tokens even after a refill; nothing was taken
	// from the budget.
	Failure
	// OverConsumption: the request was larger than the bucket; the budget
	// was emptied and the request allowed anyway. Reduce's ratio says how
	// many bucket sizes were borrowed beyond the budget.
	OverConsumption
)

// String names the outcome.
func (r Reduction) String() string {
	switch r {
	case Success:
		return "Success"
	case Failure:
		return "Failure"
	case OverConsumption:
		return "OverConsumption"
	}
	return "Reduction(?)"
}

// TokenBucket is one Firecracker token bucket: size tokens that refill
// continuously over refill_time, plus a one-time burst that is spent first
// and never refills.
//
// Invariants: 0 < size; budget <= size; oneTimeBurst <= initialOneTimeBurst;
// while any burst is left the budget is full. Refill is lazy (only when a
// request exceeds the budget) and exact: the time behind the tokens granted
// is moved out of the elapsed interval, and the remainder (less than one
// token's worth) carries into the next refill, so many small refills add up
// to the same tokens as one large one.
//
// A TokenBucket is not safe for concurrent use; Limiter serialises it.
type TokenBucket struct {
	size         uint64
	initialBurst uint64
	refillMs     uint64
	refillNs     uint64 // refillMs in ns; fits in uint64 by construction

	burst  uint64
	budget uint64
	last   time.Duration // the time the budget has been accounted up to

	clk Clock
	log logger.Log
}

// NewTokenBucket returns a full bucket of size tokens that refills from
// empty in refillTimeMs milliseconds, with oneTimeBurst extra tokens. It
// returns nil, meaning "no limit", when size or refillTimeMs is 0 or when
// refillTimeMs in nanoseconds does not fit in 64 bits, as Firecracker does.
// A nil clk is the SystemClock.
func NewTokenBucket(size, oneTimeBurst, refillTimeMs uint64, clk Clock) *TokenBucket {
	if size == 0 || refillTimeMs == 0 || refillTimeMs > math.MaxUint64/nsPerMs {
		return nil
	}
	if clk == nil {
		clk = SystemClock{}
	}
	return &TokenBucket{
		size:         size,
		initialBurst: oneTimeBurst,
		refillMs:     refillTimeMs,
		refillNs:     refillTimeMs * nsPerMs,
		burst:        oneTimeBurst,
		budget:       size,
		last:         clk.Now(),
		clk:          clk,
	}
}

// refill adds the tokens earned since b.last.
//
// tokens = floor(elapsed * size / refillNs), computed in 128 bits so that no
// product overflows; b.last then advances by ceil(tokens * refillNs / size),
// the least time that earns them. Rounding that up rather than down means a
// fraction of a nanosecond is never spent twice. These are Firecracker's
// gcd-reduced fractions unreduced, which give the same quotients.
func (b *TokenBucket) refill() {
	now := b.clk.Now()
	var elapsed uint64
	if now > b.last {
		// Unsigned difference: correct even if b.last is far negative.
		elapsed = uint64(now) - uint64(b.last)
	}
	if elapsed >= b.refillNs {
		b.budget = b.size
		b.last = now
		return
	}
	// elapsed < refillNs, so tokens < size and both quotients fit; the
	// guards only keep bits.Div64 from ever panicking.
	hi, lo := bits.Mul64(elapsed, b.size)
	if hi >= b.refillNs {
		b.budget, b.last = b.size, now
		return
	}
	tokens, _ := bits.Div64(hi, lo, b.refillNs)
	hi, lo = bits.Mul64(tokens, b.refillNs)
	if hi >= b.size {
		b.budget, b.last = b.size, now
		return
	}
	used, rem := bits.Div64(hi, lo, b.size)
	if rem != 0 {
		used++
	}
	b.last += time.Duration(used)
	b.budget = min(satAdd(b.budget, tokens), b.size)
}

// Reduce takes n tokens: from the one-time burst first, then from the
// budget, refilling the budget only when it falls short.
//
// A request larger than the whole bucket (after the burst's share) is
// allowed once: the budget is emptied and Reduce returns OverConsumption
// with ratio = (tokens the budget could not cover) / size, which tells the
// caller how many refill times to hold off. Otherwise a shortfall is
// Failure and leaves the budget untouched (a burst already drained toward
// the request stays drained, as in Firecracker).
func (b *TokenBucket) Reduce(n uint64) (r Reduction, ratio float64) {
	if b.burst > 0 {
		if b.burst >= n {
			b.burst -= n
			// Firecracker restarts the refill clock while the burst lasts;
			// the budget is full then, so nothing accrues anyway.
			b.last = b.clk.Now()
			return Success, 0
		}
		n -= b.burst
		b.burst = 0
	}
	if n > b.budget {
		b.refill()
		if n > b.size {
			b.log.Errorf("Consumed %d tokens from bucket of size %d", n, b.size)
			n -= b.budget
			b.budget = 0
			return OverConsumption, float64(n) / float64(b.size)
		}
		if n > b.budget {
			return Failure, 0
		}
	}
	b.budget -= n
	return Success, 0
}

// ForceReplenish gives n tokens back, typically to undo a Reduce whose work
// did not happen. While burst is left the tokens go to the burst (capped at
// its initial value), otherwise to the budget (capped at size), as in
// Firecracker: tokens a Reduce took from both are returned to one only.
func (b *TokenBucket) ForceReplenish(n uint64) {
	if b.burst > 0 {
		b.burst = min(satAdd(b.burst, n), b.initialBurst)
		return
	}
	b.budget = min(satAdd(b.budget, n), b.size)
}

// Capacity returns the bucket size.
func (b *TokenBucket) Capacity() uint64 { return b.size }

// Budget returns the tokens left in the bucket, burst not included. It does
// not refill first.
func (b *TokenBucket) Budget() uint64 { return b.budget }

// OneTimeBurst returns the burst tokens left.
func (b *TokenBucket) OneTimeBurst() uint64 { return b.burst }

// InitialOneTimeBurst returns the configured burst (what GET echoes).
func (b *TokenBucket) InitialOneTimeBurst() uint64 { return b.initialBurst }

// RefillTimeMs returns the time, in milliseconds, to refill from empty.
func (b *TokenBucket) RefillTimeMs() uint64 { return b.refillMs }

func satAdd(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}
