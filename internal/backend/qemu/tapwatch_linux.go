//go:build linux

package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/hypervisor"
)

// tapWatch notices a tap deleted under a running guest. QEMU keeps polling
// a dead tap's descriptor level-triggered, and a deleted tap is always
// "readable" with an error, so QEMU would spin on it for the rest of the
// VM's life. ember checks its own duplicate of each tap QEMU reads for
// POLLERR (the tun driver reports it once its device is gone) twice a
// second, and then removes QEMU's netdev: QEMU closes the tap and the guest
// sees the link go down, while the VM and the API go on. The interface's
// tap_read_fails counts it, as the failed tap read it stands for.
//
// The check polls rather than sleeps in poll: the tun driver's wake-up on
// deletion carries only input events, which a poll asking for none (so as
// not to wake for every frame QEMU has yet to read) never receives.
type tapWatch struct {
	stop  int // eventfd: written once by close
	taps  []*os.File
	ended chan struct{}
}

// tapCheckMs is how often the taps are checked.
const tapCheckMs = 500

// watchTaps starts a tapWatch over the nets on QEMU's own tap path. It
// returns nil when there is none, or when the duplicates cannot be made
// (the VM runs unwatched, as before, and the reason is logged).
func (m *machine) watchTaps(spec *hypervisor.Spec) *tapWatch {
	type watched struct {
		idx int
		id  string
		tap string
	}
	var ws []watched
	w := &tapWatch{stop: -1, ended: make(chan struct{})}
	for i, n := range spec.Nets {
		if goNet(&n) || n.Tap == nil {
			continue
		}
		f, err := dupFile(n.Tap)
		if err != nil {
			m.log.Warnf("Cannot watch tap %s of interface %s: %s", n.TapName, n.ID, err)
			continue
		}
		w.taps = append(w.taps, f)
		ws = append(ws, watched{i, n.ID, n.TapName})
	}
	if len(ws) == 0 {
		close(w.ended)
		return nil
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		m.log.Warnf("Cannot watch the taps: eventfd: %s", err)
		for _, f := range w.taps {
			f.Close()
		}
		return nil
	}
	w.stop = efd
	go func() {
		defer close(w.ended)
		fds := make([]unix.PollFd, 0, len(ws)+1)
		fds = append(fds, unix.PollFd{Fd: int32(efd), Events: unix.POLLIN})
		for _, f := range w.taps {
			// No events asked: POLLERR and POLLHUP are always reported.
			fds = append(fds, unix.PollFd{Fd: int32(f.Fd())})
		}
		for live := len(ws); live > 0; {
			if _, err := unix.Poll(fds, tapCheckMs); err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				m.log.Warnf("Tap watch stopped: %s", err)
				return
			}
			if fds[0].Revents != 0 {
				return
			}
			for i := 1; i < len(fds); i++ {
				if fds[i].Fd < 0 || fds[i].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) == 0 {
					continue
				}
				n := ws[i-1]
				fds[i].Fd = -1 // poll ignores negative descriptors
				live--
				m.tapGone(n.idx, n.id, n.tap)
			}
		}
	}()
	return w
}

// tapGone detaches QEMU's netdev of interface id, whose tap has vanished.
func (m *machine) tapGone(idx int, id, tap string) {
	m.log.Errorf("The tap %s of network interface %s is gone; the interface is disconnected.", tap, id)
	if m.env.Metrics != nil {
		m.env.Metrics.Net(id).TapReadFails.Add(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.run(ctx, "netdev_del", map[string]any{"id": fmt.Sprintf("net%d", idx)}, nil); err != nil {
		m.log.Warnf("Cannot detach interface %s from its deleted tap: %s", id, err)
	}
}

// close stops the watch and releases its descriptors; safe on nil.
func (w *tapWatch) close() {
	if w == nil {
		return
	}
	if w.stop >= 0 {
		var one [8]byte
		one[0] = 1
		unix.Write(w.stop, one[:])
	}
	<-w.ended
	for _, f := range w.taps {
		f.Close()
	}
	if w.stop >= 0 {
		unix.Close(w.stop)
	}
}
