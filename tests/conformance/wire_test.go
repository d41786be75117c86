package conformance

// HTTP on the wire (Firecracker's micro_http): status lines without a
// reason phrase, the header set and order, parse-error bodies, payload
// limits, the connection limit, keep-alive, pipelining, 100-continue and
// the API socket's rules.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const instanceInfoFresh = `{"id":"anonymous-instance","state":"Not started","vmm_version":"1.17.0-dev","app_name":"Firecracker"}`

func TestWireAnswers(t *testing.T) {
	t.Parallel()
	e := startEmber(t)
	c := e.client()

	cases := []struct {
		name string
		req  string
		want string
	}{
		{"200 with JSON body", buildRequest("GET", "/", ""),
			jsonAnswer(200, instanceInfoFresh, false)},
		{"version", buildRequest("GET", "/version", ""),
			jsonAnswer(200, `{"firecracker_version":"1.17.0-dev"}`, false)},
		{"204 has no body headers", buildRequest("PUT", "/mmds", `{"a":1}`), noContent},
		{"deprecated field on success", buildRequest("PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":128,"cpu_template":"None"}`),
			noContentDeprecated},
		{"API error", buildRequest("GET", "/balloon", ""),
			faultAnswer(400, "Balloon config error: No balloon device found.")},
		{"deprecated field on an error", buildRequest("PUT", "/mmds/config", `{"network_interfaces":[]}`),
			jsonAnswer(400, faultBody("MMMDS config error: The list of network interface IDs that allow forwarding MMDS requests is empty."), true)},
		{"HTTP/1.0 request gets an HTTP/1.1 answer", "GET /version HTTP/1.0\r\n\r\n",
			jsonAnswer(200, `{"firecracker_version":"1.17.0-dev"}`, false)},
		{"absolute-form target", "GET http://localhost/version HTTP/1.1\r\n\r\n",
			jsonAnswer(200, `{"firecracker_version":"1.17.0-dev"}`, false)},
		{"absolute-form target without a path", "GET http://localhost HTTP/1.1\r\n\r\n",
			jsonAnswer(200, instanceInfoFresh, false)},
		{"query strings are part of the path", buildRequest("GET", "/version?x=1", ""),
			faultAnswer(400, "Invalid request method and/or path: GET version?x=1.")},
		{"header names are case-insensitive", "PUT /mmds HTTP/1.1\r\ncontent-length: 7\r\n\r\n{\"b\":2}", noContent},
		{"unknown Content-Type is ignored", "PUT /mmds HTTP/1.1\r\nContent-Type: text/xml\r\nContent-Length: 7\r\n\r\n{\"c\":3}", noContent},
		{"unsupported Expect value is ignored", "PUT /mmds HTTP/1.1\r\nExpect: later\r\nContent-Length: 7\r\n\r\n{\"d\":4}", noContent},
		{"Connection: close is ignored", "GET /version HTTP/1.1\r\nConnection: close\r\n\r\n",
			jsonAnswer(200, `{"firecracker_version":"1.17.0-dev"}`, false)},
		// Still the same connection: Connection: close did not close it.
		{"connection stays open", buildRequest("GET", "/mmds", ""),
			jsonAnswer(200, `{"d":4}`, false)}, // PUT replaces the store
		{"target without a leading slash is the empty path", "GET version HTTP/1.1\r\n\r\n",
			jsonAnswer(200, instanceInfoFresh, false)},
		{"Content-Type with parameters is ignored", "PUT /mmds HTTP/1.1\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 7\r\n\r\n{\"f\":6}", noContent},
		{"unsupported Accept is ignored", "GET /version HTTP/1.1\r\nAccept: text/html\r\n\r\n",
			jsonAnswer(200, `{"firecracker_version":"1.17.0-dev"}`, false)},
		{"Content-Length: 0 is no body", "PUT /mmds HTTP/1.1\r\nContent-Length: 0\r\n\r\n", faultAnswer(400, "Empty PUT request.")},
		{"Content-Length with spaces", "PUT /mmds HTTP/1.1\r\nContent-Length:   7  \r\n\r\n{\"g\":7}", noContent},
	}
	for _, tc := range cases {
		c.send(tc.req)
		r := c.readResponse()
		if string(r.raw) != tc.want {
			t.Errorf("%s: %q\n got %s\nwant %q", tc.name, tc.req, r, tc.want)
		}
	}
}

func TestWireParseErrors(t *testing.T) {
	t.Parallel()
	e := startEmber(t)

	longHeader := "X-Long: " + strings.Repeat("a", 2000)
	cases := []struct {
		name string
		req  string
		msg  string
	}{
		{"unknown method", "POST / HTTP/1.1\r\n\r\n", "Invalid HTTP Method: Unsupported HTTP method."},
		{"methods are case-sensitive", "get / HTTP/1.1\r\n\r\n", "Invalid HTTP Method: Unsupported HTTP method."},
		{"HEAD", "HEAD / HTTP/1.1\r\n\r\n", "Invalid HTTP Method: Unsupported HTTP method."},
		{"HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", "Invalid HTTP Version: Unsupported HTTP version."},
		{"trailing token", "GET / HTTP/1.1 x\r\n\r\n", "Invalid HTTP Version: Unsupported HTTP version."},
		{"no version", "GET /\r\n\r\n", "Invalid request."},
		{"empty request line", "\r\n\r\n", "Invalid request."},
		{"empty URI", "GET  HTTP/1.1\r\n\r\n", "Invalid URI: Empty URI not allowed."},
		{"URI is not UTF-8", "GET /\xff\xfe HTTP/1.1\r\n\r\n", "Invalid URI: Cannot parse URI as UTF-8."},
		{"request line over 1024 bytes", "GET /" + strings.Repeat("a", 1100) + " HTTP/1.1\r\n\r\n", "Invalid request."},
		{"Content-Length not a number", "PUT /mmds HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
			"Invalid header. Reason: Invalid value. Key:Content-Length; Value: abc"},
		{"negative Content-Length", "PUT /mmds HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
			"Invalid header. Reason: Invalid value. Key:Content-Length; Value: -1"},
		{"Content-Length over u32", "PUT /mmds HTTP/1.1\r\nContent-Length: 4294967296\r\n\r\n",
			"Invalid header. Reason: Invalid value. Key:Content-Length; Value: 4294967296"},
		{"header without a colon", "GET / HTTP/1.1\r\nNoColonHere\r\n\r\n",
			"Invalid header. Reason: Header is incorrectly formatted. Key: NoColonHere"},
		{"header is not UTF-8", "GET / HTTP/1.1\r\nX-A: \xff\r\n\r\n",
			"Invalid header. Reason: Header contains invalid characters. Key: invalid utf-8 sequence of 1 bytes from index 5"},
		{"identity refused", "GET / HTTP/1.1\r\nAccept-Encoding: identity;q=0\r\n\r\n",
			"Invalid header. Reason: Invalid value. Key:Accept-Encoding; Value:identity;q=0"},
		{"every encoding refused", "GET / HTTP/1.1\r\nAccept-Encoding: gzip, *;q=0\r\n\r\n",
			"Invalid header. Reason: Invalid value. Key:Accept-Encoding; Value: *;q=0"},
		{"empty Accept-Encoding", "GET / HTTP/1.1\r\nAccept-Encoding:\r\n\r\n", "Invalid request."},
		{"header line over 1024 bytes", "GET / HTTP/1.1\r\n" + longHeader + "\r\n\r\n",
			"Invalid header. Reason: Invalid content length. Header: " + longHeader[:1024]},
	}
	for _, tc := range cases {
		c := dialRaw(t, e.sock)
		c.send(tc.req)
		r, err := c.read(requestTimeout)
		if err != nil {
			t.Errorf("%s: %q: no answer: %v", tc.name, tc.req, err)
			continue
		}
		if want := parseErrorAnswer(tc.msg); string(r.raw) != want {
			t.Errorf("%s: %q\n got %s\nwant %q", tc.name, tc.req, r, want)
		}
		c.close()
	}
	// The server survived all of it.
	expectServing(t, e)
}

// expectServing checks that a fresh connection still gets GET / answered.
// A 503 right after closing connections only means the server has not yet
// noticed the closes; it is retried for a moment.
func expectServing(t testing.TB, e *ember) {
	t.Helper()
	var r *response
	waitFor(2*time.Second, func() bool {
		if e.exited() {
			return true
		}
		c := dialRaw(t, e.sock)
		defer c.close()
		c.send(buildRequest("GET", "/", ""))
		var err error
		if r, err = c.read(requestTimeout); err != nil {
			t.Fatalf("GET / after bad input: %v", err)
		}
		return r.status != 503
	})
	if e.exited() {
		t.Fatalf("ember exited: %v", e.state)
	}
	if r.status != 200 {
		t.Fatalf("GET / after bad input: got %s, want 200", r)
	}
}

func TestWirePayloadLimit(t *testing.T) {
	t.Parallel()
	t.Run("configured limit", func(t *testing.T) {
		t.Parallel()
		// Firecracker's test_config_start_with_limit, as curl sends it:
		// the declared length exceeds the limit, the body is short.
		e := startEmber(t, "--http-api-max-payload-size", "250")
		want := "HTTP/1.1 400 \r\n" +
			"Server: Firecracker API\r\n" +
			"Connection: keep-alive\r\n" +
			"Content-Type: application/json\r\n" +
			"Content-Length: 145\r\n\r\n" +
			"{ \"error\": \"Request payload with size 260 is larger than the limit of 250 allowed by server.\n" +
			"All previous unanswered requests will be dropped.\" }"
		curl := "PUT /mmds/config HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/7.88.1\r\n" +
			"Content-Length: 260\r\nAccept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nsome body"
		c := dialRaw(t, e.sock)
		c.send(curl)
		if r := c.readResponse(); string(r.raw) != want {
			t.Errorf("curl-style request:\n got %s\nwant %q", r, want)
		}
		// The same with the whole 260-byte body sent.
		body := `{"network_interfaces":["` + strings.Repeat("a", 260-27) + `"]}`
		if len(body) != 260 {
			t.Fatalf("body is %d bytes", len(body))
		}
		c = dialRaw(t, e.sock)
		c.send(buildRequest("PUT", "/mmds/config", body))
		if r := c.readResponse(); string(r.raw) != want {
			t.Errorf("260-byte body:\n got %s\nwant %q", r, want)
		}
		// Exactly at the limit is accepted.
		at := `{"k":"` + strings.Repeat("v", 250-8) + `"}`
		if len(at) != 250 {
			t.Fatalf("body is %d bytes", len(at))
		}
		ok204().check(t, "PUT /mmds with 250 bytes", e.client().put("/mmds", at))
		expectServing(t, e)
	})
	t.Run("default limit", func(t *testing.T) {
		t.Parallel()
		// Firecracker's test_config_with_default_limit.
		e := startEmber(t)
		want := "HTTP/1.1 400 \r\n" +
			"Server: Firecracker API\r\n" +
			"Connection: keep-alive\r\n" +
			"Content-Type: application/json\r\n" +
			"Content-Length: 149\r\n\r\n" +
			"{ \"error\": \"Request payload with size 51201 is larger than the limit of 51200 allowed by server.\n" +
			"All previous unanswered requests will be dropped.\" }"
		c := dialRaw(t, e.sock)
		c.send("PUT /mmds/config HTTP/1.1\r\nHost: localhost\r\nContent-Length: 51201\r\nAccept: application/json\r\n\r\nsome body")
		if r := c.readResponse(); string(r.raw) != want {
			t.Errorf("51201-byte request:\n got %s\nwant %q", r, want)
		}
		at := `{"k":"` + strings.Repeat("v", 51200-8) + `"}`
		ok204().check(t, "PUT /mmds with 51200 bytes", e.client().put("/mmds", at))
		expectServing(t, e)
	})
}

func TestWireTooManyConnections(t *testing.T) {
	t.Parallel()
	e := startEmber(t)
	var conns []*apiClient
	for i := 0; i < 10; i++ {
		c := e.client()
		if r := c.get("/"); r.status != 200 {
			t.Fatalf("connection %d: GET / = %s", i+1, r)
		}
		conns = append(conns, c)
	}
	want := "HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\nContent-Length: 40\r\n\r\n{ \"error\": \"Too many open connections\" }"
	extra := dialRaw(t, e.sock)
	got, err := extra.readAll(5 * time.Second)
	if err != nil {
		t.Fatalf("11th connection: %v (got %q)", err, got)
	}
	if string(got) != want {
		t.Errorf("11th connection:\n got %q\nwant %q", got, want)
	}
	// The ten are still served.
	for i, c := range conns {
		if r := c.get("/version"); r.status != 200 {
			t.Errorf("connection %d after the 11th: %s", i+1, r)
		}
	}
	// Closing one frees a slot.
	conns[0].close()
	ok := waitFor(3*time.Second, func() bool {
		c, err := net.Dial("unix", e.sock)
		if err != nil {
			return false
		}
		defer c.Close()
		if _, err := c.Write([]byte(buildRequest("GET", "/", ""))); err != nil {
			return false
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 16)
		n, _ := c.Read(buf)
		return strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200 ")
	})
	if !ok {
		t.Errorf("no connection accepted after one of the ten closed")
	}
}

func TestWireKeepAlivePipeliningContinue(t *testing.T) {
	t.Parallel()
	e := startEmber(t)

	t.Run("keep-alive", func(t *testing.T) {
		c := e.client()
		// An idle connection is kept.
		c.get("/")
		time.Sleep(1500 * time.Millisecond)
		for i := 0; i < 300; i++ {
			if i%2 == 0 {
				ok200(instanceInfoFresh).check(t, "GET /", c.get("/"))
			} else {
				ok204().check(t, "PUT /mmds", c.put("/mmds", fmt.Sprintf(`{"n":%d}`, i)))
			}
			if t.Failed() {
				t.Fatalf("request %d failed", i)
			}
		}
	})

	t.Run("pipelining", func(t *testing.T) {
		c := e.client()
		c.send(buildRequest("GET", "/version", "") + buildRequest("PUT", "/mmds", `{"p":1}`) +
			buildRequest("GET", "/mmds", "") + buildRequest("GET", "/balloon", ""))
		wants := []string{
			jsonAnswer(200, `{"firecracker_version":"1.17.0-dev"}`, false),
			noContent,
			jsonAnswer(200, `{"p":1}`, false),
			faultAnswer(400, "Balloon config error: No balloon device found."),
		}
		for i, want := range wants {
			if r := c.readResponse(); string(r.raw) != want {
				t.Errorf("pipelined answer %d:\n got %s\nwant %q", i+1, r, want)
			}
		}
	})

	t.Run("parse error drops earlier unanswered requests", func(t *testing.T) {
		// Both arrive in one read: the GET is parsed, then the bad
		// request fails the read and the queued GET is discarded.
		c := dialRaw(t, e.sock)
		c.send("GET /version HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\n\r\n")
		r := c.readResponse()
		if want := parseErrorAnswer("Invalid HTTP Method: Unsupported HTTP method."); string(r.raw) != want {
			t.Errorf("got %s\nwant %q", r, want)
		}
		c.expectSilence(300 * time.Millisecond)
	})

	t.Run("Expect: 100-continue", func(t *testing.T) {
		c := dialRaw(t, e.sock)
		c.send("PUT /mmds HTTP/1.1\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n")
		r := c.readResponse()
		if want := "HTTP/1.1 100 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n"; string(r.raw) != want {
			t.Fatalf("interim answer:\n got %s\nwant %q", r, want)
		}
		c.send(`{"e":5}`)
		if r := c.readResponse(); string(r.raw) != noContent {
			t.Errorf("final answer:\n got %s\nwant %q", r, noContent)
		}
		// The interim answer speaks the request's HTTP version.
		c.send("PUT /mmds HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n")
		if r, want := c.readResponse(), "HTTP/1.0 100 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n"; string(r.raw) != want {
			t.Fatalf("interim answer to HTTP/1.0:\n got %s\nwant %q", r, want)
		}
		c.send(`{"e":6}`)
		if r := c.readResponse(); string(r.raw) != noContent {
			t.Errorf("final answer:\n got %s\nwant %q", r, noContent)
		}
		// No interim answer for a request without a body.
		c.send("GET /version HTTP/1.1\r\nExpect: 100-continue\r\n\r\n")
		if r, want := c.readResponse(), jsonAnswer(200, `{"firecracker_version":"1.17.0-dev"}`, false); string(r.raw) != want {
			t.Errorf("bodiless request with Expect:\n got %s\nwant %q", r, want)
		}
	})
}

func TestWireFileDescriptors(t *testing.T) {
	t.Parallel()
	// File descriptors sent along a request (SCM_RIGHTS) are accepted and
	// ignored.
	e := startEmber(t)
	conn, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fds := make([]int, 8)
	for i := range fds {
		fds[i] = int(f.Fd())
	}
	req := buildRequest("PUT", "/mmds", `{"fd":1}`)
	if _, _, err := conn.(*net.UnixConn).WriteMsgUnix([]byte(req), unix.UnixRights(fds...), nil); err != nil {
		t.Fatal(err)
	}
	rc := &rawConn{t: t, conn: conn}
	rc.rd = bufio.NewReader(io.TeeReader(conn, &rc.rec))
	if r := rc.readResponse(); string(r.raw) != noContent {
		t.Errorf("request with file descriptors:\n got %s\nwant %q", r, noContent)
	}
	expectServing(t, e)
}

func TestWireSocketUnbindable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "fc.sock")
	e := launch(t, launchOpts{args: []string{"--api-sock", path}})
	e.wantExit(1, exitTimeout)
	msg := "RunWithApiError error: Failed to bind and run the HTTP server: IO error: No such file or directory (os error 2)"
	if !e.hasLog(msg) {
		t.Errorf("log lacks %q:\n%s", msg, e.logText())
	}
	want := "Error: RunWithApi(FailedToBindAndRunHttpServer(IOError(Os { code: 2, kind: NotFound, message: \"No such file or directory\" })))\n"
	if e.stderr.String() != want {
		t.Errorf("stderr = %q, want %q", e.stderr.String(), want)
	}
}

func TestWireSocketInUse(t *testing.T) {
	t.Parallel()
	kinds := []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"regular file", func(t *testing.T, path string) {
			writeFile(t, filepath.Dir(path), filepath.Base(path), []byte("x"))
		}},
		{"stale socket", func(t *testing.T, path string) {
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			ln.Close()
		}},
		{"live socket", func(t *testing.T, path string) {
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "fc.sock")
			k.make(t, path)
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			e := launch(t, launchOpts{args: []string{"--api-sock", path}, dir: dir})
			e.wantExit(1, exitTimeout)
			msg := "RunWithApiError error: Failed to open the API socket at: " + path + ". Check that it is not already used."
			if !e.hasLog(msg) {
				t.Errorf("log lacks %q:\n%s", msg, e.logText())
			}
			if !e.hasLog("Firecracker exiting with error. exit_code=1") {
				t.Errorf("log lacks the exit line:\n%s", e.logText())
			}
			if want := "Error: RunWithApi(FailedToBindSocket(\"" + path + "\"))\n"; e.stderr.String() != want {
				t.Errorf("stderr = %q, want %q", e.stderr.String(), want)
			}
			after, err := os.Lstat(path)
			if err != nil {
				t.Fatalf("the existing %s was removed: %v", k.name, err)
			}
			if after.Mode() != before.Mode() || !os.SameFile(before, after) {
				t.Errorf("the existing %s was replaced", k.name)
			}
		})
	}
}
