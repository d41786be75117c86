package conformance

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// requestTimeout bounds one request/answer exchange. InstanceStart boots
// QEMU, which can take a few seconds on a loaded machine.
const requestTimeout = 30 * time.Second

// response is one HTTP response as read off the socket.
type response struct {
	raw     []byte   // every byte of the response
	status  int      // status code
	line    string   // status line without CRLF
	headers []string // header lines in order, without CRLF
	body    []byte
}

// header returns the value of the first header named name (case-insensitive).
func (r *response) header(name string) (string, bool) {
	for _, h := range r.headers {
		k, v, ok := strings.Cut(h, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// fault decodes {"fault_message": ...}.
func (r *response) fault() string {
	var f struct {
		FaultMessage *string `json:"fault_message"`
	}
	if json.Unmarshal(r.body, &f) != nil || f.FaultMessage == nil {
		return "<no fault_message in " + strconv.Quote(string(r.body)) + ">"
	}
	return *f.FaultMessage
}

func (r *response) String() string { return strconv.Quote(string(r.raw)) }

// rawConn is a connection that writes arbitrary bytes and reads responses
// exactly as they arrive.
type rawConn struct {
	t    testing.TB
	conn net.Conn
	rd   *bufio.Reader
	rec  bytes.Buffer // bytes consumed by the current readResponse
}

// dialRaw connects to the API socket.
func dialRaw(t testing.TB, sock string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", sock, err)
	}
	rc := &rawConn{t: t, conn: c}
	rc.rd = bufio.NewReader(io.TeeReader(c, &rc.rec))
	t.Cleanup(func() { c.Close() })
	return rc
}

func (c *rawConn) close() { c.conn.Close() }

// send writes the bytes as given.
func (c *rawConn) send(b string) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(requestTimeout))
	if _, err := io.WriteString(c.conn, b); err != nil {
		c.t.Fatalf("write request: %v", err)
	}
}

// read reads one response; an error means none arrived in time or the
// connection ended first.
func (c *rawConn) read(timeout time.Duration) (*response, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	// Bytes already buffered belong to this response (pipelining): keep
	// only those in the record.
	c.rec.Reset()
	prefix := append([]byte(nil), peekBuffered(c.rd)...)
	r := &response{}
	line, err := c.rd.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("status line: %w (got %q)", err, line)
	}
	r.line = strings.TrimSuffix(line, "\r\n")
	f := strings.SplitN(r.line, " ", 3)
	if len(f) < 2 {
		return nil, fmt.Errorf("bad status line %q", line)
	}
	if r.status, err = strconv.Atoi(f[1]); err != nil {
		return nil, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		h, err := c.rd.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("headers: %w (got %q)", err, h)
		}
		h = strings.TrimSuffix(h, "\r\n")
		if h == "" {
			break
		}
		r.headers = append(r.headers, h)
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "Content-Length") {
			if length, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				return nil, fmt.Errorf("bad Content-Length %q", h)
			}
		}
	}
	if length > 0 {
		r.body = make([]byte, length)
		if _, err := io.ReadFull(c.rd, r.body); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
	}
	r.raw = rawBytes(prefix, c.rec.Bytes(), c.rd.Buffered())
	return r, nil
}

// peekBuffered returns what the reader holds without consuming it.
func peekBuffered(rd *bufio.Reader) []byte {
	b, _ := rd.Peek(rd.Buffered())
	return b
}

// rawBytes reassembles the response's bytes: what was buffered before the
// read, plus what came off the socket during it, minus what is still
// buffered for the next response.
func rawBytes(prefix, fresh []byte, left int) []byte {
	all := append(append([]byte{}, prefix...), fresh...)
	return all[:len(all)-left]
}

// readResponse reads one response or fails the test.
func (c *rawConn) readResponse() *response {
	c.t.Helper()
	r, err := c.read(requestTimeout)
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	return r
}

// readAll reads until the server closes the connection.
func (c *rawConn) readAll(timeout time.Duration) ([]byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	return io.ReadAll(c.rd)
}

// expectSilence checks that nothing arrives within d.
func (c *rawConn) expectSilence(d time.Duration) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	b, err := c.rd.Peek(1)
	if err == nil {
		c.t.Fatalf("unexpected bytes from the server: %q", b)
	}
}

// apiClient is a keep-alive JSON client over one connection.
type apiClient struct {
	*rawConn
}

func dialAPI(t testing.TB, sock string) *apiClient {
	return &apiClient{dialRaw(t, sock)}
}

// buildRequest renders a request the way ordinary clients do; an empty
// body sends no body at all.
func buildRequest(method, path, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n", method, path)
	if body != "" {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

// do sends one request and reads its response.
func (c *apiClient) do(method, path, body string) *response {
	c.t.Helper()
	c.send(buildRequest(method, path, body))
	r, err := c.read(requestTimeout)
	if err != nil {
		c.t.Fatalf("%s: %v", reqString(method, path, body), err)
	}
	return r
}

func (c *apiClient) get(path string) *response         { return c.do("GET", path, "") }
func (c *apiClient) put(path, body string) *response   { return c.do("PUT", path, body) }
func (c *apiClient) patch(path, body string) *response { return c.do("PATCH", path, body) }
func (c *apiClient) action(actionType string) *response {
	return c.put("/actions", `{"action_type":"`+actionType+`"}`)
}

// mustOK sends a request that must succeed (204 or 200) and returns it.
func (c *apiClient) mustOK(method, path, body string) *response {
	c.t.Helper()
	r := c.do(method, path, body)
	if r.status != 204 && r.status != 200 {
		c.t.Fatalf("%s: got %d %s, want success", reqString(method, path, body), r.status, r.body)
	}
	return r
}

// Exact answers Firecracker sends.

// noContent is the 204 answer.
const noContent = "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n"

// noContentDeprecated is the 204 answer to a request using a deprecated field.
const noContentDeprecated = "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\nDeprecation: true\r\n\r\n"

// jsonAnswer is a 200/400/413 answer carrying a JSON body.
func jsonAnswer(status int, body string, deprecation bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n", status)
	if deprecation {
		b.WriteString("Deprecation: true\r\n")
	}
	fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// faultBody is {"fault_message":"..."} as serde_json writes it.
func faultBody(msg string) string { return `{"fault_message":` + serdeQuote(msg) + `}` }

// faultAnswer is the complete API error answer.
func faultAnswer(status int, msg string) string { return jsonAnswer(status, faultBody(msg), false) }

// parseErrorAnswer is micro_http's answer to a request it cannot parse.
func parseErrorAnswer(msg string) string {
	body := `{ "error": "` + msg + "\nAll previous unanswered requests will be dropped.\" }"
	return jsonAnswer(400, body, false)
}

// serdeQuote renders s as a JSON string the way serde_json does: only '"',
// '\\' and control characters are escaped, with the short forms where JSON
// has them.
func serdeQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// expectation is what one request must get.
type expectation struct {
	status int
	fault  string // exact fault_message (status >= 400)
	body   string // exact body (200); "" skips the check
	// deprecation: the answer carries "Deprecation: true".
	deprecation bool
	// faultPrefix/faultContains loosen the fault check where the text
	// names something only ember knows (its backend), never elsewhere.
	faultPrefix, faultContains string
}

// check compares a response with the expectation, byte for byte where the
// expectation pins the whole answer.
func (w expectation) check(t testing.TB, req string, r *response) {
	t.Helper()
	switch {
	case w.status == 204:
		want := noContent
		if w.deprecation {
			want = noContentDeprecated
		}
		if string(r.raw) != want {
			t.Errorf("%s:\n got %s\nwant %q", req, r, want)
		}
	case w.status == 200:
		if r.status != 200 {
			t.Errorf("%s: got %s, want 200", req, r)
			return
		}
		if w.body != "" {
			if want := jsonAnswer(200, w.body, w.deprecation); string(r.raw) != want {
				t.Errorf("%s:\n got %s\nwant %q", req, r, want)
			}
		}
	case w.faultPrefix != "" || w.faultContains != "":
		if r.status != w.status || !strings.HasPrefix(r.fault(), w.faultPrefix) || !strings.Contains(r.fault(), w.faultContains) {
			t.Errorf("%s:\n got %s\nwant %d with a fault_message starting %q and containing %q", req, r, w.status, w.faultPrefix, w.faultContains)
		}
		if d, _ := r.header("Deprecation"); (d == "true") != w.deprecation {
			t.Errorf("%s: Deprecation header present = %v, want %v", req, d == "true", w.deprecation)
		}
	default:
		if want := jsonAnswer(w.status, faultBody(w.fault), w.deprecation); string(r.raw) != want {
			t.Errorf("%s:\n got %s\nwant %q", req, r, want)
		}
	}
}

// Shorthands for tables.
func ok204() expectation              { return expectation{status: 204} }
func ok200(body string) expectation   { return expectation{status: 200, body: body} }
func bad(msg string) expectation      { return expectation{status: 400, fault: msg} }
func badDep(msg string) expectation   { return expectation{status: 400, fault: msg, deprecation: true} }
func tooLarge(msg string) expectation { return expectation{status: 413, fault: msg} }

// backendLacks is the answer to a feature the qemu backend does not have:
// a 400 with Firecracker's error prefix for that resource, naming the
// backend and the feature.
func backendLacks(prefix, feature string) expectation {
	return expectation{status: 400, fault: prefix + "The qemu backend does not support " + feature + "."}
}

// Texts Firecracker uses for the pre-boot/post-boot rules.
const (
	notPreBoot  = "The requested operation is not supported before starting the microVM."
	notPostBoot = "The requested operation is not supported after starting the microVM."
	serdePrefix = "An error occurred when deserializing the json body of a request: "
)

// serde is the fault for a body serde_json rejects.
func serde(msg string) expectation { return bad(serdePrefix + msg + ".") }

// apiCase is one row of a request table.
type apiCase struct {
	name         string
	method, path string
	body         string
	want         expectation
}

// runCases sends each case on one keep-alive connection, in order.
func runCases(t *testing.T, c *apiClient, cases []apiCase) {
	t.Helper()
	for _, tc := range cases {
		name := tc.name
		if name == "" {
			name = tc.method + " " + tc.path
		}
		r := c.do(tc.method, tc.path, tc.body)
		tc.want.check(t, name+" ("+reqString(tc.method, tc.path, tc.body)+")", r)
	}
}
