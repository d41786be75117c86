package ratelimit

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestBucketStateRoundTrip(t *testing.T) {
	c := &FakeClock{}
	b := NewTokenBucket(1000, 2000, 3000, c)
	check := func(when string) {
		t.Helper()
		s := b.State()
		r, err := RestoreTokenBucket(s, c)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if r.State() != s {
			t.Fatalf("%s: restored %+v, saved %+v", when, r.State(), s)
		}
	}
	check("untouched")
	b.Reduce(100)
	check("after a burst reduce")
	b.ForceReplenish(100)
	check("after a replenish")
	b.Reduce(2500)
	c.Advance(7 * time.Millisecond)
	check("after the burst ran out")
}

func TestRestoreCarriesElapsedTime(t *testing.T) {
	c := &FakeClock{}
	b, _ := drained(t, 1000, 1000)
	b.clk = c
	b.last = 0
	c.Advance(300 * time.Millisecond)
	s := b.State()
	if s.ElapsedNs != uint64(300*time.Millisecond) || s.Budget != 0 {
		t.Fatalf("saved %+v", s)
	}

	// Restored on a clock whose origin is later, and on one still at 0:
	// the 300ms already earned count either way.
	for _, start := range []time.Duration{5 * time.Second, 0} {
		c2 := &FakeClock{}
		c2.Advance(start)
		r, err := RestoreTokenBucket(s, c2)
		if err != nil {
			t.Fatal(err)
		}
		c2.Advance(200 * time.Millisecond)
		if res, _ := r.Reduce(500); res != Success || r.Budget() != 0 {
			t.Fatalf("clock at %v: 500ms of refill did not give 500 tokens: %v, budget %d", start, res, r.Budget())
		}
	}

	// An elapsed time the clock cannot represent counts from now.
	s.ElapsedNs = math.MaxUint64
	c3 := &FakeClock{}
	c3.Advance(time.Second)
	r, err := RestoreTokenBucket(s, c3)
	if err != nil {
		t.Fatal(err)
	}
	if r.last != time.Second {
		t.Fatalf("last = %v, want now (1s)", r.last)
	}
}

func TestRestoreBurstBecomesInitial(t *testing.T) {
	b := NewTokenBucket(1000, 2000, 1000, &FakeClock{})
	b.Reduce(1500)
	r, err := RestoreTokenBucket(b.State(), &FakeClock{})
	if err != nil {
		t.Fatal(err)
	}
	if r.InitialOneTimeBurst() != 500 {
		t.Fatalf("initial burst %d, want the 500 left", r.InitialOneTimeBurst())
	}
	r.ForceReplenish(1000)
	if r.OneTimeBurst() != 500 {
		t.Fatalf("burst replenished to %d, want capped at 500", r.OneTimeBurst())
	}
}

func TestRestoreInvalid(t *testing.T) {
	tests := []struct {
		name string
		s    BucketState
		msg  string
	}{
		{"size 0", BucketState{Size: 0, RefillTime: 10}, "bucket of size 0 refilling in 10 ms limits nothing"},
		{"refill 0", BucketState{Size: 1}, "bucket of size 1 refilling in 0 ms limits nothing"},
		{"refill overflow", BucketState{Size: 1, RefillTime: maxRefillMs + 1}, "limits nothing"},
		{"budget over size", BucketState{Size: 10, RefillTime: 1, Budget: 11}, "budget 11 exceeds bucket size 10"},
		{"burst with a spent budget", BucketState{Size: 10, RefillTime: 1, Budget: 9, OneTimeBurst: 1},
			"one-time burst 1 left with budget 9 below size 10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RestoreTokenBucket(tt.s, &FakeClock{})
			if !errors.Is(err, ErrInvalidState) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want ErrInvalidState with %q", err, tt.msg)
			}
			_, err = Restore(State{Ops: &tt.s}, Options{Clock: &FakeClock{}})
			if !errors.Is(err, ErrInvalidState) || !strings.HasPrefix(err.Error(), "ops: ") {
				t.Fatalf("Restore err = %v, want ErrInvalidState for ops", err)
			}
		})
	}
}

func TestLimiterStateRoundTrip(t *testing.T) {
	c, o := fake()
	l := New(rl(tb(1000, 0, 1000), tb(10, 5, 100)), o)
	l.Consume(1200, Bytes) // over-consumes: blocked
	c.Advance(10 * time.Millisecond)
	s := l.State()
	raw := mustJSON(t, s)
	want := `{"ops":{"size":10,"one_time_burst":5,"refill_time":100,"budget":10,"elapsed_ns":10000000},` +
		`"bandwidth":{"size":1000,"one_time_burst":0,"refill_time":1000,"budget":0,"elapsed_ns":10000000}}`
	if raw != want {
		t.Fatalf("State JSON = %s\nwant %s", raw, want)
	}
	var back State
	if err := json.Unmarshal([]byte(raw), &back); err != nil {
		t.Fatal(err)
	}
	r, err := Restore(back, o)
	if err != nil {
		t.Fatal(err)
	}
	if r.IsBlocked() {
		t.Fatal("restored limiter is blocked")
	}
	if got := mustJSON(t, r.State()); got != raw {
		t.Fatalf("restored State = %s, want %s", got, raw)
	}
	if e, err := Restore(State{}, Options{}); err != nil || e.Config() != nil {
		t.Fatalf("empty state: %v, %v", e.Config(), err)
	}
}
