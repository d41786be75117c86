package badrequests

// The corpus format. Each testdata/*.txt file is one run against one fresh
// ember process:
//
//	# comment
//	@state fresh|booted           booted: boot the test guest first (needs root and QEMU)
//	@args --flag value            extra command-line arguments
//	@file NAME SIZE               a zero-filled file in ember's working directory
//	@setup METHOD TARGET [BODY]   a request that must succeed (2xx) before the cases
//
//	=== case name
//	> METHOD TARGET [BODY]        HTTP/1.1 request, Content-Length from BODY (rest of the line)
//	>body EXPR                    the body, when it cannot be written on the > line
//	>> EXPR                       exact request bytes
//	< interim VERSION             a "100 Continue" answer in VERSION comes first
//	< deprecation                 the answer carries "Deprecation: true"
//	< fault STATUS TEXT           {"fault_message":TEXT} with that status
//	< error TEXT                  micro_http's 400 parse-error envelope around TEXT
//	< status STATUS               an answer without a body (204)
//	< none                        no answer at all (the request is incomplete)
//
// EXPR is Go string literals joined by +, each optionally repeated with
// "* N": "GET /" + "a" * 1008 + " HTTP/1.1\r\n\r\n". A TEXT starting with
// a double quote is an EXPR too. ${KERNEL}, ${INITRD}, ${ROOTFS} and
// ${BOOTARGS} are replaced in requests and texts (booted files).
//
// Where a fault_message wraps a serde_json error, its text was produced by
// the real serde_json 1.0.150 (the version Firecracker pins) decoding the
// body into copies of Firecracker's body structs (field order, defaults,
// deny_unknown_fields and enum variants as in src/vmm/src/vmm_config and
// src/firecracker/src/api_server/request): the strictjson oracle of
// internal/strictjson/testdata/oracle, with every API body type added.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// corpusFile is one testdata file.
type corpusFile struct {
	name  string
	state string // "fresh" or "booted"
	args  []string
	files []fileSpec
	setup []string // "METHOD TARGET [BODY]"
	cases []*testCase
}

type fileSpec struct {
	name string
	size int64
}

// testCase is one request and the answer Firecracker gives it.
type testCase struct {
	file, name string
	line       int
	method     string // for > requests
	target     string
	body       []byte
	raw        []byte // for >> requests
	hasBody    bool
	want       answer
}

// answer is what a case expects.
type answer struct {
	none        bool
	interim     string // "" or the interim answer's version
	deprecation bool
	status      int
	kind        string // "fault", "error" or "status"
	text        string
}

func (c *testCase) id() string { return c.file + "/" + c.name }

// loadCorpus reads every testdata/*.txt file.
func loadCorpus(t testing.TB) []*corpusFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no corpus files in testdata (%v)", err)
	}
	var out []*corpusFile
	for _, p := range paths {
		f, err := parseCorpusFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

func parseCorpusFile(path string) (*corpusFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f := &corpusFile{name: filepath.Base(path), state: "fresh"}
	var cur *testCase
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	n := 0
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", path, n, fmt.Sprintf(format, args...))
	}
	finish := func() error {
		if cur == nil {
			return nil
		}
		if cur.method == "" && cur.raw == nil {
			return fail("case %q sends nothing", cur.name)
		}
		if cur.want.kind == "" && !cur.want.none {
			return fail("case %q expects nothing", cur.name)
		}
		f.cases = append(f.cases, cur)
		cur = nil
		return nil
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "@"):
			key, val, _ := strings.Cut(line[1:], " ")
			switch key {
			case "state":
				if val != "fresh" && val != "booted" {
					return nil, fail("unknown state %q", val)
				}
				f.state = val
			case "args":
				f.args = append(f.args, strings.Fields(val)...)
			case "file":
				name, size, _ := strings.Cut(val, " ")
				sz, err := strconv.ParseInt(size, 10, 64)
				if err != nil || name == "" || strings.Contains(name, "/") {
					return nil, fail("bad @file %q", val)
				}
				f.files = append(f.files, fileSpec{name, sz})
			case "setup":
				f.setup = append(f.setup, val)
			default:
				return nil, fail("unknown directive @%s", key)
			}
		case strings.HasPrefix(line, "=== "):
			if err := finish(); err != nil {
				return nil, err
			}
			cur = &testCase{file: f.name, name: line[4:], line: n}
			for _, c := range f.cases {
				if c.name == cur.name {
					return nil, fail("duplicate case %q", cur.name)
				}
			}
		case cur == nil:
			return nil, fail("line outside a case: %q", line)
		case strings.HasPrefix(line, ">> "):
			b, err := parseExpr(line[3:])
			if err != nil {
				return nil, fail("%v", err)
			}
			cur.raw = b
		case strings.HasPrefix(line, ">body "):
			b, err := parseExpr(line[6:])
			if err != nil {
				return nil, fail("%v", err)
			}
			cur.body, cur.hasBody = b, true
		case strings.HasPrefix(line, "> "):
			parts := strings.SplitN(line[2:], " ", 3)
			if len(parts) < 2 {
				return nil, fail("bad request line %q", line)
			}
			cur.method, cur.target = parts[0], parts[1]
			if len(parts) == 3 {
				cur.body, cur.hasBody = []byte(parts[2]), true
			}
		case strings.HasPrefix(line, "< "):
			if err := parseWant(&cur.want, line[2:]); err != nil {
				return nil, fail("%v", err)
			}
		default:
			return nil, fail("unknown line %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return f, nil
}

func parseWant(w *answer, s string) error {
	key, rest, _ := strings.Cut(s, " ")
	text := func(s string) (string, error) {
		if strings.HasPrefix(s, `"`) {
			b, err := parseExpr(s)
			return string(b), err
		}
		return s, nil
	}
	var err error
	switch key {
	case "none":
		w.none = true
	case "interim":
		if rest != "HTTP/1.0" && rest != "HTTP/1.1" {
			return fmt.Errorf("bad interim version %q", rest)
		}
		w.interim = rest
	case "deprecation":
		w.deprecation = true
	case "fault":
		code, msg, _ := strings.Cut(rest, " ")
		if w.status, err = strconv.Atoi(code); err != nil {
			return fmt.Errorf("bad status %q", code)
		}
		w.kind = "fault"
		w.text, err = text(msg)
	case "error":
		w.kind, w.status = "error", 400
		w.text, err = text(rest)
	case "status":
		w.kind = "status"
		w.status, err = strconv.Atoi(rest)
	default:
		return fmt.Errorf("unknown expectation %q", s)
	}
	return err
}

// parseExpr evaluates Go string literals joined by +, each optionally
// followed by "* N".
func parseExpr(s string) ([]byte, error) {
	var out []byte
	s = strings.TrimSpace(s)
	for {
		if !strings.HasPrefix(s, `"`) {
			return nil, fmt.Errorf("expected a string literal at %q", s)
		}
		end := 1
		for ; end < len(s) && s[end] != '"'; end++ {
			if s[end] == '\\' {
				end++
			}
		}
		if end >= len(s) {
			return nil, fmt.Errorf("unterminated string literal %q", s)
		}
		lit, err := strconv.Unquote(s[:end+1])
		if err != nil {
			return nil, fmt.Errorf("bad literal %s: %v", s[:end+1], err)
		}
		s = strings.TrimSpace(s[end+1:])
		count := 1
		if rest, ok := strings.CutPrefix(s, "*"); ok {
			rest = strings.TrimSpace(rest)
			i := 0
			for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
				i++
			}
			if count, err = strconv.Atoi(rest[:i]); err != nil || count < 0 || count > 1<<20 {
				return nil, fmt.Errorf("bad repeat count in %q", s)
			}
			s = strings.TrimSpace(rest[i:])
		}
		out = append(out, bytes.Repeat([]byte(lit), count)...)
		if s == "" {
			return out, nil
		}
		rest, ok := strings.CutPrefix(s, "+")
		if !ok {
			return nil, fmt.Errorf("expected + at %q", s)
		}
		s = strings.TrimSpace(rest)
	}
}

// expand replaces ${NAME} for the names in vars.
func expand(s string, vars map[string]string) string {
	for k, v := range vars {
		s = strings.ReplaceAll(s, "${"+k+"}", v)
	}
	return s
}

// requestBytes is what the case sends.
func (c *testCase) requestBytes(vars map[string]string) []byte {
	if c.raw != nil {
		return []byte(expand(string(c.raw), vars))
	}
	return buildRequest(c.method, expand(c.target, vars), []byte(expand(string(c.body), vars)), c.hasBody)
}

// buildRequest is an HTTP/1.1 request as a Firecracker client sends it.
func buildRequest(method, target string, body []byte, hasBody bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, target)
	if hasBody && len(body) > 0 {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	if hasBody {
		b.Write(body)
	}
	return b.Bytes()
}

// wantBytes is the exact answer (after any interim answer) the case
// expects, in micro_http's format.
func (w answer) wantBytes(vars map[string]string) []byte {
	var body []byte
	switch w.kind {
	case "fault":
		body = faultBody(expand(w.text, vars))
	case "error":
		body = []byte(`{ "error": "` + expand(w.text, vars) + "\nAll previous unanswered requests will be dropped.\" }")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n", w.status)
	if w.deprecation {
		b.WriteString("Deprecation: true\r\n")
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// interimBytes is micro_http's answer to "Expect: 100-continue".
func interimBytes(version string) []byte {
	return []byte(version + " 100 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n")
}

// faultBody is Firecracker's error body: serde_json's compact encoding of
// {"fault_message": text}. serde_json escapes '"', '\\' and the C0
// controls (\b \f \n \r \t by name, the rest as \u00XX) and nothing else.
func faultBody(text string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"fault_message":"`)
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteString(`"}`)
	return b.Bytes()
}

// TestCorpusFormat checks the corpus itself: every file parses, the corpus
// is as large as promised, and the helpers build what the format says.
func TestCorpusFormat(t *testing.T) {
	files := loadCorpus(t)
	total, fresh := 0, 0
	for _, f := range files {
		total += len(f.cases)
		if f.state == "fresh" {
			fresh += len(f.cases)
		}
	}
	t.Logf("corpus: %d files, %d cases (%d need no guest)", len(files), total, fresh)
	if fresh < 300 {
		t.Errorf("only %d cases run without a guest; the corpus promises at least 300", fresh)
	}
	for _, k := range sortedKeys(knownDivergences) {
		found := false
		for _, f := range files {
			for _, c := range f.cases {
				found = found || c.id() == k
			}
		}
		if !found {
			t.Errorf("known divergence %q names no case", k)
		}
	}
	if got, err := parseExpr(`"a\r\n" + "b" * 3 + "" * 2 + "\xff"`); err != nil || string(got) != "a\r\nbbb\xff" {
		t.Errorf("parseExpr = %q, %v", got, err)
	}
	if got := string(faultBody("a\"b\\c\n\x00\x7f\u00e9")); got != `{"fault_message":"a\"b\\c\n\u0000`+"\x7f\u00e9"+`"}` {
		t.Errorf("faultBody = %s", got)
	}
	want := "PUT /x HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
	if got := string(buildRequest("PUT", "/x", []byte("{}"), true)); got != want {
		t.Errorf("buildRequest = %q", got)
	}
}
