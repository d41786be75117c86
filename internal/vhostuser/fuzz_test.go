package vhostuser

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FuzzDecode feeds arbitrary header+body bytes and fd counts to the
// decoder: it must return a message or an error wrapping one of the
// package's sentinels, never panic, and never accept a body whose length
// disagrees with the header.
func FuzzDecode(f *testing.F) {
	f.Add(rawMsg(ReqGetFeatures, version, nil), uint8(0))
	f.Add(rawMsg(ReqSetFeatures, version, u64(1<<32)), uint8(0))
	f.Add(rawMsg(ReqSetMemTable, version|flagNeedReply, memTable(memRegion{GPA: 0x100000, Size: 1 << 20, UserAddr: 0x7f0000000000})), uint8(1))
	f.Add(rawMsg(ReqSetVringAddr, version, vringAddrBody(0, 0x1000, 0x3000, 0x2000)), uint8(0))
	f.Add(rawMsg(ReqSetVringKick, version, u64(1)), uint8(1))
	f.Add(rawMsg(ReqSetVringCall, version, u64(vringNoFd)), uint8(0))
	f.Add(rawMsg(ReqGetConfig, version, configBody(config{Size: 8}, make([]byte, 8))), uint8(0))
	f.Add(rawMsg(ReqSetVringNum, version, state(0, 256)), uint8(0))
	f.Add(rawMsg(ReqSetStatus, version, u64(15)), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, nfds uint8) {
		h, err := parseHeader(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parseHeader error %v wraps no sentinel", err)
			}
			return
		}
		m, err := decode(h, data[headerSize:], int(nfds))
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownRequest) {
				t.Fatalf("decode error %v wraps no sentinel", err)
			}
			return
		}
		if len(data)-headerSize != int(h.Size) {
			t.Fatalf("accepted a %d-byte body for size %d", len(data)-headerSize, h.Size)
		}
		if m.Request == ReqSetMemTable && len(m.Regions) != int(nfds) {
			t.Fatalf("%d regions with %d fds", len(m.Regions), nfds)
		}
		if len(m.Config.Data) > MaxConfigSize {
			t.Fatalf("config of %d bytes", len(m.Config.Data))
		}
	})
}

// FuzzServe streams arbitrary bytes (no fds) at a server: whatever they
// say, Serve must end once the stream does, without panicking.
func FuzzServe(f *testing.F) {
	f.Add(append(rawMsg(ReqGetFeatures, version, nil), rawMsg(ReqSetProtocolFeatures, version, u64(1<<ProtoConfig))...))
	f.Add(append(rawMsg(ReqSetProtocolFeatures, version, u64(1<<ProtoConfig|1<<ProtoStatus)),
		rawMsg(ReqGetConfig, version, configBody(config{Offset: 4, Size: 8}, make([]byte, 8)))...))
	f.Add(append(rawMsg(ReqSetVringNum, version, state(0, 8)), rawMsg(ReqGetVringBase, version, state(0, 0))...))
	f.Add(rawMsg(ReqSetStatus, version, u64(4)))
	f.Fuzz(func(t *testing.T, stream []byte) {
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
		cl, sc := conn(fds[0]), conn(fds[1])
		defer cl.Close()
		done := make(chan error, 1)
		go func() { done <- Serve(context.Background(), sc, newFakeDevice(2), Options{}) }()
		// Replies are drained so the server never blocks writing.
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := cl.Read(buf); err != nil {
					return
				}
			}
		}()
		cl.Write(stream)
		cl.CloseWrite()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not end after the stream did")
		}
	})
}
