package virtio

import (
	"sync"
	"sync/atomic"
	"time"
)

// Worker runs a device's queue processing on one goroutine, so the
// transport's Notify (called on vCPU threads) only sets a bit and wakes it.
// Bits are queue indexes or device-defined events (up to 64 in all);
// notifications that arrive while the handler runs coalesce into one more
// call.
type Worker struct {
	pending atomic.Uint64
	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}
	stop    sync.Once

	mu     sync.Mutex
	timers map[*time.Timer]struct{}
}

// StartWorker starts a goroutine calling handle with the set of bits
// notified since its previous call.
func StartWorker(handle func(bits uint64)) *Worker {
	w := &Worker{
		wake:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		timers: map[*time.Timer]struct{}{},
	}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.quit:
				return
			case <-w.wake:
			}
			if bits := w.pending.Swap(0); bits != 0 {
				handle(bits)
			}
		}
	}()
	return w
}

// Notify sets bit and wakes the worker. It never blocks.
func (w *Worker) Notify(bit int) {
	if bit < 0 || bit >= 64 {
		return
	}
	w.pending.Or(1 << bit)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// After notifies bit once d has passed, unless the worker stops first.
func (w *Worker) After(d time.Duration, bit int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timers == nil {
		return // stopped
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		w.mu.Lock()
		delete(w.timers, t)
		w.mu.Unlock()
		w.Notify(bit)
	})
	w.timers[t] = struct{}{}
}

// Stop ends the goroutine and cancels pending timers; it returns once the
// handler is no longer running. It may be called more than once, but not
// from the handler.
func (w *Worker) Stop() {
	w.stop.Do(func() {
		w.mu.Lock()
		for t := range w.timers {
			t.Stop()
		}
		w.timers = nil
		w.mu.Unlock()
		close(w.quit)
	})
	<-w.done
}
