package microhttp

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// feed pushes chunks through p the way a connection does (each chunk one
// read; a chunk larger than the free space is split) and collects what
// comes out. Errors are recorded by text, requests as "METHOD path body".
func feed(p *Parser, chunks ...string) (got []string, interim []string) {
	for _, c := range chunks {
		for len(c) > 0 {
			buf := p.ReadBuf()
			n := copy(buf, c)
			c = c[n:]
			out, err := p.Advance(n)
			interim = append(interim, out.Continue...)
			if err != nil {
				got = append(got, "error: "+err.Error())
				continue
			}
			for _, r := range out.Requests {
				got = append(got, r.Method+" "+r.Path+" "+r.Version+" "+string(r.Body))
			}
		}
	}
	return got, interim
}

func TestParserSequences(t *testing.T) {
	long := strings.Repeat("a", BufferSize)
	tests := []struct {
		name    string
		limit   uint64
		chunks  []string
		want    []string
		interim []string
	}{
		{
			name:   "simple get",
			chunks: []string{"GET /version HTTP/1.1\r\n\r\n"},
			want:   []string{"GET /version HTTP/1.1 "},
		},
		{
			name:   "pipelined with bodies",
			chunks: []string{"PUT /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nabGET /b HTTP/1.0\r\n\r\nPATCH /c HTTP/1.1\r\nContent-Length: 1\r\n\r\nz"},
			want:   []string{"PUT /a HTTP/1.1 ab", "GET /b HTTP/1.0 ", "PATCH /c HTTP/1.1 z"},
		},
		{
			name:   "split everywhere",
			chunks: strings.Split("PUT /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", ""),
			want:   []string{"PUT /x HTTP/1.1 abc"},
		},
		{
			name:   "crlf split across reads",
			chunks: []string{"GET / HTTP/1.1\r", "\n\r", "\n"},
			want:   []string{"GET / HTTP/1.1 "},
		},
		{
			name:   "absolute form",
			chunks: []string{"GET http://localhost:8080/mmds/x?y HTTP/1.1\r\n\r\nGET http://localhost HTTP/1.1\r\n\r\n"},
			want:   []string{"GET /mmds/x?y HTTP/1.1 ", "GET  HTTP/1.1 "},
		},
		{
			name:   "get may carry a body on a connection",
			chunks: []string{"GET / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"},
			want:   []string{"GET / HTTP/1.1 x"},
		},
		{
			name:   "content-length zero means no body",
			chunks: []string{"PUT / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"},
			want:   []string{"PUT / HTTP/1.1 "},
		},
		{
			name:    "expect continue",
			chunks:  []string{"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", "x"},
			want:    []string{"PUT / HTTP/1.0 x"},
			interim: []string{"HTTP/1.0"},
		},
		{
			name:   "expect without body asks nothing",
			chunks: []string{"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"},
			want:   []string{"GET / HTTP/1.1 "},
		},
		{
			name:   "bad method",
			chunks: []string{"POST / HTTP/1.1\r\n\r\n"},
			want:   []string{"error: Invalid HTTP Method: Unsupported HTTP method."},
		},
		{
			name:   "method checked before version",
			chunks: []string{"get / HTTP/3\r\n\r\n"},
			want:   []string{"error: Invalid HTTP Method: Unsupported HTTP method."},
		},
		{
			name:   "version with trailing space",
			chunks: []string{"GET / HTTP/1.1 \r\n\r\n"},
			want:   []string{"error: Invalid HTTP Version: Unsupported HTTP version."},
		},
		{
			name:   "empty uri",
			chunks: []string{"GET  HTTP/1.1\r\n\r\n"},
			want:   []string{"error: Invalid URI: Empty URI not allowed."},
		},
		{
			name:   "uri not utf-8",
			chunks: []string{"GET /\xff HTTP/1.1\r\n\r\n"},
			want:   []string{"error: Invalid URI: Cannot parse URI as UTF-8."},
		},
		{
			name:   "no version",
			chunks: []string{"GET /\r\n\r\n"},
			want:   []string{"error: Invalid request."},
		},
		{
			name:   "stray crlf",
			chunks: []string{"\r\n"},
			want:   []string{"error: Invalid request."},
		},
		{
			name:   "payload limit",
			limit:  250,
			chunks: []string{"PUT /mmds HTTP/1.1\r\nContent-Length: 260\r\n\r\n" + strings.Repeat("x", 260)},
			want:   []string{"error: Request payload with size 260 is larger than the limit of 250 allowed by server."},
		},
		{
			name:   "payload at the limit passes",
			limit:  3,
			chunks: []string{"PUT / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"},
			want:   []string{"PUT / HTTP/1.1 abc"},
		},
		{
			name:   "request line filling the buffer",
			chunks: []string{"GET /" + long[:BufferSize-16] + " HTTP/1.1\r\n\r\n"},
			want:   []string{"GET /" + long[:BufferSize-16] + " HTTP/1.1 "},
		},
		{
			// The rest of the line, read next, fails again on its own.
			name:   "request line one byte too long",
			chunks: []string{"GET /" + long[:BufferSize-15] + " HTTP/1.1\r\n\r\n"},
			want:   []string{"error: Invalid request.", "error: Invalid request."},
		},
		{
			// A request line after a first request, when the buffer already
			// holds bytes, is moved to the front and still gets 1024 bytes.
			name:   "long line after a short request",
			chunks: []string{"GET / HTTP/1.1\r\n\r\nGET /" + long[:BufferSize-16] + " HTTP/1.1\r\n\r\n"},
			want:   []string{"GET / HTTP/1.1 ", "GET /" + long[:BufferSize-16] + " HTTP/1.1 "},
		},
		{
			name: "header after a failed request line is read as a request line",
			chunks: []string{
				"BREW / HTTP/1.1\r\n",
				"GET / HTTP/1.1\r\n\r\n",
			},
			want: []string{"error: Invalid HTTP Method: Unsupported HTTP method.", "GET / HTTP/1.1 "},
		},
		{
			// After a header error the parser stays in the header block:
			// the next request line is taken for a header.
			name: "header error wedges the connection",
			chunks: []string{
				"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
				"GET /a HTTP/1.1\r\n\r\n",
			},
			want: []string{
				"error: Invalid header. Reason: Invalid value. Key:Content-Length; Value: x",
				"error: Invalid header. Reason: Header is incorrectly formatted. Key: GET /a HTTP/1.1",
			},
		},
		{
			// ...and a request line with a colon becomes a custom header,
			// completing the old request.
			name: "wedged connection completes the old request",
			chunks: []string{
				"GET /old HTTP/1.1\r\nfoo\r\n\r\n",
				"GET http://h/new HTTP/1.1\r\n\r\n",
			},
			want: []string{
				"error: Invalid header. Reason: Header is incorrectly formatted. Key: foo",
				"GET /old HTTP/1.1 ",
			},
		},
		{
			// A partial line kept from an earlier read survives the error
			// and prefixes every later read.
			name: "kept prefix poisons later requests",
			chunks: []string{
				"FOO / HT",
				"TP/1.1\r\n\r\n",
				"GET / HTTP/1.1\r\n\r\n",
			},
			want: []string{
				"error: Invalid HTTP Method: Unsupported HTTP method.",
				"error: Invalid HTTP Method: Unsupported HTTP method.",
			},
		},
		{
			name:   "requests before an error in the same read are dropped",
			chunks: []string{"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/9\r\n\r\n"},
			want:   []string{"error: Invalid HTTP Version: Unsupported HTTP version."},
		},
		{
			name:    "continue survives a later error in the same read",
			chunks:  []string{"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nxBAD / HTTP/1.1\r\n\r\n"},
			want:    []string{"error: Invalid HTTP Method: Unsupported HTTP method."},
			interim: []string{"HTTP/1.1"},
		},
		{
			// The chunk-size line is taken for the next request line; the
			// rest of that read is forgotten with the failure.
			name:   "chunked body is not decoded",
			chunks: []string{"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "3\r\nabc\r\n"},
			want:   []string{"PUT / HTTP/1.1 ", "error: Invalid request."},
		},
		{
			name:   "chunked body read with its request drops it",
			chunks: []string{"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"},
			want:   []string{"error: Invalid request."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := tt.limit
			if limit == 0 {
				limit = DefaultMaxPayload
			}
			got, interim := feed(NewParser(limit), tt.chunks...)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			if !reflect.DeepEqual(interim, tt.interim) {
				t.Errorf("interim got %q, want %q", interim, tt.interim)
			}
		})
	}
}

func TestParserLongHeaderLine(t *testing.T) {
	p := NewParser(DefaultMaxPayload)
	line := "X-Long: " + strings.Repeat("v", 2000)
	got, _ := feed(p, "GET / HTTP/1.1\r\n"+line+"\r\n\r\n")
	if len(got) == 0 {
		t.Fatal("no error")
	}
	// The error carries the whole buffer: the header line's first 1024 bytes.
	want := "error: Invalid header. Reason: Invalid content length. Header: " + line[:BufferSize]
	if got[0] != want {
		t.Errorf("got %.120q...", got[0])
	}
}

func TestParserLongHeaderLineLossy(t *testing.T) {
	p := NewParser(DefaultMaxPayload)
	// The buffer ends in the middle of a 3-byte sequence, and holds one
	// invalid byte: each becomes one U+FFFD.
	line := "X: \xff" + strings.Repeat("v", BufferSize-6) + "\xe2\x82\xac"
	got, _ := feed(p, "GET / HTTP/1.1\r\n", line+"\r\n\r\n")
	want := "error: Invalid header. Reason: Invalid content length. Header: X: \uFFFD" +
		strings.Repeat("v", BufferSize-6) + "\uFFFD"
	if len(got) == 0 || got[0] != want {
		t.Errorf("got %q", got)
	}
}

func TestHeaderLines(t *testing.T) {
	tests := []struct {
		line string
		err  string // "" for none
		want Header
	}{
		{line: "Content-Length: 42", want: Header{ContentLength: 42}},
		{line: "content-LENGTH:+7", want: Header{ContentLength: 7}},
		{line: " Content-Length \t:\t 0009 ", want: Header{ContentLength: 9}},
		{line: "Content-Length: 4294967295", want: Header{ContentLength: 4294967295}},
		{line: "Content-Length: 4294967296", err: "Invalid header. Reason: Invalid value. Key:Content-Length; Value: 4294967296"},
		{line: "Content-Length: -1", err: "Invalid header. Reason: Invalid value. Key:Content-Length; Value: -1"},
		{line: "Content-Length:", err: "Invalid header. Reason: Invalid value. Key:Content-Length; Value:"},
		{line: "Content-Length: +", err: "Invalid header. Reason: Invalid value. Key:Content-Length; Value: +"},
		{line: "content-length: 1 2", err: "Invalid header. Reason: Invalid value. Key:content-length; Value: 1 2"},
		{line: "Content-Length: 5: 2", err: "Invalid header. Reason: Invalid value. Key:Content-Length; Value: 5: 2"},
		{line: "Content-Type: application/json"},
		{line: "Content-Type: application/xml"},
		{line: "Accept: application/json", want: Header{Accept: MediaJSON}},
		{line: "Accept: application/json; q=1"},
		{line: "Accept:"},
		{line: "Transfer-Encoding: chunked", want: Header{Chunked: true}},
		{line: "Transfer-Encoding: gzip"},
		{line: "Expect: 100-continue", want: Header{Expect: true}},
		{line: "Expect: 100-Continue"},
		{line: "Server: anything"},
		{line: "Accept-Encoding: gzip, deflate"},
		{line: "Accept-Encoding: identity;q=0", err: "Invalid header. Reason: Invalid value. Key:Accept-Encoding; Value:identity;q=0"},
		{line: "accept-encoding: gzip,  identity;q=0 ", err: "Invalid header. Reason: Invalid value. Key:Accept-Encoding; Value:  identity;q=0"},
		{line: "Accept-Encoding: *;q=0", err: "Invalid header. Reason: Invalid value. Key:Accept-Encoding; Value:*;q=0"},
		{line: "Accept-Encoding: identity, *;q=0"},
		{line: "Accept-Encoding:  ", err: "Invalid request."},
		{line: "X-Metadata-Token:  abc ", want: Header{Custom: map[string]string{"X-Metadata-Token": "abc"}}},
		{line: "  X-Odd  :a:b", want: Header{Custom: map[string]string{"X-Odd": "a:b"}}},
		{line: ":v", want: Header{Custom: map[string]string{"": "v"}}},
		{line: "Connection: close", want: Header{Custom: map[string]string{"Connection": "close"}}},
		{line: "no colon", err: "Invalid header. Reason: Header is incorrectly formatted. Key: no colon"},
		{line: "X: \xc3(", err: "Invalid header. Reason: Header contains invalid characters. Key: invalid utf-8 sequence of 1 bytes from index 3"},
		{line: "X: \xe2\x82", err: "Invalid header. Reason: Header contains invalid characters. Key: incomplete utf-8 byte sequence from index 3"},
		{line: "X\u00a0: v", want: Header{Custom: map[string]string{"X": "v"}}},
		{line: "Content-Length\u2003: 3", want: Header{ContentLength: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			var h Header
			err := h.parseHeaderLine([]byte(tt.line))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if !reflect.DeepEqual(h, tt.want) {
				t.Errorf("got %+v, want %+v", h, tt.want)
			}
		})
	}
}

func TestHeaderGet(t *testing.T) {
	h := Header{Custom: map[string]string{"X-Metadata-Token": "a", "x-metadata-token": "b", "Other": "c"}}
	for _, tt := range []struct{ name, want string }{
		{"X-Metadata-Token", "a"},
		{"x-metadata-token", "b"},
		{"X-METADATA-TOKEN", "a"}, // the smallest key among case-folded matches
		{"other", "c"},
	} {
		if got, ok := h.Get(tt.name); !ok || got != tt.want {
			t.Errorf("Get(%q) = %q, %v; want %q", tt.name, got, ok, tt.want)
		}
	}
	if _, ok := h.Get("missing"); ok {
		t.Error("Get(missing) found something")
	}
}

func TestUTF8ErrorText(t *testing.T) {
	// Expected texts are Rust's Utf8Error Display for the same bytes.
	tests := []struct{ in, want string }{
		{"\x80", "invalid utf-8 sequence of 1 bytes from index 0"},
		{"ab\xc0\x80", "invalid utf-8 sequence of 1 bytes from index 2"},
		{"\xe0\x80\x80", "invalid utf-8 sequence of 1 bytes from index 0"},
		{"\xed\xa0\x80", "invalid utf-8 sequence of 1 bytes from index 0"},
		{"\xe1\x80A", "invalid utf-8 sequence of 2 bytes from index 0"},
		{"\xf0\x90\x80A", "invalid utf-8 sequence of 3 bytes from index 0"},
		{"\xf4\x90\x80\x80", "invalid utf-8 sequence of 1 bytes from index 0"},
		{"\xf5", "invalid utf-8 sequence of 1 bytes from index 0"},
		{"é\xf0\x90\x80", "incomplete utf-8 byte sequence from index 2"},
		{"\xc3", "incomplete utf-8 byte sequence from index 0"},
	}
	for _, tt := range tests {
		if got := utf8ErrorText([]byte(tt.in)); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLossyString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"a\xffb", "a\uFFFDb"},
		{"a\xe1\x80b", "a\uFFFDb"},       // one maximal invalid sequence
		{"a\xff\xffb", "a\uFFFD\uFFFDb"}, // two
		{"a\xf0\x90\x80", "a\uFFFD"},     // unfinished at the end
		{"\xc3\xa9\xed\xa0\x80", "é\uFFFD\uFFFD\uFFFD"},
	}
	for _, tt := range tests {
		if got := lossyString([]byte(tt.in)); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAbsPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/", "/"},
		{"/machine-config?x=1", "/machine-config?x=1"},
		{"http://localhost/home", "/home"},
		{"http://localhost:8080/home/a", "/home/a"},
		{"http://localhost", ""},
		{"http://", ""},
		{"HTTP://localhost/home", ""},
		{"https://localhost/home", ""},
		{"home", ""},
		{"*", ""},
	}
	for _, tt := range tests {
		if got := AbsPath(tt.in); got != tt.want {
			t.Errorf("AbsPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		maxLen int
		err    error
		text   string // error text
		method string
		path   string
		body   string
		header Header
	}{
		{name: "get", in: "GET http://169.254.169.254/latest HTTP/1.0\r\n\r\n", method: "GET", path: "/latest"},
		{name: "trailing bytes after bare request ignored", in: "GET / HTTP/1.1\r\n\r\ngarbage", method: "GET", path: "/"},
		{name: "headers", in: "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\nAccept: application/json\r\n\r\n",
			method: "PUT", path: "/latest/api/token",
			header: Header{Accept: MediaJSON, Custom: map[string]string{"X-metadata-token-ttl-seconds": "60"}}},
		{name: "put body", in: "PUT /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab", method: "PUT", path: "/x", body: "ab",
			header: Header{ContentLength: 2}},
		{name: "get with body", in: "GET /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab", err: ErrInvalidRequest, text: "Invalid request."},
		{name: "delete with body", in: "DELETE /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab", err: ErrInvalidRequest},
		{name: "short body", in: "PUT /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nab", err: ErrInvalidRequest},
		{name: "long body", in: "PUT /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nab", err: ErrInvalidRequest},
		{name: "no end of headers", in: "GET / HTTP/1.1\r\nA: b\r\n", err: ErrInvalidRequest},
		{name: "no crlf", in: "GET / HTTP/1.1", err: ErrInvalidRequest},
		{name: "request line too short", in: "GET / HTTP/1\r\n\r\n", err: ErrInvalidRequest},
		{name: "max len", in: "GET / HTTP/1.1\r\n\r\n", maxLen: 18, err: ErrInvalidRequest},
		{name: "under max len", in: "GET / HTTP/1.1\r\n\r\n", maxLen: 19, method: "GET", path: "/"},
		{name: "method", in: "POST / HTTP/1.1\r\n\r\n", err: ErrInvalidMethod, text: "Invalid HTTP Method: Unsupported HTTP method."},
		{name: "version", in: "GET / HTTP/2.0\r\n\r\n", err: ErrInvalidVersion},
		{name: "headers not utf-8", in: "GET / HTTP/1.1\r\nA: \xff\r\n\r\n", err: ErrInvalidRequest},
		{name: "bad header", in: "GET / HTTP/1.1\r\nA\r\n\r\n", err: ErrInvalidHeader,
			text: "Invalid header. Reason: Header is incorrectly formatted. Key: A"},
		{name: "bare cr in header", in: "GET / HTTP/1.1\r\nA\r\r\n\r\n", err: ErrInvalidHeader,
			text: "Invalid header. Reason: Header is incorrectly formatted. Key: A\r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(tt.in), tt.maxLen)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("error %v, want kind %v", err, tt.err)
				}
				if tt.text != "" && err.Error() != tt.text {
					t.Fatalf("error text %q, want %q", err.Error(), tt.text)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if r.Method != tt.method || r.Path != tt.path || string(r.Body) != tt.body {
				t.Errorf("got %s %s %q", r.Method, r.Path, r.Body)
			}
			if tt.body == "" && r.Body != nil {
				t.Errorf("Body = %q, want nil", r.Body)
			}
			want := tt.header
			if want.Accept == "" {
				want.Accept = MediaText
			}
			if !reflect.DeepEqual(r.Header, want) {
				t.Errorf("header %+v, want %+v", r.Header, want)
			}
		})
	}
}

func TestParseErrorKinds(t *testing.T) {
	err := error(&ParseError{Kind: ErrPayloadTooLarge, Size: 260, Limit: 250})
	var pe *ParseError
	if !errors.As(err, &pe) || !errors.Is(err, ErrPayloadTooLarge) || errors.Is(err, ErrInvalidRequest) {
		t.Fatal("classification broken")
	}
}
