package virtio_test

import (
	"sync"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/virtio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

func TestWorker(t *testing.T) {
	var mu sync.Mutex
	var seen uint64
	calls := 0
	w := virtio.StartWorker(func(bits uint64) {
		mu.Lock()
		seen |= bits
		calls++
		mu.Unlock()
	})
	w.Notify(0)
	w.Notify(3)
	w.Notify(64) // out of range: ignored
	w.Notify(-1)
	vt.Wait(t, time.Second, "bits 0 and 3", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen == 1|1<<3
	})
	w.After(10*time.Millisecond, 5)
	vt.Wait(t, time.Second, "timer bit 5", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen&(1<<5) != 0
	})
	w.After(time.Hour, 6) // cancelled by Stop
	w.Stop()
	w.Stop()
	mu.Lock()
	n := calls
	mu.Unlock()
	w.Notify(1) // after Stop: no call
	time.Sleep(10 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if calls != n {
		t.Fatal("handler ran after Stop")
	}
}
