package ratelimit

import (
	"math"
	"math/big"
	"reflect"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/vmconfig"
)

// model is a reference token bucket in arbitrary precision, written from
// the specification rather than from TokenBucket: time and products are
// big.Ints, so it cannot overflow, and it books every token in and out.
type model struct {
	size, refillNs    *big.Int
	budget, burst     *big.Int
	initialBurst      *big.Int
	last, start       *big.Int
	refilled, granted *big.Int // tokens added by refill; taken from the budget
	replenished       *big.Int // tokens added to the budget by hand
	carryBound        bool     // this step ended with a partial refill
}

func bi(v uint64) *big.Int { return new(big.Int).SetUint64(v) }

func newModel(size, burst, refillMs uint64, now time.Duration) *model {
	n := big.NewInt(int64(now))
	return &model{
		size: bi(size), refillNs: new(big.Int).Mul(bi(refillMs), big.NewInt(1e6)),
		budget: bi(size), burst: bi(burst), initialBurst: bi(burst),
		last: n, start: new(big.Int).Set(n),
		refilled: new(big.Int), granted: new(big.Int), replenished: new(big.Int),
	}
}

func minBig(a, b *big.Int) *big.Int {
	if a.Cmp(b) < 0 {
		return new(big.Int).Set(a)
	}
	return new(big.Int).Set(b)
}

// refill credits the whole nanoseconds since last: all of the bucket once
// refill_time has passed, else floor(elapsed*size/refillNs) tokens, with
// last moved by the least whole nanoseconds that earn them.
func (m *model) refill(now *big.Int) {
	elapsed := new(big.Int).Sub(now, m.last)
	if elapsed.Sign() < 0 {
		elapsed.SetInt64(0)
	}
	room := new(big.Int).Sub(m.size, m.budget)
	if elapsed.Cmp(m.refillNs) >= 0 {
		m.refilled.Add(m.refilled, room)
		m.budget.Set(m.size)
		m.last.Set(now)
		m.carryBound = false
		return
	}
	tokens := new(big.Int).Mul(elapsed, m.size)
	tokens.Quo(tokens, m.refillNs)
	spent := new(big.Int).Mul(tokens, m.refillNs)
	spent.Add(spent, new(big.Int).Sub(m.size, big.NewInt(1)))
	spent.Quo(spent, m.size) // ceiling
	m.last.Add(m.last, spent)
	add := minBig(tokens, room)
	m.refilled.Add(m.refilled, add)
	m.budget.Add(m.budget, add)
	m.carryBound = true
}

func (m *model) take(n *big.Int) {
	m.budget.Sub(m.budget, n)
	m.granted.Add(m.granted, n)
}

func (m *model) reduce(n uint64, now *big.Int) (Reduction, float64) {
	want := bi(n)
	if m.burst.Sign() > 0 {
		if m.burst.Cmp(want) >= 0 {
			m.burst.Sub(m.burst, want)
			m.last.Set(now)
			return Success, 0
		}
		want.Sub(want, m.burst)
		m.burst.SetInt64(0)
	}
	if want.Cmp(m.budget) <= 0 {
		m.take(want)
		return Success, 0
	}
	m.refill(now)
	switch {
	case want.Cmp(m.size) > 0:
		over := new(big.Int).Sub(want, m.budget)
		m.take(new(big.Int).Set(m.budget))
		return OverConsumption, float64(over.Uint64()) / float64(m.size.Uint64())
	case want.Cmp(m.budget) > 0:
		return Failure, 0
	}
	m.take(want)
	return Success, 0
}

func (m *model) replenish(n uint64) {
	if m.burst.Sign() > 0 {
		b := new(big.Int).Add(m.burst, bi(n))
		m.burst = minBig(b, m.initialBurst)
		return
	}
	b := minBig(new(big.Int).Add(m.budget, bi(n)), m.size)
	m.replenished.Add(m.replenished, new(big.Int).Sub(b, m.budget))
	m.budget = b
}

// FuzzTokenBucket runs random operation sequences on a bucket and on the
// model and checks, after every operation: the bucket matches the model
// exactly; budget <= size, burst <= its initial value and a burst implies a
// full budget; a partial refill leaves less than one token's worth of time
// behind; and refills never invent tokens: refilled*refillNs <=
// (now-start)*size. Sequences also save and restore the bucket.
func FuzzTokenBucket(f *testing.F) {
	f.Add(uint64(1000), uint64(0), uint64(1000), []byte{2, 0, 0, 0, 0, 0, 0, 3, 232, 0, 100})
	f.Add(uint64(1000), uint64(1100), uint64(1000), []byte{4, 0, 0, 0, 0, 0, 0, 3, 232, 4, 0, 0, 0, 0, 0, 0, 1, 244, 1, 0, 7, 161, 32, 5, 40})
	f.Add(uint64(3), uint64(0), uint64(1), []byte{5, 255, 1, 0, 5, 21, 3, 1, 0, 0, 1, 1, 7, 5, 64})
	f.Add(uint64(math.MaxUint64), uint64(math.MaxUint64), maxRefillMs, []byte{4, 255, 255, 255, 255, 255, 255, 255, 255, 2, 255, 5, 200, 6, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(uint64(0), uint64(5), uint64(10), []byte{3, 1})
	f.Fuzz(func(t *testing.T, size, burst, refillMs uint64, ops []byte) {
		c := &FakeClock{}
		b := NewTokenBucket(size, burst, refillMs, c)
		disabled := size == 0 || refillMs == 0 ||
			new(big.Int).Mul(bi(refillMs), big.NewInt(1e6)).Cmp(bi(math.MaxUint64)) > 0
		if (b == nil) != disabled {
			t.Fatalf("NewTokenBucket(%d, %d, %d) nil = %v, want %v", size, burst, refillMs, b == nil, disabled)
		}
		if b == nil {
			return
		}
		m := newModel(size, burst, refillMs, c.Now())
		arg := func(n int) uint64 { // the next n bytes, big-endian
			var v uint64
			for i := 0; i < n && len(ops) > 0; i++ {
				v = v<<8 | uint64(ops[0])
				ops = ops[1:]
			}
			return v
		}
		advance := func(d uint64) {
			// Keep the fake time well inside int64.
			room := uint64(math.MaxInt64/2) - uint64(c.Now())
			c.Advance(time.Duration(min(d, room)))
		}
		for step := 0; len(ops) > 0 && step < 10_000; step++ {
			op := ops[0] % 8
			ops = ops[1:]
			m.carryBound = false
			now := func() *big.Int { return big.NewInt(int64(c.Now())) }
			switch op {
			case 0: // a few nanoseconds
				advance(arg(1))
			case 1: // up to about 4s
				advance(arg(4))
			case 2: // a fraction of the refill time, up to 4 of them
				d := new(big.Int).Mul(m.refillNs, bi(arg(1)))
				d.Quo(d, big.NewInt(64))
				if d.IsUint64() {
					advance(d.Uint64())
				} else {
					advance(math.MaxUint64)
				}
			case 3, 4, 5: // reduce: small, any, or a fraction of size
				var n uint64
				switch op {
				case 3:
					n = arg(1)
				case 4:
					n = arg(8)
				default:
					v := new(big.Int).Mul(m.size, bi(arg(1)))
					n = v.Quo(v, big.NewInt(128)).Uint64() // up to 2x size
				}
				wr, wratio := m.reduce(n, now())
				r, ratio := b.Reduce(n)
				if r != wr || ratio != wratio {
					t.Fatalf("step %d: Reduce(%d) = %v, %v; model %v, %v", step, n, r, ratio, wr, wratio)
				}
			case 6:
				n := arg(8)
				m.replenish(n)
				b.ForceReplenish(n)
			case 7: // snapshot and restore
				r, err := RestoreTokenBucket(b.State(), c)
				if err != nil {
					t.Fatalf("step %d: restore of a live bucket: %v", step, err)
				}
				b = r
				m.initialBurst.Set(m.burst)
			}

			// The bucket matches the model.
			if b.Budget() != m.budget.Uint64() || b.OneTimeBurst() != m.burst.Uint64() ||
				b.InitialOneTimeBurst() != m.initialBurst.Uint64() || int64(b.last) != m.last.Int64() {
				t.Fatalf("step %d (op %d): bucket budget %d burst %d/%d last %d; model %v %v/%v %v",
					step, op, b.Budget(), b.OneTimeBurst(), b.InitialOneTimeBurst(), b.last,
					m.budget, m.burst, m.initialBurst, m.last)
			}
			// Invariants.
			if b.Budget() > size || b.OneTimeBurst() > b.InitialOneTimeBurst() ||
				(b.OneTimeBurst() > 0 && b.Budget() != size) || b.last > c.Now() {
				t.Fatalf("step %d: invariant broken: budget %d/%d burst %d/%d last %v now %v",
					step, b.Budget(), size, b.OneTimeBurst(), b.InitialOneTimeBurst(), b.last, c.Now())
			}
			// Nothing lost: after a partial refill, what is left over
			// is worth less than a token.
			if m.carryBound {
				left := new(big.Int).Sub(now(), m.last)
				if left.Mul(left, m.size).Cmp(m.refillNs) >= 0 {
					t.Fatalf("step %d: %v ns left after a refill earn a token", step, new(big.Int).Sub(now(), m.last))
				}
			}
			// Nothing invented: refills never exceed what the time since
			// creation earns.
			lhs := new(big.Int).Mul(m.refilled, m.refillNs)
			rhs := new(big.Int).Mul(new(big.Int).Sub(now(), m.start), m.size)
			if lhs.Cmp(rhs) > 0 {
				t.Fatalf("step %d: refilled %v tokens in %v ns", step, m.refilled, new(big.Int).Sub(now(), m.start))
			}
			// Books balance: the budget is the start plus credits minus debits.
			books := new(big.Int).Add(m.size, m.refilled)
			books.Add(books, m.replenished).Sub(books, m.granted)
			if books.Cmp(bi(b.Budget())) != 0 {
				t.Fatalf("step %d: budget %d, books say %v", step, b.Budget(), books)
			}
		}
	})
}

// FuzzLimiter drives a Limiter with random consumes, time, replenishes and
// updates, and checks the blocking rules: while blocked every Consume fails
// and changes nothing; Ready is nil exactly when not blocked and fires when
// the block ends; a failure blocks for RefillTimerDuration; buckets stay
// within their sizes.
func FuzzLimiter(f *testing.F) {
	f.Add([]byte{0, 100, 1, 10, 1, 200, 2, 50, 3, 0, 4, 1, 2, 200})
	f.Add([]byte{1, 255, 1, 255, 5, 7, 2, 255, 2, 255, 6, 1, 3, 9})
	f.Fuzz(func(t *testing.T, ops []byte) {
		c := &FakeClock{}
		l := New(rl(tb(1000, 100, 1000), tb(10, 0, 100)), Options{Clock: c})
		arg := func() uint64 {
			if len(ops) == 0 {
				return 0
			}
			v := ops[0]
			ops = ops[1:]
			return uint64(v)
		}
		var ready <-chan struct{}
		for step := 0; len(ops) > 0 && step < 10_000; step++ {
			op := ops[0] % 7
			ops = ops[1:]
			blocked := l.IsBlocked()
			before := l.State()
			switch op {
			case 0: // advance up to 255ms
				c.Advance(time.Duration(arg()) * time.Millisecond)
			case 1, 2: // consume bytes or ops, up to 3x the bucket
				k, unit := Bytes, uint64(12)
				if op == 2 {
					k, unit = Ops, 1
				}
				n := arg() * unit / 8
				ok := l.Consume(n, k)
				if blocked {
					if ok || !reflect.DeepEqual(l.State(), before) {
						t.Fatalf("step %d: blocked Consume(%d) = %v, state %+v -> %+v", step, n, ok, before, l.State())
					}
				} else if !ok && l.RetryAfter() != RefillTimerDuration {
					t.Fatalf("step %d: failure blocks for %v", step, l.RetryAfter())
				}
			case 3:
				l.ManualReplenish(arg()*8, Kind(arg()%3))
			case 4: // update: keep, replace, disable
				var u [2]*bucketArg
				for i := range u {
					switch arg() % 3 {
					case 1:
						u[i] = &bucketArg{arg() * 8, arg(), arg() * 4}
					case 2:
						u[i] = &bucketArg{}
					}
				}
				l.Update(rl(u[0].config(), u[1].config()))
				if l.IsBlocked() != blocked {
					t.Fatalf("step %d: Update changed the block", step)
				}
			case 5:
				ready = l.Ready()
				if (ready == nil) == l.IsBlocked() {
					t.Fatalf("step %d: Ready nil = %v while blocked = %v", step, ready == nil, l.IsBlocked())
				}
			case 6:
				_ = l.Config()
			}
			if ready != nil && !l.IsBlocked() {
				select {
				case <-ready:
				default:
					t.Fatalf("step %d: block over but Ready not closed", step)
				}
				ready = nil
			}
			s := l.State()
			for _, b := range []*BucketState{s.Bandwidth, s.Ops} {
				if b != nil && b.Budget > b.Size {
					t.Fatalf("step %d: budget %d over size %d", step, b.Budget, b.Size)
				}
			}
		}
	})
}

type bucketArg struct{ size, burst, refillMs uint64 }

func (b *bucketArg) config() *vmconfig.TokenBucketConfig {
	if b == nil {
		return nil
	}
	return tb(b.size, b.burst, b.refillMs)
}
