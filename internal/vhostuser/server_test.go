package vhostuser

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/virtio"
)

// fakeDevice is a one- or two-queue device that completes every chain
// with its readable length and counts what the transport does.
type fakeDevice struct {
	queues int
	mu     sync.Mutex
	act    *virtio.Activation
	w      *virtio.Worker
	cfg    [16]byte
	acts   int
	resets int
	done   chan uint16 // heads completed
}

func newFakeDevice(queues int) *fakeDevice {
	d := &fakeDevice{queues: queues, done: make(chan uint16, 64)}
	copy(d.cfg[:], "ember-config-sp")
	return d
}

func (d *fakeDevice) Type() virtio.DeviceType { return virtio.TypeRng }
func (d *fakeDevice) Features() uint64 {
	return virtio.Bit(virtio.FeatureVersion1) | virtio.Bit(virtio.FeatureRingEventIdx)
}
func (d *fakeDevice) QueueMaxSizes() []uint16 {
	s := make([]uint16, d.queues)
	for i := range s {
		s[i] = virtio.MaxQueueSize
	}
	return s
}
func (d *fakeDevice) ReadConfig(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(data)
	if off < uint64(len(d.cfg)) {
		copy(data, d.cfg[off:])
	}
}
func (d *fakeDevice) WriteConfig(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < uint64(len(d.cfg)) {
		copy(d.cfg[off:], data)
	}
}
func (d *fakeDevice) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.act != nil {
		return errors.New("already active")
	}
	d.act = &a
	d.acts++
	d.w = virtio.StartWorker(func(bits uint64) {
		for q, vq := range a.Queues {
			if vq == nil || bits&(1<<q) == 0 {
				continue
			}
			var c virtio.Chain
			for {
				ok, err := vq.Next(&c)
				if err != nil {
					a.Transport.NeedsReset(err)
					return
				}
				if !ok {
					break
				}
				vq.Push(c.Head, uint32(c.OutLen))
				d.done <- c.Head
			}
			if vq.NeedsSignal() {
				a.Transport.SignalUsed(q)
			}
		}
	})
	return nil
}
func (d *fakeDevice) Notify(q int) {
	d.mu.Lock()
	w := d.w
	d.mu.Unlock()
	if w != nil {
		w.Notify(q)
	}
}
func (d *fakeDevice) Reset() error {
	d.mu.Lock()
	w := d.w
	d.w, d.act = nil, nil
	d.resets++
	d.mu.Unlock()
	if w != nil {
		w.Stop()
	}
	return nil
}

func (d *fakeDevice) activation() *virtio.Activation {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.act
}

// client is a fake front-end on the other end of a socketpair.
type client struct {
	t    *testing.T
	c    *net.UnixConn
	errc chan error
	srv  *Server
}

func startServer(t *testing.T, dev virtio.Device) *client {
	t.Helper()
	return startServerOpts(t, dev, Options{})
}

func startServerOpts(t *testing.T, dev virtio.Device, opts Options) *client {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "sock")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	cl := &client{t: t, c: conn(fds[0]), errc: make(chan error, 1), srv: NewServer(dev, opts)}
	sc := conn(fds[1])
	go func() { cl.errc <- cl.srv.Serve(context.Background(), sc) }()
	t.Cleanup(func() {
		cl.c.Close()
		select {
		case <-cl.errc:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after the client closed")
		}
	})
	return cl
}

func rawMsg(req Request, flags uint32, body []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(req))
	b = binary.LittleEndian.AppendUint32(b, flags)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

func (cl *client) sendRaw(b []byte, fds ...int) {
	cl.t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := cl.c.WriteMsgUnix(b, oob, nil); err != nil {
		cl.t.Fatalf("send: %v", err)
	}
}

func (cl *client) send(req Request, body []byte, fds ...int) {
	cl.t.Helper()
	cl.sendRaw(rawMsg(req, version, body), fds...)
}

// call sends a request and reads its reply body.
func (cl *client) call(req Request, flags uint32, body []byte, fds ...int) []byte {
	cl.t.Helper()
	cl.sendRaw(rawMsg(req, version|flags, body), fds...)
	cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [headerSize]byte
	if _, err := io.ReadFull(cl.c, hdr[:]); err != nil {
		cl.t.Fatalf("%v: reading reply: %v", req, err)
	}
	if got := Request(binary.LittleEndian.Uint32(hdr[:])); got != req {
		cl.t.Fatalf("reply to %v is for %v", req, got)
	}
	if f := binary.LittleEndian.Uint32(hdr[4:]); f != version|flagReply {
		cl.t.Fatalf("reply flags %#x", f)
	}
	body = make([]byte, binary.LittleEndian.Uint32(hdr[8:]))
	if _, err := io.ReadFull(cl.c, body); err != nil {
		cl.t.Fatalf("%v: reading reply body: %v", req, err)
	}
	return body
}

func (cl *client) u64(req Request) uint64 {
	cl.t.Helper()
	b := cl.call(req, 0, nil)
	if len(b) != 8 {
		cl.t.Fatalf("%v: %d-byte reply", req, len(b))
	}
	return binary.LittleEndian.Uint64(b)
}

// serveErr waits for Serve to end and returns its error.
func (cl *client) serveErr() error {
	cl.t.Helper()
	select {
	case err := <-cl.errc:
		cl.errc <- err // for the cleanup
		return err
	case <-time.After(5 * time.Second):
		cl.t.Fatal("Serve did not end")
		return nil
	}
}

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func state(i, n uint32) []byte { return stateBody(i, n) }

func eventfd(t *testing.T) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func TestHandshake(t *testing.T) {
	dev := newFakeDevice(2)
	cl := startServer(t, dev)
	cl.send(ReqSetOwner, nil)
	f := cl.u64(ReqGetFeatures)
	if want := dev.Features() | virtio.Bit(FeatureProtocolFeatures) | virtio.Bit(FeatureLogAll); f != want {
		t.Errorf("GET_FEATURES = %#x, want %#x", f, want)
	}
	p := cl.u64(ReqGetProtocolFeatures)
	if p&(1<<ProtoConfig) == 0 || p&(1<<ProtoReplyAck) == 0 {
		t.Errorf("GET_PROTOCOL_FEATURES = %#x lacks CONFIG or REPLY_ACK", p)
	}
	cl.send(ReqSetProtocolFeatures, u64(p))
	if n := cl.u64(ReqGetQueueNum); n != 2 {
		t.Errorf("GET_QUEUE_NUM = %d, want 2", n)
	}
	got := cl.call(ReqGetConfig, 0, configBody(config{Offset: 6, Size: 12}, make([]byte, 12)))
	if want := configBody(config{Offset: 6, Size: 12}, []byte("config-sp\x00\x00\x00")); string(got) != string(want) {
		t.Errorf("GET_CONFIG = %q, want %q", got, want)
	}
	// SET_CONFIG then GET_CONFIG, acknowledged.
	if r := cl.call(ReqSetConfig, flagNeedReply, configBody(config{Offset: 0, Size: 5}, []byte("EMBER"))); string(r) != string(u64(0)) {
		t.Errorf("SET_CONFIG ack = %x", r)
	}
	got = cl.call(ReqGetConfig, 0, configBody(config{Size: 6}, make([]byte, 6)))
	if string(got[configHdrSize:]) != "EMBER-" {
		t.Errorf("config after SET_CONFIG = %q", got[configHdrSize:])
	}
	if st := cl.u64(ReqGetStatus); st != 0 {
		t.Errorf("GET_STATUS = %#x", st)
	}
	// A failing request with REPLY_ACK gets a failure code and the
	// connection stays up.
	if r := cl.call(ReqSetVringNum, flagNeedReply, state(0, 3000)); string(r) != string(u64(1)) {
		t.Errorf("failing SET_VRING_NUM ack = %x, want 1", r)
	}
	if f2 := cl.u64(ReqGetFeatures); f2 != f {
		t.Errorf("GET_FEATURES after a failure = %#x", f2)
	}
}

// guestRAM is a memfd the test plays guest with: 1 MiB at GPA 0x100000,
// which the "front-end" has at a different virtual address.
type guestRAM struct {
	fd  int
	mem []byte
}

const (
	ramGPA  = 0x100000
	ramSize = 1 << 20
	ramUA   = 0x7f0000000000 // the front-end's address of ramGPA
	ramOff  = 0x1000         // mmap_offset: the region starts this far into the fd
)

func newGuestRAM(t *testing.T) *guestRAM {
	t.Helper()
	fd, err := unix.MemfdCreate("test-ram", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, ramOff+ramSize); err != nil {
		t.Fatal(err)
	}
	b, err := unix.Mmap(fd, 0, ramOff+ramSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b); unix.Close(fd) })
	return &guestRAM{fd: fd, mem: b[ramOff:]}
}

func (g *guestRAM) at(gpa uint64) []byte { return g.mem[gpa-ramGPA:] }

func memTable(regions ...memRegion) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(regions)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	for _, r := range regions {
		for _, v := range []uint64{r.GPA, r.Size, r.UserAddr, r.MmapOffset} {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

func vringAddrBody(index uint32, desc, used, avail uint64) []byte {
	b := binary.LittleEndian.AppendUint32(nil, index)
	b = binary.LittleEndian.AppendUint32(b, 0)
	for _, v := range []uint64{desc, used, avail, 0} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

// Ring layout in guest RAM for queue 0 (size 8).
const (
	qSize    = 8
	descGPA  = ramGPA + 0x1000
	availGPA = ramGPA + 0x2000
	usedGPA  = ramGPA + 0x3000
	bufGPA   = ramGPA + 0x10000
)

func ua(gpa uint64) uint64 { return gpa - ramGPA + ramUA }

// publish makes descriptor head (a single readable buffer of n bytes)
// available as avail entry idx.
func (g *guestRAM) publish(idx uint16, head uint16, n uint32) {
	d := g.at(descGPA + 16*uint64(head))
	binary.LittleEndian.PutUint64(d, bufGPA)
	binary.LittleEndian.PutUint32(d[8:], n)
	binary.LittleEndian.PutUint16(d[12:], 0)
	binary.LittleEndian.PutUint16(g.at(availGPA+4+2*uint64(idx%qSize)), head)
	// used_event: interrupt once the device has used this one too.
	binary.LittleEndian.PutUint16(g.at(availGPA+4+2*qSize), idx)
	binary.LittleEndian.PutUint16(g.at(availGPA+2), idx+1)
}

func readEventfd(t *testing.T, fd int) uint64 {
	t.Helper()
	var b [8]byte
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := unix.Read(fd, b[:])
		if err == nil {
			return binary.LittleEndian.Uint64(b[:])
		}
		if err != unix.EAGAIN || time.Now().After(deadline) {
			t.Fatalf("eventfd: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

func kick(t *testing.T, fd int) {
	t.Helper()
	if _, err := unix.Write(fd, u64(1)); err != nil {
		t.Fatal(err)
	}
}

func TestQueueRoundTrip(t *testing.T) {
	for _, status := range []bool{true, false} {
		name := "without-status"
		if status {
			name = "with-status"
		}
		t.Run(name, func(t *testing.T) {
			dev := newFakeDevice(1)
			cl := startServer(t, dev)
			g := newGuestRAM(t)
			proto := uint64(1<<ProtoReplyAck | 1<<ProtoConfig)
			if status {
				proto |= 1 << ProtoStatus
			}
			cl.u64(ReqGetFeatures)
			cl.send(ReqSetProtocolFeatures, u64(proto))
			feat := dev.Features() | virtio.Bit(FeatureProtocolFeatures)
			cl.send(ReqSetFeatures, u64(feat))
			ack := func(req Request, body []byte, fds ...int) {
				t.Helper()
				if r := cl.call(req, flagNeedReply, body, fds...); string(r) != string(u64(0)) {
					t.Fatalf("%v failed: %x", req, r)
				}
			}
			ack(ReqSetMemTable, memTable(memRegion{GPA: ramGPA, Size: ramSize, UserAddr: ramUA, MmapOffset: ramOff}), g.fd)
			ack(ReqSetVringNum, state(0, qSize))
			ack(ReqSetVringBase, state(0, 0))
			ack(ReqSetVringAddr, vringAddrBody(0, ua(descGPA), ua(usedGPA), ua(availGPA)))
			kfd, cfd := eventfd(t), eventfd(t)
			ack(ReqSetVringCall, u64(0), cfd)
			// A request published before the device runs is found at activation.
			g.publish(0, 3, 100)
			ack(ReqSetVringKick, u64(0), kfd)
			ack(ReqSetVringEnable, state(0, 1))
			if status {
				if dev.activation() != nil {
					t.Fatal("activated before DRIVER_OK")
				}
				ack(ReqSetStatus, u64(uint64(virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)))
			}
			a := dev.activation()
			if a == nil {
				t.Fatal("device not activated")
			}
			q := a.Queues[0]
			if q.DescTable != descGPA || q.AvailRing != availGPA || q.UsedRing != usedGPA || q.Size != qSize {
				t.Errorf("queue %#x/%#x/%#x size %d, want guest-physical %#x/%#x/%#x size %d",
					q.DescTable, q.AvailRing, q.UsedRing, q.Size, descGPA, availGPA, usedGPA, qSize)
			}
			if a.Features != dev.Features() {
				t.Errorf("activation features %#x, want %#x", a.Features, dev.Features())
			}
			for i, head := range []uint16{3, 5, 1} {
				if i > 0 {
					g.publish(uint16(i), head, 100+uint32(i))
					kick(t, kfd)
				}
				select {
				case got := <-dev.done:
					if got != head {
						t.Fatalf("device completed %d, want %d", got, head)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("request %d never completed", i)
				}
				readEventfd(t, cfd)
				if id := binary.LittleEndian.Uint32(g.at(usedGPA + 4 + 8*uint64(i))); id != uint32(head) {
					t.Errorf("used[%d].id = %d, want %d", i, id, head)
				}
				if idx := binary.LittleEndian.Uint16(g.at(usedGPA + 2)); idx != uint16(i+1) {
					t.Errorf("used.idx = %d, want %d", idx, i+1)
				}
			}
			// QEMU turns dirty logging on and off on a running device for a
			// migration: the device keeps running and never sees the bit.
			if r := cl.call(ReqSetLogBase, 0, append(u64(4096), u64(0)...), eventfd(t)); string(r) != string(u64(0)) {
				t.Fatalf("SET_LOG_BASE reply %x", r)
			}
			ack(ReqSetFeatures, u64(feat|virtio.Bit(FeatureLogAll)))
			ack(ReqSetFeatures, u64(feat))
			if a2 := dev.activation(); a2 == nil || dev.acts != 1 || a2.Features != dev.Features() {
				t.Fatalf("toggling LOG_ALL: activations %d, features %v", dev.acts, a2)
			}
			// Published but not kicked, and the device is stopped: the base
			// says where it stopped, counting what it never took.
			g.publish(3, 6, 1)
			g.publish(4, 7, 1)
			time.Sleep(20 * time.Millisecond)
			b := cl.call(ReqGetVringBase, 0, state(0, 0))
			if got := binary.LittleEndian.Uint32(b[4:]); got < 3 || got > 5 {
				t.Errorf("GET_VRING_BASE = %d, want 3..5", got)
			}
			if dev.activation() != nil || dev.resets == 0 {
				t.Error("GET_VRING_BASE left the device running")
			}
			// Restarting at that base takes the requests left behind, and
			// the used ring continues where it stopped.
			base := binary.LittleEndian.Uint32(b[4:])
			ack(ReqSetVringBase, state(0, base))
			kfd2 := eventfd(t)
			ack(ReqSetVringKick, u64(0), kfd2)
			if status {
				ack(ReqSetStatus, u64(uint64(virtio.StatusDriverOK)))
			}
			if dev.activation() == nil || dev.acts != 2 {
				t.Fatalf("no second activation (%d)", dev.acts)
			}
			kick(t, kfd2)
			for i := base; i < 5; i++ {
				select {
				case got := <-dev.done:
					if want := []uint16{3, 5, 1, 6, 7}[i]; got != want {
						t.Fatalf("after restart the device completed %d, want %d", got, want)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("request %d never completed after restart at %d", i, base)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for binary.LittleEndian.Uint16(g.at(usedGPA+2)) != 5 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if idx := binary.LittleEndian.Uint16(g.at(usedGPA + 2)); idx != 5 {
				t.Errorf("used.idx = %d after restart, want 5", idx)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	hdr := func(req Request, flags, size uint32) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(req))
		b = binary.LittleEndian.AppendUint32(b, flags)
		return binary.LittleEndian.AppendUint32(b, size)
	}
	cases := []struct {
		name string
		msg  []byte
		fds  int
		want error
	}{
		{"version 0", hdr(ReqGetFeatures, 0, 0), 0, ErrMalformed},
		{"version 2", hdr(ReqGetFeatures, 2, 0), 0, ErrMalformed},
		{"reply flag", hdr(ReqGetFeatures, version|flagReply, 0), 0, ErrMalformed},
		{"huge size", hdr(ReqSetFeatures, version, 1<<31), 0, ErrMalformed},
		{"short body then EOF", append(hdr(ReqSetFeatures, version, 8), 1, 2, 3), 0, ErrMalformed},
		{"header cut", hdr(ReqGetFeatures, version, 0)[:7], 0, ErrMalformed},
		{"unknown request", hdr(99, version, 0), 0, ErrUnknownRequest},
		{"log base without its fd", rawMsg(ReqSetLogBase, version, make([]byte, 16)), 0, ErrMalformed},
		{"log base too short", rawMsg(ReqSetLogBase, version, make([]byte, 8)), 1, ErrMalformed},
		{"log fd", rawMsg(ReqSetLogFd, version, nil), 1, ErrUnknownRequest},
		{"u64 too long", rawMsg(ReqSetFeatures, version, make([]byte, 9)), 0, ErrMalformed},
		{"u64 too short", rawMsg(ReqSetFeatures, version, make([]byte, 4)), 0, ErrMalformed},
		{"owner with body", rawMsg(ReqSetOwner, version, make([]byte, 8)), 0, ErrMalformed},
		{"fd where none is taken", rawMsg(ReqGetFeatures, version, nil), 1, ErrMalformed},
		{"too many fds", rawMsg(ReqSetMemTable, version, memTable(make([]memRegion, 9)...)), 9, ErrMalformed},
		{"no regions", rawMsg(ReqSetMemTable, version, memTable()), 0, ErrMalformed},
		{"region without fd", rawMsg(ReqSetMemTable, version, memTable(memRegion{GPA: 0, Size: 4096})), 0, ErrMalformed},
		{"empty region", rawMsg(ReqSetMemTable, version, memTable(memRegion{GPA: 0, Size: 0})), 1, ErrMalformed},
		{"wrapping region", rawMsg(ReqSetMemTable, version, memTable(memRegion{GPA: ^uint64(0) - 10, Size: 4096})), 1, ErrMalformed},
		{"region count lies", rawMsg(ReqSetMemTable, version, memTable(memRegion{Size: 1})[:20]), 1, ErrMalformed},
		{"kick without fd", rawMsg(ReqSetVringKick, version, u64(0)), 0, ErrMalformed},
		{"kick nofd with fd", rawMsg(ReqSetVringKick, version, u64(vringNoFd)), 1, ErrMalformed},
		{"kick unknown bits", rawMsg(ReqSetVringKick, version, u64(1<<20)), 1, ErrMalformed},
		{"kick queue out of range", rawMsg(ReqSetVringKick, version, u64(5)), 1, ErrProtocol},
		{"vring index huge", rawMsg(ReqSetVringNum, version, state(1000, 8)), 0, ErrMalformed},
		{"vring num too big", rawMsg(ReqSetVringNum, version, state(0, 4096)), 0, ErrProtocol},
		{"vring addr before mem", rawMsg(ReqSetVringAddr, version, vringAddrBody(0, 0, 0, 0)), 0, ErrProtocol},
		{"config too big", rawMsg(ReqGetConfig, version, configBody(config{Size: 300}, make([]byte, 300))), 0, ErrMalformed},
		{"config size lies", rawMsg(ReqSetConfig, version, append(stateBody(0, 8), 0, 0, 0, 0, 1, 2, 3, 4)), 0, ErrMalformed},
		{"config offset wraps", rawMsg(ReqGetConfig, version, configBody(config{Offset: ^uint32(0), Size: 4}, make([]byte, 4))), 0, ErrMalformed},
		{"config without the feature", rawMsg(ReqGetConfig, version, configBody(config{Size: 4}, make([]byte, 4))), 0, ErrProtocol},
		{"features not offered", rawMsg(ReqSetFeatures, version, u64(1<<40)), 0, ErrProtocol},
		{"protocol features not offered", rawMsg(ReqSetProtocolFeatures, version, u64(1<<2)), 0, ErrProtocol},
		{"status too big", rawMsg(ReqSetStatus, version, u64(0x100)), 0, ErrProtocol},
		{"backend fd missing", rawMsg(ReqSetBackendReqFd, version, nil), 0, ErrMalformed},
		{"backend fd not a socket", rawMsg(ReqSetBackendReqFd, version, nil), 1, ErrProtocol},
	}
	before := countFds(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := startServer(t, newFakeDevice(1))
			var fds []int
			for range tc.fds {
				fds = append(fds, eventfd(t))
			}
			cl.sendRaw(tc.msg, fds...)
			if tc.name == "short body then EOF" || tc.name == "header cut" {
				cl.c.CloseWrite()
			}
			err := cl.serveErr()
			if !errors.Is(err, tc.want) {
				t.Errorf("Serve = %v, want %v", err, tc.want)
			}
		})
	}
	// Every fd the server received was closed (the test's own are closed
	// by their cleanups, which have run).
	if after := countFds(t); after > before {
		t.Errorf("%d file descriptors leaked", after-before)
	}
}

func countFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestMemoryBounds checks the virtio.Memory over mapped regions.
func TestMemoryBounds(t *testing.T) {
	g := newGuestRAM(t)
	m, err := mapMemory([]memRegion{{GPA: ramGPA, Size: ramSize, UserAddr: ramUA, MmapOffset: ramOff}}, []int{g.fd})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	copy(g.at(ramGPA+8), "hello")
	p := make([]byte, 5)
	if err := m.ReadAt(p, ramGPA+8); err != nil || string(p) != "hello" {
		t.Errorf("ReadAt = %q, %v", p, err)
	}
	if err := m.WriteAt([]byte("xy"), ramGPA+ramSize-1); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("WriteAt across the end = %v", err)
	}
	if g.at(ramGPA + ramSize - 1)[0] != 0 {
		t.Error("a refused write wrote")
	}
	if _, err := m.Slice(ramGPA-1, 2); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("Slice before RAM = %v", err)
	}
	if _, err := m.Slice(ramGPA, ^uint64(0)); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("huge Slice = %v", err)
	}
	if err := m.ReadAt(p, ^uint64(0)-2); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("wrapping ReadAt = %v", err)
	}
	if _, err := m.Load16(ramGPA + 1); !errors.Is(err, ErrMisaligned) {
		t.Errorf("misaligned Load16 = %v", err)
	}
	if err := m.Store16(ramGPA+2, 0xbeef); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Load32(ramGPA); v != 0xbeef0000 {
		t.Errorf("Load32 after Store16 = %#x", v)
	}
	if gpa, err := m.ToGPA(ramUA + 0x1234); err != nil || gpa != ramGPA+0x1234 {
		t.Errorf("ToGPA = %#x, %v", gpa, err)
	}
	if _, err := m.ToGPA(ramUA + ramSize); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("ToGPA past the region = %v", err)
	}
	if _, err := mapMemory([]memRegion{{GPA: 0, Size: 8192}, {GPA: 4096, Size: 8192}}, []int{g.fd, g.fd}); !errors.Is(err, ErrProtocol) {
		t.Errorf("overlapping regions = %v", err)
	}
}

func TestConfigChange(t *testing.T) {
	dev := newFakeDevice(1)
	cl := startServer(t, dev)
	tr := &transport{s: cl.srv}
	if err := tr.ChangeConfig(func() {}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("ChangeConfig without a backend channel = %v", err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[0])
	cl.send(ReqSetProtocolFeatures, u64(1<<ProtoBackendReq|1<<ProtoConfig|1<<ProtoReplyAck))
	r := cl.call(ReqSetBackendReqFd, flagNeedReply, nil, pair[1])
	unix.Close(pair[1])
	if string(r) != string(u64(0)) {
		t.Fatalf("SET_BACKEND_REQ_FD ack = %x", r)
	}
	if err := tr.ChangeConfig(func() {
		dev.mu.Lock()
		copy(dev.cfg[:], "NEW")
		dev.mu.Unlock()
	}); err != nil {
		t.Fatalf("ChangeConfig: %v", err)
	}
	var msg [headerSize]byte
	unix.SetNonblock(pair[0], false)
	if n, err := unix.Read(pair[0], msg[:]); err != nil || n != headerSize {
		t.Fatalf("backend channel read %d, %v", n, err)
	}
	if want := rawMsg(Request(backendConfigChange), version, nil); string(msg[:]) != string(want) {
		t.Errorf("backend message %x, want %x", msg, want)
	}
	got := cl.call(ReqGetConfig, 0, configBody(config{Size: 5}, make([]byte, 5)))
	if string(got[configHdrSize:]) != "NEWer" {
		t.Errorf("config after the change = %q", got[configHdrSize:])
	}
}

// suspendDevice is a fakeDevice that keeps its state across a stop of its
// queues.
type suspendDevice struct {
	*fakeDevice
	suspends, resumes int
}

func (d *suspendDevice) Suspend() error {
	d.mu.Lock()
	w := d.w
	d.w, d.act = nil, nil
	d.suspends++
	d.mu.Unlock()
	if w == nil {
		return errors.New("not active")
	}
	w.Stop()
	return nil
}

// The counters, read under the device's lock: the server changes them
// from its own goroutine.
func (d *suspendDevice) nSuspends() int { d.mu.Lock(); defer d.mu.Unlock(); return d.suspends }
func (d *suspendDevice) nResumes() int  { d.mu.Lock(); defer d.mu.Unlock(); return d.resumes }
func (d *suspendDevice) nActs() int     { d.mu.Lock(); defer d.mu.Unlock(); return d.acts }
func (d *suspendDevice) nResets() int   { d.mu.Lock(); defer d.mu.Unlock(); return d.resets }

func (d *suspendDevice) Resume(a virtio.Activation) error {
	if err := d.fakeDevice.Activate(a); err != nil {
		return err
	}
	d.mu.Lock()
	d.acts-- // a resume, not an activation
	d.resumes++
	d.mu.Unlock()
	return nil
}

// TestSuspender: a device with Suspend/Resume is suspended, not reset,
// when the front-end stops its queues, resumed when they restart where
// they stopped (a VM resumed), reset and activated afresh when they
// restart anywhere else (a driver reset), and reset when the front-end
// hangs up.
func TestSuspender(t *testing.T) {
	for _, status := range []bool{false, true} {
		t.Run(fmt.Sprintf("status=%v", status), func(t *testing.T) {
			dev := &suspendDevice{fakeDevice: newFakeDevice(1)}
			cl := startServer(t, dev)
			g := newGuestRAM(t)
			proto := uint64(1 << ProtoReplyAck)
			if status {
				proto |= 1 << ProtoStatus
			}
			cl.send(ReqSetProtocolFeatures, u64(proto))
			cl.send(ReqSetFeatures, u64(dev.Features()|virtio.Bit(FeatureProtocolFeatures)))
			ack := func(req Request, body []byte, fds ...int) {
				t.Helper()
				if r := cl.call(req, flagNeedReply, body, fds...); string(r) != string(u64(0)) {
					t.Fatalf("%v failed: %x", req, r)
				}
			}
			ack(ReqSetMemTable, memTable(memRegion{GPA: ramGPA, Size: ramSize, UserAddr: ramUA, MmapOffset: ramOff}), g.fd)
			start := func(base uint32) int {
				t.Helper()
				ack(ReqSetVringNum, state(0, qSize))
				ack(ReqSetVringBase, state(0, base))
				ack(ReqSetVringAddr, vringAddrBody(0, ua(descGPA), ua(usedGPA), ua(availGPA)))
				kfd := eventfd(t)
				ack(ReqSetVringKick, u64(0), kfd)
				if status {
					ack(ReqSetStatus, u64(uint64(virtio.StatusDriverOK)))
				}
				return kfd
			}
			stop := func() uint32 {
				t.Helper()
				if status {
					ack(ReqSetStatus, u64(0))
				}
				b := cl.call(ReqGetVringBase, 0, state(0, 0))
				return binary.LittleEndian.Uint32(b[4:])
			}
			complete := func(kfd int, want uint16) {
				t.Helper()
				kick(t, kfd)
				select {
				case got := <-dev.done:
					if got != want {
						t.Fatalf("completed %d, want %d", got, want)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("request %d never completed", want)
				}
			}
			kfd := start(0)
			g.publish(0, 3, 10)
			complete(kfd, 3)
			base := stop()
			if base != 1 || dev.nSuspends() != 1 || dev.nResets() != 0 {
				t.Fatalf("after stop: base %d, %d suspends, %d resets", base, dev.nSuspends(), dev.nResets())
			}
			kfd = start(base)
			if dev.nResumes() != 1 || dev.nActs() != 1 || dev.nResets() != 0 {
				t.Fatalf("restart where stopped: %d resumes, %d activations, %d resets", dev.nResumes(), dev.nActs(), dev.nResets())
			}
			g.publish(1, 5, 10)
			complete(kfd, 5)
			// A restart from 0 is a new driver: the old state must go.
			stop()
			start(0)
			if dev.nResumes() != 1 || dev.nActs() != 2 || dev.nResets() != 1 {
				t.Fatalf("restart anew: %d resumes, %d activations, %d resets", dev.nResumes(), dev.nActs(), dev.nResets())
			}
			// Suspended when the front-end hangs up: reset.
			stop()
			cl.c.Close()
			if err := cl.serveErr(); err != nil {
				t.Fatal(err)
			}
			if dev.nResets() != 2 {
				t.Fatalf("hang-up while suspended: %d resets, want 2", dev.nResets())
			}
		})
	}
}

// TestWithhold: a withheld protocol feature is neither offered nor
// accepted.
func TestWithhold(t *testing.T) {
	dev := newFakeDevice(1)
	cl := startServerOpts(t, dev, Options{Withhold: 1 << ProtoStatus})
	p := cl.u64(ReqGetProtocolFeatures)
	if p&(1<<ProtoStatus) != 0 || p&(1<<ProtoConfig) == 0 {
		t.Fatalf("GET_PROTOCOL_FEATURES = %#x, want CONFIG without STATUS", p)
	}
	cl.send(ReqSetProtocolFeatures, u64(p|1<<ProtoStatus))
	if err := cl.serveErr(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("STATUS accepted though not offered: %v", err)
	}
}

// TestKickWhileRestarting: without STATUS, a kick that comes while the
// queues are being restarted one by one (QEMU after a pause) waits for the
// last queue, so a suspended device is resumed, not reset.
func TestKickWhileRestarting(t *testing.T) {
	dev := &suspendDevice{fakeDevice: newFakeDevice(2)}
	cl := startServer(t, dev)
	g := newGuestRAM(t)
	cl.send(ReqSetProtocolFeatures, u64(1<<ProtoReplyAck))
	cl.send(ReqSetFeatures, u64(dev.Features()|virtio.Bit(FeatureProtocolFeatures)))
	ack := func(req Request, body []byte, fds ...int) {
		t.Helper()
		if r := cl.call(req, flagNeedReply, body, fds...); string(r) != string(u64(0)) {
			t.Fatalf("%v failed: %x", req, r)
		}
	}
	ack(ReqSetMemTable, memTable(memRegion{GPA: ramGPA, Size: ramSize, UserAddr: ramUA, MmapOffset: ramOff}), g.fd)
	start := func(q uint32, base uint32) int {
		ack(ReqSetVringNum, state(q, qSize))
		ack(ReqSetVringBase, state(q, base))
		// Both queues share the rings: the fake device only needs them valid.
		ack(ReqSetVringAddr, vringAddrBody(q, ua(descGPA), ua(usedGPA), ua(availGPA)))
		kfd := eventfd(t)
		ack(ReqSetVringKick, u64(uint64(q)), kfd)
		return kfd
	}
	start(0, 0)
	start(1, 0)
	if dev.nActs() != 1 {
		t.Fatalf("%d activations once both queues started", dev.nActs())
	}
	cl.call(ReqGetVringBase, 0, state(0, 0))
	cl.call(ReqGetVringBase, 0, state(1, 0))
	kfd := start(0, 0)
	kick(t, kfd)
	time.Sleep(50 * time.Millisecond)
	if dev.activation() != nil || dev.nResets() != 0 || dev.nResumes() != 0 {
		t.Fatalf("a kick with queue 1 still stopped: active %v, %d resets, %d resumes", dev.activation() != nil, dev.nResets(), dev.nResumes())
	}
	start(1, 0)
	if dev.nResumes() != 1 || dev.nResets() != 0 || dev.nActs() != 1 {
		t.Fatalf("after queue 1 restarted: %d resumes, %d resets, %d activations", dev.nResumes(), dev.nResets(), dev.nActs())
	}
}
