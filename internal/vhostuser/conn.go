package vhostuser

import (
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// msgConn reads requests and writes replies on a vhost-user socket.
type msgConn struct {
	c   *net.UnixConn
	oob []byte
}

func newMsgConn(c *net.UnixConn) *msgConn {
	// Room for one more fd than allowed, so an excess shows as a count
	// rather than as a truncated control message.
	return &msgConn{c: c, oob: make([]byte, unix.CmsgSpace(4*(MaxFds+1)))}
}

// read returns the next request's header, body and file descriptors. The
// caller owns the descriptors (closing them) even when an error is
// returned with them. io.EOF means the front-end closed the connection between
// messages.
func (mc *msgConn) read() (header, []byte, []int, error) {
	var hdr [headerSize]byte
	var files []int
	got := 0
	for got < headerSize {
		n, oobn, flags, _, err := mc.c.ReadMsgUnix(hdr[got:], mc.oob)
		fs, ferr := parseRights(mc.oob[:oobn])
		files = append(files, fs...)
		if ferr == nil && flags&unix.MSG_CTRUNC != 0 {
			ferr = fmt.Errorf("%w: control message truncated (too many file descriptors)", ErrMalformed)
		}
		if ferr != nil {
			return header{}, nil, files, ferr
		}
		if n == 0 && err == nil {
			err = io.EOF
		}
		if err != nil {
			if errors.Is(err, io.EOF) && got > 0 {
				err = fmt.Errorf("%w: connection closed inside a header", ErrMalformed)
			}
			return header{}, nil, files, err
		}
		got += n
	}
	if len(files) > MaxFds {
		return header{}, nil, files, fmt.Errorf("%w: %d file descriptors (at most %d)", ErrMalformed, len(files), MaxFds)
	}
	h, err := parseHeader(hdr[:])
	if err != nil {
		return h, nil, files, err
	}
	body := make([]byte, h.Size)
	if _, err := io.ReadFull(mc.c, body); err != nil {
		return h, nil, files, fmt.Errorf("%w: %v: body: %v", ErrMalformed, h.Request, err)
	}
	return h, body, files, nil
}

// parseRights turns SCM_RIGHTS control messages into files.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("%w: control message: %v", ErrMalformed, err)
	}
	var files []int
	var bad error
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = fmt.Errorf("%w: control message: %v", ErrMalformed, err)
			continue
		}
		files = append(files, fds...)
	}
	return files, bad
}

func (mc *msgConn) write(b []byte) error {
	_, err := mc.c.Write(b)
	return err
}

// closeFds closes every descriptor not yet taken (set to -1).
func closeFds(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
