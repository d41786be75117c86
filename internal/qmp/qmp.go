// Package qmp is a small client for the QEMU Machine Protocol.
//
// A Client owns one connection to a QEMU monitor in control mode. It reads
// the greeting, negotiates capabilities, and then multiplexes: any number of
// goroutines may Execute commands at once (each request carries its own id,
// so replies are matched to callers, never to the order they were sent in),
// while asynchronous events are fanned out to every Subscription.
//
// Invariants: exactly one goroutine reads the connection; writes are
// serialised so requests never interleave on the wire; once the connection
// ends, every waiting and future Execute fails with an error wrapping
// ErrClosed, and every Subscription channel is closed after the events
// received before the end have been delivered.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned (wrapped) when the connection to QEMU has ended.
var ErrClosed = errors.New("QMP connection closed")

// ErrProtocol is returned (wrapped) when QEMU says something that is not QMP.
var ErrProtocol = errors.New("QMP protocol error")

// ErrNoFilePassing is returned (wrapped) by ExecuteWithFile when the
// connection cannot carry file descriptors.
var ErrNoFilePassing = errors.New("QMP connection cannot pass files")

// Error is an error reply from QEMU: its class ("GenericError",
// "DeviceNotFound", "CommandNotFound", ...) and its human-readable text.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string {
	if e.Class == "" || e.Class == "GenericError" {
		return e.Desc
	}
	return e.Desc + " (" + e.Class + ")"
}

// Version is the QEMU version from the greeting.
type Version struct {
	Major, Minor, Micro int
	// Package is the distribution's package version, possibly empty.
	Package string
}

func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
	if v.Package != "" {
		s += " (" + v.Package + ")"
	}
	return s
}

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// Greeting is what QEMU announces when a client connects.
type Greeting struct {
	Version      Version
	Capabilities []string
}

// Event is an asynchronous QMP event.
type Event struct {
	Name string
	// Data is the event's payload, JSON; nil if it has none.
	Data json.RawMessage
	// Time is when QEMU emitted the event.
	Time time.Time
}

// Client is a QMP connection. Its methods are safe for concurrent use.
type Client struct {
	conn     net.Conn
	greeting Greeting

	wmu sync.Mutex // serialises writes

	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan response
	subs    map[*Subscription]struct{}
	err     error // why the reader stopped; set once, before done closes

	done      chan struct{}
	closeOnce sync.Once
}

type response struct {
	ret json.RawMessage
	err *Error
}

// Dial connects to the QMP Unix socket at path and performs the handshake.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connecting to QMP socket %s: %w", path, err)
	}
	c, err := New(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// New performs the QMP handshake on an established connection (for
// example one end of a socket pair whose other end QEMU was given) and
// returns a client that owns conn. On error conn is left open for the
// caller to close.
func New(ctx context.Context, conn net.Conn) (*Client, error) {
	// The handshake is strictly sequential, so do it before the reader
	// goroutine exists; ctx bounds it through the connection deadline.
	w := interruptOnDone(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer w.finish()
	br := bufio.NewReader(conn)
	dec := json.NewDecoder(br)

	var hello struct {
		QMP *struct {
			Version struct {
				QEMU struct {
					Major int `json:"major"`
					Minor int `json:"minor"`
					Micro int `json:"micro"`
				} `json:"qemu"`
				Package string `json:"package"`
			} `json:"version"`
			Capabilities []string `json:"capabilities"`
		} `json:"QMP"`
	}
	if err := dec.Decode(&hello); err != nil {
		return nil, handshakeErr(ctx, "reading the QMP greeting", err)
	}
	if hello.QMP == nil {
		return nil, fmt.Errorf("reading the QMP greeting: %w: no QMP banner", ErrProtocol)
	}
	g := Greeting{
		Version: Version{
			Major:   hello.QMP.Version.QEMU.Major,
			Minor:   hello.QMP.Version.QEMU.Minor,
			Micro:   hello.QMP.Version.QEMU.Micro,
			Package: hello.QMP.Version.Package,
		},
		Capabilities: hello.QMP.Capabilities,
	}
	if _, err := io.WriteString(conn, `{"execute":"qmp_capabilities","id":"ember-0"}`+"\n"); err != nil {
		return nil, handshakeErr(ctx, "negotiating QMP capabilities", err)
	}
	// Events may precede the reply; skip them.
	for {
		var m message
		if err := dec.Decode(&m); err != nil {
			return nil, handshakeErr(ctx, "negotiating QMP capabilities", err)
		}
		if m.Event != "" {
			continue
		}
		if m.Error != nil {
			return nil, fmt.Errorf("negotiating QMP capabilities: %w", m.Error)
		}
		if m.Return == nil {
			return nil, fmt.Errorf("negotiating QMP capabilities: %w: unexpected message", ErrProtocol)
		}
		break
	}
	if w.finish() {
		return nil, fmt.Errorf("negotiating QMP capabilities: %w", ctx.Err())
	}

	c := &Client{
		conn:     conn,
		greeting: g,
		nextID:   1,
		pending:  map[string]chan response{},
		subs:     map[*Subscription]struct{}{},
		done:     make(chan struct{}),
	}
	// The decoder may have buffered bytes past the reply; keep reading
	// from the same decoder.
	go c.read(dec)
	return c, nil
}

func handshakeErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: %w", what, ErrClosed)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%s: %w: %v", what, ErrProtocol, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// message is any object QEMU sends after the greeting.
type message struct {
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
	ID     json.RawMessage `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
}

func (c *Client) read(dec *json.Decoder) {
	var err error
	for {
		var m message
		if err = dec.Decode(&m); err != nil {
			break
		}
		switch {
		case m.Event != "":
			ev := Event{Name: m.Event, Data: m.Data}
			if m.Timestamp != nil {
				ev.Time = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
			}
			c.mu.Lock()
			for s := range c.subs {
				s.push(ev)
			}
			c.mu.Unlock()
		case m.ID != nil:
			var id string
			if json.Unmarshal(m.ID, &id) != nil {
				continue // not one of ours
			}
			c.mu.Lock()
			ch, ok := c.pending[id]
			delete(c.pending, id)
			c.mu.Unlock()
			if ok {
				ch <- response{ret: m.Return, err: m.Error}
			}
		default:
			// A reply without id answers a request QEMU could not parse;
			// ours are always well-formed, so there is no caller to tell.
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = ErrClosed
	} else {
		err = fmt.Errorf("%w: %v", ErrClosed, err)
	}
	c.mu.Lock()
	c.err = err
	pending := c.pending
	c.pending = nil
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()
	for _, ch := range pending {
		close(ch)
	}
	for s := range subs {
		s.end()
	}
	close(c.done)
}

// Greeting returns what QEMU announced on connection.
func (c *Client) Greeting() Greeting { return c.greeting }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the connection ended (wrapping ErrClosed); nil while it is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Execute runs cmd with args (nil for none; otherwise anything that
// marshals to a JSON object) and decodes the command's return value into
// reply (nil to discard it). A QEMU error reply is returned as *Error,
// wrapped with the command name. If ctx ends first, Execute returns its
// error; the command may still run in QEMU.
func (c *Client) Execute(ctx context.Context, cmd string, args any, reply any) error {
	return c.execute(ctx, cmd, args, nil, reply)
}

// ExecuteWithFile is Execute that also passes f to QEMU with SCM_RIGHTS,
// as "getfd" and "add-fd" expect. The connection must be a Unix socket.
func (c *Client) ExecuteWithFile(ctx context.Context, cmd string, args any, f *os.File, reply any) error {
	if f == nil {
		return fmt.Errorf("qmp %s: no file to pass", cmd)
	}
	if _, ok := c.conn.(*net.UnixConn); !ok {
		return fmt.Errorf("qmp %s: %w", cmd, ErrNoFilePassing)
	}
	return c.execute(ctx, cmd, args, f, reply)
}

func (c *Client) execute(ctx context.Context, cmd string, args any, f *os.File, reply any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{Execute: cmd, Arguments: args}

	ch := make(chan response, 1)
	c.mu.Lock()
	if c.pending == nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	req.ID = "ember-" + strconv.FormatUint(c.nextID, 10)
	c.nextID++
	c.pending[req.ID] = ch
	c.mu.Unlock()

	forget := func() {
		c.mu.Lock()
		if c.pending != nil {
			delete(c.pending, req.ID)
		}
		c.mu.Unlock()
	}
	b, err := json.Marshal(req)
	if err != nil {
		forget()
		return fmt.Errorf("qmp %s: encoding arguments: %w", cmd, err)
	}
	b = append(b, '\n')
	if err := c.write(ctx, b, f); err != nil {
		forget()
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}

	select {
	case r, ok := <-ch:
		if !ok {
			return fmt.Errorf("qmp %s: %w", cmd, c.Err())
		}
		if r.err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, r.err)
		}
		if reply != nil {
			if err := json.Unmarshal(r.ret, reply); err != nil {
				return fmt.Errorf("qmp %s: decoding reply: %w", cmd, err)
			}
		}
		return nil
	case <-ctx.Done():
		forget()
		return fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
}

func (c *Client) write(ctx context.Context, b []byte, f *os.File) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// A write only blocks if QEMU stops reading its monitor; bound it by
	// ctx so a wedged QEMU cannot wedge the caller.
	w := interruptOnDone(ctx, func() { c.conn.SetWriteDeadline(time.Unix(1, 0)) })
	var err error
	if f != nil {
		uc := c.conn.(*net.UnixConn)
		var n int
		n, _, err = uc.WriteMsgUnix(b, unix.UnixRights(int(f.Fd())), nil)
		if err == nil && n < len(b) {
			_, err = uc.Write(b[n:])
		}
	} else {
		_, err = c.conn.Write(b)
	}
	interrupted := w.finish()
	if interrupted && err == nil {
		c.conn.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		if interrupted {
			// The deadline broke a partial write: the stream is no longer
			// in sync, so the connection cannot be used again.
			c.conn.Close()
			return ctx.Err()
		}
		if errors.Is(err, net.ErrClosed) {
			return ErrClosed
		}
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return nil
}

// Close ends the connection and waits for the reader to stop. Pending
// Executes fail with ErrClosed. It is safe to call more than once.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() { err = c.conn.Close() })
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Subscription receives events. C is closed when the subscription is
// cancelled or the connection ends.
type Subscription struct {
	// C delivers events in the order QEMU sent them. A subscriber that falls
	// behind never blocks the client: events queue without bound until read.
	C <-chan Event

	c      *Client
	out    chan Event
	mu     sync.Mutex
	queue  []Event
	wake   chan struct{}
	ended  bool
	cancel chan struct{}
	once   sync.Once
}

// Subscribe starts delivering every event that arrives from now on. Call
// Close on the subscription when done with it.
func (c *Client) Subscribe() *Subscription {
	s := &Subscription{
		c:      c,
		out:    make(chan Event),
		wake:   make(chan struct{}, 1),
		cancel: make(chan struct{}),
	}
	s.C = s.out
	c.mu.Lock()
	if c.subs == nil {
		s.ended = true
	} else {
		c.subs[s] = struct{}{}
	}
	c.mu.Unlock()
	go s.pump()
	return s
}

// Close cancels the subscription; C is closed soon after.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.c.mu.Lock()
		if s.c.subs != nil {
			delete(s.c.subs, s)
		}
		s.c.mu.Unlock()
		close(s.cancel)
	})
}

func (s *Subscription) push(ev Event) {
	s.mu.Lock()
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Subscription) end() {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Subscription) pump() {
	defer close(s.out)
	for {
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		ended := s.ended
		s.mu.Unlock()
		for _, ev := range q {
			select {
			case s.out <- ev:
			case <-s.cancel:
				return
			}
		}
		if ended && len(q) == 0 {
			return
		}
		if len(q) > 0 {
			continue // more may have arrived while delivering
		}
		select {
		case <-s.wake:
		case <-s.cancel:
			return
		}
	}
}

// interrupter runs a function that breaks blocking I/O when a context
// ends, and tells afterwards whether it did, so the caller can tell a
// cancelled operation from a failed one and undo the interruption.
type interrupter struct {
	mu       sync.Mutex
	finished bool
	fired    bool
	stop     func() bool
}

func interruptOnDone(ctx context.Context, interrupt func()) *interrupter {
	w := &interrupter{}
	w.stop = context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.finished {
			w.fired = true
			interrupt()
		}
	})
	return w
}

// finish ends the watch and reports whether the interruption happened.
func (w *interrupter) finish() bool {
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.finished = true
	return w.fired
}
