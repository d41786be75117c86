package vhostuser

import (
	"encoding/binary"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// kicker forwards one kick eventfd to a callback, on its own goroutine,
// through Go's poller.
type kicker struct {
	f *os.File
}

// startKicker takes ownership of fd and calls onKick after each batch of
// kicks until stop.
func startKicker(fd int, onKick func()) (*kicker, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	k := &kicker{f: os.NewFile(uintptr(fd), "vhost-user-kick")}
	go func() {
		var buf [8]byte
		for {
			if _, err := k.f.Read(buf[:]); err != nil {
				return // closed by stop, or the fd is unusable
			}
			onKick()
		}
	}()
	return k, nil
}

// stop closes the eventfd, which ends the goroutine. It does not wait for
// it: the goroutine may be in onKick, which may need the caller's locks.
// A late onKick must therefore tolerate a stopped kicker.
func (k *kicker) stop() {
	if k != nil {
		k.f.Close()
	}
}

// callFd is a queue's interrupt: the front-end's call eventfd. It
// implements virtio.Interrupt.
type callFd struct {
	mu sync.RWMutex
	fd int // -1: none (interrupts are dropped)
}

// Signal implements virtio.Interrupt. It never blocks: a full eventfd
// counter (EAGAIN) already means an interrupt is pending.
func (c *callFd) Signal() error {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.fd < 0 {
		return nil
	}
	for {
		_, err := unix.Write(c.fd, one[:])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return nil
		}
		return err
	}
}

// set replaces the eventfd (taking ownership of fd; -1 for none) and closes
// the old one.
func (c *callFd) set(fd int) {
	if fd >= 0 {
		// A blocking write could only block at a counter near 2^64, but
		// make sure Signal never does.
		unix.SetNonblock(fd, true)
	}
	c.mu.Lock()
	old := c.fd
	c.fd = fd
	c.mu.Unlock()
	if old >= 0 {
		unix.Close(old)
	}
}
