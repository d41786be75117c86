package ratelimit

import (
	"reflect"
	"testing"
	"time"
)

func TestFakeClock(t *testing.T) {
	var c FakeClock
	var got []string
	rec := func(s string) func() { return func() { got = append(got, s) } }

	c.AfterFunc(30, rec("c"))
	c.AfterFunc(10, rec("a"))
	stopB := c.AfterFunc(20, rec("b"))
	c.AfterFunc(10, rec("a2")) // same deadline: registration order
	c.AfterFunc(0, rec("due"))
	if c.Pending() != 5 {
		t.Fatalf("Pending = %d, want 5", c.Pending())
	}
	if !stopB() {
		t.Fatal("stop of a pending callback reported false")
	}
	if stopB() {
		t.Fatal("second stop reported true")
	}
	c.Advance(0)
	if want := []string{"due"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after Advance(0): %v, want %v", got, want)
	}
	c.Advance(-5) // ignored
	if c.Now() != 0 {
		t.Fatalf("Now = %v after negative Advance", c.Now())
	}
	c.Advance(29)
	if want := []string{"due", "a", "a2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after 29ns: %v, want %v", got, want)
	}
	c.Advance(1)
	if want := []string{"due", "a", "a2", "c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after 30ns: %v, want %v", got, want)
	}
	if c.Pending() != 0 || c.Now() != 30 {
		t.Fatalf("Pending %d Now %v, want 0 and 30ns", c.Pending(), c.Now())
	}

	// A callback may re-enter the clock.
	var inner bool
	c.AfterFunc(1, func() { c.AfterFunc(0, func() { inner = true }) })
	c.Advance(1)
	c.Advance(0)
	if !inner {
		t.Fatal("callback scheduled from a callback did not run")
	}

	// Saturation instead of wrap-around.
	c.Advance(maxDuration)
	c.Advance(time.Hour)
	if c.Now() != maxDuration {
		t.Fatalf("Now = %v, want the largest Duration", c.Now())
	}
}

func TestSystemClock(t *testing.T) {
	var c SystemClock
	a := c.Now()
	done := make(chan struct{})
	c.AfterFunc(time.Millisecond, func() { close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("SystemClock.AfterFunc did not fire")
	}
	if b := c.Now(); b-a < time.Millisecond {
		t.Fatalf("Now advanced %v across a 1ms timer", b-a)
	}
	stop := c.AfterFunc(time.Hour, func() {})
	if !stop() {
		t.Fatal("stop of a pending timer reported false")
	}
}
