package mmdsnet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/mmds"
	"github.com/ember-vmm/ember/internal/strictjson"
)

var (
	guestMAC = [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	guestIP  = [4]byte{169, 254, 0, 2}
	mmdsIP   = [4]byte{169, 254, 169, 254}
)

const testData = `{"latest":{"meta-data":{"ami-id":"ami-12345678","reservation-id":"r-fea54097","local-hostname":"ip-10-251-50-12.ec2.internal","public-hostname":"ec2.compute.amazonaws.com","network":{"interfaces":{"macs":{"02:29:96:8f:6a:2d":{"device-number":"13345342"}}}},"count":7,"list":["a",{"b":"c"}]},"user-data":"#!/bin/sh\necho hi"},"a~b":{"c/d":"esc"}}`

type fakeClock struct{ now time.Duration }

func (c *fakeClock) Now() time.Duration { return c.now }

// newStack returns a Stack on a store holding data (none if "").
func newStack(t testing.TB, cfg Config, data string) (*Stack, *fakeClock) {
	t.Helper()
	st := mmds.NewStore(51200)
	if data != "" {
		v, err := strictjson.ParseValue([]byte(data))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Put(v); err != nil {
			t.Fatal(err)
		}
	}
	clk := &fakeClock{now: time.Hour}
	cfg.Store = st
	cfg.Clock = clk.Now
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, clk
}

func ethFrame(dst, src [6]byte, typ uint16, payload []byte) []byte {
	f := make([]byte, ethHeaderLen+len(payload))
	writeEth(f, dst, src, typ)
	copy(f[ethHeaderLen:], payload)
	return f
}

func arpRequestFrame(sha [6]byte, spa, tpa [4]byte) []byte {
	p := make([]byte, arpFrameLen)
	writeARPReply(p, sha, spa, [6]byte{}, tpa)
	binary.BigEndian.PutUint16(p[6:], arpOpRequest)
	return ethFrame([6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, sha, etherTypeARP, p)
}

// ipFrame wraps an IPv4 payload with a correct header.
func ipFrame(src, dst [4]byte, proto uint8, payload []byte) []byte {
	p := make([]byte, ipv4MinHeaderLen+len(payload))
	writeIPv4(p, src, dst, len(payload))
	p[9] = proto
	p[8] = 64
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], checksum(0, p[:20]))
	copy(p[20:], payload)
	return ethFrame(MAC, guestMAC, etherTypeIPv4, p)
}

// seg describes a guest segment.
type seg struct {
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	window       uint16
	opts         []byte
	payload      []byte
}

func (s seg) frame() []byte {
	hlen := tcpMinHeaderLen + len(s.opts)
	b := make([]byte, hlen+len(s.payload))
	binary.BigEndian.PutUint32(b[4:], s.seq)
	binary.BigEndian.PutUint32(b[8:], s.ack)
	b[12] = byte(hlen/4) << 4
	b[13] = s.flags
	binary.BigEndian.PutUint16(b[14:], s.window)
	copy(b[20:], s.opts)
	copy(b[hlen:], s.payload)
	finalizeSegment(b, s.sport, s.dport, guestIP, mmdsIP)
	return ipFrame(guestIP, mmdsIP, protoTCP, b)
}

func mssOpt(v uint16) []byte { return []byte{tcpOptMSS, 4, byte(v >> 8), byte(v)} }

// outSeg is a segment the stack sent, checked for well-formedness.
type outSeg struct {
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	window       uint16
	mss          uint16
	payload      []byte
}

func (o outSeg) String() string {
	return fmt.Sprintf("{%d->%d seq=%d ack=%d flags=%#x win=%d mss=%d len=%d}",
		o.sport, o.dport, o.seq, o.ack, o.flags, o.window, o.mss, len(o.payload))
}

// parseOut checks every header of a frame the stack sent and returns its
// TCP segment.
func parseOut(t testing.TB, f []byte) outSeg {
	t.Helper()
	if len(f) < ethHeaderLen+40 {
		t.Fatalf("short frame %x", f)
	}
	if [6]byte(f[0:6]) != guestMAC || [6]byte(f[6:12]) != MAC || binary.BigEndian.Uint16(f[12:]) != etherTypeIPv4 {
		t.Fatalf("bad Ethernet header % x", f[:14])
	}
	p, err := parseIPv4(f[ethHeaderLen:])
	if err != nil {
		t.Fatalf("bad IPv4: %v", err)
	}
	ip := p.b
	if checksum(0, ip[:p.hlen]) != 0 || ip[8] != 1 || ip[9] != protoTCP || [4]byte(ip[12:16]) != mmdsIP || [4]byte(ip[16:20]) != guestIP {
		t.Fatalf("bad IPv4 header % x", ip[:20])
	}
	s, err := parseSegment(p.payload())
	if err != nil {
		t.Fatalf("bad TCP: %v", err)
	}
	if checksum(pseudoSum(mmdsIP, guestIP, len(s.b)), s.b) != 0 {
		t.Fatal("bad TCP checksum")
	}
	m, _ := s.mss()
	return outSeg{s.srcPort(), s.dstPort(), s.seq(), s.ack(), s.flags(), s.window(), m, bytes.Clone(s.payload())}
}

// drain collects every frame the stack has now.
func drain(s *Stack) [][]byte {
	var out [][]byte
	buf := make([]byte, 65550)
	for range 10000 {
		n := s.Receive(buf)
		if n == 0 {
			return out
		}
		out = append(out, bytes.Clone(buf[:n]))
	}
	panic("Receive never runs dry")
}

func drainSegs(t testing.TB, s *Stack) []outSeg {
	t.Helper()
	var out []outSeg
	for _, f := range drain(s) {
		out = append(out, parseOut(t, f))
	}
	return out
}

// client is a guest TCP connection to MMDS.
type client struct {
	t      testing.TB
	s      *Stack
	port   uint16
	seq    uint32 // next sequence number to send
	ack    uint32 // next byte expected from MMDS
	window uint16
}

func dial(t testing.TB, s *Stack, port uint16) *client {
	t.Helper()
	return dialWindow(t, s, port, 64000)
}

func dialWindow(t testing.TB, s *Stack, port, window uint16) *client {
	t.Helper()
	c := &client{t: t, s: s, port: port, seq: 1000 * uint32(port), window: window}
	c.send(flagSYN, mssOpt(1460), nil)
	c.seq++
	got := drainSegs(t, s)
	if len(got) != 1 || got[0].flags != flagSYN|flagACK || got[0].ack != c.seq || got[0].mss != 1460 {
		t.Fatalf("handshake: got %v", got)
	}
	if got[0].sport != Port || got[0].dport != port || got[0].window != rcvBufSize {
		t.Fatalf("SYN-ACK %v", got[0])
	}
	c.ack = got[0].seq + 1
	c.send(flagACK, nil, nil)
	if got := drainSegs(t, s); len(got) != 0 {
		t.Fatalf("after handshake ACK: %v", got)
	}
	return c
}

func (c *client) send(flags uint8, opts, payload []byte) {
	c.t.Helper()
	f := seg{sport: c.port, dport: Port, seq: c.seq, ack: c.ack, flags: flags, window: c.window, opts: opts, payload: payload}.frame()
	if !c.s.Intercept(f) {
		c.t.Fatal("frame for MMDS not consumed")
	}
	c.seq += uint32(len(payload))
}

// request sends req and returns the complete answer, ACKing every
// segment.
func (c *client) request(req string) string {
	c.t.Helper()
	c.send(flagACK|flagPSH, nil, []byte(req))
	var resp []byte
	for range 100 {
		segs := drainSegs(c.t, c.s)
		if len(segs) == 0 {
			break
		}
		for _, g := range segs {
			if g.flags&flagRST != 0 {
				c.t.Fatalf("RST during request: %v", g)
			}
			if len(g.payload) > 0 {
				if g.seq != c.ack {
					c.t.Fatalf("segment at %d, expected %d", g.seq, c.ack)
				}
				resp = append(resp, g.payload...)
				c.ack += uint32(len(g.payload))
			}
		}
		if complete(resp) {
			c.send(flagACK, nil, nil)
			if rest := drainSegs(c.t, c.s); len(rest) != 0 {
				c.t.Fatalf("after the answer: %v", rest)
			}
			return string(resp)
		}
		c.send(flagACK, nil, nil)
	}
	c.t.Fatalf("incomplete answer %q", resp)
	return ""
}

func complete(b []byte) bool {
	h, body, ok := strings.Cut(string(b), "\r\n\r\n")
	if !ok {
		return false
	}
	for _, l := range strings.Split(h, "\r\n") {
		if v, ok := strings.CutPrefix(l, "Content-Length: "); ok {
			n, _ := strconv.Atoi(v)
			return len(body) >= n
		}
	}
	return false
}

// answer builds the expected bytes of an MMDS answer.
func answer(version string, status int, ctype, extra, body string) string {
	return fmt.Sprintf("%s %d \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n%sContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s",
		version, status, extra, ctype, len(body), body)
}
