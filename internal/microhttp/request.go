package microhttp

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// The two protocol versions Firecracker accepts.
const (
	HTTP10 = "HTTP/1.0"
	HTTP11 = "HTTP/1.1"
)

// Request is one parsed HTTP request.
type Request struct {
	Method  string // "GET", "PUT", "PATCH" or "DELETE"
	Target  string // the request-target as sent (valid UTF-8, never empty)
	Path    string // Target's absolute path, as Firecracker derives it (see AbsPath)
	Version string // HTTP10 or HTTP11
	Header  Header
	Body    []byte // nil when there is no body (Content-Length absent or 0)
}

var crlf = []byte("\r\n")

// parseRequestLine splits "METHOD SP TARGET SP VERSION" at the first two
// spaces (anything after the second belongs to the version) and checks the
// parts in Firecracker's order: method, target, version.
func parseRequestLine(line []byte) (*Request, *ParseError) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return nil, errInvalidRequest
	}
	method, rest := line[:sp], line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return nil, errInvalidRequest
	}
	target, version := rest[:sp], rest[sp+1:]

	r := &Request{Header: Header{Accept: MediaText}}
	switch string(method) {
	case "GET", "PUT", "PATCH", "DELETE":
		r.Method = string(method)
	default:
		return nil, errMethod
	}
	if len(target) == 0 {
		return nil, errEmptyURI
	}
	if !utf8.Valid(target) {
		return nil, errURIUTF8
	}
	r.Target = string(target)
	r.Path = AbsPath(r.Target)
	switch string(version) {
	case HTTP10, HTTP11:
		r.Version = string(version)
	default:
		return nil, errVersion
	}
	return r, nil
}

// AbsPath returns the path of a request-target the way Firecracker routes
// it: "http://host[:port]/p" gives "/p", "/p" gives itself, and anything
// else (no path after the host, other schemes, relative forms) gives "".
// The query, if any, stays part of the path.
func AbsPath(target string) string {
	const scheme = "http://"
	if rest, ok := strings.CutPrefix(target, scheme); ok {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			return rest[i:]
		}
		return ""
	}
	if strings.HasPrefix(target, "/") {
		return target
	}
	return ""
}

// minRequestLine is the shortest request line ParseRequest accepts:
// "GET", a one-byte target, "HTTP/1.x" and two spaces.
const minRequestLine = len("GET") + 1 + len(HTTP10) + 2

// ParseRequest parses b as exactly one complete request, the way
// Firecracker's MMDS parses what a guest sent: b must hold the request
// line, the header block ending in an empty line and then exactly
// Content-Length body bytes (bytes after a header-less request are
// ignored). GET and DELETE may not carry a body. maxLen > 0 refuses
// inputs of maxLen bytes or more. There is no payload limit here.
func ParseRequest(b []byte, maxLen int) (*Request, error) {
	r, err := parseWhole(b, maxLen)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func parseWhole(b []byte, maxLen int) (*Request, *ParseError) {
	if maxLen > 0 && len(b) >= maxLen {
		return nil, errInvalidRequest
	}
	lineEnd := bytes.Index(b, crlf)
	if lineEnd < 0 || lineEnd < minRequestLine {
		return nil, errInvalidRequest
	}
	r, perr := parseRequestLine(b[:lineEnd])
	if perr != nil {
		return nil, perr
	}
	rest := b[lineEnd:] // starts with the request line's CRLF
	end := bytes.Index(rest, []byte("\r\n\r\n"))
	switch {
	case end < 0:
		return nil, errInvalidRequest
	case end == 0:
		return r, nil
	}
	block := rest[2:end]
	if !utf8.Valid(block) {
		return nil, errInvalidRequest
	}
	for len(block) > 0 {
		line := block
		if i := bytes.Index(block, crlf); i >= 0 {
			line, block = block[:i], block[i+2:]
		} else {
			block = nil
		}
		if len(line) == 0 {
			break
		}
		if perr := r.Header.parseHeaderLine(line); perr != nil {
			return nil, perr
		}
	}
	if r.Header.ContentLength == 0 {
		return r, nil
	}
	if r.Method == "GET" || r.Method == "DELETE" {
		return nil, errInvalidRequest
	}
	body := rest[end+4:]
	if uint64(len(body)) != uint64(r.Header.ContentLength) {
		return nil, errInvalidRequest
	}
	r.Body = bytes.Clone(body)
	return r, nil
}
