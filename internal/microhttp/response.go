package microhttp

import "strconv"

// Response is an answer in Firecracker's wire format.
type Response struct {
	Status int
	// Body is sent as is. A nil Body on a 100 or 204 answer means no
	// Content-Type/Content-Length lines; on any other status Firecracker
	// still announces an empty JSON body ("Content-Length: 0").
	Body []byte
	// ContentType is the Content-Type line's value; "" means MediaJSON.
	ContentType string
	// Allow lists methods for an "Allow:" line, in order ("GET, PUT").
	Allow []string
	// Deprecation adds "Deprecation: true".
	Deprecation bool
}

// hasLength reports whether the Content-Type and Content-Length lines are
// written.
func (r *Response) hasLength() bool {
	return r.Body != nil || (r.Status != 100 && r.Status != 204)
}

// AppendTo appends the exact bytes of r, answering a request of the given
// version (HTTP10 or HTTP11; Firecracker's API always answers HTTP11), to b.
// The status line has no reason phrase: "HTTP/1.1 204 \r\n".
func (r *Response) AppendTo(b []byte, version string) []byte {
	b = append(b, version...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, " \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"...)
	if len(r.Allow) > 0 {
		b = append(b, "Allow: "...)
		for i, m := range r.Allow {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = append(b, m...)
		}
		b = append(b, "\r\n"...)
	}
	if r.Deprecation {
		b = append(b, "Deprecation: true\r\n"...)
	}
	if r.hasLength() {
		ct := r.ContentType
		if ct == "" {
			ct = MediaJSON
		}
		b = append(b, "Content-Type: "...)
		b = append(b, ct...)
		b = append(b, "\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(r.Body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	return append(b, r.Body...)
}

// errorResponse is the 400 answer to a request the parser refused. The
// text goes into the JSON string unescaped, newline and all, as
// Firecracker sends it.
func errorResponse(err error) *Response {
	body := make([]byte, 0, 96+len(err.Error()))
	body = append(body, `{ "error": "`...)
	body = append(body, err.Error()...)
	body = append(body, "\nAll previous unanswered requests will be dropped.\" }"...)
	return &Response{Status: 400, Body: body}
}

// continueResponse is the interim answer to "Expect: 100-continue".
var continueResponse = &Response{Status: 100}

// serverFull is written, whole, to each connection beyond the limit before
// it is closed. Unlike every other answer, its status line has no space
// after the code, and it says "Connection: close".
const serverFull = "HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\nContent-Length: 40\r\n\r\n{ \"error\": \"Too many open connections\" }"
