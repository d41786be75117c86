package microhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const ioTimeout = 5 * time.Second

type testServer struct {
	path string
	srv  *Server
	errc chan error
}

// shortDir returns a fresh directory with a short path: a socket path must
// stay under 108 bytes, which t.TempDir does not promise.
func shortDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "mh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startServer(t testing.TB, cfg Config, h Handler) *testServer {
	t.Helper()
	path := filepath.Join(shortDir(t), "api.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{path: path, srv: NewServer(ln, cfg), errc: make(chan error, 1)}
	go func() { ts.errc <- ts.srv.Serve(context.Background(), h) }()
	t.Cleanup(func() {
		ts.srv.Close()
		select {
		case <-ts.errc:
		case <-time.After(ioTimeout):
			t.Error("Serve did not return after Close")
		}
	})
	return ts
}

func (ts *testServer) dial(t testing.TB) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: ts.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t testing.TB, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// expect reads exactly len(want) bytes and compares them.
func expect(t testing.TB, c net.Conn, want string) {
	t.Helper()
	got := make([]byte, len(want))
	n, err := io.ReadFull(c, got)
	if err != nil || string(got) != want {
		t.Fatalf("read %q (err %v)\nwant %q", got[:n], err, want)
	}
}

// expectQuiet checks that nothing more arrives for a while.
func expectQuiet(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var b [512]byte
	n, err := c.Read(b[:])
	if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("unexpected %q (err %v)", b[:n], err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
}

func wantJSON(status int, body string) string {
	return fmt.Sprintf("HTTP/1.1 %d \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", status, len(body), body)
}

func wantParseError(msg string) string {
	return wantJSON(400, `{ "error": "`+msg+"\nAll previous unanswered requests will be dropped.\" }")
}

// echo answers 200 with "METHOD path version body".
var echo = HandlerFunc(func(r *Request) *Response {
	return &Response{Status: 200, Body: []byte(r.Method + " " + r.Path + " " + r.Version + " " + string(r.Body))}
})

func fixed(resp *Response) Handler {
	return HandlerFunc(func(*Request) *Response { return resp })
}

func TestServeExactBytes(t *testing.T) {
	long := strings.Repeat("a", 1100)
	tests := []struct {
		name string
		cfg  Config
		h    Handler
		req  string
		want string
	}{
		{
			name: "get",
			h:    echo,
			req:  "GET /version HTTP/1.1\r\nAccept: application/json\r\n\r\n",
			want: wantJSON(200, "GET /version HTTP/1.1 "),
		},
		{
			name: "put with body",
			h:    echo,
			req:  "PUT /drives/rootfs HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n{\"a\"",
			want: wantJSON(200, `PUT /drives/rootfs HTTP/1.1 {"a"`),
		},
		{
			name: "no content",
			h:    fixed(&Response{Status: 204}),
			req:  "PUT /actions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
			want: "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n",
		},
		{
			name: "error without body still announces one",
			h:    fixed(&Response{Status: 400}),
			req:  "GET / HTTP/1.1\r\n\r\n",
			want: "HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n",
		},
		{
			name: "deprecation",
			h:    fixed(&Response{Status: 204, Deprecation: true}),
			req:  "PUT /machine-config HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
			want: "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\nDeprecation: true\r\n\r\n",
		},
		{
			name: "http/1.0 gets an http/1.1 answer",
			h:    echo,
			req:  "GET / HTTP/1.0\r\n\r\n",
			want: wantJSON(200, "GET / HTTP/1.0 "),
		},
		{
			name: "absolute form",
			h:    echo,
			req:  "GET http://localhost/machine-config HTTP/1.1\r\n\r\n",
			want: wantJSON(200, "GET /machine-config HTTP/1.1 "),
		},
		{
			name: "unsupported method",
			h:    echo,
			req:  "POST / HTTP/1.1\r\n\r\n",
			want: wantParseError("Invalid HTTP Method: Unsupported HTTP method."),
		},
		{
			name: "unsupported version",
			h:    echo,
			req:  "GET / HTTP/2.0\r\n\r\n",
			want: wantParseError("Invalid HTTP Version: Unsupported HTTP version."),
		},
		{
			name: "empty uri",
			h:    echo,
			req:  "GET  HTTP/1.1\r\n\r\n",
			want: wantParseError("Invalid URI: Empty URI not allowed."),
		},
		{
			name: "target not utf-8",
			h:    echo,
			req:  "GET /\xc3\x28 HTTP/1.1\r\n\r\n",
			want: wantParseError("Invalid URI: Cannot parse URI as UTF-8."),
		},
		{
			name: "malformed request line",
			h:    echo,
			req:  "GET/ HTTP/1.1\r\n\r\n",
			want: wantParseError("Invalid request."),
		},
		{
			name: "header without colon",
			h:    echo,
			req:  "GET / HTTP/1.1\r\nfoo\r\n\r\n",
			want: wantParseError("Invalid header. Reason: Header is incorrectly formatted. Key: foo"),
		},
		{
			name: "bad content length",
			h:    echo,
			req:  "PUT / HTTP/1.1\r\nContent-Length: 1a\r\n\r\n",
			want: wantParseError("Invalid header. Reason: Invalid value. Key:Content-Length; Value: 1a"),
		},
		{
			name: "header not utf-8",
			h:    echo,
			req:  "GET / HTTP/1.1\r\nX-A: \xff\r\n\r\n",
			want: wantParseError("Invalid header. Reason: Header contains invalid characters. Key: invalid utf-8 sequence of 1 bytes from index 5"),
		},
		{
			name: "accept-encoding refusing identity",
			h:    echo,
			req:  "GET / HTTP/1.1\r\nAccept-Encoding: gzip, identity;q=0\r\n\r\n",
			want: wantParseError("Invalid header. Reason: Invalid value. Key:Accept-Encoding; Value: identity;q=0"),
		},
		{
			name: "empty accept-encoding",
			h:    echo,
			req:  "GET / HTTP/1.1\r\nAccept-Encoding:\r\n\r\n",
			want: wantParseError("Invalid request."),
		},
		{
			name: "payload limit",
			cfg:  Config{MaxPayload: 250},
			h:    echo,
			req:  "PUT /mmds HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 260\r\n\r\n" + strings.Repeat("1", 260),
			want: "HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: 145\r\n\r\n{ \"error\": \"Request payload with size 260 is larger than the limit of 250 allowed by server.\nAll previous unanswered requests will be dropped.\" }",
		},
		{
			name: "default payload limit",
			h:    echo,
			req:  "PUT /mmds HTTP/1.1\r\nContent-Length: 51201\r\n\r\n",
			want: wantParseError("Request payload with size 51201 is larger than the limit of 51200 allowed by server."),
		},
		{
			name: "zero payload limit",
			cfg:  Config{MaxPayload: -1},
			h:    echo,
			req:  "PUT /mmds HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
			want: wantParseError("Request payload with size 1 is larger than the limit of 0 allowed by server."),
		},
		{
			name: "oversized request line",
			h:    echo,
			req:  "GET /" + long + " HTTP/1.1\r\n\r\n",
			want: wantParseError("Invalid request."),
		},
		{
			name: "oversized header line",
			h:    echo,
			req:  "GET / HTTP/1.1\r\nX-Big: " + long + "\r\n\r\n",
			want: wantParseError("Invalid header. Reason: Invalid content length. Header: " + ("X-Big: " + long)[:BufferSize]),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, tt.cfg, tt.h)
			c := ts.dial(t)
			send(t, c, tt.req)
			expect(t, c, tt.want)
			if !strings.Contains(tt.name, "oversized") {
				expectQuiet(t, c)
			}
		})
	}
}

// recorder is a handler remembering what it saw.
type recorder struct {
	mu   sync.Mutex
	seen []string
	resp func(*Request) *Response
}

func (r *recorder) ServeRequest(req *Request) *Response {
	r.mu.Lock()
	r.seen = append(r.seen, req.Method+" "+req.Path+" "+string(req.Body))
	r.mu.Unlock()
	if r.resp != nil {
		return r.resp(req)
	}
	return echo(req)
}

func (r *recorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func TestPipelining(t *testing.T) {
	rec := &recorder{}
	ts := startServer(t, Config{}, rec)
	c := ts.dial(t)
	send(t, c, "GET /a HTTP/1.1\r\n\r\nPUT /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzPATCH /c HTTP/1.0\r\nContent-Length: 1\r\n\r\n!")
	expect(t, c, wantJSON(200, "GET /a HTTP/1.1 ")+wantJSON(200, "PUT /b HTTP/1.1 xyz")+wantJSON(200, "PATCH /c HTTP/1.0 !"))
	if got := rec.calls(); strings.Join(got, "|") != "GET /a |PUT /b xyz|PATCH /c !" {
		t.Errorf("handler saw %q", got)
	}
}

func TestErrorDropsRequestsReadWithIt(t *testing.T) {
	rec := &recorder{}
	ts := startServer(t, Config{}, rec)
	c := ts.dial(t)
	send(t, c, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nDELETE /c HTTP/3\r\n\r\n")
	expect(t, c, wantParseError("Invalid HTTP Version: Unsupported HTTP version."))
	expectQuiet(t, c)
	if got := rec.calls(); len(got) != 0 {
		t.Errorf("handler saw %q", got)
	}
	// The failed read left nothing behind: the connection still works.
	send(t, c, "GET /d HTTP/1.1\r\n\r\n")
	expect(t, c, wantJSON(200, "GET /d HTTP/1.1 "))
}

func TestHeaderErrorWedgesConnection(t *testing.T) {
	ts := startServer(t, Config{}, echo)
	c := ts.dial(t)
	send(t, c, "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
	expect(t, c, wantParseError("Invalid header. Reason: Invalid value. Key:Content-Length; Value: x"))
	// As in Firecracker, the parser is still inside the header block.
	send(t, c, "GET /version HTTP/1.1\r\n\r\n")
	expect(t, c, wantParseError("Invalid header. Reason: Header is incorrectly formatted. Key: GET /version HTTP/1.1"))
	// Other connections are unaffected.
	c2 := ts.dial(t)
	send(t, c2, "GET /version HTTP/1.1\r\n\r\n")
	expect(t, c2, wantJSON(200, "GET /version HTTP/1.1 "))
}

func TestDribble(t *testing.T) {
	rec := &recorder{}
	ts := startServer(t, Config{}, rec)
	c := ts.dial(t)
	req := "PUT http://localhost/boot-source HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\": true}" +
		"GET /b HTTP/1.1\r\n\r\n"
	for i := 0; i < len(req); i++ {
		send(t, c, req[i:i+1])
		time.Sleep(200 * time.Microsecond)
	}
	expect(t, c, wantJSON(200, "PUT /boot-source HTTP/1.1 {\"a\": true}")+wantJSON(200, "GET /b HTTP/1.1 "))
}

func TestExpectContinue(t *testing.T) {
	for _, version := range []string{HTTP11, HTTP10} {
		t.Run(version, func(t *testing.T) {
			ts := startServer(t, Config{}, echo)
			c := ts.dial(t)
			send(t, c, "PUT /mmds "+version+"\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
			// The interim answer carries the request's version.
			expect(t, c, version+" 100 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n")
			send(t, c, "{}")
			expect(t, c, wantJSON(200, "PUT /mmds "+version+" {}"))
		})
	}
}

func TestExpectContinuePrecedesEarlierAnswers(t *testing.T) {
	ts := startServer(t, Config{}, echo)
	c := ts.dial(t)
	// Both requests complete in one read: the 100 is queued while parsing,
	// before the handler answers the first request.
	send(t, c, "GET /a HTTP/1.1\r\n\r\nPUT /b HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx")
	expect(t, c, "HTTP/1.1 100 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n"+
		wantJSON(200, "GET /a HTTP/1.1 ")+wantJSON(200, "PUT /b HTTP/1.1 x"))
}

func TestConnectionCloseIgnored(t *testing.T) {
	ts := startServer(t, Config{}, echo)
	c := ts.dial(t)
	send(t, c, "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n")
	expect(t, c, wantJSON(200, "GET /a HTTP/1.1 "))
	send(t, c, "GET /b HTTP/1.1\r\n\r\n")
	expect(t, c, wantJSON(200, "GET /b HTTP/1.1 "))
}

func TestConnectionLimit(t *testing.T) {
	for _, limit := range []int{0, 3} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			ts := startServer(t, Config{MaxConnections: limit}, echo)
			n := limit
			if n == 0 {
				n = DefaultMaxConnections
			}
			conns := make([]*net.UnixConn, n)
			for i := range conns {
				conns[i] = ts.dial(t)
				send(t, conns[i], "GET / HTTP/1.1\r\n\r\n")
				expect(t, conns[i], wantJSON(200, "GET / HTTP/1.1 "))
			}
			extra := ts.dial(t)
			got, err := io.ReadAll(extra)
			if err != nil || string(got) != serverFullWant {
				t.Fatalf("extra connection read %q (err %v)", got, err)
			}
			// Existing connections are unaffected.
			send(t, conns[0], "GET / HTTP/1.1\r\n\r\n")
			expect(t, conns[0], wantJSON(200, "GET / HTTP/1.1 "))
			// Once one leaves, there is room again.
			conns[0].Close()
			deadline := time.Now().Add(ioTimeout)
			for {
				// A refused connection may be closed before the request is
				// written; only what comes back matters.
				c := ts.dial(t)
				io.WriteString(c, "GET / HTTP/1.1\r\n\r\n")
				b := make([]byte, 12)
				if _, err := io.ReadFull(c, b); err != nil {
					t.Fatal(err)
				}
				if string(b) == "HTTP/1.1 200" {
					break
				}
				if string(b) != serverFullWant[:12] {
					t.Fatalf("read %q", b)
				}
				c.Close()
				if time.Now().After(deadline) {
					t.Fatal("no room after a connection closed")
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// The 503 exactly as Firecracker writes it (no space after the code).
const serverFullWant = "HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\nContent-Length: 40\r\n\r\n{ \"error\": \"Too many open connections\" }"

func countFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("SKIPPED: cannot count descriptors without /proc/self/fd: %v", err)
	}
	return len(ents)
}

func TestPassedDescriptorsAreClosed(t *testing.T) {
	ts := startServer(t, Config{}, echo)
	c := ts.dial(t)
	// Warm up so the connection's own descriptors are in the baseline.
	send(t, c, "GET / HTTP/1.1\r\n\r\n")
	expect(t, c, wantJSON(200, "GET / HTTP/1.1 "))
	base := countFDs(t)

	var readers, writers []*os.File
	var sent []int
	for i := 0; i < 4; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		readers, writers = append(readers, r), append(writers, w)
		sent = append(sent, int(w.Fd()))
	}
	// Descriptors ride on a request's first bytes and on its body.
	msg := "PUT /x HTTP/1.1\r\nContent-Length: 1\r\n\r\n"
	if _, _, err := c.WriteMsgUnix([]byte(msg), unix.UnixRights(sent[:3]...), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.WriteMsgUnix([]byte("z"), unix.UnixRights(sent[3:]...), nil); err != nil {
		t.Fatal(err)
	}
	expect(t, c, wantJSON(200, "PUT /x HTTP/1.1 z"))
	// Drop our write ends: a reader sees EOF only if the server's copy is
	// closed too.
	for _, w := range writers {
		w.Close()
	}
	for i, r := range readers {
		r.SetReadDeadline(time.Now().Add(ioTimeout))
		var b [1]byte
		if n, err := r.Read(b[:]); n != 0 || err != io.EOF {
			t.Fatalf("pipe %d: read %d, %v; the server kept the descriptor", i, n, err)
		}
	}
	if got := countFDs(t); got != base+len(readers) {
		t.Errorf("descriptors: %d open, want %d (baseline %d plus %d pipe readers)", got, base+len(readers), base, len(readers))
	}
}

func TestHalfCloseDropsAnswer(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	rec := &recorder{resp: func(r *Request) *Response {
		if r.Path == "/block" {
			entered <- struct{}{}
			<-release
		}
		return echo(r)
	}}
	ts := startServer(t, Config{}, rec)
	a := ts.dial(t)
	send(t, a, "GET /block HTTP/1.1\r\n\r\n")
	<-entered
	// While the loop is busy, b sends a request and shuts down its write
	// side. When the loop next looks, the hang-up wins over the data.
	b := ts.dial(t)
	send(t, b, "GET /dropped HTTP/1.1\r\n\r\n")
	if err := b.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	expect(t, a, wantJSON(200, "GET /block HTTP/1.1 "))
	// The connection is closed with the request unread, so the client
	// sees a reset rather than a clean end of stream.
	got, err := io.ReadAll(b)
	if len(got) != 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("half-closed client read %q (err %v), want nothing and ECONNRESET", got, err)
	}
	for _, call := range rec.calls() {
		if strings.Contains(call, "dropped") {
			t.Errorf("handler saw %q", call)
		}
	}
}

func TestHandlerCallsSerialized(t *testing.T) {
	var active, maxActive atomic.Int32
	h := HandlerFunc(func(r *Request) *Response {
		n := active.Add(1)
		if n > maxActive.Load() {
			maxActive.Store(n)
		}
		time.Sleep(50 * time.Microsecond)
		active.Add(-1)
		return echo(r)
	})
	ts := startServer(t, Config{}, h)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		c := ts.dial(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				want := wantJSON(200, fmt.Sprintf("GET /%d HTTP/1.1 ", i))
				if _, err := fmt.Fprintf(c, "GET /%d HTTP/1.1\r\n\r\n", i); err != nil {
					t.Error(err)
					return
				}
				got := make([]byte, len(want))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
					t.Errorf("got %q (%v)", got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if maxActive.Load() != 1 {
		t.Errorf("%d handler calls ran at once", maxActive.Load())
	}
}

func TestCloseKeepsSocketFile(t *testing.T) {
	path := filepath.Join(shortDir(t), "api.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln, Config{})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(context.Background(), echo) }()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	send(t, c, "GET / HTTP/1.1\r\n\r\n")
	expect(t, c, wantJSON(200, "GET / HTTP/1.1 "))

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v", err)
	}
	if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
		t.Errorf("after Close the client read %q, %v", got, err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket file gone or changed: %v", err)
	}
	if _, err := net.Dial("unix", path); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after Close: %v", err)
	}
	if err := srv.Serve(context.Background(), echo); !errors.Is(err, ErrServerClosed) {
		t.Errorf("second Serve: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestServeStopsOnContext(t *testing.T) {
	path := filepath.Join(shortDir(t), "api.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	before := countFDs(t)
	srv := NewServer(ln, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, echo) }()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	send(t, c, "GET / HTTP/1.1\r\n\r\n")
	expect(t, c, wantJSON(200, "GET / HTTP/1.1 "))
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Serve did not stop")
	}
	c.Close()
	// Listener, its duplicate, epoll, eventfd and the connection are gone.
	if after := countFDs(t); after != before-1 {
		t.Errorf("descriptors: %d before Serve, %d after (want %d)", before, after, before-1)
	}
}

func TestCloseFromHandler(t *testing.T) {
	var srv atomic.Pointer[Server]
	h := HandlerFunc(func(r *Request) *Response {
		srv.Load().Close()
		return &Response{Status: 204}
	})
	ts := startServer(t, Config{}, h)
	srv.Store(ts.srv)
	c := ts.dial(t)
	send(t, c, "GET / HTTP/1.1\r\n\r\n")
	// The answer is queued; the shutdown's single flush attempt sends it.
	expect(t, c, "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n")
	select {
	case err := <-ts.errc:
		if !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		ts.errc <- err
	case <-time.After(ioTimeout):
		t.Fatal("Serve did not stop")
	}
}

func TestNilResponse(t *testing.T) {
	ts := startServer(t, Config{}, fixed(nil))
	c := ts.dial(t)
	send(t, c, "GET / HTTP/1.1\r\n\r\n")
	expect(t, c, "HTTP/1.1 500 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n")
}

// A failed read is answered 500 with the error's text, as Firecracker
// does. No client can make a socket read fail on demand, so the loop
// reads from a pipe, where recvmsg fails with ENOTSOCK.
func TestReadErrorAnswer(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	unix.Write(p[1], []byte("GET / HTTP/1.1\r\n\r\n"))
	l := &loop{s: NewServer(nil, Config{}), conns: map[int]*conn{}, oob: make([]byte, unix.CmsgSpace(maxFDs*4))}
	c := &conn{fd: p[0], parser: NewParser(DefaultMaxPayload)}
	l.read(c)
	want := "HTTP/1.1 500 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n" +
		"Content-Type: application/json\r\nContent-Length: 26\r\n\r\nNot a socket (os error 88)"
	if c.state != awaitingOutgoing || len(c.queue) != 1 || string(c.queue[0]) != want {
		t.Fatalf("state %d, queue %q", c.state, c.queue)
	}
	if len(l.batch) != 0 {
		t.Errorf("requests dispatched: %d", len(l.batch))
	}
}
