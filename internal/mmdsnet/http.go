package mmdsnet

import (
	"errors"
	"strconv"
	"strings"

	"github.com/ember-vmm/ember/internal/metrics"
	"github.com/ember-vmm/ember/internal/microhttp"
	"github.com/ember-vmm/ember/internal/strictjson"
)

// TokenPath is where V2 session tokens are issued.
const TokenPath = "/latest/api/token"

// Header names, matched without regard to case.
const (
	hdrToken       = "X-metadata-token"
	hdrTokenAWS    = "X-aws-ec2-metadata-token"
	hdrTokenTTL    = "X-metadata-token-ttl-seconds"
	hdrTokenTTLAWS = "X-aws-ec2-metadata-token-ttl-seconds"
	hdrForwarded   = "X-Forwarded-For"
)

// Answer texts, Firecracker's.
const (
	msgInvalidURI     = "Invalid URI."
	msgNotAllowed     = "Not allowed HTTP method."
	msgNoToken        = "No MMDS token provided. Use `X-metadata-token` or `X-aws-ec2-metadata-token` header to specify the session token."
	msgInvalidToken   = "MMDS token not valid."
	msgNoTTL          = "Token time to live value not found. Use `X-metadata-token-ttl-seconds` or `X-aws-ec2-metadata-token-ttl-seconds` header to specify the token's lifetime."
	msgUnsupported    = "Cannot retrieve value. The value has an unsupported type."
	msgInvalidRequest = "Invalid request."
)

// response is an MMDS answer in micro_http's wire format.
type response struct {
	version     string
	status      int
	contentType string
	body        []byte
	allow       bool     // "Allow: GET, PUT"
	header      []string // one custom header: name, value
}

// append writes r: status line without reason phrase, Server and
// Connection, Allow, the custom header, then Content-Type and
// Content-Length (every MMDS answer has them) and the body.
func (r *response) append(b []byte) []byte {
	b = append(b, r.version...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(r.status), 10)
	b = append(b, " \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"...)
	if r.allow {
		b = append(b, "Allow: GET, PUT\r\n"...)
	}
	if len(r.header) == 2 {
		b = append(b, r.header[0]...)
		b = append(b, ": "...)
		b = append(b, r.header[1]...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Type: "...)
	b = append(b, r.contentType...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(r.body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, r.body...)
}

func text(version string, status int, msg string) *response {
	return &response{version: version, status: status, contentType: microhttp.MediaText, body: []byte(msg)}
}

// responder answers guest requests from the store.
type responder struct {
	store      Store
	tokens     *Tokens
	v2         bool
	imdsCompat bool
	m          *metrics.MMDSMetrics
}

// respond parses one request (as received up to its blank line) and
// returns the answer's bytes.
func (r *responder) respond(req []byte) []byte {
	parsed, err := microhttp.ParseRequest(req, 0)
	if err != nil {
		return parseErrorResponse(err).append(nil)
	}
	return r.answer(parsed).append(nil)
}

// parseErrorResponse answers a request the parser refused; these answers
// say HTTP/1.1 and micro_http's default content type, application/json.
func parseErrorResponse(err error) *response {
	status, msg := 400, msgInvalidRequest
	var pe *microhttp.ParseError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(pe, microhttp.ErrInvalidMethod), errors.Is(pe, microhttp.ErrInvalidVersion):
			status, msg = 501, pe.Reason
		case errors.Is(pe, microhttp.ErrInvalidURI), errors.Is(pe, microhttp.ErrInvalidHeader):
			msg = pe.Reason
		case errors.Is(pe, microhttp.ErrPayloadTooLarge):
			status, msg = 413, pe.Error()
		case errors.Is(pe, microhttp.ErrOverflow):
			msg = pe.Error()
		}
	}
	return &response{version: microhttp.HTTP11, status: status, contentType: microhttp.MediaJSON, body: []byte(msg)}
}

// header finds the first of names among the request's custom headers,
// compared without regard to ASCII case, and returns the name as sent
// and its value. When several spellings are present the smallest wins,
// so the answer never depends on map order.
func header(h *microhttp.Header, names ...string) (string, string, bool) {
	for _, n := range names {
		found, key := false, ""
		for k := range h.Custom {
			if strings.EqualFold(k, n) && isASCII(k) && (!found || k < key) {
				found, key = true, k
			}
		}
		if found {
			return key, h.Custom[key], true
		}
	}
	return "", "", false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func (r *responder) answer(req *microhttp.Request) *response {
	if req.Path == "" {
		return text(req.Version, 400, msgInvalidURI)
	}
	switch req.Method {
	case "GET":
		_, tok, ok := header(&req.Header, hdrToken, hdrTokenAWS)
		switch {
		case !ok:
			r.m.RxNoToken.Inc()
			if r.v2 {
				return text(req.Version, 401, msgNoToken)
			}
		case !r.tokens.Valid(tok):
			r.m.RxInvalidToken.Inc()
			if r.v2 {
				return text(req.Version, 401, msgInvalidToken)
			}
		}
		return r.get(req)
	case "PUT":
		return r.put(req)
	}
	resp := text(req.Version, 405, msgNotAllowed)
	resp.allow = true
	return resp
}

func (r *responder) get(req *microhttp.Request) *response {
	path := sanitize(req.Path)
	v, ok := lookup(r.store.Value(), path)
	if !ok {
		return text(req.Version, 404, "Resource not found: "+req.Path+".")
	}
	accept := req.Header.Accept
	var body []byte
	if accept == microhttp.MediaJSON && !r.imdsCompat {
		body = v.Compact()
	} else if body, ok = imds(v); !ok {
		return text(req.Version, 501, msgUnsupported)
	}
	// The Content-Type follows Accept even when IMDS compatibility forces
	// the IMDS format, as in Firecracker.
	return &response{version: req.Version, status: 200, contentType: accept, body: body}
}

func (r *responder) put(req *microhttp.Request) *response {
	if name, _, ok := header(&req.Header, hdrForwarded); ok {
		return text(req.Version, 400, "Invalid header. Reason: Unsupported header name. Key: "+name)
	}
	if sanitize(req.Path) != TokenPath {
		return text(req.Version, 404, "Resource not found: "+req.Path+".")
	}
	name, value, ok := header(&req.Header, hdrTokenTTL, hdrTokenTTLAWS)
	if !ok {
		return text(req.Version, 400, msgNoTTL)
	}
	ttl, ok := parseU32(value)
	if !ok {
		return text(req.Version, 400, "Invalid header. Reason: Invalid value. Key:"+name+"; Value:"+value)
	}
	tok, err := r.tokens.Generate(ttl)
	if err != nil {
		return text(req.Version, 400, err.Error())
	}
	resp := text(req.Version, 200, tok)
	resp.header = []string{name, strconv.FormatUint(uint64(ttl), 10)}
	return resp
}

// parseU32 parses as Rust's u32 FromStr: an optional '+', then decimal
// digits only, no overflow.
func parseU32(s string) (uint32, bool) {
	s = strings.TrimPrefix(s, "+")
	if s == "" {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		if n = n*10 + uint64(s[i]-'0'); n > 1<<32-1 {
			return 0, false
		}
	}
	return uint32(n), true
}

// sanitize collapses every run of slashes into one.
func sanitize(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}

// lookup resolves a sanitized request path as a JSON pointer, ignoring
// one trailing slash.
func lookup(v strictjson.Value, path string) (strictjson.Value, bool) {
	path = strings.TrimSuffix(path, "/")
	return Pointer(v, path)
}

// Pointer resolves an RFC 6901 JSON pointer the way serde_json's
// Value::pointer does: "" is the whole value, "~1" and "~0" unescape,
// array indexes are decimal without sign or leading zeros.
func Pointer(v strictjson.Value, ptr string) (strictjson.Value, bool) {
	if ptr == "" {
		return v, true
	}
	if ptr[0] != '/' {
		return strictjson.Value{}, false
	}
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch v.Kind() {
		case strictjson.KindObject:
			next, ok := v.Get(tok)
			if !ok {
				return strictjson.Value{}, false
			}
			v = next
		case strictjson.KindArray:
			arr, _ := v.Array()
			i, ok := arrayIndex(tok)
			if !ok || i >= uint64(len(arr)) {
				return strictjson.Value{}, false
			}
			v = arr[i]
		default:
			return strictjson.Value{}, false
		}
	}
	return v, true
}

func arrayIndex(s string) (uint64, bool) {
	if s == "" || s[0] == '+' || (s[0] == '0' && len(s) != 1) {
		return 0, false
	}
	i, err := strconv.ParseUint(s, 10, 64)
	return i, err == nil
}

// imds renders v in the IMDS text format: an object lists its keys one
// per line (sorted), objects marked with a trailing '/'; a string is
// itself; anything else cannot be rendered.
func imds(v strictjson.Value) ([]byte, bool) {
	if ms, ok := v.Object(); ok {
		var b []byte
		for i, m := range ms {
			if i > 0 {
				b = append(b, '\n')
			}
			b = append(b, m.Key...)
			if m.Value.Kind() == strictjson.KindObject {
				b = append(b, '/')
			}
		}
		if b == nil {
			b = []byte{}
		}
		return b, true
	}
	if s, ok := v.Str(); ok {
		return []byte(s), true
	}
	return nil, false
}
