package mmdsnet

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var updateSeeds = flag.Bool("update", false, "rewrite the seed corpus in testdata/fuzz")

// splitFrames cuts fuzz input into frames: each is a 2-byte big-endian
// length then that many bytes (the last one takes what is left).
func splitFrames(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 2 && len(out) < 64 {
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func joinFrames(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// seedInputs are conversations worth mutating.
func seedInputs() map[string][]byte {
	syn := seg{sport: 7000, dport: 80, seq: 100, flags: flagSYN, window: 5000, opts: mssOpt(1460)}
	// FuzzIntercept fixes the stack's ISN at 0, so these ACKs are valid.
	ack := seg{sport: 7000, dport: 80, seq: 101, ack: 1, flags: flagACK, window: 5000}
	req := ack
	req.flags |= flagPSH
	req.payload = []byte("GET /latest/meta-data/ HTTP/1.1\r\nAccept: application/json\r\n\r\n")
	put := req
	put.payload = []byte("PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n")
	fin := ack
	fin.flags |= flagFIN
	return map[string][]byte{
		"arp":          joinFrames(arpRequestFrame(guestMAC, guestIP, mmdsIP)),
		"get":          joinFrames(syn.frame(), ack.frame(), req.frame(), fin.frame()),
		"token":        joinFrames(syn.frame(), ack.frame(), put.frame()),
		"rst":          joinFrames(syn.frame(), seg{sport: 7000, dport: 80, seq: 101, flags: flagRST}.frame()),
		"udp":          joinFrames(ipFrame(guestIP, mmdsIP, 17, []byte("hello"))),
		"not-for-mmds": joinFrames(ethFrame(MAC, guestMAC, 0x86dd, make([]byte, 40))),
	}
}

// TestWriteSeeds keeps testdata/fuzz/FuzzIntercept in step with
// seedInputs when run with -update.
func TestWriteSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzIntercept")
	for name, in := range seedInputs() {
		path := filepath.Join(dir, name)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", in)
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("seed %s is stale; run go test -run TestWriteSeeds -update", path)
		}
	}
}

// FuzzIntercept feeds frame sequences to a stack, draining it after each
// with the clock moving on: nothing may panic or loop, and every frame
// it sends must be well formed.
func FuzzIntercept(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		s, clk := newStack(t, Config{Version: Version(len(in) % 2), IMDSCompat: len(in)%3 == 0}, testData)
		s.h.isn = func() uint32 { return 0 }
		buf := make([]byte, 65550)
		for _, fr := range splitFrames(in) {
			s.Intercept(fr)
			for range 1000 {
				n := s.Receive(buf)
				if n == 0 {
					break
				}
				out := buf[:n]
				if n == ethHeaderLen+arpFrameLen && binary.BigEndian.Uint16(out[12:]) == etherTypeARP {
					continue
				}
				checkOut(t, out)
			}
			clk.now += 100 * time.Millisecond
			if _, ok := s.Deadline(); ok {
				s.Receive(buf)
			}
		}
	})
}

// checkOut verifies headers and checksums of a TCP frame the stack sent
// (to any guest address and MAC).
func checkOut(t *testing.T, f []byte) {
	t.Helper()
	if [6]byte(f[6:12]) != MAC || binary.BigEndian.Uint16(f[12:]) != etherTypeIPv4 {
		t.Fatalf("bad Ethernet header % x", f[:14])
	}
	p, err := parseIPv4(f[ethHeaderLen:])
	if err != nil || checksum(0, p.b[:p.hlen]) != 0 || p.protocol() != protoTCP {
		t.Fatalf("bad IPv4 packet: %v", err)
	}
	s, err := parseSegment(p.payload())
	if err != nil {
		t.Fatalf("bad segment: %v", err)
	}
	if checksum(pseudoSum([4]byte(p.b[12:16]), [4]byte(p.b[16:20]), len(s.b)), s.b) != 0 {
		t.Fatal("bad TCP checksum")
	}
}
