package ratelimit

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
)

const maxRefillMs = math.MaxUint64 / uint64(time.Millisecond)

func TestNewTokenBucket(t *testing.T) {
	tests := []struct {
		name                  string
		size, burst, refillMs uint64
		wantNil               bool
	}{
		{"ordinary", 1000, 0, 1000, false},
		{"with burst", 1000, 1001, 1002, false},
		{"size 0", 0, 1234, 1000, true},
		{"refill 0", 100, 1234, 0, true},
		{"both 0", 0, 0, 0, true},
		{"largest refill", 1, 0, maxRefillMs, false},
		{"refill ns overflow", 1, 0, maxRefillMs + 1, true},
		{"refill max", 1, 0, math.MaxUint64, true},
		{"largest size and burst", math.MaxUint64, math.MaxUint64, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &FakeClock{}
			c.Advance(42)
			b := NewTokenBucket(tt.size, tt.burst, tt.refillMs, c)
			if (b == nil) != tt.wantNil {
				t.Fatalf("NewTokenBucket(%d, %d, %d) = %v, want nil: %v", tt.size, tt.burst, tt.refillMs, b, tt.wantNil)
			}
			if b == nil {
				return
			}
			if b.Capacity() != tt.size || b.Budget() != tt.size || b.OneTimeBurst() != tt.burst ||
				b.InitialOneTimeBurst() != tt.burst || b.RefillTimeMs() != tt.refillMs {
				t.Errorf("got size %d budget %d burst %d/%d refill %d", b.Capacity(), b.Budget(),
					b.OneTimeBurst(), b.InitialOneTimeBurst(), b.RefillTimeMs())
			}
			if b.last != 42 {
				t.Errorf("last = %v, want the clock's 42ns", b.last)
			}
		})
	}
	if b := NewTokenBucket(1, 0, 1, nil); b == nil || b.clk == nil {
		t.Error("a nil clock did not default to the system clock")
	}
}

// drained returns a bucket on a fresh fake clock with its budget spent.
func drained(t *testing.T, size, refillMs uint64) (*TokenBucket, *FakeClock) {
	t.Helper()
	c := &FakeClock{}
	b := NewTokenBucket(size, 0, refillMs, c)
	if b == nil {
		t.Fatalf("NewTokenBucket(%d, 0, %d) = nil", size, refillMs)
	}
	if r, _ := b.Reduce(size); r != Success || b.Budget() != 0 {
		t.Fatalf("draining: %v, budget %d", r, b.Budget())
	}
	return b, c
}

// wantTokens is what one refill after elapsed earns from empty:
// floor(elapsed*size/refillNs) in arbitrary precision, or size once elapsed
// reaches the refill time.
func wantTokens(elapsed time.Duration, size, refillMs uint64) uint64 {
	if elapsed <= 0 {
		return 0
	}
	e := big.NewInt(int64(elapsed))
	d := new(big.Int).Mul(new(big.Int).SetUint64(refillMs), big.NewInt(int64(time.Millisecond)))
	if e.Cmp(d) >= 0 {
		return size
	}
	n := new(big.Int).Mul(e, new(big.Int).SetUint64(size))
	return n.Quo(n, d).Uint64()
}

func TestRefill(t *testing.T) {
	tests := []struct {
		name     string
		size     uint64
		refillMs uint64
		steps    []time.Duration // refill after each
		want     []uint64
	}{
		// One token per 100ms, as in Firecracker's own test.
		{"1 token per 100ms", 10, 1000,
			[]time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 80 * time.Millisecond, 400 * time.Millisecond, time.Second},
			[]uint64{0, 0, 1, 5, 10}},
		{"exactly the refill time", 1000, 1000, []time.Duration{time.Second}, []uint64{1000}},
		{"just short of it", 1000, 1000, []time.Duration{time.Second - 1}, []uint64{999}},
		{"fraction carried", 3, 1, // one token per 333333.33ns
			[]time.Duration{333333, 1, 333333, 333334}, []uint64{0, 1, 1, 3}},
		{"capped at size", 5, 10, []time.Duration{time.Hour}, []uint64{5}},
		{"1ns steps, 1e9 tokens/ms", 1_000_000_000, 1, []time.Duration{1, 1, 1}, []uint64{1000, 2000, 3000}},
		{"largest size, 1ns", math.MaxUint64, 1, []time.Duration{1}, []uint64{math.MaxUint64 / 1_000_000}},
		{"largest size, half of the largest refill", math.MaxUint64, maxRefillMs,
			[]time.Duration{time.Duration(math.MaxInt64 / 2)},
			[]uint64{wantTokens(time.Duration(math.MaxInt64/2), math.MaxUint64, maxRefillMs)}},
		{"size 1, longest wait", 1, maxRefillMs, []time.Duration{math.MaxInt64}, []uint64{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, c := drained(t, tt.size, tt.refillMs)
			for i, d := range tt.steps {
				c.Advance(d)
				b.refill()
				if b.Budget() != tt.want[i] {
					t.Fatalf("after step %d (+%v): budget %d, want %d", i, d, b.Budget(), tt.want[i])
				}
				if b.last > c.Now() {
					t.Fatalf("last %v is after now %v", b.last, c.Now())
				}
			}
		})
	}
}

// TestRefillNoDrift compares refilling after every small step with one
// refill at the end. The carried time is whole nanoseconds, rounded up so
// that nothing is ever spent twice (as Firecracker does): when a token takes
// a whole number of nanoseconds nothing is lost at all; otherwise each
// refill that grants tokens forgoes under 1ns of accrual, never more, and
// small steps never earn more than one big step.
func TestRefillNoDrift(t *testing.T) {
	tests := []struct {
		size, refillMs uint64
		step           time.Duration
		total          time.Duration
	}{
		// Whole-nanosecond token periods: exact.
		{1000, 1000, 999_999, 900 * time.Millisecond},
		{1000, 1000, 1, 3 * time.Millisecond},
		{7, 7, 3, 6 * time.Millisecond},
		{1_000_000, 1, 1, 999_999},
		{1, 1000, 1, 999 * time.Millisecond}, // never enough for a token
		{5_000_000, 5, 1, 4 * time.Millisecond},
		// Fractional periods: bounded loss.
		{7, 3, 1, 2 * time.Millisecond},
		{7, 3, 997, 2*time.Millisecond + 12345},
		{3, 1, 1, 999_999},
		{1_000_000_007, 13, 3, 12 * time.Millisecond},
		{math.MaxUint64, 1, 1, 999_999},
		{math.MaxUint64 - 1, 7, 123, 6 * time.Millisecond},
	}
	for _, tt := range tests {
		cs := &bareClock{}
		small := NewTokenBucket(tt.size, 0, tt.refillMs, cs)
		small.Reduce(tt.size)
		once, cb := drained(t, tt.size, tt.refillMs)
		// Walk in steps of tt.step, stretching the step to keep under 1e6
		// refills.
		step := tt.step
		if n := tt.total / step; n > 1_000_000 {
			step = tt.total / 1_000_000
		}
		var grants int64
		refill := func() {
			before := small.Budget()
			small.refill()
			if small.Budget() != before {
				grants++
			}
		}
		for cs.now+step <= tt.total {
			cs.now += step
			refill()
		}
		cs.now = tt.total
		refill()
		cb.Advance(tt.total)
		once.refill()

		name := fmt.Sprintf("size %d refill %dms over %v in %v steps", tt.size, tt.refillMs, tt.total, step)
		want := wantTokens(tt.total, tt.size, tt.refillMs)
		if once.Budget() != want {
			t.Errorf("%s: one refill gave %d, want %d", name, once.Budget(), want)
		}
		refillNs := tt.refillMs * uint64(time.Millisecond)
		if refillNs%tt.size == 0 {
			if small.Budget() != once.Budget() || small.last != once.last {
				t.Errorf("%s: whole-ns period drifted: small steps %d (carry to %v), one refill %d (carry to %v)",
					name, small.Budget(), small.last, once.Budget(), once.last)
			}
			continue
		}
		// Each granting refill forgoes under 1ns, so the small-step bucket
		// has earned at least what total-grants nanoseconds earn.
		floor := wantTokens(tt.total-time.Duration(grants), tt.size, tt.refillMs)
		if small.Budget() > once.Budget() || small.Budget() < floor {
			t.Errorf("%s: small steps gave %d over %d grants, want within [%d, %d]",
				name, small.Budget(), grants, floor, once.Budget())
		}
		if lag := small.last - once.last; lag < 0 || lag > time.Duration(grants) {
			t.Errorf("%s: carried time differs by %v over %d grants", name, lag, grants)
		}
	}
}

// bareClock is a lock-free Clock for hot test loops.
type bareClock struct{ now time.Duration }

func (c *bareClock) Now() time.Duration                          { return c.now }
func (c *bareClock) AfterFunc(time.Duration, func()) func() bool { return func() bool { return false } }

type op struct {
	advance   time.Duration
	reduce    uint64
	replenish uint64 // applied instead of reduce when non-zero
	want      Reduction
	ratio     float64
	budget    uint64
	burst     uint64
}

func TestReduce(t *testing.T) {
	tests := []struct {
		name                  string
		size, burst, refillMs uint64
		ops                   []op
	}{
		{"budget then failure", 1000, 0, 1000, []op{
			{reduce: 123, want: Success, budget: 877},
			{reduce: 1000, want: Failure, budget: 877},
			{advance: 123 * time.Millisecond, reduce: 1000, want: Success, budget: 0},
		}},
		{"Firecracker's sequence", 1000, 1100, 1000, []op{
			{reduce: 1000, want: Success, budget: 1000, burst: 100},
			{reduce: 500, want: Success, budget: 600, burst: 0},
			{reduce: 500, want: Success, budget: 100},
			{reduce: 500, want: Failure, budget: 100},
			{advance: 500 * time.Millisecond, reduce: 500, want: Success, budget: 100},
			{advance: time.Second, reduce: 2500, want: OverConsumption, ratio: 1.5, budget: 0},
		}},
		{"burst covers all, including zero", 10, 5, 1000, []op{
			{reduce: 0, want: Success, budget: 10, burst: 5},
			{reduce: 5, want: Success, budget: 10, burst: 0},
			{reduce: 0, want: Success, budget: 10},
		}},
		{"burst then overconsumption", 1000, 100, 1000, []op{
			{reduce: 1600, want: OverConsumption, ratio: 0.5, budget: 0},
		}},
		{"overconsumption from a partial budget", 1000, 0, 1000, []op{
			{reduce: 600, want: Success, budget: 400},
			{reduce: 1500, want: OverConsumption, ratio: 1.1, budget: 0},
			{advance: 200 * time.Millisecond, reduce: 1001, want: OverConsumption, ratio: 0.801, budget: 0},
		}},
		{"exactly size is not overconsumption", 1000, 0, 1000, []op{
			{reduce: 1, want: Success, budget: 999},
			{reduce: 1000, want: Failure, budget: 999},
			{advance: time.Millisecond, reduce: 1000, want: Success, budget: 0},
		}},
		{"largest request", 10, 0, 1, []op{
			{reduce: math.MaxUint64, want: OverConsumption, ratio: float64(math.MaxUint64-10) / 10, budget: 0},
		}},
		{"replenish during burst goes to burst", 100, 50, 1000, []op{
			{reduce: 30, want: Success, budget: 100, burst: 20},
			{replenish: 10, budget: 100, burst: 30},
			{replenish: math.MaxUint64, budget: 100, burst: 50},
		}},
		{"replenish after burst goes to budget", 100, 10, 1000, []op{
			{reduce: 70, want: Success, budget: 40, burst: 0},
			{replenish: 25, budget: 65},
			{replenish: math.MaxUint64, budget: 100},
		}},
		{"largest burst", 1, math.MaxUint64, 1, []op{
			{reduce: math.MaxUint64 - 1, want: Success, budget: 1, burst: 1},
			{reduce: 2, want: Success, budget: 0, burst: 0},
			{reduce: 1, want: Failure, budget: 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &FakeClock{}
			b := NewTokenBucket(tt.size, tt.burst, tt.refillMs, c)
			for i, o := range tt.ops {
				c.Advance(o.advance)
				if o.replenish != 0 {
					b.ForceReplenish(o.replenish)
				} else {
					r, ratio := b.Reduce(o.reduce)
					if r != o.want || ratio != o.ratio {
						t.Fatalf("op %d: Reduce(%d) = %v, %v; want %v, %v", i, o.reduce, r, ratio, o.want, o.ratio)
					}
				}
				if b.Budget() != o.budget || b.OneTimeBurst() != o.burst {
					t.Fatalf("op %d: budget %d burst %d, want %d and %d", i, b.Budget(), b.OneTimeBurst(), o.budget, o.burst)
				}
			}
		})
	}
}

// While a burst is spent the refill clock restarts; afterwards refill
// counts from the last burst use.
func TestBurstRestartsRefillClock(t *testing.T) {
	c := &FakeClock{}
	b := NewTokenBucket(1000, 10, 1000, c)
	c.Advance(5 * time.Second)
	b.Reduce(10) // burst only
	if b.last != c.Now() {
		t.Fatalf("last = %v, want %v", b.last, c.Now())
	}
	b.Reduce(1000)
	c.Advance(250 * time.Millisecond)
	if r, _ := b.Reduce(250); r != Success || b.Budget() != 0 {
		t.Fatalf("after 250ms: %v budget %d", r, b.Budget())
	}
}

func TestOverConsumptionLogs(t *testing.T) {
	var buf bytes.Buffer
	c := &FakeClock{}
	b := NewTokenBucket(1000, 0, 1000, c)
	lg := logger.New("vm", &buf)
	if err := lg.Update(logger.Config{ShowLevel: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	b.log = lg.Thread("fc_vmm")
	b.Reduce(999)
	if buf.Len() != 0 {
		t.Fatalf("logged on an ordinary reduce: %q", buf.String())
	}
	b.Reduce(2500)
	if want := "[vm:fc_vmm:ERROR] Consumed 2500 tokens from bucket of size 1000\n"; !strings.HasSuffix(buf.String(), want) {
		t.Fatalf("log = %q, want suffix %q", buf.String(), want)
	}
}

func ptr[T any](v T) *T { return &v }

func TestReductionString(t *testing.T) {
	for r, want := range map[Reduction]string{Success: "Success", Failure: "Failure", OverConsumption: "OverConsumption", 9: "Reduction(?)"} {
		if r.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(r), r.String(), want)
		}
	}
}
