package net

import (
	"bytes"
	"encoding/binary"
	"errors"
	gonet "net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/tap"
	"github.com/ember-vmm/ember/internal/virtio"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

const memSize = 16 << 20

var mac = gonet.HardwareAddr{6, 0, 0, 0, 0, 1}

// pair returns the device's end of a datagram socket pair standing in for
// a tap (one datagram per frame, vnet header included) and the peer's end.
func pair(t testing.TB) (*os.File, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	peer := os.NewFile(uintptr(fds[1]), "peer")
	t.Cleanup(func() { peer.Close() })
	return os.NewFile(uintptr(fds[0]), "tap"), peer
}

// frame builds a vnet header (zeros) followed by an Ethernet frame from
// src with n payload bytes.
func frame(src gonet.HardwareAddr, n int) []byte {
	f := make([]byte, VnetHdrSize+14+n)
	copy(f[VnetHdrSize:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[VnetHdrSize+6:], src)
	for i := VnetHdrSize + 14; i < len(f); i++ {
		f[i] = byte(i)
	}
	return f
}

func recvFrame(t *testing.T, peer *os.File) []byte {
	t.Helper()
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, MaxFrameSize+100)
	n, err := peer.Read(b)
	if err != nil {
		t.Fatalf("peer read: %v", err)
	}
	return b[:n]
}

type rig struct {
	d    *Device
	peer *os.File
	rx   *vt.VQ
	tx   *vt.VQ
	tr   *vt.Transport
	offl atomic.Uint32
}

func start(t *testing.T, cfg Config, features uint64) *rig {
	t.Helper()
	mem := vt.NewMemory(t, memSize)
	alloc := vt.NewAllocator(0x1000, memSize)
	f, peer := pair(t)
	r := &rig{peer: peer, tr: vt.NewTransport()}
	cfg.SetOffload = func(flags uint32) error { r.offl.Store(flags | 1<<31); return nil }
	d, err := New(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	r.d = d
	r.rx = vt.NewVQ(mem, alloc, 16)
	r.tx = vt.NewVQ(mem, alloc, 16)
	qs := []*virtio.Queue{r.rx.Queue(256), r.tx.Queue(256)}
	eventIdx := features&virtio.Bit(virtio.FeatureRingEventIdx) != 0
	for _, q := range qs {
		if err := q.Activate(mem, eventIdx); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Activate(virtio.Activation{Mem: mem, Queues: qs, Features: features, Transport: r.tr}); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestTx(t *testing.T) {
	r := start(t, Config{MAC: mac}, 0)
	f := frame(mac, 1000)
	// Header and frame in separate buffers, the frame itself split too.
	r.tx.Add(vt.R(f[:VnetHdrSize]), vt.R(f[VnetHdrSize:300]), vt.R(f[300:]))
	r.d.Notify(TxQueue)
	if got := recvFrame(t, r.peer); !bytes.Equal(got, f) {
		t.Fatalf("tap got %d bytes, want the %d-byte frame", len(got), len(f))
	}
	if u := r.tx.WaitUsed(t, 1, 5*time.Second); u[0].Len != 0 {
		t.Fatalf("TX used len %d, want 0", u[0].Len)
	}
	vt.Wait(t, time.Second, "TX interrupt", func() bool { return r.tr.UsedSignals(TxQueue) == 1 })

	// A frame from another MAC is sent but counted; a runt is dropped.
	r.tx.Add(vt.R(frame(gonet.HardwareAddr{2, 2, 2, 2, 2, 2}, 10)))
	r.tx.Add(vt.R(make([]byte, 5)))
	r.d.Notify(TxQueue)
	recvFrame(t, r.peer)
	r.tx.WaitUsed(t, 2, 5*time.Second)
	s := r.d.Stats()
	if s.TxPackets != 2 || s.TxBytes != uint64(len(f)+len(frame(mac, 10))) || s.TxSpoofedMAC != 1 || s.TxDropped != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRxSingleBuffer(t *testing.T) {
	r := start(t, Config{}, 0)
	for range 4 {
		r.rx.Add(vt.W(1526))
	}
	r.d.Notify(RxQueue)
	want := frame(mac, 100)
	want[10] = 0x55 // num_buffers from the tap is overwritten
	r.peer.Write(want)
	u := r.rx.WaitUsed(t, 1, 5*time.Second)
	if u[0].Len != uint32(len(want)) {
		t.Fatalf("used len %d, want %d", u[0].Len, len(want))
	}
	got := r.rx.Read(r.rx.Chains[uint16(u[0].ID)][0], len(want))
	if binary.LittleEndian.Uint16(got[10:]) != 1 {
		t.Fatalf("num_buffers %d, want 1", binary.LittleEndian.Uint16(got[10:]))
	}
	if !bytes.Equal(got[12:], want[12:]) {
		t.Fatal("frame corrupted")
	}
	vt.Wait(t, time.Second, "RX interrupt", func() bool { return r.tr.UsedSignals(RxQueue) >= 1 })
	// Without MRG_RXBUF a frame larger than one buffer is dropped.
	r.peer.Write(frame(mac, 2000))
	r.peer.Write(frame(mac, 20))
	u = r.rx.WaitUsed(t, 2, 5*time.Second)
	if u[0].Len != 0 || u[1].Len != uint32(len(frame(mac, 20))) {
		t.Fatalf("used %+v", u)
	}
	if s := r.d.Stats(); s.RxPackets != 2 || s.RxDropped != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRxMergeable(t *testing.T) {
	r := start(t, Config{}, virtio.Bit(FeatureMrgRxbuf)|virtio.Bit(virtio.FeatureRingEventIdx))
	want := frame(mac, 2500-VnetHdrSize-14)
	// The frame arrives before the guest posts buffers: it waits.
	r.peer.Write(want)
	time.Sleep(20 * time.Millisecond)
	if r.rx.UsedIdx() != 0 {
		t.Fatal("delivered without buffers")
	}
	r.rx.Add(vt.W(1000))
	r.d.Notify(RxQueue)
	time.Sleep(20 * time.Millisecond)
	if r.rx.UsedIdx() != 0 {
		t.Fatal("delivered part of a frame")
	}
	r.rx.Add(vt.W(1000))
	r.rx.Add(vt.W(1000))
	r.rx.Add(vt.W(1000))
	r.d.Notify(RxQueue)
	u := r.rx.WaitUsed(t, 3, 5*time.Second)
	if u[0].Len != 1000 || u[1].Len != 1000 || u[2].Len != 500 {
		t.Fatalf("used %+v", u)
	}
	var got []byte
	for _, e := range u {
		got = append(got, r.rx.Read(r.rx.Chains[uint16(e.ID)][0], int(e.Len))...)
	}
	if nb := binary.LittleEndian.Uint16(got[10:]); nb != 3 {
		t.Fatalf("num_buffers %d, want 3", nb)
	}
	if !bytes.Equal(got[12:], want[12:]) {
		t.Fatal("frame corrupted across buffers")
	}
	// One buffer is left: the next big frame makes the device ask for a
	// notification at the driver's next publication.
	r.peer.Write(want)
	vt.Wait(t, 5*time.Second, "avail_event armed", func() bool { return r.rx.AvailEvent() == 4 })
	r.rx.Add(vt.W(1000))
	r.rx.Add(vt.W(1000))
	r.d.Notify(RxQueue)
	if u := r.rx.WaitUsed(t, 3, 5*time.Second); u[2].Len != 500 {
		t.Fatalf("second frame: used %+v", u)
	}
}

func TestRxTooBigForRing(t *testing.T) {
	r := start(t, Config{}, virtio.Bit(FeatureMrgRxbuf))
	for range 16 {
		r.rx.Add(vt.W(64))
	}
	r.d.Notify(RxQueue)
	r.peer.Write(frame(mac, 2000)) // more than 16*64 bytes
	u := r.rx.WaitUsed(t, 16, 5*time.Second)
	for _, e := range u {
		if e.Len != 0 {
			t.Fatalf("dropped frame's buffers returned with %d bytes", e.Len)
		}
	}
	r.rx.Add(vt.W(64))
	r.d.Notify(RxQueue)
	r.peer.Write(frame(mac, 10))
	if u := r.rx.WaitUsed(t, 1, 5*time.Second); u[0].Len != uint32(len(frame(mac, 10))) {
		t.Fatalf("small frame after a drop: %+v", u)
	}
	if s := r.d.Stats(); s.RxDropped != 1 || s.RxPackets != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// mmds is an Interceptor that answers every frame with one reply.
type mmds struct {
	mu      sync.Mutex
	seen    [][]byte
	replies [][]byte
}

func (m *mmds) Intercept(f []byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(f) < 14 || f[12] != 0x08 || f[13] != 0x06 { // ARP only
		return false
	}
	m.seen = append(m.seen, append([]byte(nil), f...))
	m.replies = append(m.replies, []byte("reply-to-"+string(f[14:18])))
	return true
}

func (m *mmds) Receive(buf []byte) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.replies) == 0 {
		return 0
	}
	n := copy(buf, m.replies[0])
	m.replies = m.replies[1:]
	return n
}

func TestInterceptor(t *testing.T) {
	ic := &mmds{}
	r := start(t, Config{Interceptor: ic}, virtio.Bit(FeatureMrgRxbuf))
	r.rx.Add(vt.W(2048))
	r.rx.Add(vt.W(2048))
	r.d.Notify(RxQueue)
	time.Sleep(10 * time.Millisecond) // let RX block on the tap
	arp := frame(mac, 4)
	arp[VnetHdrSize+12], arp[VnetHdrSize+13] = 0x08, 0x06
	copy(arp[VnetHdrSize+14:], "who?")
	r.tx.Add(vt.R(arp))
	r.tx.Add(vt.R(frame(mac, 8))) // not ARP: goes to the tap
	r.d.Notify(TxQueue)
	if got := recvFrame(t, r.peer); len(got) != len(frame(mac, 8)) {
		t.Fatalf("tap got a %d-byte frame", len(got))
	}
	u := r.rx.WaitUsed(t, 1, 5*time.Second)
	got := r.rx.Read(r.rx.Chains[uint16(u[0].ID)][0], int(u[0].Len))
	if string(got[VnetHdrSize:]) != "reply-to-who?" || !bytes.Equal(got[:10], make([]byte, 10)) {
		t.Fatalf("guest got %q", got)
	}
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if len(ic.seen) != 1 {
		t.Fatalf("interceptor saw %d frames", len(ic.seen))
	}
}

func TestConfigSpace(t *testing.T) {
	f, _ := pair(t)
	d, err := New(f, Config{MAC: mac, MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cfg := make([]byte, 16)
	d.ReadConfig(0, cfg)
	want := []byte{6, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0x78, 0x05, 0, 0, 0, 0}
	if !bytes.Equal(cfg, want) {
		t.Fatalf("config %x, want %x", cfg, want)
	}
	d.WriteConfig(0, []byte{9, 9, 9, 9, 9, 9})
	d.ReadConfig(0, cfg)
	if !bytes.Equal(cfg, want) {
		t.Fatal("config written by the driver")
	}
	if fe := d.Features(); fe&virtio.Bit(FeatureMAC) == 0 || fe&virtio.Bit(FeatureMTU) == 0 {
		t.Fatalf("features %#x lack MAC|MTU", fe)
	}
	g, _ := pair(t)
	plain, _ := New(g, Config{})
	defer plain.Close()
	want = []byte{0, 1, 7, 8, 10, 11, 12, 14, 15, 29, 32}
	var bits uint64
	for _, b := range want {
		bits |= 1 << b
	}
	if fe := plain.Features(); fe != bits {
		t.Fatalf("features %#x, want Firecracker's %#x", fe, bits)
	}
	for _, c := range []Config{{MTU: 67}, {MAC: gonet.HardwareAddr{1, 2, 3}}} {
		h, _ := pair(t)
		if _, err := New(h, c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
		h.Close()
	}
	if _, err := New(nil, Config{MTU: 10}); !errors.Is(err, ErrInvalidMTU) {
		t.Fatalf("MTU 10: %v", err)
	}
	// A blocking file cannot be stopped by a deadline: refused.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r.Fd() // makes it blocking
	if _, err := New(r, Config{}); err == nil {
		t.Fatal("accepted a blocking file")
	}
	r.Close()
}

func TestOffloadFlags(t *testing.T) {
	all := OffloadFlags(^uint64(0))
	if all != tap.OffloadCsum|tap.OffloadTSO4|tap.OffloadTSO6|tap.OffloadUFO {
		t.Fatalf("all features give %#x", all)
	}
	if OffloadFlags(virtio.Bit(FeatureCsum)|virtio.Bit(FeatureHostTSO4)) != 0 {
		t.Fatal("host-side features set tap offloads")
	}
}

func TestThroughMMIO(t *testing.T) {
	mem := vt.NewMemory(t, memSize)
	f, peer := pair(t)
	var offl atomic.Uint32
	d, err := New(f, Config{MAC: mac, SetOffload: func(fl uint32) error { offl.Store(fl); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	irq := &vt.Interrupt{}
	tr := mmio.New(d, mem, irq, logger.Discard)
	drv := &vt.MMIODriver{Regs: tr, Mem: mem, Alloc: vt.NewAllocator(0x1000, memSize)}
	// A driver like Linux's: everything but the host offloads.
	want := ^(virtio.Bit(FeatureHostTSO4) | virtio.Bit(FeatureHostTSO6) | virtio.Bit(FeatureHostUFO))
	if s, err := drv.Setup(want, []uint16{256, 256}); err != nil || s != 0xf {
		t.Fatalf("setup %#x %v", s, err)
	}
	if offl.Load() != tap.OffloadCsum|tap.OffloadTSO4|tap.OffloadTSO6|tap.OffloadUFO {
		t.Fatalf("offloads %#x", offl.Load())
	}
	if got := drv.ReadConfig(0, 6); !bytes.Equal(got, mac) {
		t.Fatalf("MAC %x", got)
	}
	rx, tx := drv.VQs[RxQueue], drv.VQs[TxQueue]
	for range 8 {
		rx.Add(vt.W(4096))
	}
	drv.Kick(RxQueue)
	for i := range 50 {
		peer.Write(frame(mac, 100+i))
		tx.Add(vt.R(frame(mac, 200+i)))
		drv.Kick(TxQueue)
		if got := recvFrame(t, peer); len(got) != len(frame(mac, 200+i)) {
			t.Fatalf("tap got %d bytes", len(got))
		}
		u := rx.WaitUsed(t, 1, 5*time.Second)
		if u[0].Len != uint32(len(frame(mac, 100+i))) {
			t.Fatalf("frame %d: used %+v", i, u)
		}
		rx.Add(vt.W(4096))
		drv.Kick(RxQueue)
		tx.WaitUsed(t, 1, 5*time.Second)
	}
	if irq.Count() == 0 {
		t.Fatal("no interrupts")
	}
	// Reset stops both directions promptly, even with RX blocked on the tap.
	done := make(chan struct{})
	go func() { drv.Status(0); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("reset hung")
	}
	// Frames arriving now stay in the tap.
	peer.Write(frame(mac, 1))
	time.Sleep(10 * time.Millisecond)
	if d.Stats().RxPackets != 50 {
		t.Fatalf("stats %+v", d.Stats())
	}
}

type denyFirst struct{ n atomic.Int32 }

func (l *denyFirst) Allow(ops, bytes uint64) (bool, time.Duration) {
	if l.n.Add(1) == 1 {
		return false, 5 * time.Millisecond
	}
	return true, 0
}

func TestLimiters(t *testing.T) {
	rxl, txl := &denyFirst{}, &denyFirst{}
	r := start(t, Config{RxLimiter: rxl, TxLimiter: txl}, 0)
	r.tx.Add(vt.R(frame(mac, 10)))
	r.d.Notify(TxQueue)
	recvFrame(t, r.peer)
	r.rx.Add(vt.W(2000))
	r.d.Notify(RxQueue)
	r.peer.Write(frame(mac, 10))
	r.rx.WaitUsed(t, 1, 5*time.Second)
	if rxl.n.Load() < 2 || txl.n.Load() < 2 {
		t.Fatalf("limiters asked %d/%d times", rxl.n.Load(), txl.n.Load())
	}
	// One refusal each way, each ended by its retry timer.
	r.tx.WaitUsed(t, 1, 5*time.Second)
	st := r.d.Stats()
	if st.RxThrottled != 1 || st.TxThrottled != 1 || st.RxLimiterEvents != 1 || st.TxLimiterEvents != 1 {
		t.Fatalf("limiter counters: %+v, want one throttle and one retry each way", st)
	}
}

// TestLimiterCountersIdle: limiters that never refuse leave the throttle
// counters at zero.
func TestLimiterCountersIdle(t *testing.T) {
	r := start(t, Config{RxLimiter: allowAll{}, TxLimiter: allowAll{}}, 0)
	r.tx.Add(vt.R(frame(mac, 10)))
	r.d.Notify(TxQueue)
	recvFrame(t, r.peer)
	r.rx.Add(vt.W(2000))
	r.d.Notify(RxQueue)
	r.peer.Write(frame(mac, 10))
	r.rx.WaitUsed(t, 1, 5*time.Second)
	r.tx.WaitUsed(t, 1, 5*time.Second)
	if st := r.d.Stats(); st.RxThrottled+st.TxThrottled+st.RxLimiterEvents+st.TxLimiterEvents != 0 || st.RxPackets != 1 || st.TxPackets != 1 {
		t.Fatalf("stats %+v, want one frame each way and no limiter activity", st)
	}
}

type allowAll struct{}

func (allowAll) Allow(ops, bytes uint64) (bool, time.Duration) { return true, 0 }

func TestBrokenRxRing(t *testing.T) {
	r := start(t, Config{}, 0)
	r.rx.SetAvailIdx(500)
	r.d.Notify(RxQueue)
	vt.Wait(t, 5*time.Second, "NeedsReset", func() bool { return len(r.tr.Errors()) > 0 })
	if !errors.Is(r.tr.Errors()[0], virtio.ErrBroken) {
		t.Fatal(r.tr.Errors())
	}
}
