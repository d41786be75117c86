//go:build linux

package uffd

import (
	"context"
	"encoding/binary"
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

// Register creates a userfaultfd (close-on-exec, non-blocking, serving
// kernel-mode faults too, with REMOVE events) and registers each mapping's
// host range for missing-page faults, as Firecracker does for a snapshot
// load from a Uffd backend.
func Register(mappings []Mapping) (*os.File, error) {
	r, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if e != 0 {
		return nil, &vmmError{kind: ErrCreate, err: e, generic: true}
	}
	fd := int(r)
	features, err := apiHandshake(fd, uffdFeatureEventRemove)
	if err == nil && features&uffdFeatureEventRemove == 0 {
		err = fmt.Errorf("kernel lacks UFFD_FEATURE_EVENT_REMOVE: %w", unix.EINVAL)
	}
	if err != nil {
		unix.Close(fd)
		return nil, &vmmError{kind: ErrCreate, err: err, generic: true}
	}
	for _, m := range mappings {
		if err := registerMissing(fd, m.BaseHostVirtAddr, m.Size); err != nil {
			unix.Close(fd)
			return nil, &vmmError{kind: ErrRegister, err: err, generic: true}
		}
	}
	return os.NewFile(uintptr(fd), "userfaultfd"), nil
}

// Handshake connects to the handler's socket at path and sends the mappings
// as one JSON array with uffd attached. It returns the connection, which the
// caller keeps open for the VMM's life: closing it tells the handler the VMM
// is gone.
func Handshake(ctx context.Context, path string, mappings []Mapping, uffd *os.File) (*net.UnixConn, error) {
	if mappings == nil {
		mappings = []Mapping{} // "[]", as Firecracker sends an empty list
	}
	data, err := json.Marshal(mappings)
	if err != nil {
		return nil, &vmmError{kind: ErrSend, err: err}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, &vmmError{kind: ErrConnect, err: err}
	}
	conn := c.(*net.UnixConn)
	if err := sendWithFD(conn, data, uffd); err != nil {
		conn.Close()
		return nil, &vmmError{kind: ErrSend, err: err}
	}
	return conn, nil
}

func sendWithFD(conn *net.UnixConn, data []byte, f *os.File) error {
	if f == nil {
		return unix.EBADF
	}
	// Control, not Fd: Fd would switch the shared file description to
	// blocking mode under the handler's feet.
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var n int
	var werr error
	if err := rc.Control(func(fd uintptr) {
		n, _, werr = conn.WriteMsgUnix(data, unix.UnixRights(int(fd)), nil)
	}); err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	if n != len(data) {
		return io.ErrShortWrite
	}
	return nil
}

const (
	// maxHandshake bounds the one message read: 64 mappings of JSON take
	// under 8 KiB.
	maxHandshake = 64 << 10
	// maxRights is how many descriptors the handshake read makes room for,
	// so that a sender attaching extras has them received and closed rather
	// than silently truncated.
	maxRights = 8
	// retryWait is how long pending faults wait for new events before an
	// EAGAIN'd copy is retried; the kernel answers EAGAIN while a REMOVE is
	// being queued, which takes microseconds.
	retryWait = time.Millisecond
)

// errVMMClosed is the cancellation cause when the VMM's connection ends.
var errVMMClosed = errors.New("VMM closed its connection")

var longAgo = time.Unix(1, 0)

// Serve accepts one handshake on conn (the mappings as JSON and the
// userfaultfd as SCM_RIGHTS), checks the mappings against the memory file,
// then serves faults until ctx ends or the VMM closes conn, returning nil on
// the latter. Serve does not close conn; it uses conn's read deadline while
// it runs and clears it when done.
//
// Serve belongs in its own process, as Firecracker's handlers are. Run in the
// process that faults, it needs a free P: a goroutine faulting on registered
// memory from Go code keeps its P while the fault waits (inside runtime
// assembly such as copy it cannot even be preempted), so with every P so held
// the handler starves for good. Faults taken in system calls (KVM_RUN, read,
// write) release their P and are safe.
func (h *Handler) Serve(ctx context.Context, conn *net.UnixConn) error {
	if conn == nil || h.mem == nil {
		return errors.New("uffd: Serve needs a connection and a memory file")
	}
	fi, err := h.mem.Stat()
	if err != nil {
		return fmt.Errorf("uffd: memory file: %w", err)
	}
	mappings, uf, err := readHandshake(ctx, conn, fi.Size())
	if err != nil {
		return err
	}
	defer uf.Close()

	inner, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// The VMM never writes after the handshake; its EOF means it exited.
	// Anything else read is discarded (descriptors in it are closed by the
	// kernel, since no control buffer is offered).
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var b [256]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
					err = errVMMClosed
				}
				cancel(err)
				return
			}
		}
	}()
	defer func() {
		conn.SetReadDeadline(longAgo)
		wg.Wait()
		conn.SetReadDeadline(time.Time{})
	}()

	s := &session{h: h, mappings: mappings, uf: uf}
	err = s.run(inner)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil {
		if cause := context.Cause(inner); !errors.Is(cause, errVMMClosed) {
			return fmt.Errorf("uffd: VMM connection: %w", cause)
		}
	}
	return err
}

// readHandshake reads the one handshake message, returning the validated
// mappings and the userfaultfd, which it has made non-blocking. On error no
// received descriptor stays open.
func readHandshake(ctx context.Context, conn *net.UnixConn, memSize int64) ([]Mapping, *os.File, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(longAgo) })
	// If ctx ended meanwhile, the past deadline stays: Serve returns anyway.
	defer stop()

	buf := make([]byte, maxHandshake)
	oob := make([]byte, unix.CmsgSpace(4*maxRights))
	n, oobn, flags, _, rerr := conn.ReadMsgUnix(buf, oob)
	fds := receivedFDs(oob[:oobn])
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	bad := func(format string, a ...any) ([]Mapping, *os.File, error) {
		closeAll()
		return nil, nil, fmt.Errorf("%w: %s", ErrBadHandshake, fmt.Sprintf(format, a...))
	}
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		closeAll()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("uffd: reading the handshake: %w", rerr)
	}
	switch {
	case n <= 0:
		return bad("connection closed before the mappings arrived")
	case n == len(buf):
		return bad("message of %d bytes or more; at most %d expected", n, len(buf)-1)
	case flags&unix.MSG_CTRUNC != 0:
		return bad("more than %d descriptors attached", maxRights)
	case len(fds) == 0:
		return bad("no userfaultfd descriptor attached to the mappings")
	case len(fds) > 1:
		return bad("%d descriptors attached, want exactly 1", len(fds))
	}
	if !isUserfaultfd(fds[0]) {
		return bad("the descriptor attached is not a userfaultfd")
	}
	mappings, err := decodeMappings(buf[:n], memSize)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("uffd: %w", err)
	}
	return mappings, os.NewFile(uintptr(fds[0]), "userfaultfd"), nil
}

// receivedFDs returns every descriptor in the control messages, whatever
// else they hold, so that none leaks.
func receivedFDs(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

// isUserfaultfd tells a userfaultfd from any other descriptor by its anon
// inode's name. Without /proc it cannot tell and trusts the sender.
func isUserfaultfd(fd int) bool {
	name, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return errors.Is(err, os.ErrNotExist) && !procMounted()
	}
	return name == "anon_inode:[userfaultfd]"
}

func procMounted() bool {
	_, err := os.Stat("/proc/self/fd")
	return err == nil
}

// session is one VMM's fault-serving state.
type session struct {
	h        *Handler
	mappings []Mapping
	uf       *os.File
	fd       int

	pending []uint64 // fault addresses not yet resolved (EAGAIN)
	removed rangeSet // ranges the VMM gave back; they fault in as zeros
	page    []byte   // read buffer for one page
	zeros   []byte   // a zero huge page, made on first need
}

// run reads events until ctx ends, returning nil then, or an error.
func (s *session) run(ctx context.Context) error {
	rc, err := s.uf.SyscallConn()
	if err != nil {
		return fmt.Errorf("uffd: %w", err)
	}
	if err := rc.Control(func(fd uintptr) { s.fd = int(fd) }); err != nil {
		return fmt.Errorf("uffd: %w", err)
	}
	// Deadlines both wake the wait when ctx ends and bound it while faults
	// are pending; the mutex keeps a retry deadline from overwriting the
	// cancellation's.
	var mu sync.Mutex
	setDeadline := func(t time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil {
			t = longAgo
		}
		s.uf.SetReadDeadline(t)
	}
	stop := context.AfterFunc(ctx, func() { setDeadline(longAgo) })
	defer stop()

	buf := make([]byte, uffdMsgSize*64)
	for {
		if len(s.pending) == 0 {
			setDeadline(time.Time{})
		} else {
			setDeadline(time.Now().Add(retryWait))
		}
		var n int
		var rerr error
		werr := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf)
			return rerr != unix.EAGAIN
		})
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case werr != nil && errors.Is(werr, os.ErrDeadlineExceeded):
			n = 0 // time to retry pending faults
		case werr != nil:
			return fmt.Errorf("uffd: waiting for faults: %w", werr)
		case rerr != nil:
			return fmt.Errorf("uffd: reading fault events: %w", rerr)
		case n == 0:
			return nil // the userfaultfd's memory is gone with the VMM
		}
		for off := 0; off+uffdMsgSize <= n; off += uffdMsgSize {
			if err := s.event(buf[off : off+uffdMsgSize]); err != nil {
				return err
			}
		}
		if err := s.servePending(); err != nil {
			return err
		}
	}
}

// event records one uffd_msg: a fault to serve or a range given back.
func (s *session) event(msg []byte) error {
	switch msg[0] {
	case uffdEventPagefault:
		s.h.faults.Add(1)
		s.pending = append(s.pending, binary.NativeEndian.Uint64(msg[16:]))
	case uffdEventRemove:
		s.h.removes.Add(1)
		s.removed.add(binary.NativeEndian.Uint64(msg[8:]), binary.NativeEndian.Uint64(msg[16:]))
	default:
		return fmt.Errorf("uffd: unexpected userfaultfd event %#x", msg[0])
	}
	return nil
}

// servePending serves every pending fault, keeping those the kernel asked
// to retry.
func (s *session) servePending() error {
	left := s.pending[:0]
	for _, addr := range s.pending {
		done, err := s.serve(addr)
		if err != nil {
			return err
		}
		if !done {
			left = append(left, addr)
		}
	}
	s.pending = left
	return nil
}

// serve resolves one fault; done is false when it must be retried.
func (s *session) serve(addr uint64) (done bool, err error) {
	m := s.find(addr)
	if m == nil {
		return false, fmt.Errorf("uffd: fault at %#x outside every mapping", addr)
	}
	ps := m.PageSize
	page := addr &^ (ps - 1)
	zero := s.removed.contains(page)
	var e error
	switch {
	case zero && ps == PageSize4K:
		e = zeroPage(s.fd, page, ps)
	case zero:
		// hugetlbfs has no UFFDIO_ZEROPAGE.
		if uint64(len(s.zeros)) != ps {
			s.zeros = make([]byte, ps)
		}
		e = copyPage(s.fd, page, s.zeros)
	default:
		if uint64(len(s.page)) != ps {
			s.page = make([]byte, ps)
		}
		off := m.Offset + (page - m.BaseHostVirtAddr)
		if _, err := s.h.mem.ReadAt(s.page, int64(off)); err != nil {
			return false, fmt.Errorf("uffd: reading %d bytes at offset %#x of the memory file: %w", ps, off, err)
		}
		e = copyPage(s.fd, page, s.page)
	}
	switch {
	case e == nil:
		// Counted after the fill, which has already woken the faulting
		// thread: Stats may lag a fault the VMM sees served.
		if zero {
			s.h.zeroed.Add(1)
		} else {
			s.h.copied.Add(1)
		}
		return true, nil
	case errors.Is(e, unix.EAGAIN):
		s.h.retries.Add(1)
		return false, nil
	case errors.Is(e, unix.EEXIST):
		// Another fault on the same page was served first; this one's
		// waiters are not woken by a failed copy.
		s.h.races.Add(1)
		if err := wake(s.fd, page, ps); err != nil && !gone(err) {
			return false, fmt.Errorf("uffd: UFFDIO_WAKE at %#x: %w", page, err)
		}
		return true, nil
	case gone(e):
		// The VMM is unmapping or exiting; nobody waits for this page.
		return true, nil
	default:
		return false, fmt.Errorf("uffd: filling the page at %#x: %w", page, e)
	}
}

// gone reports the errors for a range or process that no longer exists.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}

func (s *session) find(addr uint64) *Mapping {
	for i := range s.mappings {
		if s.mappings[i].contains(addr) {
			return &s.mappings[i]
		}
	}
	return nil
}
