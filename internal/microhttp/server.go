package microhttp

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/syserr"
)

// Defaults, as in Firecracker.
const (
	DefaultMaxPayload     = 51200
	DefaultMaxConnections = 10
)

// ErrServerClosed is returned by Serve after Close, and by Serve on a
// server that was already closed.
var ErrServerClosed = errors.New("microhttp: server closed")

var (
	errServing    = errors.New("microhttp: server already serving")
	errNoListener = errors.New("microhttp: server has no listener")
)

// Handler answers requests. Calls are serialized across all connections.
type Handler interface {
	ServeRequest(*Request) *Response
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(*Request) *Response

// ServeRequest calls f(r).
func (f HandlerFunc) ServeRequest(r *Request) *Response { return f(r) }

// Config tunes a Server. The zero value is Firecracker's default.
type Config struct {
	// MaxPayload is the largest Content-Length accepted, in bytes
	// (larger fails; equal passes). 0 means DefaultMaxPayload; a negative
	// value is a limit of zero, refusing every body.
	MaxPayload int64
	// MaxConnections is how many connections are served at once; one more
	// is answered 503 and closed. 0 or less means DefaultMaxConnections.
	MaxConnections int
	// ErrorLog, if set, receives the errors Firecracker's API thread logs
	// and survives ("API Server error on retrieving incoming request:
	// <err>"): failed accepts and failed writes of the 503.
	ErrorLog func(error)
}

func (c Config) payloadLimit() uint64 {
	switch {
	case c.MaxPayload == 0:
		return DefaultMaxPayload
	case c.MaxPayload < 0:
		return 0
	}
	return uint64(c.MaxPayload)
}

func (c Config) connLimit() int {
	if c.MaxConnections <= 0 {
		return DefaultMaxConnections
	}
	return c.MaxConnections
}

// IOError is a failed system call of the server, printed as Firecracker
// prints one: "IO error: Too many open files (os error 24)".
type IOError struct {
	Op  string // the call that failed, for debugging
	Err error
}

func (e *IOError) Error() string { return "IO error: " + syserr.Display(e.Err) }
func (e *IOError) Unwrap() error { return e.Err }

// Server serves Firecracker's HTTP API protocol on a Unix listener.
//
// Like Firecracker, it is a single event loop (one goroutine over its own
// level-triggered epoll set, which it waits on through Go's poller) that
// reads, parses, calls the handler and writes, so the order of reads,
// writes and handler calls, and therefore every quirk that depends on it,
// is Firecracker's. A connection is read only while it has
// nothing left to write; a peer's half-close drops whatever it has not yet
// been sent; the client's "Connection: close" is ignored.
type Server struct {
	ln  *net.UnixListener
	cfg Config

	mu      sync.Mutex
	serving bool
	closed  bool
	wake    int // eventfd that interrupts the loop; -1 when not serving
	done    chan struct{}

	inHandler atomic.Bool
}

// NewServer returns a server for ln. Serve starts it.
func NewServer(ln *net.UnixListener, cfg Config) *Server {
	return &Server{ln: ln, cfg: cfg, wake: -1}
}

// Serve runs the server until ctx is done or Close is called, then closes
// the listener and every connection (answers already queued get one
// non-blocking attempt to go out, as in Firecracker's shutdown). It returns
// ErrServerClosed after Close, ctx.Err() after cancellation, or the error
// that stopped it.
func (s *Server) Serve(ctx context.Context, h Handler) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return errServing
	}
	if s.ln == nil {
		s.closed = true
		s.mu.Unlock()
		return errNoListener
	}
	l, err := newLoop(s)
	if err != nil {
		s.closed = true
		s.mu.Unlock()
		s.ln.Close()
		return err
	}
	s.serving = true
	s.wake = l.wake
	s.done = make(chan struct{})
	done := s.done
	s.mu.Unlock()

	stop := context.AfterFunc(ctx, s.interrupt)
	err = l.run(h)
	stop()
	l.shutdown()

	s.mu.Lock()
	s.closed = true
	unix.Close(s.wake)
	s.wake = -1
	s.mu.Unlock()
	s.ln.Close()
	close(done)

	if err == nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		} else {
			err = ErrServerClosed
		}
	}
	return err
}

// interrupt wakes the event loop so it stops.
func (s *Server) interrupt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wake >= 0 {
		one := [8]byte{1}
		unix.Write(s.wake, one[:])
	}
}

// Close stops the server: the listener and all connections are closed.
// It waits for Serve to finish, except when a handler call is in progress
// (Close may be called from a handler); Serve then finishes as soon as that
// call returns. The socket file is never removed.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.serving {
		already := s.closed
		s.closed = true
		s.mu.Unlock()
		if already || s.ln == nil {
			return nil
		}
		return s.ln.Close()
	}
	done := s.done
	s.mu.Unlock()
	s.interrupt()
	if !s.inHandler.Load() {
		<-done
	}
	return nil
}

// connection states, as Firecracker's epoll interest follows them.
type connState uint8

const (
	awaitingIncoming connState = iota // nothing to write: wait for bytes
	awaitingOutgoing                  // answers queued: wait for writability, read nothing
	connClosed                        // drop once nothing is in flight
)

type conn struct {
	fd       int
	parser   *Parser
	state    connState
	queue    [][]byte // serialized answers waiting their turn
	out      []byte   // unwritten rest of the answer being sent
	inflight int      // requests handed to the handler and not yet answered
}

func (c *conn) pendingWrite() bool { return c.out != nil || len(c.queue) > 0 }

func (c *conn) enqueue(b []byte) { c.queue = append(c.queue, b) }

func (c *conn) clearWrites() {
	c.queue = nil
	c.out = nil
}

// dispatch is a request waiting for the handler.
type dispatch struct {
	c   *conn
	req *Request
}

// loop is the state of one Serve call; only its goroutine touches it.
type loop struct {
	s      *Server
	ep     int
	epFile *os.File        // ep, registered with Go's poller so waiting parks no thread
	epRaw  syscall.RawConn // reads of epFile wait for ep to have events
	lnfd   int
	wake   int
	conns  map[int]*conn
	events []unix.EpollEvent
	oob    []byte
	batch  []dispatch
}

func newLoop(s *Server) (*loop, error) {
	l := &loop{s: s, ep: -1, lnfd: -1, wake: -1, conns: make(map[int]*conn)}
	fail := func(op string, err error) (*loop, error) {
		l.closeFDs()
		if l.wake >= 0 {
			unix.Close(l.wake)
		}
		return nil, &IOError{Op: op, Err: err}
	}
	rc, err := s.ln.SyscallConn()
	if err != nil {
		return nil, err
	}
	var derr error
	if err := rc.Control(func(fd uintptr) {
		// A duplicate shares the listening socket (and its O_NONBLOCK)
		// but can sit in our own epoll set.
		l.lnfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return fail("dup", derr)
	}
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fail("epoll_create1", err)
	}
	// A non-blocking epoll descriptor is pollable itself: Go's poller
	// wakes us when our set has events, instead of a thread sitting in
	// epoll_wait.
	if err := unix.SetNonblock(l.ep, true); err != nil {
		return fail("fcntl", err)
	}
	l.epFile = os.NewFile(uintptr(l.ep), "epoll")
	if l.epRaw, err = l.epFile.SyscallConn(); err != nil {
		return fail("epoll", err)
	}
	if l.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fail("eventfd", err)
	}
	for _, fd := range []int{l.wake, l.lnfd} {
		if err := l.ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLRDHUP); err != nil {
			return fail("epoll_ctl", err)
		}
	}
	// Room for every connection plus the listener and the wake-up, as in
	// Firecracker.
	l.events = make([]unix.EpollEvent, s.cfg.connLimit()+2)
	l.oob = make([]byte, unix.CmsgSpace(maxFDs*4))
	return l, nil
}

// closeFDs closes the epoll set and the listener duplicate; the wake-up
// descriptor belongs to the Server, which closes it under its lock.
func (l *loop) closeFDs() {
	if l.epFile != nil {
		l.epFile.Close()
	} else if l.ep >= 0 {
		unix.Close(l.ep)
	}
	if l.lnfd >= 0 {
		unix.Close(l.lnfd)
	}
	l.ep, l.lnfd, l.epFile = -1, -1, nil
}

func (l *loop) ctl(op, fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	return unix.EpollCtl(l.ep, op, fd, &ev)
}

func (l *loop) logError(err error) {
	if l.s.cfg.ErrorLog != nil {
		l.s.cfg.ErrorLog(err)
	}
}

// run turns the loop until it is interrupted (nil) or epoll fails.
func (l *loop) run(h Handler) error {
	for {
		stop, err := l.turn()
		if err != nil || stop {
			return err
		}
		for i, d := range l.batch {
			l.s.inHandler.Store(true)
			resp := h.ServeRequest(d.req)
			l.s.inHandler.Store(false)
			l.respond(d.c, resp)
			l.batch[i] = dispatch{}
		}
		l.batch = l.batch[:0]
	}
}

// turn waits for events and handles them, collecting complete requests in
// l.batch. It reports stop when the wake-up fired; requests collected in
// that turn are then dropped, as Firecracker drops them.
func (l *loop) turn() (stop bool, err error) {
	var n int
	var werr error
	err = l.epRaw.Read(func(fd uintptr) bool {
		n, werr = unix.EpollWait(int(fd), l.events, 0)
		if werr == unix.EINTR {
			n, werr = 0, nil
			return true
		}
		return n > 0 || werr != nil
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return false, &IOError{Op: "epoll_wait", Err: err}
	}
	for _, ev := range l.events[:n] {
		fd := int(ev.Fd)
		switch fd {
		case l.wake:
			l.batch = l.batch[:0]
			return true, nil
		case l.lnfd:
			l.accept()
			continue
		}
		c := l.conns[fd]
		if c == nil {
			continue
		}
		// A hang-up wins over pending input: the connection is dropped
		// with whatever it still had to send or to say.
		if ev.Events&(unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 {
			c.clearWrites()
			c.state = connClosed
			continue
		}
		switch {
		case ev.Events&unix.EPOLLIN != 0:
			l.read(c)
			if c.state == awaitingOutgoing {
				l.ctl(unix.EPOLL_CTL_MOD, fd, unix.EPOLLOUT|unix.EPOLLRDHUP)
			}
		case ev.Events&unix.EPOLLOUT != 0:
			l.write(c)
			if c.state == awaitingIncoming {
				l.ctl(unix.EPOLL_CTL_MOD, fd, unix.EPOLLIN|unix.EPOLLRDHUP)
			}
		}
	}
	for fd, c := range l.conns {
		if c.state == connClosed && !c.pendingWrite() && c.inflight == 0 {
			l.ctl(unix.EPOLL_CTL_DEL, fd, 0)
			unix.Close(fd)
			delete(l.conns, fd)
		}
	}
	return false, nil
}

func (l *loop) accept() {
	full := len(l.conns) >= l.s.cfg.connLimit()
	fd, _, err := unix.Accept4(l.lnfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		l.logError(&IOError{Op: "accept", Err: err})
		return
	}
	if full {
		_, err := unix.SendmsgN(fd, []byte(serverFull), nil, nil, unix.MSG_NOSIGNAL)
		unix.Close(fd)
		if err != nil {
			l.logError(&IOError{Op: "write", Err: err})
		}
		return
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLRDHUP); err != nil {
		unix.Close(fd)
		l.logError(&IOError{Op: "epoll_ctl", Err: err})
		return
	}
	l.conns[fd] = &conn{fd: fd, parser: NewParser(l.s.cfg.payloadLimit())}
}

// read performs one read on c and parses it.
func (l *loop) read(c *conn) {
	buf := c.parser.ReadBuf()
	var parsed Parsed
	var perr error
	if len(buf) == 0 {
		parsed, perr = c.parser.Advance(0) // reports the overflow
	} else {
		n, err := recvDiscardFDs(c.fd, buf, l.oob)
		switch {
		case err != nil:
			// Firecracker answers a failed read with the error text.
			c.enqueue((&Response{Status: 500, Body: []byte(syserr.Display(err))}).AppendTo(nil, HTTP11))
			c.state = awaitingOutgoing
			return
		case n == 0:
			c.state = connClosed
			return
		}
		parsed, perr = c.parser.Advance(n)
	}
	for _, v := range parsed.Continue {
		c.enqueue(continueResponse.AppendTo(nil, v))
	}
	if perr != nil {
		c.enqueue(errorResponse(perr).AppendTo(nil, HTTP11))
	} else {
		for _, r := range parsed.Requests {
			l.batch = append(l.batch, dispatch{c: c, req: r})
		}
		c.inflight += len(parsed.Requests)
	}
	if c.pendingWrite() {
		c.state = awaitingOutgoing
	}
}

// write makes one write attempt for the answer at the head of c's queue.
func (l *loop) write(c *conn) {
	if c.out == nil {
		if len(c.queue) == 0 {
			c.state = awaitingIncoming
			return
		}
		c.out, c.queue[0] = c.queue[0], nil
		c.queue = c.queue[1:]
	}
	n, err := unix.SendmsgN(c.fd, c.out, nil, nil, unix.MSG_NOSIGNAL)
	switch {
	case err == unix.EINTR:
	case err != nil || n == 0:
		// Firecracker gives up on a connection it cannot write to,
		// including on EAGAIN.
		c.clearWrites()
		c.state = connClosed
		return
	case n < len(c.out):
		c.out = c.out[n:]
	default:
		c.out = nil
	}
	if !c.pendingWrite() {
		c.state = awaitingIncoming
	}
}

// respond queues the handler's answer to a request read from c.
func (l *loop) respond(c *conn, resp *Response) {
	if resp == nil {
		resp = &Response{Status: 500}
	}
	if c.state == awaitingIncoming {
		c.state = awaitingOutgoing
		l.ctl(unix.EPOLL_CTL_MOD, c.fd, unix.EPOLLOUT|unix.EPOLLRDHUP)
	}
	if c.state != connClosed {
		c.enqueue(resp.AppendTo(nil, HTTP11))
	}
	c.inflight--
}

// shutdown gives each connection's queued answers one last non-blocking
// push, then closes everything the loop owns.
func (l *loop) shutdown() {
	for _, c := range l.conns {
		for c.state == awaitingOutgoing {
			l.write(c)
		}
	}
	for fd := range l.conns {
		unix.Close(fd)
	}
	l.conns = nil
	l.closeFDs()
}

// maxFDs is the most descriptors one message can carry (Linux SCM_MAX_FD).
const maxFDs = 253

// recvDiscardFDs reads into buf; descriptors sent along (SCM_RIGHTS) are
// closed at once, since the API has no use for them. A truncated control
// message fails the read with ENOBUFS, as Firecracker's does.
func recvDiscardFDs(fd int, buf, oob []byte) (int, error) {
	n, oobn, flags, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if oobn > 0 {
		closeRights(oob[:oobn])
	}
	if err != nil {
		return 0, err
	}
	if flags&unix.MSG_CTRUNC != 0 {
		return 0, unix.ENOBUFS
	}
	return n, nil
}

func closeRights(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
}
