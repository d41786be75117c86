package badrequests

import (
	"flag"
	"testing"
	"time"
)

var floodCount = flag.Int("flood", 100000, "bad requests TestFlood sends (cycling the corpus)")

// rssSlackKiB is how much ember's resident memory may grow between the end
// of the warm-up and the end of the flood.
const rssSlackKiB = 4 << 10

// TestFlood sends -flood bad requests (100 000 by default), each on a fresh
// connection, cycling through the corpus cases that need no guest and get
// an answer, to one ember process. Every request must be answered in full,
// the process must keep serving, and its RSS after the flood may exceed
// its RSS after the warm-up (the first tenth) by at most rssSlackKiB.
func TestFlood(t *testing.T) {
	n := *floodCount
	if testing.Short() && n > 10000 {
		n = 10000
		t.Logf("NOTE: -short: flooding with %d bad requests, not the %d the memory check is specified for (run without -short for the full count)", n, *floodCount)
	}
	var cases []*testCase
	for _, f := range loadCorpus(t) {
		if f.state != "fresh" || len(f.setup) > 0 || len(f.files) > 0 || len(f.args) > 0 {
			continue
		}
		for _, c := range f.cases {
			if !c.want.none {
				cases = append(cases, c)
			}
		}
	}
	if len(cases) == 0 {
		t.Fatal("no corpus cases to flood with")
	}
	e := startEmber(t, shortTempDir(t))
	reqs := make([][]byte, len(cases))
	for i, c := range cases {
		reqs[i] = c.requestBytes(nil)
	}
	warm := max(n/10, 1)
	start := time.Now()
	var base int
	for i := 0; i < n; i++ {
		if i == warm {
			var err error
			if base, err = e.rssKiB(); err != nil {
				t.Fatal(err)
			}
			t.Logf("after %d warm-up requests (%v): VmRSS %d KiB", warm, time.Since(start).Round(time.Millisecond), base)
		}
		c := cases[i%len(cases)]
		if got, err := e.exchange(reqs[i%len(reqs)], false); err != nil {
			t.Fatalf("request %d (%s): no complete answer: %v (got %q)", i, c.id(), err, got)
		}
		if (i+1)%10000 == 0 {
			if err := e.serving(); err != nil {
				t.Fatalf("after %d bad requests: %v", i+1, err)
			}
			rss, _ := e.rssKiB()
			t.Logf("after %d requests (%v): VmRSS %d KiB", i+1, time.Since(start).Round(time.Millisecond), rss)
		}
	}
	if err := e.serving(); err != nil {
		t.Fatalf("after %d bad requests: %v", n, err)
	}
	end, err := e.rssKiB()
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	t.Logf("%d bad requests in %v (%.0f/s): VmRSS %d KiB after warm-up, %d KiB at the end (%+d KiB)",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), base, end, end-base)
	if n > warm && end-base > rssSlackKiB {
		t.Errorf("ember's RSS grew by %d KiB over %d bad requests (allowed %d KiB)", end-base, n-warm, rssSlackKiB)
	}
}
