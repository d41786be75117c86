package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/testguest"
)

// Entropy limiter test sizes. The limit sits far below what an emulated
// guest reads unthrottled: on qemu (TCG, ember's rng over vhost-user) the
// guest read /dev/hwrng at 300–500 KiB/s, QEMU's own device at ~420 KiB/s.
const (
	entropyRate = 16 << 10 // bytes per second: bucket size over a 1000 ms refill
	// The guest first drains the full bucket and reads on at the limit
	// for a while, so the timed read starts with an empty bucket.
	entropyWarm = 24 << 10
	entropyRead = 64 << 10 // then read at the limit: 4 s
)

// TestEntropyRateLimiter is testEntropyRateLimiter on the qemu backend.
func TestEntropyRateLimiter(t *testing.T) { testEntropyRateLimiter(t) }

// testEntropyRateLimiter: with a bandwidth limit on /entropy, the guest's
// reads from /dev/hwrng run at the configured rate (±10 %) once the initial
// bucket is drained. The read is timed by the host as it sees the guest's
// lines: an emulated guest's clock ran 1.8 times slow under load.
func testEntropyRateLimiter(t *testing.T) {
	a := requireVM(t)
	e := startEmber(t, startOpts{})
	e.mustAPI("PUT", "/entropy", map[string]any{
		"rate_limiter": map[string]any{"bandwidth": map[string]any{"size": entropyRate, "refill_time": 1000}},
	}, http.StatusNoContent)
	// /proc/uptime has centiseconds; the reads take seconds.
	// In the background, so the host sees each line as it comes.
	e.boot(a, 128, testguest.Script(fmt.Sprintf(`
(
sleep 1
echo "EMBER-GUEST: rng t0 $(cut -d' ' -f1 /proc/uptime) $(cat /sys/class/misc/hw_random/rng_current)"
head -c %d /dev/hwrng | wc -c > /tmp/n1
echo "EMBER-GUEST: rng t1 $(cut -d' ' -f1 /proc/uptime) $(cat /tmp/n1)"
head -c %d /dev/hwrng | wc -c > /tmp/n2
echo "EMBER-GUEST: rng t2 $(cut -d' ' -f1 /proc/uptime) $(cat /tmp/n2)"
) &
`, entropyWarm, entropyRead)), testguest.End(testguest.EndWait))
	e.waitLine(testguest.MarkerReady, bootTimeout)
	timeout := scaled(60 * time.Second)
	mark := func(name string) (float64, string) {
		t.Helper()
		f := strings.Fields(e.waitLine("EMBER-GUEST: rng "+name+" ", timeout))
		if len(f) != 5 {
			t.Fatalf("guest line %q", f)
		}
		s, err := strconv.ParseFloat(f[3], 64)
		if err != nil {
			t.Fatalf("guest line %q: %v", f, err)
		}
		return s, f[4]
	}
	t0, dev := mark("t0")
	if !strings.HasPrefix(dev, "virtio_rng") {
		t.Fatalf("guest hwrng is %q, want virtio_rng", dev)
	}
	t1, n1 := mark("t1")
	h1 := time.Now()
	t2, n2 := mark("t2")
	h2 := time.Since(h1)
	if n1 != strconv.Itoa(entropyWarm) || n2 != strconv.Itoa(entropyRead) {
		t.Fatalf("guest read %s and %s bytes, want %d and %d", n1, n2, entropyWarm, entropyRead)
	}
	rate := float64(entropyRead) / h2.Seconds()
	t.Logf("entropy: %d KiB (bucket included) in %.2f s guest time; then %d KiB at %.1f KiB/s in %v (guest clock: %.2f s); limit %d KiB/s",
		entropyWarm>>10, t1-t0, entropyRead>>10, rate/1024, h2.Round(time.Millisecond), t2-t1, entropyRate>>10)
	if lo, hi := 0.9*entropyRate, 1.1*entropyRate; rate < lo || rate > hi {
		t.Errorf("guest read /dev/hwrng at %.0f B/s, want %d ±10 %%", rate, entropyRate)
	}
}
