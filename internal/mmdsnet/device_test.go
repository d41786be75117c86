package mmdsnet

import (
	"bytes"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/virtio"
	vnet "github.com/ember-vmm/ember/internal/virtio/net"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// deviceRig is a virtio-net device with a Stack, driven as a guest driver
// would, on a datagram socket pair standing in for the tap.
type deviceRig struct {
	d      *vnet.Device
	peer   *os.File
	rx, tx *vt.VQ
}

func startDevice(t *testing.T, s *Stack) *deviceRig {
	t.Helper()
	// Memory first: cleanups run in reverse, so the device stops before
	// its memory goes.
	mem := vt.NewMemory(t, 16<<20)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	tapEnd, peer := os.NewFile(uintptr(fds[0]), "tap"), os.NewFile(uintptr(fds[1]), "peer")
	t.Cleanup(func() { peer.Close() })
	d, err := vnet.New(tapEnd, vnet.Config{ID: "eth0", Interceptor: s, SetOffload: func(uint32) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	alloc := vt.NewAllocator(0x1000, 16<<20)
	r := &deviceRig{d: d, peer: peer, rx: vt.NewVQ(mem, alloc, 64), tx: vt.NewVQ(mem, alloc, 64)}
	qs := []*virtio.Queue{r.rx.Queue(256), r.tx.Queue(256)}
	for _, q := range qs {
		if err := q.Activate(mem, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Activate(virtio.Activation{Mem: mem, Queues: qs, Transport: vt.NewTransport()}); err != nil {
		t.Fatal(err)
	}
	for range 32 {
		r.rx.Add(vt.W(4096))
	}
	d.Notify(vnet.RxQueue)
	return r
}

// send transmits an Ethernet frame as the guest driver does, behind a
// zeroed vnet header.
func (r *deviceRig) send(f []byte) {
	r.tx.Add(vt.R(make([]byte, vnet.VnetHdrSize)), vt.R(f))
	r.d.Notify(vnet.TxQueue)
}

// recv waits for n frames on the RX queue, gives their buffers back, and
// returns them without the vnet header.
func (r *deviceRig) recv(t *testing.T, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for _, u := range r.rx.WaitUsed(t, n, 5*time.Second) {
		b := r.rx.Read(r.rx.Chains[uint16(u.ID)][0], int(u.Len))
		if !bytes.Equal(b[:10], make([]byte, 10)) {
			t.Fatalf("vnet header % x", b[:vnet.VnetHdrSize])
		}
		out = append(out, b[vnet.VnetHdrSize:])
		r.rx.Add(vt.W(4096))
	}
	r.d.Notify(vnet.RxQueue)
	return out
}

// TestThroughDevice runs a guest's ARP lookup and HTTP exchange with MMDS
// through the virtio-net device while other traffic still flows through
// the tap in both directions.
func TestThroughDevice(t *testing.T) {
	s, _ := newStack(t, Config{Version: V2}, testData)
	s.clock = Monotonic // real timers: the device runs on its own goroutines
	r := startDevice(t, s)

	r.send(arpRequestFrame(guestMAC, guestIP, mmdsIP))
	if got := r.recv(t, 1); len(got[0]) != 42 || [6]byte(got[0][22:28]) != MAC {
		t.Fatalf("ARP reply % x", got[0])
	}

	// Traffic for others reaches the tap, and the tap's reaches the guest.
	other := arpRequestFrame(guestMAC, guestIP, [4]byte{10, 0, 0, 1})
	r.send(other)
	r.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := r.peer.Read(buf)
	if err != nil || !bytes.Equal(buf[vnet.VnetHdrSize:n], other) {
		t.Fatalf("tap got % x (%v)", buf[:n], err)
	}
	fromTap := append(make([]byte, vnet.VnetHdrSize), ethFrame(guestMAC, [6]byte{2, 0, 0, 0, 0, 9}, 0x0800, []byte("hello guest"))...)
	if _, err := r.peer.Write(fromTap); err != nil {
		t.Fatal(err)
	}
	if got := r.recv(t, 1); !bytes.Equal(got[0], fromTap[vnet.VnetHdrSize:]) {
		t.Fatalf("guest got % x from the tap", got[0])
	}

	// TCP handshake, token, GET.
	c := seg{sport: 50000, dport: 80, seq: 7, flags: flagSYN, window: 64000, opts: mssOpt(1460)}
	r.send(c.frame())
	synack := parseOut(t, r.recv(t, 1)[0])
	if synack.flags != flagSYN|flagACK || synack.ack != 8 {
		t.Fatalf("SYN-ACK %v", synack)
	}
	c.seq, c.ack, c.opts = 8, synack.seq+1, nil
	exchange := func(req string) string {
		c.flags, c.payload = flagACK|flagPSH, []byte(req)
		r.send(c.frame())
		c.seq += uint32(len(req))
		seg := parseOut(t, r.recv(t, 1)[0])
		if seg.seq != c.ack || seg.ack != c.seq {
			t.Fatalf("answer segment %v", seg)
		}
		c.ack += uint32(len(seg.payload))
		c.flags, c.payload = flagACK, nil
		r.send(c.frame())
		return string(seg.payload)
	}
	tokResp := exchange("PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 10\r\n\r\n")
	_, tok, _ := bytes.Cut([]byte(tokResp), []byte("\r\n\r\n"))
	got := exchange("GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metadata-token: " + string(tok) + "\r\n\r\n")
	if want := answer("HTTP/1.1", 200, "text/plain", "", "ami-12345678"); got != want {
		t.Fatalf("GET through the device: %q, want %q", got, want)
	}
	// Only the frame for 10.0.0.1 went to the tap; the guest got every frame.
	if st := r.d.Stats(); st.TxPackets != 1 || st.RxPackets != 5 {
		t.Fatalf("device counters %+v", st)
	}
	vt.Wait(t, 5*time.Second, "the last ACK", func() bool { return s.m.RxAccepted.Count() == 6 })
	if s.m.TxFrames.Count() != 4 || s.m.RxAccepted.Count() != 6 {
		t.Fatalf("mmds counters tx_frames %d rx_accepted %d", s.m.TxFrames.Count(), s.m.RxAccepted.Count())
	}
}
