package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidState classifies a saved state that cannot be restored.
var ErrInvalidState = errors.New("invalid rate limiter state")

// BucketState is a bucket as a snapshot keeps it, with Firecracker's
// fields: the remaining burst (which becomes the restored bucket's initial
// burst, as in Firecracker), the budget, and the time since the budget was
// last accounted. It doubles as a metrics reading.
type BucketState struct {
	Size         uint64 `json:"size"`
	OneTimeBurst uint64 `json:"one_time_burst"`
	RefillTime   uint64 `json:"refill_time"` // ms
	Budget       uint64 `json:"budget"`
	ElapsedNs    uint64 `json:"elapsed_ns"`
}

// State is a Limiter as a snapshot keeps it; a nil bucket is no limit. The
// blocked state is not kept: a restored Limiter starts unblocked.
type State struct {
	Ops       *BucketState `json:"ops"`
	Bandwidth *BucketState `json:"bandwidth"`
}

// State returns the bucket's saved form.
func (b *TokenBucket) State() BucketState {
	var elapsed uint64
	if now := b.clk.Now(); now > b.last {
		elapsed = uint64(now) - uint64(b.last)
	}
	return BucketState{
		Size: b.size, OneTimeBurst: b.burst, RefillTime: b.refillMs,
		Budget: b.budget, ElapsedNs: elapsed,
	}
}

// RestoreTokenBucket rebuilds a bucket from s on clk (nil: SystemClock).
// A state that no bucket could have produced is an ErrInvalidState.
func RestoreTokenBucket(s BucketState, clk Clock) (*TokenBucket, error) {
	b := NewTokenBucket(s.Size, s.OneTimeBurst, s.RefillTime, clk)
	if b == nil {
		return nil, fmt.Errorf("%w: bucket of size %d refilling in %d ms limits nothing",
			ErrInvalidState, s.Size, s.RefillTime)
	}
	if s.Budget > s.Size {
		return nil, fmt.Errorf("%w: budget %d exceeds bucket size %d", ErrInvalidState, s.Budget, s.Size)
	}
	if s.OneTimeBurst > 0 && s.Budget != s.Size {
		return nil, fmt.Errorf("%w: one-time burst %d left with budget %d below size %d",
			ErrInvalidState, s.OneTimeBurst, s.Budget, s.Size)
	}
	b.budget = s.Budget
	// The time already elapsed still earns tokens after the restore; an
	// elapsed time beyond the clock's range counts from now, as Firecracker
	// does when its Instant cannot go back that far.
	if s.ElapsedNs <= math.MaxInt64 {
		b.last -= time.Duration(s.ElapsedNs)
		if b.last > b.clk.Now() { // wrapped around
			b.last = b.clk.Now()
		}
	}
	return b, nil
}

// State returns the limiter's saved form.
func (l *Limiter) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s State
	if l.bw != nil {
		v := l.bw.State()
		s.Bandwidth = &v
	}
	if l.ops != nil {
		v := l.ops.State()
		s.Ops = &v
	}
	return s
}

// Restore rebuilds a Limiter from s.
func Restore(s State, opts Options) (*Limiter, error) {
	l := newLimiter(opts)
	for _, p := range []struct {
		name string
		s    *BucketState
		dst  **TokenBucket
	}{{"bandwidth", s.Bandwidth, &l.bw}, {"ops", s.Ops, &l.ops}} {
		if p.s == nil {
			continue
		}
		b, err := RestoreTokenBucket(*p.s, l.clk)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		b.log = l.log
		*p.dst = b
	}
	return l, nil
}
