package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// ErrHTTP marks a malformed or unexpected HTTP answer.
var ErrHTTP = errors.New("bad HTTP answer")

// apiClient speaks just enough HTTP/1.1 over one persistent Unix-socket
// connection to drive a Firecracker-style API. Both servers under test get
// exactly this client, so its own cost is the same on both sides; it is
// kept small so that the servers' differences dominate.
type apiClient struct {
	sock    string
	timeout time.Duration
	conn    net.Conn
	br      *bufio.Reader
	buf     bytes.Buffer
}

func newAPIClient(sock string) *apiClient {
	return &apiClient{sock: sock, timeout: 60 * time.Second}
}

func (c *apiClient) Close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *apiClient) dial(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.sock)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", c.sock, err)
	}
	c.conn = conn
	c.br = bufio.NewReaderSize(conn, 4096)
	return nil
}

// Do sends one request and returns the status and body. A connection the
// server closed while idle is reopened once.
func (c *apiClient) Do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	reused := c.conn != nil
	status, resp, err := c.do(ctx, method, path, body)
	if err != nil && reused && ctx.Err() == nil && isClosedConn(err) {
		c.Close()
		status, resp, err = c.do(ctx, method, path, body)
	}
	if err != nil {
		c.Close()
	}
	return status, resp, err
}

func isClosedConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "broken pipe") || strings.Contains(err.Error(), "connection reset")
}

func (c *apiClient) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	if c.conn == nil {
		if err := c.dial(ctx); err != nil {
			return 0, nil, err
		}
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.conn.SetDeadline(deadline)
	c.buf.Reset()
	writeRequest(&c.buf, method, path, body)
	if _, err := c.conn.Write(c.buf.Bytes()); err != nil {
		return 0, nil, err
	}
	status, resp, closeAfter, err := readResponse(c.br)
	if err != nil {
		return 0, nil, err
	}
	if closeAfter {
		c.Close()
	}
	return status, resp, nil
}

// writeRequest formats a request as curl and the Firecracker SDKs send it.
func writeRequest(w *bytes.Buffer, method, path string, body []byte) {
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n")
	if body != nil {
		w.WriteString("Content-Type: application/json\r\nContent-Length: ")
		w.WriteString(strconv.Itoa(len(body)))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)
}

// readResponse reads one response with a Content-Length (or no) body and
// says whether the server will close the connection.
func readResponse(br *bufio.Reader) (status int, body []byte, closeAfter bool, err error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, nil, false, err
	}
	line = strings.TrimRight(line, "\r\n")
	proto, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(proto, "HTTP/1.") {
		return 0, nil, false, fmt.Errorf("%w: status line %q", ErrHTTP, line)
	}
	code, _, _ := strings.Cut(rest, " ")
	status, err = strconv.Atoi(code)
	if err != nil || status < 100 || status > 999 {
		return 0, nil, false, fmt.Errorf("%w: status line %q", ErrHTTP, line)
	}
	length := 0
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return 0, nil, false, err
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return 0, nil, false, fmt.Errorf("%w: header %q", ErrHTTP, h)
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "content-length":
			length, err = strconv.Atoi(v)
			if err != nil || length < 0 || length > 1<<20 {
				return 0, nil, false, fmt.Errorf("%w: Content-Length %q", ErrHTTP, v)
			}
		case "connection":
			closeAfter = strings.EqualFold(v, "close")
		case "transfer-encoding":
			return 0, nil, false, fmt.Errorf("%w: Transfer-Encoding %q is not expected from an API server", ErrHTTP, v)
		}
	}
	body = make([]byte, length)
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, nil, false, err
	}
	return status, body, closeAfter, nil
}

// mustStatus sends a request and fails unless the status is want.
func (c *apiClient) mustStatus(ctx context.Context, method, path string, body []byte, want int) ([]byte, error) {
	status, resp, err := c.Do(ctx, method, path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if status != want {
		return resp, fmt.Errorf("%s %s: status %d, want %d: %s", method, path, status, want, resp)
	}
	return resp, nil
}
