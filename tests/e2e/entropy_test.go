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

// entropyRate is the limit, in bytes per second (the bucket's size over a
// 1000 ms refill), far below what the emulated guest reads unthrottled: on
// qemu (TCG, ember's rng over vhost-user) it read /dev/hwrng at 300–500
// KiB/s; on kvm inside L1 (the L2 guest nested in TCG) it read 24 KiB in
// 1.7 s, so the limit there is lower. The guest first drains the full
// bucket and reads on at the limit for half a second, so the timed read,
// 8 s at the limit, starts with an empty bucket; its length dilutes the
// console's latency (a 4 s read measured 0.98 to 1.12 times the limit).
func entropyRate(backend string) int {
	if backend == "kvm" {
		return 4 << 10
	}
	return 16 << 10
}

// TestEntropyRateLimiter is testEntropyRateLimiter on the qemu backend.
func TestEntropyRateLimiter(t *testing.T) { testEntropyRateLimiter(t) }

// testEntropyRateLimiter: with a bandwidth limit on /entropy, the guest's
// reads from /dev/hwrng run at the configured rate (±10 %) once the initial
// bucket is drained. The read is timed by the host as it sees the guest's
// lines: an emulated guest's clock ran 1.8 times slow under load.
func testEntropyRateLimiter(t *testing.T) {
	a := requireVM(t)
	entropyRate := entropyRate(backendOf(t))
	entropyWarm, entropyRead := entropyRate*3/2, 8*entropyRate
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
	timeout := scaled(90 * time.Second)
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
	t.Logf("entropy: %d B (bucket included) in %.2f s guest time; then %d B at %.0f B/s in %v (guest clock: %.2f s); limit %d B/s",
		entropyWarm, t1-t0, entropyRead, rate, h2.Round(time.Millisecond), t2-t1, entropyRate)
	if lo, hi := 0.9*float64(entropyRate), 1.1*float64(entropyRate); rate < lo || rate > hi {
		t.Errorf("guest read /dev/hwrng at %.0f B/s, want %d ±10 %%", rate, entropyRate)
	}
}
