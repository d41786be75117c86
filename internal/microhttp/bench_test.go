package microhttp

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Both benchmarks time one keep-alive GET round trip over a Unix socket,
// with the same client, so their ratio compares the servers.

const benchRequest = "GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n"

var benchBody = []byte(`{"firecracker_version":"1.17.0-dev"}`)

func BenchmarkRoundTrip(b *testing.B) {
	resp := &Response{Status: 200, Body: benchBody}
	ts := startServer(b, Config{}, fixed(resp))
	c, err := net.Dial("unix", ts.path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	benchClient(b, c)
}

func BenchmarkNetHTTPRoundTrip(b *testing.B) {
	path := filepath.Join(shortDir(b), "http.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(benchBody)
	})}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	c, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	benchClient(b, c)
}

func benchClient(b *testing.B, c net.Conn) {
	r := bufio.NewReader(c)
	req := []byte(benchRequest)
	body := make([]byte, 0, 256)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		length := -1
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if len(line) == 2 {
				break
			}
			if v, ok := strings.CutPrefix(string(line), "Content-Length: "); ok {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if length != len(benchBody) {
			b.Fatalf("Content-Length %d", length)
		}
		body = body[:length]
		if _, err := io.ReadFull(r, body); err != nil {
			b.Fatal(err)
		}
	}
	roundTrip() // warm up the connection
	b.ReportAllocs()
	for b.Loop() {
		roundTrip()
	}
}
