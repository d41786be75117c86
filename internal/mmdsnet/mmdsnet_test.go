package mmdsnet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestInterceptSelection(t *testing.T) {
	other := [4]byte{10, 0, 0, 1}
	udp := make([]byte, 12)
	tcp80 := seg{sport: 4000, dport: 80, seq: 1, flags: flagSYN, window: 100}.frame()
	tcp8080 := seg{sport: 4000, dport: 8080, seq: 1, flags: flagSYN, window: 100}.frame()
	elsewhere := bytes.Clone(tcp80)
	copy(elsewhere[ethHeaderLen+16:], other[:]) // destination: not MMDS
	arpReply := arpRequestFrame(guestMAC, guestIP, mmdsIP)
	binary.BigEndian.PutUint16(arpReply[ethHeaderLen+6:], arpOpReply)
	ipv6 := ethFrame(MAC, guestMAC, 0x86dd, make([]byte, 60))
	for _, tc := range []struct {
		name     string
		frame    []byte
		consumed bool
		replies  int
		metric   func(s *Stack) uint64
	}{
		{"ARP request for MMDS", arpRequestFrame(guestMAC, guestIP, mmdsIP), true, 1, nil},
		{"ARP request for another address", arpRequestFrame(guestMAC, guestIP, other), false, 0, nil},
		{"ARP reply aimed at MMDS", arpReply, true, 0, nil},
		{"padded ARP request", append(arpRequestFrame(guestMAC, guestIP, mmdsIP), make([]byte, 18)...), true, 0, nil},
		{"UDP to MMDS", ipFrame(guestIP, mmdsIP, 17, udp), true, 0, func(s *Stack) uint64 { return s.m.RxAcceptedUnusual.Count() }},
		{"TCP SYN to MMDS:80", tcp80, true, 1, func(s *Stack) uint64 { return s.m.ConnectionsCreated.Count() }},
		{"TCP SYN to MMDS:8080", tcp8080, true, 0, func(s *Stack) uint64 { return s.m.RxAcceptedErr.Count() }},
		{"TCP elsewhere", elsewhere, false, 0, nil},
		{"IPv6", ipv6, false, 0, nil},
		{"runt", make([]byte, 13), false, 0, nil},
		{"empty", nil, false, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStack(t, Config{}, "")
			if got := s.Intercept(tc.frame); got != tc.consumed {
				t.Fatalf("Intercept = %v, want %v", got, tc.consumed)
			}
			if got := len(drain(s)); got != tc.replies {
				t.Fatalf("%d replies, want %d", got, tc.replies)
			}
			if tc.metric != nil && tc.metric(s) != 1 {
				t.Fatal("counter not incremented")
			}
			if want := uint64(0); tc.consumed {
				if s.m.RxAccepted.Count() != 1 {
					t.Fatal("rx_accepted not counted")
				}
			} else if s.m.RxAccepted.Count() != want {
				t.Fatal("rx_accepted counted for a passed frame")
			}
		})
	}
}

func TestARPReply(t *testing.T) {
	for _, ip := range []netip.Addr{{}, netip.MustParseAddr("169.254.170.2")} {
		s, _ := newStack(t, Config{IPv4: ip}, "")
		a := s.IPv4().As4()
		if !s.Intercept(arpRequestFrame(guestMAC, guestIP, a)) {
			t.Fatal("ARP request not consumed")
		}
		got := drain(s)
		want := []byte{
			0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x06, 0x01, 0x23, 0x45, 0x67, 0x01, 0x08, 0x06,
			0, 1, 8, 0, 6, 4, 0, 2,
			0x06, 0x01, 0x23, 0x45, 0x67, 0x01, a[0], a[1], a[2], a[3],
			0x52, 0x54, 0, 0x12, 0x34, 0x56, 169, 254, 0, 2,
		}
		if len(got) != 1 || !bytes.Equal(got[0], want) {
			t.Fatalf("ARP reply\n got % x\nwant % x", got, want)
		}
		if s.m.TxFrames.Count() != 1 || s.m.TxBytes.Count() != 42 {
			t.Fatalf("tx counters %d %d", s.m.TxFrames.Count(), s.m.TxBytes.Count())
		}
	}
	if _, err := New(Config{Store: nil}); err == nil {
		t.Fatal("no store accepted")
	}
	s, _ := newStack(t, Config{}, "")
	if _, err := New(Config{Store: s.r.store, IPv4: netip.MustParseAddr("::1")}); err == nil {
		t.Fatal("IPv6 address accepted")
	}
}

func TestHandshake(t *testing.T) {
	tests := []struct {
		name  string
		opts  []byte
		flags uint8
		data  []byte
		want  string // "synack", "rst" or "none"
		mss   uint16
	}{
		{"MSS 1460", mssOpt(1460), flagSYN, nil, "synack", 1460},
		{"no MSS", nil, flagSYN, nil, "synack", mssDefault},
		{"NOPs then MSS", append([]byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}, mssOpt(1400)...), flagSYN, nil, "synack", 1400},
		{"MSS too small", mssOpt(99), flagSYN, nil, "none", 0},
		{"option length 0", []byte{3, 0, 0, 0}, flagSYN, nil, "none", 0},
		{"SYN with data", nil, flagSYN, []byte("x"), "none", 0},
		{"SYN+ECE", nil, flagSYN | 0x40, nil, "rst", 0},
		{"stray ACK", nil, flagACK, nil, "rst", 0},
		{"stray RST", nil, flagRST, nil, "none", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStack(t, Config{}, "")
			s.Intercept(seg{sport: 5000, dport: 80, seq: 77, ack: 99, flags: tc.flags, window: 29200, opts: tc.opts, payload: tc.data}.frame())
			got := drainSegs(t, s)
			switch tc.want {
			case "synack":
				if len(got) != 1 || got[0].flags != flagSYN|flagACK || got[0].ack != 78 || got[0].mss != tc.mss ||
					got[0].window != rcvBufSize || len(got[0].payload) != 0 {
					t.Fatalf("got %v", got)
				}
			case "rst":
				// With ACK: seq = its ack; without: ack = seq + len.
				want := outSeg{sport: 80, dport: 5000, seq: 99, flags: flagRST, window: rstWindow}
				if tc.flags&flagACK == 0 {
					want = outSeg{sport: 80, dport: 5000, ack: 77, flags: flagRST | flagACK, window: rstWindow}
				}
				if len(got) != 1 || got[0].String() != want.String() {
					t.Fatalf("got %v, want %v", got, want)
				}
			default:
				if len(got) != 0 {
					t.Fatalf("got %v", got)
				}
			}
		})
	}
}

func TestExchange(t *testing.T) {
	const h11, h10 = "HTTP/1.1", "HTTP/1.0"
	const txt, js = "text/plain", "application/json"
	get := func(path, headers string) string { return "GET " + path + " HTTP/1.1\r\n" + headers + "\r\n" }
	tests := []struct {
		name    string
		cfg     Config
		data    string
		req     string
		want    string
		counter string
	}{
		{"IMDS object", Config{}, testData, get("/latest/meta-data/", ""),
			answer(h11, 200, txt, "", "ami-id\ncount\nlist\nlocal-hostname\nnetwork/\npublic-hostname\nreservation-id"), "no_token"},
		{"IMDS string", Config{}, testData, get("/latest/meta-data/ami-id", ""), answer(h11, 200, txt, "", "ami-12345678"), ""},
		{"IMDS root", Config{}, testData, get("/", ""), answer(h11, 200, txt, "", "a~b/\nlatest/"), ""},
		{"IMDS slashes collapse", Config{}, testData, get("//latest///user-data//", ""), answer(h11, 200, txt, "", "#!/bin/sh\necho hi"), ""},
		{"IMDS escapes", Config{}, testData, get("/a~0b/c~1d", ""), answer(h11, 200, txt, "", "esc"), ""},
		{"IMDS array index", Config{}, testData, get("/latest/meta-data/list/0", ""), answer(h11, 200, txt, "", "a"), ""},
		{"IMDS number", Config{}, testData, get("/latest/meta-data/count", ""), answer(h11, 501, txt, "", msgUnsupported), ""},
		{"IMDS array", Config{}, testData, get("/latest/meta-data/list", ""), answer(h11, 501, txt, "", msgUnsupported), ""},
		{"JSON subtree", Config{}, testData, get("/latest/meta-data/network", "Accept: application/json\r\n"),
			answer(h11, 200, js, "", `{"interfaces":{"macs":{"02:29:96:8f:6a:2d":{"device-number":"13345342"}}}}`), ""},
		{"JSON number", Config{}, testData, get("/latest/meta-data/count", "accept: application/json\r\n"), answer(h11, 200, js, "", "7"), ""},
		{"JSON string", Config{}, testData, get("/latest/meta-data/ami-id", "Accept: application/json\r\n"), answer(h11, 200, js, "", `"ami-12345678"`), ""},
		{"IMDS compat ignores Accept", Config{IMDSCompat: true}, testData, get("/latest/meta-data/ami-id", "Accept: application/json\r\n"),
			answer(h11, 200, js, "", "ami-12345678"), ""},
		{"Accept */*", Config{}, testData, get("/latest/meta-data/ami-id", "Accept: */*\r\n"), answer(h11, 200, txt, "", "ami-12345678"), ""},
		{"missing", Config{}, testData, get("/latest//nope/", ""), answer(h11, 404, txt, "", "Resource not found: /latest//nope/."), ""},
		{"empty store", Config{}, "", get("/", ""), answer(h11, 501, txt, "", msgUnsupported), ""},
		{"empty store JSON", Config{}, "", get("/", "Accept: application/json\r\n"), answer(h11, 200, js, "", "null"), ""},
		{"HTTP/1.0", Config{}, testData, "GET /latest/meta-data/ami-id HTTP/1.0\r\n\r\n", answer(h10, 200, txt, "", "ami-12345678"), ""},
		{"absolute URI", Config{}, testData, "GET http://169.254.169.254/latest/meta-data/ami-id HTTP/1.1\r\n\r\n", answer(h11, 200, txt, "", "ami-12345678"), ""},
		{"no path", Config{}, testData, "GET http://169.254.169.254 HTTP/1.1\r\n\r\n", answer(h11, 400, txt, "", msgInvalidURI), ""},
		{"PATCH", Config{}, testData, "PATCH / HTTP/1.1\r\n\r\n", answer(h11, 405, txt, "Allow: GET, PUT\r\n", msgNotAllowed), ""},
		{"DELETE", Config{}, testData, "DELETE / HTTP/1.0\r\n\r\n", answer(h10, 405, txt, "Allow: GET, PUT\r\n", msgNotAllowed), ""},
		{"unknown method", Config{}, testData, "POST / HTTP/1.1\r\n\r\n", answer(h11, 501, js, "", "Unsupported HTTP method."), ""},
		{"bad version", Config{}, testData, "GET / HTTP/2.0\r\n\r\n", answer(h11, 501, js, "", "Unsupported HTTP version."), ""},
		{"bare LF", Config{}, testData, "GET / HTTP/1.1\n\n", answer(h11, 400, js, "", msgInvalidRequest), ""},
		{"bad header", Config{}, testData, get("/", "NoColon\r\n"), answer(h11, 400, js, "", "Header is incorrectly formatted. Key: NoColon"), ""},
		{"V1 invalid token still served", Config{}, testData, get("/latest/meta-data/ami-id", "X-metadata-token: bogus\r\n"),
			answer(h11, 200, txt, "", "ami-12345678"), "invalid_token"},
		{"V2 no token", Config{Version: V2}, testData, get("/latest/meta-data/ami-id", ""), answer(h11, 401, txt, "", msgNoToken), "no_token"},
		{"V2 wrong token", Config{Version: V2}, testData, get("/", "X-aws-ec2-metadata-token: AAAA\r\n"), answer(h11, 401, txt, "", msgInvalidToken), "invalid_token"},
		{"token no TTL", Config{}, "", "PUT /latest/api/token HTTP/1.1\r\n\r\n", answer(h11, 400, txt, "", msgNoTTL), ""},
		{"token TTL 0", Config{}, "", "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 0\r\n\r\n",
			answer(h11, 400, txt, "", "Invalid time to live value provided for token: 0. Please provide a value between 1 and 21600."), ""},
		{"token TTL 21601", Config{Version: V2}, "", "PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 21601\r\n\r\n",
			answer(h11, 400, txt, "", "Invalid time to live value provided for token: 21601. Please provide a value between 1 and 21600."), ""},
		{"token TTL not a number", Config{}, "", "PUT /latest/api/token HTTP/1.1\r\nx-METADATA-token-ttl-seconds: -5\r\n\r\n",
			answer(h11, 400, txt, "", "Invalid header. Reason: Invalid value. Key:x-METADATA-token-ttl-seconds; Value:-5"), ""},
		{"token X-Forwarded-For", Config{}, "", "PUT /nowhere HTTP/1.1\r\nx-forwarded-for: 1.2.3.4\r\n\r\n",
			answer(h11, 400, txt, "", "Invalid header. Reason: Unsupported header name. Key: x-forwarded-for"), ""},
		{"PUT elsewhere", Config{}, "", "PUT /latest/api/tokens HTTP/1.1\r\nX-metadata-token-ttl-seconds: 5\r\n\r\n",
			answer(h11, 404, txt, "", "Resource not found: /latest/api/tokens."), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStack(t, tc.cfg, tc.data)
			c := dial(t, s, 40000)
			if got := c.request(tc.req); got != tc.want {
				t.Fatalf("answer\n got %q\nwant %q", got, tc.want)
			}
			noTok, badTok := s.m.RxNoToken.Count(), s.m.RxInvalidToken.Count()
			switch tc.counter {
			case "no_token":
				if noTok != 1 || badTok != 0 {
					t.Fatalf("rx_no_token %d rx_invalid_token %d", noTok, badTok)
				}
			case "invalid_token":
				if noTok != 0 || badTok != 1 {
					t.Fatalf("rx_no_token %d rx_invalid_token %d", noTok, badTok)
				}
			}
		})
	}
}

func TestTokenFlow(t *testing.T) {
	for _, v := range []Version{V1, V2} {
		t.Run(v.String(), func(t *testing.T) {
			s, clk := newStack(t, Config{Version: v, InstanceID: "vm-1"}, testData)
			c := dial(t, s, 41000)
			resp := c.request("PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: +60\r\n\r\n")
			head, tok, _ := strings.Cut(resp, "\r\n\r\n")
			if len(tok) != 48 {
				t.Fatalf("token %q", tok)
			}
			if want := answer("HTTP/1.1", 200, "text/plain", "X-aws-ec2-metadata-token-ttl-seconds: 60\r\n", tok); resp != want {
				t.Fatalf("answer %q\nwant %q (head %q)", resp, want, head)
			}
			ok := answer("HTTP/1.1", 200, "text/plain", "", "ami-12345678")
			if got := c.request("GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metadata-token: " + tok + "\r\n\r\n"); got != ok {
				t.Fatalf("GET with token: %q", got)
			}
			// A tampered token fails authentication.
			bad := []byte(tok)
			bad[20] ^= 1
			if bad[20] == '/' || bad[20] == '+' {
				bad[20] = 'A'
			}
			want := ok
			if v == V2 {
				want = answer("HTTP/1.1", 401, "text/plain", "", msgInvalidToken)
			}
			if got := c.request("GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metadata-token: " + string(bad) + "\r\n\r\n"); got != want {
				t.Fatalf("tampered token: %q", got)
			}
			// Valid until the last millisecond, not at the expiry.
			clk.now += 60*time.Second - time.Millisecond
			if got := c.request("GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metadata-token: " + tok + "\r\n\r\n"); got != ok {
				t.Fatalf("token before expiry: %q", got)
			}
			clk.now += time.Millisecond
			if got := c.request("GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metadata-token: " + tok + "\r\n\r\n"); got != want {
				t.Fatalf("expired token: %q", got)
			}
			if s.m.RxInvalidToken.Count() != 2 {
				t.Fatalf("rx_invalid_token %d", s.m.RxInvalidToken.Count())
			}
		})
	}
}

func TestTokens(t *testing.T) {
	clk := &fakeClock{now: time.Minute}
	a, err := NewTokens("a", clk.Now, Config{}.Log)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewTokens("a", clk.Now, Config{}.Log)
	tok, err := a.Generate(1)
	if err != nil || !a.Valid(tok) {
		t.Fatalf("fresh token %q: %v", tok, err)
	}
	if b.Valid(tok) {
		t.Fatal("another authority's token accepted")
	}
	for _, bad := range []string{"", "x", tok + "=", tok[:47], tok + strings.Repeat("A", 30), tok[:24] + "\n" + tok[24:]} {
		if a.Valid(bad) {
			t.Fatalf("%q accepted", bad)
		}
	}
	clk.now += time.Second
	if a.Valid(tok) {
		t.Fatal("expired token accepted")
	}
	for _, ttl := range []uint32{0, MaxTokenTTL + 1} {
		if _, err := a.Generate(ttl); err == nil || !strings.Contains(err.Error(), "between 1 and 21600") {
			t.Fatalf("ttl %d: %v", ttl, err)
		}
	}
	if _, err := a.Generate(MaxTokenTTL); err != nil {
		t.Fatal(err)
	}
}

func TestPipelinedAndClose(t *testing.T) {
	s, _ := newStack(t, Config{}, testData)
	c := dial(t, s, 42000)
	want := answer("HTTP/1.1", 200, "text/plain", "", "ami-12345678")
	// Two requests in one segment: the second waits for the first answer's ACK.
	two := "GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\nGET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n"
	c.send(flagACK|flagPSH, nil, []byte(two))
	segs := drainSegs(t, s)
	if len(segs) != 1 || string(segs[0].payload) != want || segs[0].ack != c.seq {
		t.Fatalf("first answer %v", segs)
	}
	c.ack += uint32(len(want))
	c.send(flagACK, nil, nil)
	segs = drainSegs(t, s)
	if len(segs) != 1 || string(segs[0].payload) != want {
		t.Fatalf("second answer %v", segs)
	}
	c.ack += uint32(len(want))
	c.send(flagACK, nil, nil)
	// Guest closes: MMDS ACKs the FIN and closes its side.
	c.send(flagFIN|flagACK, nil, nil)
	c.seq++
	segs = drainSegs(t, s)
	if len(segs) != 1 || segs[0].flags != flagFIN|flagACK || segs[0].seq != c.ack || segs[0].ack != c.seq {
		t.Fatalf("FIN answer %v", segs)
	}
	if s.m.ConnectionsDestroyed.Count() != 1 {
		t.Fatal("connection not destroyed after both FINs")
	}
	// The last ACK finds no connection: it gets a RST.
	c.ack++
	c.send(flagACK, nil, nil)
	if segs = drainSegs(t, s); len(segs) != 1 || segs[0].flags != flagRST || segs[0].seq != c.ack {
		t.Fatalf("late ACK %v", segs)
	}
}

func TestSegmentation(t *testing.T) {
	big := `{"k":"` + strings.Repeat("x", 5000) + `"}`
	s, _ := newStack(t, Config{}, big)
	c := &client{t: t, s: s, port: 43000, seq: 1, window: 64000}
	c.send(flagSYN, mssOpt(1000), nil)
	c.seq++
	syn := drainSegs(t, s)
	c.ack = syn[0].seq + 1
	c.send(flagACK, nil, nil)
	c.send(flagACK|flagPSH, nil, []byte("GET /k HTTP/1.1\r\n\r\n"))
	segs := drainSegs(t, s)
	var got []byte
	for i, g := range segs {
		if len(g.payload) > 1000 || (i < len(segs)-1 && len(g.payload) != 1000) {
			t.Fatalf("segment %d: %d bytes with MSS 1000", i, len(g.payload))
		}
		got = append(got, g.payload...)
	}
	if want := answer("HTTP/1.1", 200, "text/plain", "", strings.Repeat("x", 5000)); string(got) != want {
		t.Fatalf("reassembled %d bytes, want %d", len(got), len(want))
	}

	// A small window limits what is in flight.
	s, _ = newStack(t, Config{}, big)
	c = dialWindow(t, s, 43001, 2000)
	c.send(flagACK|flagPSH, nil, []byte("GET /k HTTP/1.1\r\n\r\n"))
	n := 0
	for _, g := range drainSegs(t, s) {
		n += len(g.payload)
	}
	if n != 2000 {
		t.Fatalf("%d bytes in flight, window 2000", n)
	}
}

func TestRetransmission(t *testing.T) {
	s, clk := newStack(t, Config{}, testData)
	c := dial(t, s, 44000)
	c.send(flagACK|flagPSH, nil, []byte("GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n"))
	first := drainSegs(t, s)
	if len(first) != 1 {
		t.Fatalf("answer %v", first)
	}
	if at, ok := s.Deadline(); !ok || at != clk.now+rtoPeriod {
		t.Fatalf("deadline %v %v, want %v", at, ok, clk.now+rtoPeriod)
	}
	clk.now += rtoPeriod - 1
	if got := drainSegs(t, s); len(got) != 0 {
		t.Fatalf("early retransmission %v", got)
	}
	for i := 1; i < rtoCountMax; i++ {
		clk.now += rtoPeriod
		got := drainSegs(t, s)
		if len(got) != 1 || got[0].seq != first[0].seq || !bytes.Equal(got[0].payload, first[0].payload) {
			t.Fatalf("retransmission %d: %v", i, got)
		}
	}
	clk.now += rtoPeriod
	got := drainSegs(t, s)
	if len(got) != 1 || got[0].flags != flagRST {
		t.Fatalf("after %d timeouts: %v", rtoCountMax, got)
	}
	if s.m.ConnectionsDestroyed.Count() != 1 || len(s.h.conns) != 0 {
		t.Fatal("connection kept after RST")
	}

	// A lost SYN-ACK is sent again on timeout, and on a repeated SYN.
	s, clk = newStack(t, Config{}, "")
	syn := seg{sport: 44001, dport: 80, seq: 5, flags: flagSYN, window: 1000}.frame()
	s.Intercept(syn)
	a := drainSegs(t, s)
	clk.now += rtoPeriod
	b := drainSegs(t, s)
	s.Intercept(syn)
	c2 := drainSegs(t, s)
	if len(a) != 1 || len(b) != 1 || len(c2) != 1 || a[0].String() != b[0].String() || a[0].String() != c2[0].String() {
		t.Fatalf("SYN-ACKs %v %v %v", a, b, c2)
	}
}

func TestRequestTooLarge(t *testing.T) {
	s, _ := newStack(t, Config{}, testData)
	c := dial(t, s, 45000)
	c.send(flagACK, nil, []byte("GET /"+strings.Repeat("a", 1500)))
	if got := drainSegs(t, s); len(got) != 1 || got[0].flags != flagACK {
		t.Fatalf("partial request: %v", got)
	}
	c.send(flagACK, nil, []byte(strings.Repeat("a", rcvBufSize-1505)))
	got := drainSegs(t, s)
	if len(got) != 1 || got[0].flags != flagRST {
		t.Fatalf("oversized request: %v", got)
	}
	// A request that fills the buffer exactly is still answered.
	s, _ = newStack(t, Config{}, testData)
	c = dial(t, s, 45001)
	req := "GET /latest/meta-data/ami-id HTTP/1.1\r\nX-Pad: \r\n\r\n"
	req = strings.Replace(req, "X-Pad: ", "X-Pad: "+strings.Repeat("p", MaxRequestSize-len(req)), 1)
	if len(req) != MaxRequestSize {
		t.Fatalf("request of %d bytes", len(req))
	}
	if got := c.request(req); got != answer("HTTP/1.1", 200, "text/plain", "", "ami-12345678") {
		t.Fatalf("largest request: %q", got)
	}
}

func TestConnectionLimit(t *testing.T) {
	s, clk := newStack(t, Config{}, "")
	for i := range MaxConnections {
		dial(t, s, uint16(1000+i))
	}
	syn := seg{sport: 2000, dport: 80, seq: 9, flags: flagSYN, window: 1000}
	s.Intercept(syn.frame())
	got := drainSegs(t, s)
	// As in Firecracker, the RST acknowledges the SYN's sequence number
	// itself, not the SYN.
	if len(got) != 1 || got[0].flags != flagRST|flagACK || got[0].ack != 9 || got[0].dport != 2000 {
		t.Fatalf("31st connection: %v", got)
	}
	// Once idle long enough, the oldest makes room.
	clk.now += evictionThreshold + 1
	s.Intercept(syn.frame())
	got = drainSegs(t, s)
	if len(got) != 2 || got[0].flags != flagRST || got[0].dport != 1000 || got[1].flags != flagSYN|flagACK || got[1].dport != 2000 {
		t.Fatalf("replacing: %v", got)
	}
	if s.m.ConnectionsCreated.Count() != MaxConnections+1 || s.m.ConnectionsDestroyed.Count() != 1 {
		t.Fatalf("created %d destroyed %d", s.m.ConnectionsCreated.Count(), s.m.ConnectionsDestroyed.Count())
	}
}

func TestPendingResets(t *testing.T) {
	s, _ := newStack(t, Config{}, "")
	for i := range MaxPendingResets + 50 {
		s.Intercept(seg{sport: uint16(3000 + i), dport: 80, seq: 1, ack: uint32(i), flags: flagACK}.frame())
	}
	got := drainSegs(t, s)
	if len(got) != MaxPendingResets {
		t.Fatalf("%d RSTs, want %d", len(got), MaxPendingResets)
	}
	// Newest first.
	if got[0].dport != 3000+MaxPendingResets-1 || got[len(got)-1].dport != 3000 {
		t.Fatalf("order: first %v last %v", got[0], got[len(got)-1])
	}
}

func TestMalformed(t *testing.T) {
	good := seg{sport: 6000, dport: 80, seq: 1, flags: flagSYN, window: 100}.frame()
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name    string
		frame   []byte
		replies int
	}{
		{"IPv4 total length too big", mut(func(b []byte) []byte { b[ethHeaderLen+3] += 4; return b }), 0},
		{"IPv4 truncated", mut(func(b []byte) []byte { return b[:len(b)-1] }), 0},
		{"IPv4 trailing bytes", append(bytes.Clone(good), 0, 0), 0},
		{"IPv4 IHL 4", mut(func(b []byte) []byte { b[ethHeaderLen] = 0x44; return b }), 0},
		{"IPv4 version 6", mut(func(b []byte) []byte { b[ethHeaderLen] = 0x65; return b }), 0},
		{"IPv4 header only", ipFrame(guestIP, mmdsIP, protoTCP, nil), 0},
		{"TCP data offset 4", mut(func(b []byte) []byte { b[ethHeaderLen+20+12] = 0x40; return b }), 0},
		{"TCP data offset past end", mut(func(b []byte) []byte { b[ethHeaderLen+20+12] = 0xf0; return b }), 0},
		// Checksums are not verified, as in Firecracker (guests may
		// offload them): a wrong one is still answered.
		{"bad TCP checksum", mut(func(b []byte) []byte { b[ethHeaderLen+20+16] ^= 0xff; return b }), 1},
		{"bad IPv4 checksum", mut(func(b []byte) []byte { b[ethHeaderLen+10] ^= 0xff; return b }), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStack(t, Config{}, "")
			if !s.Intercept(tc.frame) {
				t.Fatal("frame for MMDS passed to the tap")
			}
			if got := drainSegs(t, s); len(got) != tc.replies {
				t.Fatalf("got %v", got)
			}
		})
	}
}

func TestPointer(t *testing.T) {
	s, _ := newStack(t, Config{}, testData)
	v := s.r.store.Value()
	for _, tc := range []struct {
		ptr  string
		want string // "" = not found
	}{
		{"", "*"},
		{"latest", ""},
		{"/latest/meta-data/list/1/b", `"c"`},
		{"/latest/meta-data/list/01", ""},
		{"/latest/meta-data/list/+1", ""},
		{"/latest/meta-data/list/2", ""},
		{"/latest/meta-data/count/x", ""},
		{"/a~b", `{"c/d":"esc"}`},
		{"/a~1b", ""},
		{"/a~0b/c~1d", `"esc"`},
	} {
		got, ok := Pointer(v, tc.ptr)
		switch {
		case tc.want == "" && ok:
			t.Errorf("%q found %s", tc.ptr, got)
		case tc.want == "*" && !got.Equal(v):
			t.Errorf("%q is not the whole value", tc.ptr)
		case tc.want != "" && tc.want != "*" && got.String() != tc.want:
			t.Errorf("%q = %s, want %s", tc.ptr, got, tc.want)
		}
	}
}
