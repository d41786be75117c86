package microhttp

import "bytes"

// BufferSize is the size of a connection's read buffer. A request line, or
// a header line, must fit in it together with its CRLF.
const BufferSize = 1024

type parseState uint8

const (
	stateRequestLine parseState = iota
	stateHeaders
	stateBody
)

// Parser assembles requests from a byte stream exactly as Firecracker's
// API connections do, quirks included. The stream is read straight into
// the parser's fixed 1024-byte buffer: the caller reads into ReadBuf (at
// most its length, so reads are never larger than the free space) and then
// reports the count to Advance.
//
// After an error the parser is deliberately not reset, as in Firecracker:
// bytes from the failed read are forgotten, but the request being
// assembled, its parse state and any unfinished line already buffered
// survive, and go on shaping how the next bytes are understood.
type Parser struct {
	buf     [BufferSize]byte
	cursor  int // buf[:cursor] holds the unfinished line kept from earlier reads
	state   parseState
	pending *Request
	body    []byte
	need    uint32 // body bytes still expected
	limit   uint64
	parsed  []*Request
	interim []string
}

// NewParser returns a parser refusing bodies longer than maxPayload bytes.
func NewParser(maxPayload uint64) *Parser {
	return &Parser{limit: maxPayload}
}

// Parsed is what one Advance produced.
type Parsed struct {
	// Requests are the requests completed, in stream order. They are
	// dropped (nil) when Advance fails.
	Requests []*Request
	// Continue holds, in order, the version of each request whose headers
	// asked for "Expect: 100-continue" and announced a body; each wants an
	// interim 100 answer, sent ahead of any answer to Requests. These
	// survive a failed Advance.
	Continue []string
}

// ReadBuf returns the free part of the buffer, where the next read must
// put its bytes. It is empty only if the parser is wedged, in which case
// Advance(0) reports the overflow.
func (p *Parser) ReadBuf() []byte { return p.buf[p.cursor:] }

// Advance parses n bytes just read into ReadBuf. It returns the requests
// they completed, or a *ParseError; n == 0 is not end of stream (that is
// the caller's business) but an empty read.
func (p *Parser) Advance(n int) (Parsed, error) {
	p.parsed, p.interim = p.parsed[:0], p.interim[:0]
	out, err := p.advance(n)
	if err != nil {
		return Parsed{Continue: out.Continue}, err
	}
	return out, nil
}

func (p *Parser) result() Parsed {
	var out Parsed
	if len(p.parsed) > 0 {
		out.Requests = append([]*Request(nil), p.parsed...)
	}
	if len(p.interim) > 0 {
		out.Continue = append([]string(nil), p.interim...)
	}
	return out
}

func (p *Parser) advance(n int) (Parsed, *ParseError) {
	if p.cursor >= BufferSize || n < 0 || n > BufferSize-p.cursor {
		return p.result(), errOverflow
	}
	end := p.cursor + n
	start := 0
	for {
		var more bool
		var err *ParseError
		switch p.state {
		case stateRequestLine:
			more, err = p.requestLine(&start, end)
		case stateHeaders:
			more, err = p.headerLine(&start, end)
		case stateBody:
			more = p.bodyBytes(&start, end)
		}
		if err != nil {
			return p.result(), err
		}
		if !more {
			return p.result(), nil
		}
	}
}

// keep moves the unfinished line buf[start:end] to the front of the buffer
// so the next read appends to it.
func (p *Parser) keep(start, end int) {
	copy(p.buf[:], p.buf[start:end])
	p.cursor = end - start
}

func (p *Parser) requestLine(start *int, end int) (bool, *ParseError) {
	i := bytes.Index(p.buf[*start:end], crlf)
	if i < 0 {
		if *start == 0 && end == BufferSize {
			return false, errInvalidRequest
		}
		p.keep(*start, end)
		return false, nil
	}
	line := p.buf[*start : *start+i]
	*start += i + 2
	r, err := parseRequestLine(line)
	if err != nil {
		return false, err
	}
	p.pending = r
	p.state = stateHeaders
	return true, nil
}

func (p *Parser) headerLine(start *int, end int) (bool, *ParseError) {
	i := bytes.Index(p.buf[*start:end], crlf)
	switch {
	case i < 0:
		if *start == 0 && end == BufferSize {
			// Firecracker reports an over-long header line with this
			// (misleading) reason and the whole buffer as the header.
			return false, headerError("Invalid content length. Header: " + lossyString(p.buf[:]))
		}
		p.keep(*start, end)
		return false, nil
	case i > 0:
		line := p.buf[*start : *start+i]
		if err := p.pending.Header.parseHeaderLine(line); err != nil {
			return false, err
		}
		*start += i + 2
		return true, nil
	}
	// An empty line ends the header block.
	*start += 2
	r := p.pending
	cl := r.Header.ContentLength
	if cl == 0 {
		p.complete()
		return true, nil
	}
	if uint64(cl) > p.limit {
		return false, &ParseError{Kind: ErrPayloadTooLarge, Size: uint64(cl), Limit: p.limit}
	}
	if r.Header.Expect {
		p.interim = append(p.interim, r.Version)
	}
	p.need = cl
	// Grow with the bytes that arrive rather than trusting the announced size.
	p.body = make([]byte, 0, min(cl, 4096))
	p.state = stateBody
	return true, nil
}

func (p *Parser) bodyBytes(start *int, end int) bool {
	avail := end - *start
	if uint64(p.need) > uint64(avail) {
		p.body = append(p.body, p.buf[*start:end]...)
		p.need -= uint32(avail)
		p.cursor = 0
		return false
	}
	p.body = append(p.body, p.buf[*start:*start+int(p.need)]...)
	*start += int(p.need)
	p.need = 0
	p.pending.Body = p.body
	p.body = nil
	p.complete()
	return true
}

func (p *Parser) complete() {
	p.parsed = append(p.parsed, p.pending)
	p.pending = nil
	p.state = stateRequestLine
}
