package ratelimit

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/vmconfig"
)

func tb(size, burst, refillMs uint64) *vmconfig.TokenBucketConfig {
	c := &vmconfig.TokenBucketConfig{Size: size, RefillTime: refillMs}
	if burst != 0 {
		c.OneTimeBurst = &burst
	}
	return c
}

func rl(bw, ops *vmconfig.TokenBucketConfig) *vmconfig.RateLimiterConfig {
	return &vmconfig.RateLimiterConfig{Bandwidth: bw, Ops: ops}
}

func fake() (*FakeClock, Options) {
	c := &FakeClock{}
	return c, Options{Clock: c}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNewLimiter(t *testing.T) {
	_, o := fake()
	tests := []struct {
		name string
		l    *Limiter
		want string // Config() as JSON
	}{
		{"nil config", New(nil, o), "null"},
		{"empty config", New(rl(nil, nil), o), "null"},
		{"disabled buckets", New(rl(tb(0, 5, 100), tb(100, 0, 0)), o), "null"},
		{"refill ns overflow disables", New(rl(tb(1, 0, maxRefillMs+1), nil), o), "null"},
		{"both", New(rl(tb(1000, 1001, 1002), tb(1003, 1004, 1005)), o),
			`{"bandwidth":{"size":1000,"one_time_burst":1001,"refill_time":1002},"ops":{"size":1003,"one_time_burst":1004,"refill_time":1005}}`},
		{"zero burst echoes null", New(rl(tb(1000, 0, 100), nil), o),
			`{"bandwidth":{"size":1000,"one_time_burst":null,"refill_time":100},"ops":null}`},
		{"from spec", NewFromSpec(&hypervisor.RateLimiter{
			Ops: &hypervisor.TokenBucket{Size: 10, OneTimeBurst: 2, RefillTimeMs: 3},
		}, o), `{"bandwidth":null,"ops":{"size":10,"one_time_burst":2,"refill_time":3}}`},
		{"from nil spec", NewFromSpec(nil, o), "null"},
		{"from disabled spec", NewFromSpec(&hypervisor.RateLimiter{Bandwidth: &hypervisor.TokenBucket{Size: 1}}, o), "null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustJSON(t, tt.l.Config()); got != tt.want {
				t.Errorf("Config() = %s, want %s", got, tt.want)
			}
			if tt.l.IsBlocked() || tt.l.Ready() != nil || tt.l.RetryAfter() != 0 {
				t.Error("a new limiter is blocked")
			}
		})
	}
	if l := New(nil, Options{}); l.clk == nil {
		t.Error("zero Options did not default to the system clock")
	}
}

func TestLimiterDisabledNeverLimits(t *testing.T) {
	c, o := fake()
	l := New(nil, o)
	for i := 0; i < 3; i++ {
		for _, k := range []Kind{Bytes, Ops, Kind(7)} {
			if !l.Consume(math.MaxUint64, k) {
				t.Fatalf("disabled limiter refused kind %d", k)
			}
		}
		l.ManualReplenish(math.MaxUint64, Bytes)
		c.Advance(time.Hour)
	}
	if l.IsBlocked() || c.Pending() != 0 {
		t.Fatal("disabled limiter blocked or armed a timer")
	}
}

// step is one action on a Limiter and what must hold after it.
type step struct {
	advance time.Duration
	consume uint64 // skipped when 0 and kind is -1
	kind    Kind
	ok      bool
	blocked time.Duration // RetryAfter afterwards
}

func TestLimiterBlocking(t *testing.T) {
	const none = Kind(-1)
	tests := []struct {
		name  string
		cfg   *vmconfig.RateLimiterConfig
		steps []step
	}{
		{"bandwidth failure blocks 100ms, both kinds", rl(tb(1000, 0, 1000), nil), []step{
			{consume: 1000, kind: Bytes, ok: true},
			{consume: 100, kind: Bytes, ok: false, blocked: 100 * time.Millisecond},
			{advance: 50 * time.Millisecond, kind: none, blocked: 50 * time.Millisecond},
			// Blocked means blocked: even the unlimited ops kind waits.
			{consume: 1, kind: Ops, ok: false, blocked: 50 * time.Millisecond},
			{consume: 0, kind: Bytes, ok: false, blocked: 50 * time.Millisecond},
			{advance: 50 * time.Millisecond, kind: none},
			{consume: 100, kind: Bytes, ok: true},
			{consume: 1, kind: Bytes, ok: false, blocked: 100 * time.Millisecond},
		}},
		{"ops failure", rl(nil, tb(1000, 0, 1000)), []step{
			{consume: math.MaxUint64, kind: Bytes, ok: true},
			{consume: 1000, kind: Ops, ok: true},
			{consume: 100, kind: Ops, ok: false, blocked: 100 * time.Millisecond},
			{advance: 100 * time.Millisecond, consume: 100, kind: Ops, ok: true},
		}},
		{"overconsumption 2.5x blocks 1.5 refills", rl(tb(1000, 0, 1000), tb(1000, 0, 1000)), []step{
			{consume: 2500, kind: Bytes, ok: true, blocked: 1500 * time.Millisecond},
			{advance: time.Second, kind: none, blocked: 500 * time.Millisecond},
			{advance: 500 * time.Millisecond, kind: none},
			{consume: 1000, kind: Ops, ok: true},
			// 1.5s of refill ran into a full bucket: 1000 is available.
			{consume: 1000, kind: Bytes, ok: true},
		}},
		{"overconsumption 1.5x blocks 500ms and a failure does not re-arm", rl(tb(1000, 0, 1000), nil), []step{
			{consume: 1500, kind: Bytes, ok: true, blocked: 500 * time.Millisecond},
			{advance: 200 * time.Millisecond, consume: 100, kind: Bytes, ok: false, blocked: 300 * time.Millisecond},
			{advance: 100 * time.Millisecond, consume: 100, kind: Bytes, ok: false, blocked: 200 * time.Millisecond},
			{advance: 200 * time.Millisecond, consume: 100, kind: Bytes, ok: true},
		}},
		{"delay truncates to whole ms", rl(tb(1000, 0, 3), nil), []step{
			// 1999 more than the budget: 1.999 × 3ms = 5.997ms → 5ms.
			{consume: 2999, kind: Bytes, ok: true, blocked: 5 * time.Millisecond},
		}},
		{"a sub-millisecond delay does not block", rl(tb(1000, 0, 100), nil), []step{
			{consume: 1001, kind: Bytes, ok: true},
			{consume: 0, kind: Bytes, ok: true},
		}},
		{"huge overconsumption blocks for ever", rl(tb(1, 0, maxRefillMs), nil), []step{
			{consume: math.MaxUint64, kind: Bytes, ok: true, blocked: maxDuration},
			{advance: 1000 * 24 * time.Hour, kind: none, blocked: maxDuration - 1000*24*time.Hour},
		}},
		{"burst spares the budget", rl(tb(100, 50, 1000), nil), []step{
			{consume: 150, kind: Bytes, ok: true},
			{consume: 1, kind: Bytes, ok: false, blocked: 100 * time.Millisecond},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, o := fake()
			l := New(tt.cfg, o)
			for i, s := range tt.steps {
				c.Advance(s.advance)
				if s.kind != none {
					if got := l.Consume(s.consume, s.kind); got != s.ok {
						t.Fatalf("step %d: Consume(%d, %d) = %v, want %v", i, s.consume, s.kind, got, s.ok)
					}
				}
				if got := l.RetryAfter(); got != s.blocked {
					t.Fatalf("step %d: RetryAfter = %v, want %v", i, got, s.blocked)
				}
				if got := l.IsBlocked(); got != (s.blocked > 0) {
					t.Fatalf("step %d: IsBlocked = %v", i, got)
				}
			}
		})
	}
}

func TestOverConsumptionDelay(t *testing.T) {
	tests := []struct {
		ratio    float64
		refillMs uint64
		want     time.Duration
	}{
		{1.5, 1000, 1500 * time.Millisecond},
		{0.999, 1, 0},
		{1, 1, time.Millisecond},
		{math.NaN(), 1000, 0},
		{math.Inf(1), 1, maxDuration},
		{1e300, 1e6, maxDuration},
		{1, math.MaxInt64 / uint64(time.Millisecond), time.Duration(math.MaxInt64/uint64(time.Millisecond)) * time.Millisecond},
	}
	for _, tt := range tests {
		if got := overConsumptionDelay(tt.ratio, tt.refillMs); got != tt.want && !(got == maxDuration && tt.want == maxDuration) {
			t.Errorf("overConsumptionDelay(%v, %d) = %v, want %v", tt.ratio, tt.refillMs, got, tt.want)
		}
	}
}

func TestLimiterReady(t *testing.T) {
	c, o := fake()
	l := New(rl(tb(10, 0, 1000), nil), o)
	if l.Ready() != nil {
		t.Fatal("Ready before any block is not nil")
	}
	l.Consume(10, Bytes)
	l.Consume(1, Bytes) // blocks for 100ms
	ch := l.Ready()
	if ch == nil || l.Ready() != ch {
		t.Fatal("Ready during a block: want one non-nil channel for the whole block")
	}
	if c.Pending() != 1 {
		t.Fatalf("%d timers armed, want 1", c.Pending())
	}
	c.Advance(100*time.Millisecond - 1)
	select {
	case <-ch:
		t.Fatal("Ready fired before the block ended")
	default:
	}
	c.Advance(1)
	select {
	case <-ch:
	default:
		t.Fatal("Ready did not fire when the block ended")
	}
	if l.IsBlocked() || l.Ready() != nil {
		t.Fatal("still blocked after Ready fired")
	}

	// A block that ends unobserved: the next call ends it, closes the
	// channel and stops the timer.
	l.Consume(5, Bytes) // 100ms of refill bought 1 token: fails
	ch = l.Ready()
	if ch == nil {
		t.Fatal("not blocked")
	}
	// Move the fake time without firing timers, as a late timer would.
	c.mu.Lock()
	c.now += 100 * time.Millisecond
	c.mu.Unlock()
	if l.IsBlocked() {
		t.Fatal("blocked past the deadline")
	}
	select {
	case <-ch:
	default:
		t.Fatal("channel not closed when the block ended lazily")
	}
	if c.Pending() != 0 {
		t.Fatalf("%d timers left armed", c.Pending())
	}
	c.Advance(0) // a stale callback would be a double close; there is none

	// Blocks that nobody waits for arm no timer.
	l.Consume(5, Bytes)
	if !l.IsBlocked() || c.Pending() != 0 {
		t.Fatalf("blocked %v with %d timers, want blocked with none", l.IsBlocked(), c.Pending())
	}
}

// TestLimiterReadySystemClock drives the production clock end to end.
func TestLimiterReadySystemClock(t *testing.T) {
	l := New(rl(tb(1, 0, 10_000), nil), Options{})
	if !l.Consume(1, Bytes) || l.Consume(1, Bytes) {
		t.Fatal("second token granted")
	}
	start := time.Now()
	select {
	case <-l.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("Ready never fired")
	}
	if waited := time.Since(start); waited > RefillTimerDuration+time.Second {
		t.Errorf("waited %v for a %v block", waited, RefillTimerDuration)
	}
	if l.IsBlocked() {
		t.Fatal("still blocked after Ready fired")
	}
}

func TestLimiterManualReplenish(t *testing.T) {
	_, o := fake()
	l := New(rl(tb(1000, 0, 1000), tb(1000, 0, 1000)), o)
	for _, k := range []Kind{Bytes, Ops} {
		if !l.Consume(123, k) {
			t.Fatal("consume failed")
		}
		l.ManualReplenish(23, k)
	}
	l.ManualReplenish(5, Kind(9)) // no such bucket: ignored
	s := l.State()
	if s.Bandwidth.Budget != 900 || s.Ops.Budget != 900 {
		t.Fatalf("budgets %d and %d, want 900", s.Bandwidth.Budget, s.Ops.Budget)
	}
	// Replenishing does not end a block.
	l.Consume(1000, Bytes)
	l.ManualReplenish(1000, Bytes)
	if !l.IsBlocked() || l.Consume(1, Bytes) {
		t.Fatal("replenish ended the block")
	}
}

func TestLimiterUpdate(t *testing.T) {
	type want struct {
		config string
		bwBudget,
		opsBudget uint64 // of the live buckets, if any
	}
	start := rl(tb(1000, 2000, 1000), tb(10, 20, 1000))
	tests := []struct {
		name   string
		update *vmconfig.RateLimiterConfig
		want   want
	}{
		{"nil keeps all", nil, want{
			`{"bandwidth":{"size":1000,"one_time_burst":2000,"refill_time":1000},"ops":{"size":10,"one_time_burst":20,"refill_time":1000}}`, 500, 10}},
		{"empty keeps all", rl(nil, nil), want{
			`{"bandwidth":{"size":1000,"one_time_burst":2000,"refill_time":1000},"ops":{"size":10,"one_time_burst":20,"refill_time":1000}}`, 500, 10}},
		{"replace one, keep the other", rl(tb(123, 0, 57), nil), want{
			`{"bandwidth":{"size":123,"one_time_burst":null,"refill_time":57},"ops":{"size":10,"one_time_burst":20,"refill_time":1000}}`, 123, 10}},
		{"replace both", rl(tb(123, 0, 57), tb(321, 12346, 89)), want{
			`{"bandwidth":{"size":123,"one_time_burst":null,"refill_time":57},"ops":{"size":321,"one_time_burst":12346,"refill_time":89}}`, 123, 321}},
		{"zero size disables", rl(tb(0, 0, 100), nil), want{
			`{"bandwidth":null,"ops":{"size":10,"one_time_burst":20,"refill_time":1000}}`, 0, 10}},
		{"zero refill disables", rl(nil, tb(5, 0, 0)), want{
			`{"bandwidth":{"size":1000,"one_time_burst":2000,"refill_time":1000},"ops":null}`, 500, 0}},
		{"all zero disables all", rl(tb(0, 0, 0), tb(0, 0, 0)), want{"null", 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, o := fake()
			l := New(start, o)
			l.Consume(2500, Bytes) // burst gone, budget 500
			c.Advance(time.Second)
			l.Update(tt.update)
			if got := mustJSON(t, l.Config()); got != tt.want.config {
				t.Errorf("Config() = %s\nwant %s", got, tt.want.config)
			}
			s := l.State()
			if s.Bandwidth != nil && s.Bandwidth.Budget != tt.want.bwBudget ||
				s.Ops != nil && s.Ops.Budget != tt.want.opsBudget {
				t.Errorf("budgets %+v %+v, want %d and %d", s.Bandwidth, s.Ops, tt.want.bwBudget, tt.want.opsBudget)
			}
		})
	}
}

func TestLimiterUpdateKeepsBlock(t *testing.T) {
	c, o := fake()
	l := New(rl(tb(10, 0, 1000), nil), o)
	l.Consume(10, Bytes)
	l.Consume(1, Bytes)
	l.Update(rl(tb(0, 0, 0), nil)) // limit removed while blocked
	if !l.IsBlocked() || l.Consume(1, Bytes) {
		t.Fatal("Update ended the block")
	}
	c.Advance(RefillTimerDuration)
	if !l.Consume(math.MaxUint64, Bytes) {
		t.Fatal("removed limit still limits")
	}
	// And a limit can be added to a limiter created without one.
	l = New(nil, o)
	l.Update(rl(nil, tb(1, 0, 1000)))
	if !l.Consume(1, Ops) || l.Consume(1, Ops) {
		t.Fatal("limit added by Update not enforced")
	}
}

func TestLimiterLogsOverConsumption(t *testing.T) {
	var buf bytes.Buffer
	lg := logger.New("vm", &buf)
	c := &FakeClock{}
	l := New(rl(tb(1000, 0, 1000), nil), Options{Clock: c, Log: lg.Thread("fc_vmm")})
	l.Consume(1500, Bytes)
	c.Advance(time.Hour)
	l.Update(rl(nil, tb(1, 0, 1)))
	l.Consume(3, Ops)
	r, _ := Restore(l.State(), Options{Clock: c, Log: lg.Thread("fc_vmm")})
	c.Advance(time.Hour)
	r.Consume(4, Ops)
	got := buf.String()
	for _, want := range []string{
		"] Consumed 1500 tokens from bucket of size 1000\n",
		"] Consumed 3 tokens from bucket of size 1\n",
		"] Consumed 4 tokens from bucket of size 1\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
}

// TestLimiterConcurrent is for the race detector: a device consuming and
// waiting while the API side updates and reads.
func TestLimiterConcurrent(t *testing.T) {
	l := New(rl(tb(1<<20, 0, 10), tb(1000, 0, 10)), Options{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(3)
	go func() {
		defer wg.Done()
		for i := 0; i < 3000; i++ {
			if !l.Consume(4096, Bytes) {
				select {
				case <-l.Ready():
				case <-time.After(time.Second):
				}
			}
			l.Consume(1, Ops)
			if i%7 == 0 {
				l.ManualReplenish(4096, Bytes)
			}
		}
		close(stop)
	}()
	go func() {
		defer wg.Done()
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			l.Update(rl(tb(1<<20+i%3, i%5, 10), nil))
			time.Sleep(100 * time.Microsecond)
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = l.State()
			_ = l.Config()
			_ = l.IsBlocked()
			_ = l.RetryAfter()
		}
	}()
	wg.Wait()
}

func BenchmarkConsume(b *testing.B) {
	b.Run("unlimited", func(b *testing.B) {
		l := New(nil, Options{})
		for b.Loop() {
			l.Consume(1500, Bytes)
		}
	})
	b.Run("limited", func(b *testing.B) {
		// Large enough never to block: measures the bucket path.
		l := New(rl(tb(math.MaxUint64, 0, 1), tb(math.MaxUint64, 0, 1)), Options{})
		for b.Loop() {
			l.Consume(1500, Bytes)
			l.Consume(1, Ops)
		}
	})
	b.Run("blocked", func(b *testing.B) {
		l := New(rl(tb(1, 0, 1_000_000), nil), Options{})
		l.Consume(1, Bytes)
		l.Consume(1, Bytes)
		for b.Loop() {
			l.Consume(1, Bytes)
		}
	})
}

// BenchmarkRefill is the refill arithmetic with a real clock read.
func BenchmarkRefill(b *testing.B) {
	tb := NewTokenBucket(1_000_000_007, 0, 13, nil)
	for b.Loop() {
		tb.budget = 0
		tb.refill()
	}
}

func TestAllow(t *testing.T) {
	clk := &FakeClock{}
	ms := func(n uint64) *vmconfig.TokenBucketConfig {
		return &vmconfig.TokenBucketConfig{Size: n, RefillTime: 1000}
	}
	l := New(&vmconfig.RateLimiterConfig{Bandwidth: ms(1000), Ops: ms(2)}, Options{Clock: clk})
	if ok, wait := l.Allow(1, 600); !ok || wait != 0 {
		t.Fatalf("first request: %v %v", ok, wait)
	}
	// The bytes do not fit: refused, and the op is given back.
	ok, wait := l.Allow(1, 600)
	if ok || wait <= 0 {
		t.Fatalf("over budget: %v %v", ok, wait)
	}
	if b := l.State().Ops.Budget; b != 1 {
		t.Errorf("ops budget %d after a refused request, want 1 (the op given back)", b)
	}
	// 400 bytes were left and 100 come back every 100 ms: the request
	// fits once 200 ms have passed, retried as each wait ends.
	var waited time.Duration
	for ok = false; !ok && waited < time.Second; {
		clk.Advance(wait)
		waited += wait
		ok, wait = l.Allow(1, 600)
	}
	if !ok || waited != 200*time.Millisecond {
		t.Errorf("allowed %v after %v, want after 200ms", ok, waited)
	}
}
