package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const greeting = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2"}, "capabilities": ["oob"]}}` + "\r\n"

// fakeQEMU is the server end of a QMP connection, scripted by the test.
type fakeQEMU struct {
	t    *testing.T
	conn *net.UnixConn
	buf  []byte
	// files received with the most recent request
	files []*os.File
}

type request struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        string          `json:"id"`
}

func socketPair(t *testing.T) (client, server *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "qmp")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conv(fds[0]), conv(fds[1])
}

// start returns a client connected to a fake server that has already sent
// the greeting and acknowledged qmp_capabilities.
func start(t *testing.T) (*Client, *fakeQEMU) {
	t.Helper()
	cc, sc := socketPair(t)
	srv := &fakeQEMU{t: t, conn: sc}
	t.Cleanup(func() { sc.Close() })
	errc := make(chan error, 1)
	go func() {
		if _, err := sc.Write([]byte(greeting)); err != nil {
			errc <- err
			return
		}
		r, err := srv.next()
		if err != nil {
			errc <- err
			return
		}
		if r.Execute != "qmp_capabilities" {
			errc <- fmt.Errorf("first command %q, want qmp_capabilities", r.Execute)
			return
		}
		errc <- srv.send(fmt.Sprintf(`{"return": {}, "id": %q}`, r.ID))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := New(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, srv
}

// next reads one newline-terminated request, collecting passed files.
func (s *fakeQEMU) next() (request, error) {
	for {
		if i := bytes.IndexByte(s.buf, '\n'); i >= 0 {
			line := s.buf[:i]
			s.buf = s.buf[i+1:]
			var r request
			if err := json.Unmarshal(line, &r); err != nil {
				return r, fmt.Errorf("bad request %q: %v", line, err)
			}
			return r, nil
		}
		b := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4*4))
		n, oobn, _, _, err := s.conn.ReadMsgUnix(b, oob)
		if err != nil {
			return request{}, err
		}
		s.buf = append(s.buf, b[:n]...)
		if oobn > 0 {
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil {
				return request{}, err
			}
			for _, m := range msgs {
				fds, err := unix.ParseUnixRights(&m)
				if err != nil {
					return request{}, err
				}
				for _, fd := range fds {
					s.files = append(s.files, os.NewFile(uintptr(fd), "passed"))
				}
			}
		}
	}
}

func (s *fakeQEMU) send(msg string) error {
	_, err := s.conn.Write([]byte(msg + "\r\n"))
	return err
}

func (s *fakeQEMU) mustNext() request {
	s.t.Helper()
	r, err := s.next()
	if err != nil {
		s.t.Fatalf("fake QEMU: %v", err)
	}
	return r
}

func TestHandshake(t *testing.T) {
	c, _ := start(t)
	g := c.Greeting()
	want := Version{Major: 7, Minor: 2, Micro: 22, Package: "Debian 1:7.2"}
	if g.Version != want {
		t.Errorf("version = %+v, want %+v", g.Version, want)
	}
	if got := g.Version.String(); got != "7.2.22 (Debian 1:7.2)" {
		t.Errorf("version string = %q", got)
	}
	if !g.Version.AtLeast(7, 2) || g.Version.AtLeast(7, 3) || !g.Version.AtLeast(6, 9) {
		t.Error("AtLeast is wrong")
	}
	if len(g.Capabilities) != 1 || g.Capabilities[0] != "oob" {
		t.Errorf("capabilities = %v", g.Capabilities)
	}
}

func TestHandshakeFailures(t *testing.T) {
	tests := []struct {
		name   string
		server func(s *fakeQEMU)
		want   error
	}{
		{"eof before greeting", func(s *fakeQEMU) { s.conn.Close() }, ErrClosed},
		{"not json", func(s *fakeQEMU) { s.send("hello there") }, ErrProtocol},
		{"no banner", func(s *fakeQEMU) { s.send(`{"return": {}}`) }, ErrProtocol},
		{"silent", func(s *fakeQEMU) {}, context.DeadlineExceeded},
		{"capabilities refused", func(s *fakeQEMU) {
			s.send(greeting)
			r, _ := s.next()
			s.send(fmt.Sprintf(`{"error": {"class": "GenericError", "desc": "nope"}, "id": %q}`, r.ID))
		}, &Error{}},
		{"eof after greeting", func(s *fakeQEMU) { s.send(greeting); s.next(); s.conn.Close() }, ErrClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := socketPair(t)
			defer cc.Close()
			defer sc.Close()
			go tc.server(&fakeQEMU{t: t, conn: sc})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			c, err := New(ctx, cc)
			if err == nil {
				c.Close()
				t.Fatal("New succeeded")
			}
			if qe, ok := tc.want.(*Error); ok {
				if !errors.As(err, &qe) || qe.Desc != "nope" {
					t.Fatalf("err = %v, want a QMP error", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDial(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		s := &fakeQEMU{t: t, conn: conn.(*net.UnixConn)}
		s.send(greeting)
		r, _ := s.next()
		s.send(fmt.Sprintf(`{"return": {}, "id": %q}`, r.ID))
		r, _ = s.next()
		s.send(fmt.Sprintf(`{"return": {"status": "running", "running": true}, "id": %q}`, r.ID))
		s.next() // until the client closes
		conn.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var st struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Status != "running" || !st.Running {
		t.Errorf("status = %+v", st)
	}

	if _, err := Dial(ctx, filepath.Join(t.TempDir(), "missing.sock")); err == nil {
		t.Error("Dial to a missing socket succeeded")
	}
}

// TestConcurrentOutOfOrder sends several requests at once; the server
// answers them in reverse order, and each caller must get its own answer.
func TestConcurrentOutOfOrder(t *testing.T) {
	c, srv := start(t)
	const n = 8
	go func() {
		var reqs []request
		for range n {
			reqs = append(reqs, srv.mustNext())
		}
		for i := len(reqs) - 1; i >= 0; i-- {
			var a struct{ N int }
			json.Unmarshal(reqs[i].Arguments, &a)
			srv.send(fmt.Sprintf(`{"return": {"echo": %d, "cmd": %q}, "id": %q}`, a.N, reqs[i].Execute, reqs[i].ID))
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r struct {
				Echo int
				Cmd  string
			}
			cmd := fmt.Sprintf("cmd-%d", i)
			if err := c.Execute(context.Background(), cmd, map[string]int{"N": i}, &r); err != nil {
				errs <- err
				return
			}
			if r.Echo != i || r.Cmd != cmd {
				errs <- fmt.Errorf("request %d got reply %+v", i, r)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestErrorReply(t *testing.T) {
	c, srv := start(t)
	go func() {
		r := srv.mustNext()
		srv.send(fmt.Sprintf(`{"error": {"class": "DeviceNotFound", "desc": "Device 'x' not found"}, "id": %q}`, r.ID))
		r = srv.mustNext()
		srv.send(fmt.Sprintf(`{"error": {"class": "GenericError", "desc": "boom"}, "id": %q}`, r.ID))
	}()
	err := c.Execute(context.Background(), "device_del", map[string]string{"id": "x"}, nil)
	var qe *Error
	if !errors.As(err, &qe) {
		t.Fatalf("err = %v (%T), want *Error", err, err)
	}
	if qe.Class != "DeviceNotFound" || qe.Desc != "Device 'x' not found" {
		t.Errorf("error = %+v", qe)
	}
	if got := err.Error(); got != "qmp device_del: Device 'x' not found (DeviceNotFound)" {
		t.Errorf("text = %q", got)
	}
	err = c.Execute(context.Background(), "cont", nil, nil)
	if got := fmt.Sprint(err); got != "qmp cont: boom" {
		t.Errorf("text = %q", got)
	}
}

func TestArgumentsOnTheWire(t *testing.T) {
	c, srv := start(t)
	got := make(chan request, 2)
	go func() {
		for range 2 {
			r := srv.mustNext()
			got <- r
			srv.send(fmt.Sprintf(`{"return": {}, "id": %q}`, r.ID))
		}
	}()
	if err := c.Execute(context.Background(), "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.Arguments != nil {
		t.Errorf("nil args sent as %s", r.Arguments)
	}
	path := `/tmp/a,b=c","evil":"x`
	if err := c.Execute(context.Background(), "blockdev-add", map[string]string{"filename": path}, nil); err != nil {
		t.Fatal(err)
	}
	var a map[string]string
	if err := json.Unmarshal((<-got).Arguments, &a); err != nil {
		t.Fatal(err)
	}
	if len(a) != 1 || a["filename"] != path {
		t.Errorf("arguments arrived as %v", a)
	}
}

func TestEvents(t *testing.T) {
	c, srv := start(t)
	s1 := c.Subscribe()
	s2 := c.Subscribe()
	defer s2.Close()
	go func() {
		srv.send(`{"timestamp": {"seconds": 1700000000, "microseconds": 250000}, "event": "STOP"}`)
		r := srv.mustNext()
		srv.send(`{"timestamp": {"seconds": 1700000001, "microseconds": 0}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}}`)
		srv.send(fmt.Sprintf(`{"return": {}, "id": %q}`, r.ID))
	}()
	if err := c.Execute(context.Background(), "cont", nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Subscription{s1, s2} {
		ev := recv(t, s)
		if ev.Name != "STOP" || ev.Data != nil || !ev.Time.Equal(time.Unix(1700000000, 250000000)) {
			t.Errorf("first event = %+v", ev)
		}
		ev = recv(t, s)
		var d struct {
			Guest  bool
			Reason string
		}
		if err := json.Unmarshal(ev.Data, &d); ev.Name != "SHUTDOWN" || err != nil || !d.Guest || d.Reason != "guest-reset" {
			t.Errorf("second event = %+v (%v)", ev, err)
		}
	}
	s1.Close()
	s1.Close()
	if _, ok := <-s1.C; ok {
		t.Error("closed subscription still delivers")
	}
}

func recv(t *testing.T, s *Subscription) Event {
	t.Helper()
	select {
	case ev, ok := <-s.C:
		if !ok {
			t.Fatal("subscription closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return Event{}
}

// TestSlowSubscriber proves a subscriber that does not read never blocks
// replies to other callers, and still gets every event afterwards.
func TestSlowSubscriber(t *testing.T) {
	c, srv := start(t)
	s := c.Subscribe()
	defer s.Close()
	const n = 1000
	go func() {
		for i := range n {
			srv.send(fmt.Sprintf(`{"event": "TICK", "data": {"n": %d}}`, i))
		}
		r := srv.mustNext()
		srv.send(fmt.Sprintf(`{"return": {}, "id": %q}`, r.ID))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Execute(ctx, "query-status", nil, nil); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		var d struct{ N int }
		ev := recv(t, s)
		json.Unmarshal(ev.Data, &d)
		if d.N != i {
			t.Fatalf("event %d carries %d", i, d.N)
		}
	}
}

func TestConnectionLoss(t *testing.T) {
	c, srv := start(t)
	s := c.Subscribe()
	defer s.Close()
	errc := make(chan error, 1)
	go func() { errc <- c.Execute(context.Background(), "query-status", nil, nil) }()
	srv.mustNext()
	srv.send(`{"event": "STOP"}`)
	srv.conn.Close()

	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("pending Execute: %v, want ErrClosed", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Errorf("Err = %v", c.Err())
	}
	// The event sent before the loss is still delivered, then C closes.
	if ev := recv(t, s); ev.Name != "STOP" {
		t.Errorf("event = %+v", ev)
	}
	if _, ok := <-s.C; ok {
		t.Error("C not closed after the connection ended")
	}
	if err := c.Execute(context.Background(), "cont", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Execute after loss: %v", err)
	}
	late := c.Subscribe()
	if _, ok := <-late.C; ok {
		t.Error("subscription after loss delivers")
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestContextCancel(t *testing.T) {
	c, srv := start(t)
	first := make(chan request, 1)
	go func() {
		r := srv.mustNext()
		first <- r
		r2 := srv.mustNext()
		// Answer the abandoned request late, then the live one.
		srv.send(fmt.Sprintf(`{"return": {"which": "first"}, "id": %q}`, r.ID))
		srv.send(fmt.Sprintf(`{"return": {"which": "second"}, "id": %q}`, r2.ID))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := c.Execute(ctx, "slow", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	<-first
	var r struct{ Which string }
	if err := c.Execute(context.Background(), "fast", nil, &r); err != nil {
		t.Fatal(err)
	}
	if r.Which != "second" {
		t.Errorf("got the reply meant for %q", r.Which)
	}
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := c.Execute(done, "x", nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Execute with a cancelled ctx: %v", err)
	}
}

func TestCloseFailsPending(t *testing.T) {
	c, srv := start(t)
	errc := make(chan error, 1)
	go func() { errc <- c.Execute(context.Background(), "query-status", nil, nil) }()
	srv.mustNext()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("pending Execute after Close: %v", err)
	}
}

func TestBadReply(t *testing.T) {
	c, srv := start(t)
	go func() {
		r := srv.mustNext()
		srv.send(fmt.Sprintf(`{"return": [1, 2], "id": %q}`, r.ID))
	}()
	var st struct{ Status string }
	err := c.Execute(context.Background(), "query-status", nil, &st)
	if err == nil || !strings.Contains(err.Error(), "decoding reply") {
		t.Errorf("err = %v", err)
	}
	if err := c.Execute(context.Background(), "x", func() {}, nil); err == nil {
		t.Error("unencodable arguments accepted")
	}
}

func TestExecuteWithFile(t *testing.T) {
	c, srv := start(t)
	f, err := os.CreateTemp(t.TempDir(), "passed")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make(chan request, 1)
	go func() {
		r := srv.mustNext()
		got <- r
		srv.send(fmt.Sprintf(`{"return": {}, "id": %q}`, r.ID))
	}()
	if err := c.ExecuteWithFile(context.Background(), "getfd", map[string]string{"fdname": "tap0"}, f, nil); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.Execute != "getfd" {
		t.Errorf("command = %q", r.Execute)
	}
	if len(srv.files) != 1 {
		t.Fatalf("server received %d files", len(srv.files))
	}
	defer srv.files[0].Close()
	var a, b unix.Stat_t
	unix.Fstat(int(f.Fd()), &a)
	unix.Fstat(int(srv.files[0].Fd()), &b)
	if a.Ino != b.Ino || a.Dev != b.Dev {
		t.Error("the passed descriptor is another file")
	}
	if err := c.ExecuteWithFile(context.Background(), "getfd", nil, nil, nil); err == nil {
		t.Error("nil file accepted")
	}
}

func TestExecuteWithFileNeedsUnixSocket(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go func() {
		s := bytes.NewBufferString("")
		b.Write([]byte(greeting))
		buf := make([]byte, 512)
		n, _ := b.Read(buf)
		s.Write(buf[:n])
		var r request
		json.Unmarshal(bytes.TrimSpace(s.Bytes()), &r)
		b.Write([]byte(fmt.Sprintf(`{"return": {}, "id": %q}`+"\n", r.ID)))
		for {
			if _, err := b.Read(buf); err != nil {
				return
			}
		}
	}()
	c, err := New(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.ExecuteWithFile(context.Background(), "getfd", nil, os.Stdin, nil)
	if !errors.Is(err, ErrNoFilePassing) {
		t.Errorf("err = %v", err)
	}
}
