package microhttp

import (
	"bytes"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// FuzzParse drives the connection parser with arbitrary bytes cut into
// arbitrary reads, and the one-shot parser with the same bytes. Neither may
// panic, loop or wedge, and what they return must be well formed. Two runs
// over different cuts that both succeed must agree.
func FuzzParse(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), []byte{1})
	f.Add([]byte("PUT /x HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabcGET http://h/ HTTP/1.0\r\n\r\n"), []byte{5, 200, 3})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		whole, wholeOK := runParser(t, data, nil, 20)
		split, splitOK := runParser(t, data, cuts, 2)
		if wholeOK && splitOK && !reflect.DeepEqual(whole, split) {
			t.Fatalf("cuts changed the requests:\n%v\n%v", whole, split)
		}
		for _, maxLen := range []int{0, 64} {
			r, err := ParseRequest(data, maxLen)
			if err != nil {
				checkParseError(t, err)
				continue
			}
			checkRequest(t, r)
			if r.Header.ContentLength > 0 && r.Method != "PUT" && r.Method != "PATCH" {
				t.Fatalf("%s with a body accepted", r.Method)
			}
		}
	})
}

// runParser feeds data in reads sized by cuts (cycled; 0 means the whole
// free space) and returns the requests, and whether no read failed.
func runParser(t *testing.T, data, cuts []byte, limit uint64) ([]*Request, bool) {
	p := NewParser(limit)
	var reqs []*Request
	ok := true
	for i := 0; len(data) > 0; i++ {
		buf := p.ReadBuf()
		if len(buf) == 0 {
			t.Fatal("parser wedged with a full buffer")
		}
		n := len(buf)
		if len(cuts) > 0 && cuts[i%len(cuts)] != 0 {
			n = min(n, int(cuts[i%len(cuts)]))
		}
		n = copy(buf[:n], data)
		data = data[n:]
		out, err := p.Advance(n)
		for _, v := range out.Continue {
			if v != HTTP10 && v != HTTP11 {
				t.Fatalf("interim answer for version %q", v)
			}
		}
		if err != nil {
			checkParseError(t, err)
			if out.Requests != nil {
				t.Fatal("requests returned with an error")
			}
			ok = false
			continue
		}
		for _, r := range out.Requests {
			checkRequest(t, r)
			if uint64(r.Header.ContentLength) > limit {
				t.Fatalf("body of %d over the limit %d", r.Header.ContentLength, limit)
			}
		}
		reqs = append(reqs, out.Requests...)
	}
	return reqs, ok
}

func checkParseError(t *testing.T, err error) {
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %T %v", err, err)
	}
	switch pe.Kind {
	case ErrInvalidRequest, ErrInvalidMethod, ErrInvalidVersion, ErrInvalidURI, ErrInvalidHeader, ErrPayloadTooLarge:
	default:
		t.Fatalf("unexpected kind %v", pe.Kind)
	}
	if !utf8.ValidString(err.Error()) {
		t.Fatalf("error text not UTF-8: %q", err.Error())
	}
}

func checkRequest(t *testing.T, r *Request) {
	switch r.Method {
	case "GET", "PUT", "PATCH", "DELETE":
	default:
		t.Fatalf("method %q", r.Method)
	}
	if r.Version != HTTP10 && r.Version != HTTP11 {
		t.Fatalf("version %q", r.Version)
	}
	if r.Target == "" || !utf8.ValidString(r.Target) || r.Path != AbsPath(r.Target) {
		t.Fatalf("target %q path %q", r.Target, r.Path)
	}
	if (r.Body == nil) != (r.Header.ContentLength == 0) || len(r.Body) != int(r.Header.ContentLength) {
		t.Fatalf("body of %d bytes, Content-Length %d", len(r.Body), r.Header.ContentLength)
	}
	if r.Header.Accept != MediaText && r.Header.Accept != MediaJSON {
		t.Fatalf("accept %q", r.Header.Accept)
	}
}

// FuzzConnection runs arbitrary bytes, cut into arbitrary reads, through
// the server's own connection code (read, dispatch, respond, write) over a
// socket pair, and checks the bytes the client gets back: a sequence of
// well-formed HTTP/1.1 answers, each with a status Firecracker's micro_http
// can produce (100, 400, or the handler's), the 400s in micro_http's
// error envelope, one interim 100 per announced body with Expect, the
// handler called once per request the parser completed, and no body over
// the payload limit ever reaching the handler.
func FuzzConnection(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), []byte{0})
	f.Add([]byte("PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}FOO / HTTP/1.1\r\n\r\n"), []byte{7, 0})
	f.Add([]byte("PATCH /a HTTP/1.1\r\nContent-Length: 65\r\n\r\n"), []byte{})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		const limit = 64
		if len(data) > 16<<10 {
			data = data[:16<<10]
		}
		// What the parser alone makes of these reads: the reference the
		// server's output is checked against.
		wantReqs, wantErrs, wantCont := parserEvents(t, data, cuts, limit)

		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fds[0])
		defer unix.Close(fds[1])
		if err := unix.SetNonblock(fds[0], true); err != nil {
			t.Fatal(err)
		}
		l := &loop{s: NewServer(nil, Config{MaxPayload: limit}), ep: -1, lnfd: -1, wake: -1,
			conns: map[int]*conn{}, oob: make([]byte, unix.CmsgSpace(maxFDs*4))}
		c := &conn{fd: fds[0], parser: NewParser(limit)}
		var got []*Request
		handler := func(r *Request) *Response {
			got = append(got, r)
			return &Response{Status: 299, Body: []byte(r.Method + " " + r.Target)}
		}
		var out []byte
		drain := func() {
			var b [4096]byte
			for {
				n, err := unix.Read(fds[1], b[:])
				if n <= 0 || err != nil {
					return
				}
				out = append(out, b[:n]...)
			}
		}
		unix.SetNonblock(fds[1], true)
		for i := 0; len(data) > 0; i++ {
			n := len(data)
			if len(cuts) > 0 && cuts[i%len(cuts)] != 0 {
				n = min(n, int(cuts[i%len(cuts)]))
			}
			if _, err := unix.Write(fds[1], data[:n]); err != nil {
				t.Fatal(err)
			}
			data = data[n:]
			// One server turn per read while bytes wait, as the event
			// loop does for a readable connection with nothing to write.
			for pending(t, fds[0]) > 0 {
				l.read(c)
				for _, d := range l.batch {
					l.respond(d.c, handler(d.req))
				}
				l.batch = l.batch[:0]
				for c.pendingWrite() {
					l.write(c)
					drain()
				}
				if c.state == connClosed {
					t.Fatal("connection dropped")
				}
			}
		}
		drain()

		statuses := checkAnswers(t, out, limit)
		if len(got) != len(wantReqs) {
			t.Fatalf("handler saw %d requests, the parser made %d", len(got), len(wantReqs))
		}
		for i := range got {
			checkRequest(t, got[i])
			if !reflect.DeepEqual(got[i], wantReqs[i]) {
				t.Fatalf("request %d: server %+v, parser %+v", i, got[i], wantReqs[i])
			}
		}
		if statuses[299] != len(got) || statuses[400] != wantErrs || statuses[100] != wantCont {
			t.Fatalf("answers %v for %d requests, %d errors, %d interim answers", statuses, len(got), wantErrs, wantCont)
		}
	})
}

// pending is how many bytes wait to be read on fd.
func pending(t *testing.T, fd int) int {
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// parserEvents runs a bare Parser over the reads the connection test makes:
// each cut is written at once and read in pieces no larger than the free
// buffer. It returns the requests, the number of failed reads and the
// number of interim answers owed.
func parserEvents(t *testing.T, data, cuts []byte, limit uint64) (reqs []*Request, errs, cont int) {
	p := NewParser(limit)
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if len(cuts) > 0 && cuts[i%len(cuts)] != 0 {
			n = min(n, int(cuts[i%len(cuts)]))
		}
		chunk := data[:n]
		data = data[n:]
		for len(chunk) > 0 {
			buf := p.ReadBuf()
			if len(buf) == 0 {
				t.Fatal("parser wedged with a full buffer")
			}
			k := copy(buf, chunk)
			chunk = chunk[k:]
			out, err := p.Advance(k)
			cont += len(out.Continue)
			if err != nil {
				errs++
				continue
			}
			reqs = append(reqs, out.Requests...)
		}
	}
	return reqs, errs, cont
}

// parseErrorTexts are the texts micro_http puts into a 400 envelope; those
// ending in a space are prefixes.
var parseErrorTexts = []string{
	"Invalid request.",
	"Invalid HTTP Method: Unsupported HTTP method.",
	"Invalid HTTP Version: Unsupported HTTP version.",
	"Invalid URI: Empty URI not allowed.",
	"Invalid URI: Cannot parse URI as UTF-8.",
	"Invalid header. Reason: ",
	"Request payload with size ",
	"Overflow occurred when parsing a request.",
}

// checkAnswers splits out into answers and checks each; it returns how
// many answers of each status it found.
func checkAnswers(t *testing.T, out []byte, limit uint64) map[int]int {
	statuses := map[int]int{}
	const common = " \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
	for len(out) > 0 {
		if len(out) < 12 {
			t.Fatalf("truncated answer %q", out)
		}
		version, code := string(out[:8]), string(out[9:12])
		status, err := strconv.Atoi(code)
		if out[8] != ' ' || err != nil {
			t.Fatalf("bad status line in %q", out)
		}
		rest, ok := bytes.CutPrefix(out[12:], []byte(common))
		if !ok {
			t.Fatalf("bad header block in %q", out)
		}
		switch {
		case status == 100 && (version == HTTP10 || version == HTTP11):
			if rest, ok = bytes.CutPrefix(rest, crlf); !ok {
				t.Fatalf("interim answer with a body: %q", out)
			}
			out = rest
			statuses[status]++
			continue
		case version != HTTP11:
			t.Fatalf("answer in %s: %q", version, out)
		case status != 299 && status != 400:
			t.Fatalf("status %d is not one this server produces here: %q", status, out)
		}
		rest, ok = bytes.CutPrefix(rest, []byte("Content-Type: application/json\r\nContent-Length: "))
		if !ok {
			t.Fatalf("no length in %q", out)
		}
		end := bytes.Index(rest, []byte("\r\n\r\n"))
		if end < 0 {
			t.Fatalf("unterminated headers in %q", out)
		}
		n, err := strconv.Atoi(string(rest[:end]))
		if err != nil || n < 0 || end+4+n > len(rest) {
			t.Fatalf("bad Content-Length in %q", out)
		}
		body := rest[end+4 : end+4+n]
		out = rest[end+4+n:]
		statuses[status]++
		if status != 400 {
			continue
		}
		const head, tail = `{ "error": "`, "\nAll previous unanswered requests will be dropped.\" }"
		text, ok := bytes.CutPrefix(body, []byte(head))
		if text, ok2 := bytes.CutSuffix(text, []byte(tail)); !ok || !ok2 || !knownParseError(string(text), limit) {
			t.Fatalf("400 body %q", body)
		}
	}
	return statuses
}

func knownParseError(text string, limit uint64) bool {
	if !utf8.ValidString(text) {
		return false
	}
	for _, k := range parseErrorTexts {
		if text == k || strings.HasSuffix(k, " ") && strings.HasPrefix(text, k) {
			if k == "Request payload with size " {
				return strings.HasSuffix(text, " is larger than the limit of "+strconv.FormatUint(limit, 10)+" allowed by server.")
			}
			return true
		}
	}
	return false
}
