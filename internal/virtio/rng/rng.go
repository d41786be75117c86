// Package rng is ember's virtio entropy device (virtio-rng, device id 4) as
// Firecracker has it: one queue of 256 entries, no config space, only
// VIRTIO_F_VERSION_1 offered, and each request filled from the host's
// CSPRNG (crypto/rand), at most 64 KiB per request however large the
// buffers the driver offers.
//
// Requests are served on the device's own goroutine. A Limiter, when set,
// throttles requests (one operation and the request's bytes each); a
// throttled request stays in the ring until the limiter allows it.
package rng

import (
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/virtio"
)

// MaxRequestBytes caps the bytes served per request, bounding host work
// whatever length (or overlapping buffers) the driver describes.
const MaxRequestBytes = 64 << 10

const bitRetry = 1 // worker bit for a limiter's retry timer

// Config configures the device.
type Config struct {
	Limiter virtio.Limiter // nil: unlimited
	Log     logger.Log
}

// Device is a virtio-rng device.
type Device struct {
	cfg Config

	mu  sync.Mutex
	act *active // nil while inactive

	bytes, requests atomic.Uint64
}

// active is one activation's state, owned by its worker goroutine.
type active struct {
	w     *virtio.Worker
	q     *virtio.Queue
	t     virtio.Transport
	chain virtio.Chain
	iov   [][]byte
}

// New returns an inactive device.
func New(cfg Config) *Device { return &Device{cfg: cfg} }

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeRng }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return virtio.Bit(virtio.FeatureVersion1) }

// QueueMaxSizes implements virtio.Device.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{virtio.MaxQueueSize} }

// ReadConfig implements virtio.Device: there is no config space.
func (d *Device) ReadConfig(_ uint64, data []byte) { clear(data) }

// WriteConfig implements virtio.Device.
func (d *Device) WriteConfig(uint64, []byte) {}

// Activate implements virtio.Device.
func (d *Device) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.act != nil {
		return errors.New("entropy device already active")
	}
	if len(a.Queues) != 1 || a.Queues[0] == nil {
		return errors.New("entropy device: the driver did not enable its queue")
	}
	act := &active{q: a.Queues[0], t: a.Transport}
	act.w = virtio.StartWorker(func(uint64) { d.process(act) })
	d.act = act
	return nil
}

// Notify implements virtio.Device.
func (d *Device) Notify(int) {
	d.mu.Lock()
	act := d.act
	d.mu.Unlock()
	if act != nil {
		act.w.Notify(0)
	}
}

// Reset implements virtio.Device.
func (d *Device) Reset() error {
	d.mu.Lock()
	act := d.act
	d.act = nil
	d.mu.Unlock()
	if act != nil {
		act.w.Stop()
	}
	return nil
}

// Close stops the device.
func (d *Device) Close() error { return d.Reset() }

// Bytes returns the entropy bytes served so far.
func (d *Device) Bytes() uint64 { return d.bytes.Load() }

// Requests returns the requests completed so far.
func (d *Device) Requests() uint64 { return d.requests.Load() }

func (d *Device) process(a *active) {
	for {
		ok, err := a.q.Next(&a.chain)
		if err != nil {
			a.t.NeedsReset(err)
			return
		}
		if !ok {
			break
		}
		n := min(a.chain.InLen, MaxRequestBytes)
		if l := d.cfg.Limiter; l != nil && n > 0 {
			if ok, wait := l.Allow(1, n); !ok {
				a.q.Undo()
				a.w.After(wait, bitRetry)
				break
			}
		}
		a.iov = virtio.Range(a.chain.In, 0, n, a.iov[:0])
		for _, b := range a.iov {
			rand.Read(b) // never fails: Go aborts if the OS cannot supply randomness
		}
		clear(a.iov)
		if err := a.q.Push(a.chain.Head, uint32(n)); err != nil {
			a.t.NeedsReset(err)
			return
		}
		d.bytes.Add(n)
		d.requests.Add(1)
	}
	if a.q.NeedsSignal() {
		if err := a.t.SignalUsed(0); err != nil {
			d.cfg.Log.Errorf("entropy: %v", err)
		}
	}
}
