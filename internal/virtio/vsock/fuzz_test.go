package vsock

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/virtio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// chainFrom cuts data into device-readable buffers at the offsets the
// first bytes name, and adds a device-writable buffer when asked.
func chainFrom(data []byte) *virtio.Chain {
	c := &virtio.Chain{}
	if len(data) == 0 {
		return c
	}
	cuts, write := int(data[0]&7), data[0]&8 != 0
	data = data[1:]
	for i := 0; i < cuts && len(data) > 0; i++ {
		n := int(data[0]) % (len(data))
		data = data[1:]
		n = min(n, len(data))
		c.Out = append(c.Out, data[:n])
		c.OutLen += uint64(n)
		data = data[n:]
	}
	c.Out = append(c.Out, data)
	c.OutLen += uint64(len(data))
	if write {
		c.In = append(c.In, make([]byte, 8))
		c.InLen = 8
	}
	return c
}

func FuzzParseTx(f *testing.F) {
	var h [HeaderSize]byte
	(&Header{SrcCID: 3, DstCID: 2, SrcPort: 1, DstPort: 2, Len: 4, Type: TypeStream, Op: OpRW}).Marshal(h[:])
	f.Add(append([]byte{0}, append(h[:], "data"...)...))
	f.Add(append([]byte{2, 44}, append(h[:], "data"...)...))
	f.Add([]byte{0, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := chainFrom(data)
		var p txPacket
		err := parseTx(c, &p)
		if err != nil {
			return
		}
		switch {
		case c.InLen != 0:
			t.Fatal("accepted a writable buffer")
		case p.hdr.Len > MaxPacketBuf, p.hdr.Len > p.bufSize, uint64(p.bufSize)+HeaderSize != c.OutLen:
			t.Fatalf("accepted %v in a %d-byte chain", &p.hdr, c.OutLen)
		}
		var n uint64
		for _, b := range p.payload(0, p.hdr.Len, nil) {
			n += uint64(len(b))
		}
		if n != uint64(p.hdr.Len) {
			t.Fatalf("payload %d bytes, header says %d", n, p.hdr.Len)
		}
		// The header round-trips.
		var b [HeaderSize]byte
		p.hdr.Marshal(b[:])
		var h2 Header
		h2.Unmarshal(b[:])
		if h2 != p.hdr {
			t.Fatal("header does not round-trip")
		}
	})
}

func FuzzParseConnect(f *testing.F) {
	for _, s := range []string{"CONNECT 52\n", "connect +1 x\n", "CONNECT\n52\n", "CONNECT 4294967296\n", "\xffCONNECT 1\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		port, err := ParseConnect(line)
		if err != nil {
			if port != 0 {
				t.Fatal("port with an error")
			}
			return
		}
		w := strings.Fields(string(line))
		if len(w) < 2 || !strings.EqualFold(w[0], "connect") || !strings.HasSuffix(w[1], "0123456789"[port%10:port%10+1]) {
			t.Fatalf("accepted %q as port %d", line, port)
		}
	})
}

// FuzzTxPackets feeds arbitrary chains to a live device's TX queue, with a
// host listener on port 1 so that connections form, and checks that the
// device neither panics nor breaks its queues, and answers only with
// well-formed packets.
func FuzzTxPackets(f *testing.F) {
	var h [HeaderSize]byte
	for _, hdr := range []Header{
		{SrcCID: 3, DstCID: 2, SrcPort: 9, DstPort: 1, Type: TypeStream, Op: OpRequest, BufAlloc: 4096},
		{SrcCID: 3, DstCID: 2, SrcPort: 9, DstPort: 1, Type: TypeStream, Op: OpRW, Len: 4, BufAlloc: 4096},
		{SrcCID: 3, DstCID: 2, SrcPort: 9, DstPort: 1, Type: TypeStream, Op: OpShutdown, Flags: 3},
		{SrcCID: 3, DstCID: 2, SrcPort: 9, DstPort: 1, Type: TypeStream, Op: OpCreditRequest},
		{SrcCID: 3, DstCID: 2, SrcPort: 9, DstPort: 1, Type: TypeStream, Op: OpRst},
	} {
		hdr.Marshal(h[:])
		f.Add(append([]byte{0}, append(h[:], "data"...)...))
	}
	d, path := newDevice(f)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path + "_1", Net: "unix"})
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	g := newGuest(f, d, false)
	g.shutdown() // driven by hand below
	g.rx.TakeUsed()
	slot := g.txSlots[0]
	f.Fuzz(func(t *testing.T, data []byte) {
		c := chainFrom(data)
		var bufs []vt.Buf
		addr := slot
		for _, b := range c.Out {
			if len(b) > gSlotSize || addr+uint64(len(b)) > slot+gSlots*gSlotSize {
				return
			}
			bufs = append(bufs, vt.Buf{Data: b, Addr: addr})
			addr += uint64(len(b)) + 1
		}
		if c.InLen > 0 {
			bufs = append(bufs, vt.Buf{Write: true, Len: 8, Addr: addr})
		}
		if len(bufs) == 0 {
			return
		}
		g.tx.Add(bufs...)
		d.Notify(TxQueue)
		if u := g.tx.WaitUsed(t, 1, 5*time.Second); u[0].Len != 0 {
			t.Fatalf("TX used len %d", u[0].Len)
		}
		d.onWorker(func(*active) error { return nil }) // let RX settle
		for _, u := range g.rx.TakeUsed() {
			i := g.rxHead[uint16(u.ID)]
			delete(g.rxHead, uint16(u.ID))
			if u.Len < HeaderSize || u.Len > gSlotSize {
				t.Fatalf("RX used len %d", u.Len)
			}
			var h Header
			h.Unmarshal(g.rx.Read(g.rxSlots[i], HeaderSize))
			if h.SrcCID != HostCID || h.DstCID != testCID || h.Type != TypeStream || h.Len != u.Len-HeaderSize || h.Op < OpRequest || h.Op > OpCreditRequest {
				t.Fatalf("device sent %v (used %d)", &h, u.Len)
			}
			g.postRx(i)
		}
		d.Notify(RxQueue)
		if errs := g.tr.Errors(); len(errs) > 0 {
			t.Fatalf("device asked for a reset: %v", errs)
		}
	})
}
