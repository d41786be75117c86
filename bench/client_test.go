package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		status  int
		body    string
		close   bool
		wantErr error
	}{
		{"204", "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n", 204, "", false, nil},
		{"200 with body", "HTTP/1.1 200 \r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\n{\"a\"}", 200, `{"a"}`, false, nil},
		{"close", "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", 400, "{}", true, nil},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", 0, "", false, ErrHTTP},
		{"bad status", "HTTP/1.1 abc\r\n\r\n", 0, "", false, ErrHTTP},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, "", false, ErrHTTP},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, "", false, ErrHTTP},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, "", false, io.ErrUnexpectedEOF},
		{"truncated headers", "HTTP/1.1 200 OK\r\nContent-Le", 0, "", false, io.EOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body, closeAfter, err := readResponse(bufio.NewReader(strings.NewReader(tc.in)))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.status || string(body) != tc.body || closeAfter != tc.close {
				t.Errorf("got %d %q close=%v, want %d %q close=%v", status, body, closeAfter, tc.status, tc.body, tc.close)
			}
		})
	}
}

func TestWriteRequest(t *testing.T) {
	var b bytes.Buffer
	writeRequest(&b, "PUT", "/machine-config", []byte(`{"x":1}`))
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b.Bytes())))
	if err != nil {
		t.Fatalf("net/http cannot read our request: %v\n%s", err, b.String())
	}
	body, _ := io.ReadAll(req.Body)
	if req.Method != "PUT" || req.URL.Path != "/machine-config" || string(body) != `{"x":1}` || req.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request read back as %s %s %q %v", req.Method, req.URL.Path, body, req.Header)
	}
}

// TestClientAgainstServer drives a net/http server over a Unix socket,
// including a server that closes the connection after each answer.
func TestClientAgainstServer(t *testing.T) {
	for _, closeEach := range []bool{false, true} {
		sock := filepath.Join(t.TempDir(), "s.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		var conns atomic.Int32
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if closeEach {
					w.Header().Set("Connection", "close")
				}
				b, _ := io.ReadAll(r.Body)
				if r.Method == "PUT" {
					w.WriteHeader(http.StatusNoContent)
					return
				}
				w.Write(append([]byte(r.URL.Path), b...))
			}),
			ConnState: func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			},
		}
		go srv.Serve(ln)
		c := newAPIClient(sock)
		ctx := context.Background()
		for i := 0; i < 5; i++ {
			status, body, err := c.Do(ctx, "GET", "/x", nil)
			if err != nil || status != 200 || string(body) != "/x" {
				t.Fatalf("closeEach=%v: GET: %d %q %v", closeEach, status, body, err)
			}
			if _, err := c.mustStatus(ctx, "PUT", "/m", []byte("{}"), 204); err != nil {
				t.Fatalf("closeEach=%v: PUT: %v", closeEach, err)
			}
		}
		if _, err := c.mustStatus(ctx, "GET", "/x", nil, 204); err == nil {
			t.Errorf("mustStatus accepted 200 for 204")
		}
		c.Close()
		srv.Close()
		want := int32(1)
		if closeEach {
			want = 11
		}
		if got := conns.Load(); got != want {
			t.Errorf("closeEach=%v: %d connections, want %d", closeEach, got, want)
		}
	}
}

func TestClientNoServer(t *testing.T) {
	c := newAPIClient(filepath.Join(t.TempDir(), "none.sock"))
	if _, _, err := c.Do(context.Background(), "GET", "/", nil); err == nil {
		t.Fatal("no error without a server")
	}
}
