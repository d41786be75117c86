package microhttp

import (
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
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
