package qmp

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestRealQEMU drives a real QEMU (no guest: -machine none) over a Unix
// socket: handshake, a query, an error reply, events, and the end of the
// connection when QEMU quits.
func TestRealQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("SKIPPING the real-QEMU QMP test: qemu-system-x86_64 is not on PATH (Debian: apt-get install qemu-system-x86)")
	}
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := exec.Command(bin, "-machine", "none", "-nodefaults", "-no-user-config", "-display", "none",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var c *Client
	for {
		c, err = Dial(ctx, sock)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("QEMU's QMP socket never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer c.Close()
	if v := c.Greeting().Version; v.Major < 2 {
		t.Errorf("implausible version %v", v)
	}

	var ver struct {
		QEMU struct{ Major, Minor, Micro int } `json:"qemu"`
	}
	if err := c.Execute(ctx, "query-version", nil, &ver); err != nil {
		t.Fatal(err)
	}
	if g := c.Greeting().Version; ver.QEMU.Major != g.Major || ver.QEMU.Minor != g.Minor {
		t.Errorf("query-version %+v disagrees with the greeting %v", ver.QEMU, g)
	}

	err = c.Execute(ctx, "no-such-command", nil, nil)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("unknown command: %v", err)
	}

	s := c.Subscribe()
	defer s.Close()
	if err := c.Execute(ctx, "quit", nil, nil); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	ev := recv(t, s)
	if ev.Name != "SHUTDOWN" {
		t.Errorf("event after quit = %+v", ev)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection still up after quit")
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("QEMU still running after quit")
	}
}
