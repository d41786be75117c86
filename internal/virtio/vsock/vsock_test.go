package vsock

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/virtio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

func newDevice(t testing.TB) (*Device, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v.sock")
	d, err := New(Config{GuestCID: testCID, UDSPath: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

// hostConnect connects to the device's socket and asks for guest port port,
// returning the connection and the OK line's host port.
func hostConnect(t testing.TB, path string, port uint32) (*net.UnixConn, *bufio.Reader, uint32, error) {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	c.SetReadDeadline(time.Time{})
	if err != nil {
		return c, r, 0, err
	}
	var hp uint32
	if _, err := fmt.Sscanf(line, "OK %d\n", &hp); err != nil {
		t.Fatalf("ack line %q: %v", line, err)
	}
	return c, r, hp, nil
}

func pattern(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// exchange sends a to the far end through w while reading len(b) bytes
// from r, and checks both directions by checksum.
func exchange(t testing.TB, name string, gw io.Writer, gr io.Reader, hw io.Writer, hr io.Reader, toHost, toGuest []byte) {
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	copyCheck := func(dir string, w io.Writer, r io.Reader, data []byte) {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := w.Write(data); err != nil {
				errs <- fmt.Errorf("%s %s write: %w", name, dir, err)
			}
		}()
		go func() {
			defer wg.Done()
			h := sha256.New()
			if _, err := io.CopyN(h, r, int64(len(data))); err != nil {
				errs <- fmt.Errorf("%s %s read: %w", name, dir, err)
				return
			}
			if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
				errs <- fmt.Errorf("%s %s: checksum mismatch", name, dir)
			}
		}()
	}
	copyCheck("guest→host", gw, hr, toHost)
	copyCheck("host→guest", hw, gr, toGuest)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestHostInitiated(t *testing.T) {
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprintf("split=%v", split), func(t *testing.T) {
			d, path := newDevice(t)
			g := newGuest(t, d, split)
			l := g.listen(52)
			hc, hr, hp, err := hostConnect(t, path, 52)
			if err != nil {
				t.Fatal(err)
			}
			if hp != 1073741824 {
				t.Fatalf("first host port %d, want 1073741824", hp)
			}
			gs := g.accept(l)
			exchange(t, "conn", gs, gs, hc, hr, pattern(1, 3<<20+123), pattern(2, 3<<20+77))
			_, _, hp2, err := hostConnect(t, path, 52)
			if err != nil || hp2 != 1073741825 {
				t.Fatalf("second host port %d (%v), want 1073741825", hp2, err)
			}
			g.accept(l)
			m := d.Metrics()
			if m.ConnsAdded != 2 || m.RxBytesCount != 3<<20+77 || m.TxBytesCount != 3<<20+123 {
				t.Fatalf("metrics %+v", m)
			}
			if len(g.creditBad) > 0 {
				t.Fatalf("device overran the guest's credit: %v", g.creditBad)
			}
		})
	}
}

func TestGuestInitiated(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d, false)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path + "_1234", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   *net.UnixConn
		err error
	}
	acc := make(chan res, 1)
	go func() { c, err := ln.AcceptUnix(); acc <- res{c, err} }()
	gs, err := g.connect(1234)
	if err != nil {
		t.Fatal(err)
	}
	r := <-acc
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close()
	exchange(t, "conn", gs, gs, r.c, r.c, pattern(3, 2<<20+5), pattern(4, 2<<20+9))

	// Nobody listens on port 99: RST.
	if _, err := g.connect(99); !errors.Is(err, errRefused) {
		t.Fatalf("connect to a port without listener: %v, want RST", err)
	}
	if len(g.creditBad) > 0 {
		t.Fatalf("device overran the guest's credit: %v", g.creditBad)
	}
}

func TestHostConnectNoListener(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d, false)
	_, _, _, err := hostConnect(t, path, 77)
	if err != io.EOF {
		t.Fatalf("host read %v, want EOF (guest had no listener)", err)
	}
	vt.Wait(t, 5*time.Second, "connection removed", func() bool { return d.Metrics().ConnsRemoved == 1 })
	// The guest answered the REQUEST with an RST and nothing else reached it.
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.stray) != 1 || g.stray[0].Op != OpRequest || g.stray[0].DstPort != 77 || g.stray[0].SrcPort != LocalPortFirst {
		t.Fatalf("guest saw %v", g.stray)
	}
}

func TestConnectLines(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d, false)
	l := g.listen(52)
	tests := []struct {
		send string
		ok   bool
	}{
		{"CONNECT 52\n", true},
		{"connect 52\n", true},
		{"  CoNnEcT +52 trailing words\n", true},
		{"CONNECT\n52\n", true},
		{"CONNECT 0052\n", true},
		{"CONNECT 52    \t               xx", true}, // 32 bytes without a newline
		{"CONNECT 52", false},                       // incomplete: would block
		{"CONN", false},
		{"HELLO 52\n", false},
		{"CONNECT -52\n", false},
		{"CONNECT 4294967296\n", false},
		{"CONNECT abc\n", false},
		{"CONNECT\n", false},
		{"\xffCONNECT 52\n", false},
		{"CONNECT 53\n", false}, // no guest listener
	}
	for i, tc := range tests {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(tc.send)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if tc.ok {
			if err != nil || !strings.HasPrefix(line, "OK 10737418") {
				t.Errorf("case %d %q: got %q, %v; want OK", i, tc.send, line, err)
				continue
			}
			g.accept(l)
		} else if err != io.EOF || line != "" {
			t.Errorf("case %d %q: got %q, %v; want EOF", i, tc.send, line, err)
		}
	}
}

func TestParseConnect(t *testing.T) {
	tests := []struct {
		in   string
		port uint32
		ok   bool
	}{
		{"CONNECT 1\n", 1, true},
		{"connect 4294967295\n", 4294967295, true},
		{"Connect +7 x\n", 7, true},
		{"\u00a0CONNECT\u00851\n", 1, true},
		{"CONNECT +\n", 0, false},
		{"CONNECT ++1\n", 0, false},
		{"CONNECT 1_0\n", 0, false},
		{"CONNECTX 1\n", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		p, err := ParseConnect([]byte(tc.in))
		if (err == nil) != tc.ok || p != tc.port {
			t.Errorf("ParseConnect(%q) = %d, %v", tc.in, p, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidPortRequest) {
			t.Errorf("error %v", err)
		}
	}
}

// TestSlowReaders checks flow control: a reader that does not read holds up
// only its own connection and never receives beyond its credit.
func TestSlowReaders(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d, false)
	l := g.listen(52)
	slowH, slowHR, _, err := hostConnect(t, path, 52)
	if err != nil {
		t.Fatal(err)
	}
	slowG := g.accept(l)
	fastH, fastHR, _, err := hostConnect(t, path, 52)
	if err != nil {
		t.Fatal(err)
	}
	fastG := g.accept(l)

	// Host→guest: the guest does not read slowG; the host's writes stall.
	toGuest := pattern(5, 2<<20)
	wrote := make(chan error, 1)
	go func() { _, err := slowH.Write(toGuest); wrote <- err }()
	// Guest→host: the host does not read slowH.
	toHost := pattern(6, 2<<20)
	gwrote := make(chan error, 1)
	go func() { _, err := slowG.Write(toHost); gwrote <- err }()

	// Meanwhile another connection moves data both ways.
	exchange(t, "fast", fastG, fastG, fastH, fastHR, pattern(7, 1<<20), pattern(8, 1<<20))
	select {
	case err := <-wrote:
		t.Fatalf("host wrote 2 MiB to a guest that reads nothing (%v)", err)
	case err := <-gwrote:
		t.Fatalf("guest wrote 2 MiB to a host that reads nothing (%v)", err)
	default:
	}
	g.mu.Lock()
	unread, inflight := len(slowG.rbuf), slowG.txCnt-slowG.peerFwdCnt
	g.mu.Unlock()
	if unread > gBufAlloc {
		t.Fatalf("guest holds %d unread bytes, beyond its %d credit", unread, gBufAlloc)
	}
	if inflight > ConnBufSize {
		t.Fatalf("guest has %d bytes in flight, beyond the device's %d credit", inflight, ConnBufSize)
	}
	// Now both read; everything arrives intact.
	exchange(t, "slow", io.Discard, slowG, io.Discard, slowHR, nil, nil)
	var wg sync.WaitGroup
	check := func(r io.Reader, want []byte) {
		defer wg.Done()
		h := sha256.New()
		if _, err := io.CopyN(h, r, int64(len(want))); err != nil {
			t.Error(err)
			return
		}
		if sum := sha256.Sum256(want); !bytes.Equal(h.Sum(nil), sum[:]) {
			t.Error("checksum mismatch")
		}
	}
	wg.Add(2)
	go check(slowG, toGuest)
	go check(slowHR, toHost)
	wg.Wait()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if err := <-gwrote; err != nil {
		t.Fatal(err)
	}
	if len(g.creditBad) > 0 {
		t.Fatalf("device overran the guest's credit: %v", g.creditBad)
	}
}

// TestCreditOverrun: a guest that sends beyond its credit to a host that
// does not read gets its connection reset.
func TestCreditOverrun(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d, false)
	l := g.listen(52)
	hc, _, _, err := hostConnect(t, path, 52)
	if err != nil {
		t.Fatal(err)
	}
	_ = hc
	gs := g.accept(l)
	g.mu.Lock()
	for i := 0; i < 200; i++ { // 800 KiB, far beyond 64 KiB of credit and socket buffers
		g.sendLocked(gs, OpRW, 0, make([]byte, gSlotData))
	}
	g.mu.Unlock()
	vt.Wait(t, 10*time.Second, "RST", gs.isReset)
	if m := d.Metrics(); m.ConnsKilled != 0 || m.ConnsRemoved != 1 {
		// kill() by the connection itself does not count as conns_killed.
		t.Fatalf("metrics %+v", m)
	}
}

func TestConcurrent64(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d, false)
	g.listen(52)
	var lns []*net.UnixListener
	for i := 0; i < 32; i++ {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: fmt.Sprintf("%s_%d", path, 2000+i), Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		lns = append(lns, ln)
	}
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			size := 64<<10 + i*4099
			up, down := pattern(uint64(100+i), size), pattern(uint64(200+i), size/2)
			if i < 32 {
				hc, hr, hp, err := hostConnect(t, path, 52)
				if err != nil {
					t.Error(err)
					return
				}
				gs := g.acceptPort(52, hp)
				exchange(t, fmt.Sprint("host-initiated ", i), gs, gs, hc, hr, up, down)
				return
			}
			acc := make(chan *net.UnixConn, 1)
			go func() {
				c, err := lns[i-32].AcceptUnix()
				if err != nil {
					t.Error(err)
				}
				acc <- c
			}()
			gs, err := g.connect(uint32(2000 + i - 32))
			if err != nil {
				t.Error(err)
				return
			}
			hc := <-acc
			if hc == nil {
				return
			}
			defer hc.Close()
			exchange(t, fmt.Sprint("guest-initiated ", i), gs, gs, hc, hc, up, down)
		}()
	}
	wg.Wait()
	if m := d.Metrics(); m.ConnsAdded != 64 {
		t.Fatalf("conns_added %d", m.ConnsAdded)
	}
	if len(g.creditBad) > 0 {
		t.Fatalf("device overran the guest's credit: %v", g.creditBad)
	}
}

// TestHostCloseMidStream: the guest gets the data, then SHUTDOWN with both
// flags, answers RST, and the connection goes.
func TestHostCloseMidStream(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d, false)
	l := g.listen(52)
	hc, _, _, err := hostConnect(t, path, 52)
	if err != nil {
		t.Fatal(err)
	}
	gs := g.accept(l)
	data := pattern(9, 300<<10)
	if _, err := hc.Write(data); err != nil {
		t.Fatal(err)
	}
	hc.Close()
	got, err := io.ReadAll(gs)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("guest read %d bytes (%v), want %d", len(got), err, len(data))
	}
	// REQUEST, data, SHUTDOWN; after it at most an RST (the device answers
	// the guest's late credit updates for a connection it dropped).
	ops := gs.opsSeen()
	shutAt := -1
	for i, op := range ops {
		switch {
		case i == 0 && op != OpRequest, shutAt >= 0 && op != OpRst:
			t.Fatalf("guest saw ops %v", ops)
		case op == OpShutdown:
			shutAt = i
		}
	}
	if shutAt < 0 {
		t.Fatalf("no SHUTDOWN in %v", ops)
	}
	g.mu.Lock()
	shut := gs.peerShut
	g.mu.Unlock()
	if shut != ShutdownRcv|ShutdownSend {
		t.Fatalf("shutdown flags %d", shut)
	}
	vt.Wait(t, 5*time.Second, "connection removed", func() bool { return d.Metrics().ConnsRemoved == 1 })
}

// TestGuestCloseMidStream: the host gets the data, then EOF; the guest
// gets an RST.
func TestGuestCloseMidStream(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d, false)
	l := g.listen(52)
	hc, hr, _, err := hostConnect(t, path, 52)
	if err != nil {
		t.Fatal(err)
	}
	gs := g.accept(l)
	data := pattern(10, 300<<10)
	go func() {
		if _, err := gs.Write(data); err != nil {
			t.Error(err)
		}
		gs.Close()
	}()
	hc.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(hr)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("host read %d bytes (%v), want %d then EOF", len(got), err, len(data))
	}
	vt.Wait(t, 5*time.Second, "RST to the guest", gs.isReset)
	vt.Wait(t, 5*time.Second, "connection removed", func() bool { return d.Metrics().ConnsRemoved == 1 })
}

func TestMalformedPackets(t *testing.T) {
	d, _ := newDevice(t)
	g := newGuest(t, d, false)
	// Stop the pump: this test drives the queues by hand.
	g.shutdown()
	g.rx.TakeUsed()
	hdr := func(h Header) []byte {
		b := make([]byte, HeaderSize)
		h.Marshal(b)
		return b
	}
	good := Header{SrcCID: testCID, DstCID: HostCID, SrcPort: 7, DstPort: 8, Type: TypeStream, Op: OpRW}
	tests := []struct {
		name string
		bufs []vt.Buf
		rst  bool // the device answers with an RST
	}{
		{"short header", []vt.Buf{vt.R(make([]byte, 43))}, false},
		{"writable descriptor", []vt.Buf{vt.R(hdr(good)), vt.W(16)}, false},
		{"len beyond 64 KiB", []vt.Buf{vt.R(hdr(Header{Len: MaxPacketBuf + 1, Type: TypeStream, DstCID: HostCID}))}, false},
		{"len beyond chain", []vt.Buf{vt.R(hdr(Header{Len: 100, Type: TypeStream, DstCID: HostCID})), vt.R(make([]byte, 99))}, false},
		{"wrong CID", []vt.Buf{vt.R(hdr(Header{DstCID: 5, Type: TypeStream, Op: OpRequest, DstPort: 1}))}, false},
		{"unknown op, no connection", []vt.Buf{vt.R(hdr(Header{DstCID: HostCID, Type: TypeStream, Op: 99, SrcPort: 1, DstPort: 2}))}, true},
		{"datagram type", []vt.Buf{vt.R(hdr(Header{DstCID: 5, Type: 2, Op: OpRequest, SrcPort: 3, DstPort: 4}))}, true},
		{"RST for no connection", []vt.Buf{vt.R(hdr(Header{DstCID: HostCID, Type: TypeStream, Op: OpRst, SrcPort: 5, DstPort: 6}))}, true},
		{"data for no connection", []vt.Buf{vt.R(hdr(good)), vt.R(make([]byte, 0))}, true},
	}
	for _, tc := range tests {
		g.tx.Add(tc.bufs...)
		d.Notify(TxQueue)
		u := g.tx.WaitUsed(t, 1, 5*time.Second)
		if u[0].Len != 0 {
			t.Errorf("%s: TX used len %d", tc.name, u[0].Len)
		}
		time.Sleep(5 * time.Millisecond)
		used := g.rx.TakeUsed()
		if tc.rst != (len(used) == 1) || len(used) > 1 {
			t.Errorf("%s: %d RX packets, want RST=%v", tc.name, len(used), tc.rst)
		}
		for _, e := range used {
			var h Header
			h.Unmarshal(g.rx.Read(g.rx.Chains[uint16(e.ID)][0], HeaderSize))
			if h.Op != OpRst || e.Len != HeaderSize {
				t.Errorf("%s: got %v (len %d), want RST", tc.name, &h, e.Len)
			}
		}
	}
	if errs := g.tr.Errors(); len(errs) > 0 {
		t.Fatalf("device asked for a reset: %v", errs)
	}
	// Bad RX chains are returned unused.
	g.rx.Add(vt.R(make([]byte, 64)))
	g.rx.Add(vt.W(43))
	g.tx.Add(vt.R(hdr(Header{DstCID: HostCID, Type: TypeStream, Op: OpRst, SrcPort: 5, DstPort: 6})))
	d.Notify(TxQueue)
	g.tx.WaitUsed(t, 1, 5*time.Second)
	vt.Wait(t, 5*time.Second, "RX", func() bool { return g.rx.UsedIdx() != 0 })
	time.Sleep(5 * time.Millisecond)
	for _, e := range g.rx.TakeUsed() {
		if _, ok := g.rxHead[uint16(e.ID)]; ok {
			// A properly posted slot took the RST.
			continue
		}
		if e.Len != 0 {
			t.Errorf("bad RX chain %d used with len %d", e.ID, e.Len)
		}
	}
}

func TestTransportReset(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d, false)
	l := g.listen(52)
	if err := d.TransportReset(); err != nil {
		t.Fatal(err)
	}
	u := g.ev.WaitUsed(t, 1, 5*time.Second)
	if u[0].Len != 8 {
		t.Fatalf("event used len %d", u[0].Len)
	}
	if ev := g.ev.Read(g.evAddr[0], 4); !bytes.Equal(ev, []byte{0, 0, 0, 0}) {
		t.Fatalf("event %x", ev)
	}
	if g.tr.UsedSignals(EvQueue) != 1 {
		t.Fatal("no event interrupt")
	}
	// RX waits for the guest's acknowledgement.
	done := make(chan uint32, 1)
	go func() {
		_, _, hp, err := hostConnect(t, path, 52)
		if err != nil {
			t.Error(err)
		}
		done <- hp
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case <-l:
		t.Fatal("REQUEST delivered before the guest acknowledged the reset")
	default:
	}
	d.Kick() // resume re-signals the pending event
	if g.tr.UsedSignals(EvQueue) != 2 {
		t.Fatal("Kick did not re-signal the event queue")
	}
	// A notification without the event's buffer given back (a restored
	// transport notifies every queue) does not acknowledge the reset.
	d.Notify(EvQueue)
	time.Sleep(100 * time.Millisecond)
	select {
	case <-l:
		t.Fatal("REQUEST delivered on a notification that gave no buffer back")
	default:
	}
	g.ev.Add(vt.Buf{Write: true, Len: 8, Addr: g.evAddr[0]})
	d.Notify(EvQueue)
	g.accept(l)
	<-done
	// With no event buffers left (one was given back), the reset fails and
	// is counted.
	for i := 0; i < gEvSlots; i++ {
		if err := d.TransportReset(); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.TransportReset(); !errors.Is(err, ErrEmptyEventQueue) {
		t.Fatalf("TransportReset with no buffer: %v", err)
	}
	if d.Metrics().EvQueueEventFails != 1 {
		t.Fatal("ev_queue_event_fails not counted")
	}
}

// TestResetAndReactivate: a driver reset drops the connections (the host
// sees EOF) and restarts host ports; a new activation works.
func TestResetAndReactivate(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d, false)
	l := g.listen(52)
	hc, hr, hp, err := hostConnect(t, path, 52)
	if err != nil || hp != LocalPortFirst {
		t.Fatal(hp, err)
	}
	g.accept(l)
	g.shutdown()
	if err := d.Reset(); err != nil {
		t.Fatal(err)
	}
	hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := hr.ReadByte(); err != io.EOF {
		t.Fatalf("host read after reset: %v, want EOF", err)
	}
	// A host connecting while the device is inactive waits in the backlog.
	type res struct {
		hp  uint32
		err error
	}
	later := make(chan res, 1)
	go func() { _, _, hp, err := hostConnect(t, path, 52); later <- res{hp, err} }()
	time.Sleep(50 * time.Millisecond)
	g2 := newGuest(t, d, true)
	l2 := g2.listen(52)
	g2.accept(l2)
	if r := <-later; r.err != nil || r.hp != LocalPortFirst {
		t.Fatalf("after reactivation: port %d, %v", r.hp, r.err)
	}
}

func TestBindAndClose(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "v.sock")
	d, err := New(Config{GuestCID: 3, UDSPath: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("socket not bound at New: %v", err)
	}
	_, err = New(Config{GuestCID: 3, UDSPath: path})
	const inUse = "Cannot create backend for vsock device: Error binding to the host-side Unix socket: Address in use (os error 98)"
	if err == nil || err.Error() != inUse || !errors.Is(err, ErrBind) {
		t.Fatalf("second bind: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket still there after Close: %v", err)
	}
	// A socket file removed behind the device's back: Firecracker's re-PUT error.
	d, err = New(Config{GuestCID: 3, UDSPath: path})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	const gone = "Cannot create backend for vsock device: Error binding to the host-side Unix socket: No such file or directory (os error 2)"
	if err := d.Close(); err == nil || err.Error() != gone {
		t.Fatalf("Close: %v", err)
	}
	for _, p := range []string{strings.Repeat("x", 108), "a\x00b"} {
		if _, err := New(Config{UDSPath: p}); err == nil || !errors.Is(err, ErrBind) {
			t.Fatalf("New(%q): %v", p, err)
		}
	}
	// '@' is a file name, not Linux's abstract namespace.
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(dir)
	d, err = New(Config{UDSPath: "@at"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "@at")); err != nil {
		t.Fatalf("@at: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceBasics(t *testing.T) {
	d, _ := newDevice(t)
	if d.Type() != virtio.TypeVsock {
		t.Fatal(d.Type())
	}
	want := virtio.Bit(virtio.FeatureVersion1) | virtio.Bit(virtio.FeatureInOrder) | virtio.Bit(virtio.FeatureRingEventIdx)
	if d.Features() != want {
		t.Fatalf("features %#x", d.Features())
	}
	if s := d.QueueMaxSizes(); len(s) != 3 || s[0] != 256 || s[1] != 256 || s[2] != 256 {
		t.Fatal(s)
	}
	b := make([]byte, 12)
	d.ReadConfig(0, b)
	if !bytes.Equal(b, []byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("config %x", b)
	}
	d.ReadConfig(4, b[:4])
	d.WriteConfig(0, []byte{9})
	d.ReadConfig(0, b[:1])
	if b[0] != 3 || d.Metrics().CfgFails != 1 {
		t.Fatal("config write not refused")
	}
	if err := d.Activate(virtio.Activation{Queues: make([]*virtio.Queue, 3)}); err == nil || d.Metrics().ActivateFails != 1 {
		t.Fatal("activation without queues")
	}
	if err := d.TransportReset(); !errors.Is(err, virtio.ErrNotActive) {
		t.Fatal(err)
	}
}

// TestRequestTimeout: a REQUEST the guest never answers arms a 2 s kill
// timer; as in Firecracker, expired connections are swept when the next
// connection is added, and the guest then gets an RST.
func TestRequestTimeout(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d, false)
	g.mu.Lock()
	g.silent[60] = true
	g.mu.Unlock()
	l := g.listen(52)
	first := make(chan error, 1)
	go func() { _, _, _, err := hostConnect(t, path, 60); first <- err }()
	vt.Wait(t, 5*time.Second, "REQUEST", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.stray) == 1
	})
	time.Sleep(ConnRequestTimeout + 100*time.Millisecond)
	if d.Metrics().ConnsKilled != 0 {
		t.Fatal("killed before a connection was added")
	}
	if _, _, _, err := hostConnect(t, path, 52); err != nil {
		t.Fatal(err)
	}
	g.accept(l)
	if err := <-first; err != io.EOF {
		t.Fatalf("unanswered host connection: %v, want EOF", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.stray) != 2 || g.stray[1].Op != OpRst || g.stray[1].SrcPort != LocalPortFirst {
		t.Fatalf("guest saw %v", g.stray)
	}
	if m := d.Metrics(); m.ConnsKilled != 1 || m.ConnsRemoved != 1 {
		t.Fatalf("metrics %+v", m)
	}
}

// TestSuspendResume: a suspended device keeps its connections and touches
// no queue; host data waits and guest packets stay in the TX ring until
// Resume, after which both directions complete intact. Both with the
// event queue and without it (as served over vhost-user).
func TestSuspendResume(t *testing.T) {
	for _, noEv := range []bool{false, true} {
		t.Run(fmt.Sprintf("noEv=%v", noEv), func(t *testing.T) {
			d, path := newDevice(t)
			if err := d.Resume(virtio.Activation{}); err == nil {
				t.Fatal("Resume of an inactive device succeeded")
			}
			if err := d.Suspend(); !errors.Is(err, virtio.ErrNotActive) {
				t.Fatalf("Suspend of an inactive device: %v", err)
			}
			g := newGuestWith(t, d, false, noEv)
			var dev interface {
				Suspend() error
				Resume(virtio.Activation) error
			} = d
			if noEv {
				dev = d.WithoutEventQueue()
			}
			l := g.listen(52)
			hc, hr, _, err := hostConnect(t, path, 52)
			if err != nil {
				t.Fatal(err)
			}
			gs := g.accept(l)
			exchange(t, "before", gs, gs, hc, hr, pattern(1, 200<<10), pattern(2, 200<<10))
			if err := dev.Resume(g.idleQueues()); !errors.Is(err, ErrNotSuspended) {
				t.Fatalf("Resume of a running device: %v", err)
			}
			if err := dev.Suspend(); err != nil {
				t.Fatal(err)
			}
			want := ErrSuspended
			if noEv {
				want = ErrNoEventQueue
			}
			if err := d.TransportReset(); !errors.Is(err, want) {
				t.Fatalf("TransportReset while suspended: %v, want %v", err, want)
			}
			before := d.Metrics()
			done := make(chan struct{})
			go func() {
				defer close(done)
				exchange(t, "across", gs, gs, hc, hr, pattern(3, 300<<10), pattern(4, 300<<10))
			}()
			time.Sleep(200 * time.Millisecond)
			if m := d.Metrics(); m.RxBytesCount != before.RxBytesCount || m.TxBytesCount != before.TxBytesCount {
				t.Fatalf("suspended device moved data: before %+v after %+v", before, m)
			}
			select {
			case <-done:
				t.Fatal("transfer finished while suspended")
			default:
			}
			act := g.resumeQueues()
			if err := dev.Resume(act); err != nil {
				t.Fatal(err)
			}
			copy(g.qs, act.Queues)
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("transfer did not finish after Resume")
			}
			if err := dev.Resume(g.idleQueues()); !errors.Is(err, ErrNotSuspended) {
				t.Fatalf("second Resume: %v", err)
			}
			if m := d.Metrics(); m.ConnsAdded != 1 || m.ConnsKilled != 0 {
				t.Fatalf("connections were not kept: %+v", m)
			}
			if len(g.creditBad) > 0 {
				t.Fatalf("device overran the guest's credit: %v", g.creditBad)
			}
		})
	}
}

// TestNoEventQueue: the view a vhost-user back-end serves declares RX and
// TX only and refuses an activation with the event queue.
func TestNoEventQueue(t *testing.T) {
	d, _ := newDevice(t)
	v := d.WithoutEventQueue()
	if n := len(v.QueueMaxSizes()); n != 2 {
		t.Fatalf("%d queues, want 2", n)
	}
	if v.Device() != d || v.Type() != virtio.TypeVsock || v.Features() != d.Features() {
		t.Fatal("view does not reflect the device")
	}
	cfg := make([]byte, 8)
	v.ReadConfig(0, cfg)
	if cfg[0] != testCID {
		t.Fatalf("config %x", cfg)
	}
	mem := vt.NewMemory(t, 1<<20)
	alloc := vt.NewAllocator(0x1000, 1<<20)
	var qs []*virtio.Queue
	for range 3 {
		q := vt.NewVQ(mem, alloc, 16).Queue(virtio.MaxQueueSize)
		if err := q.Activate(mem, true); err != nil {
			t.Fatal(err)
		}
		qs = append(qs, q)
	}
	if err := v.Activate(virtio.Activation{Mem: mem, Queues: qs, Transport: vt.NewTransport()}); err == nil {
		t.Fatal("activation with 3 queues accepted")
	}
	if err := d.Activate(virtio.Activation{Mem: mem, Queues: qs[:2], Transport: vt.NewTransport()}); err == nil {
		t.Fatal("full device activated without its event queue")
	}
	if err := v.Activate(virtio.Activation{Mem: mem, Queues: qs[:2], Transport: vt.NewTransport()}); err != nil {
		t.Fatal(err)
	}
	if err := d.TransportReset(); !errors.Is(err, ErrNoEventQueue) {
		t.Fatalf("TransportReset: %v", err)
	}
	if err := v.Reset(); err != nil {
		t.Fatal(err)
	}
}
