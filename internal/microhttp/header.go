package microhttp

import (
	"strings"
	"unicode/utf8"
)

// Media types Firecracker recognises in Content-Type and Accept.
const (
	MediaText = "text/plain"
	MediaJSON = "application/json"
)

// Header holds what Firecracker keeps of a request's header fields: a few
// parsed known fields, and every unknown field verbatim (trimmed).
// Content-Type, Server and Transfer-Encoding: identity are checked and
// dropped, as Firecracker does.
type Header struct {
	ContentLength uint32 // 0 when absent; the last Content-Length wins
	Expect        bool   // "Expect: 100-continue" was sent
	Chunked       bool   // "Transfer-Encoding: chunked" was sent (the body is not decoded)
	Accept        string // MediaText (the default) or MediaJSON
	// Custom maps unknown field names, as sent, to their values. A repeated
	// name replaces the earlier value.
	Custom map[string]string
}

// Get returns the value of the unknown header field name, compared without
// regard to ASCII case. An exact match wins over a case-folded one.
func (h *Header) Get(name string) (string, bool) {
	if v, ok := h.Custom[name]; ok {
		return v, true
	}
	found, key := false, ""
	for k := range h.Custom {
		// The smallest matching key keeps the answer independent of map order.
		if asciiEqualFold(k, name) && (!found || k < key) {
			found, key = true, k
		}
	}
	if !found {
		return "", false
	}
	return h.Custom[key], true
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if asciiLower(a[i]) != asciiLower(b[i]) {
			return false
		}
	}
	return true
}

func asciiLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// trim removes leading and trailing Unicode White_Space, the set Rust's
// str::trim removes (strings.TrimSpace uses the same property).
func trim(s string) string { return strings.TrimSpace(s) }

// parseHeaderLine applies one header line (without its CRLF) to h, with
// Firecracker's rules. Values Firecracker ignores (an unsupported
// Content-Type, Accept, Transfer-Encoding or Expect) are no error.
func (h *Header) parseHeaderLine(line []byte) *ParseError {
	if !utf8.Valid(line) {
		return headerError("Header contains invalid characters. Key: " + utf8ErrorText(line))
	}
	s := string(line)
	colon := strings.IndexByte(s, ':')
	if colon < 0 {
		return headerError("Header is incorrectly formatted. Key: " + s)
	}
	rawName, rawValue := s[:colon], s[colon+1:]
	value := trim(rawValue)
	switch knownHeader(rawName) {
	case "content-length":
		n, ok := parseU32(value)
		if !ok {
			return headerError("Invalid value. Key:" + rawName + "; Value:" + rawValue)
		}
		h.ContentLength = n
	case "content-type":
		// Checked against the two supported types and otherwise ignored.
	case "accept":
		if value == MediaText || value == MediaJSON {
			h.Accept = value
		}
	case "transfer-encoding":
		if value == "chunked" {
			h.Chunked = true
		}
	case "expect":
		if value == "100-continue" {
			h.Expect = true
		}
	case "server":
	case "accept-encoding":
		return checkAcceptEncoding(value)
	default:
		if h.Custom == nil {
			h.Custom = make(map[string]string)
		}
		h.Custom[trim(rawName)] = value
	}
	return nil
}

// knownHeader returns the lower-case name of a field Firecracker parses,
// or "" for a custom one. Only ASCII letters are folded, after which
// Unicode White_Space is trimmed.
func knownHeader(name string) string {
	var buf [24]byte
	t := trim(name)
	if len(t) > len(buf) {
		return ""
	}
	for i := 0; i < len(t); i++ {
		buf[i] = asciiLower(t[i])
	}
	switch l := string(buf[:len(t)]); l {
	case "content-length", "content-type", "expect", "transfer-encoding",
		"server", "accept", "accept-encoding":
		return l
	}
	return ""
}

// checkAcceptEncoding refuses an Accept-Encoding that rules out the
// identity encoding, which is all Firecracker can answer with.
func checkAcceptEncoding(value string) *ParseError {
	if value == "" {
		return errInvalidRequest
	}
	for _, enc := range strings.Split(value, ",") {
		switch trim(enc) {
		case "identity;q=0":
			return headerError("Invalid value. Key:Accept-Encoding; Value:" + enc)
		case "*;q=0":
			if !strings.Contains(value, "identity") {
				return headerError("Invalid value. Key:Accept-Encoding; Value:" + enc)
			}
		}
	}
	return nil
}

// parseU32 parses a decimal u32 as Rust's str::parse does: an optional '+'
// then at least one ASCII digit, no overflow.
func parseU32(s string) (uint32, bool) {
	s = strings.TrimPrefix(s, "+")
	if s == "" {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > 1<<32-1 {
			return 0, false
		}
	}
	return uint32(n), true
}
