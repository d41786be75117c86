package legacy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type counter struct{ n atomic.Int64 }

func (c *counter) Signal() error { c.n.Add(1); return nil }
func (c *counter) count() int    { return int(c.n.Load()) }

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func rd(d interface{ Read(uint64, []byte) }, off uint64) byte {
	b := []byte{0xee}
	d.Read(off, b)
	return b[0]
}

func wr(d interface{ Write(uint64, []byte) }, off uint64, v byte) { d.Write(off, []byte{v}) }

func TestSerialResetState(t *testing.T) {
	s := NewSerial(io.Discard, &counter{})
	want := map[uint64]byte{regIER: 0, regIIR: 0xc1, regLCR: 0x03, regMCR: 0x08, regLSR: 0x60, regMSR: 0xb0, regSCR: 0, regData: 0}
	for off, v := range want {
		if got := rd(s, off); got != v {
			t.Errorf("register %d = %#x, want %#x", off, got, v)
		}
	}
	// Wide and out-of-range accesses read zeros and write nothing.
	b := []byte{1, 2}
	s.Read(regLCR, b)
	if b[0] != 0 || b[1] != 0 {
		t.Fatalf("2-byte read %x", b)
	}
	s.Write(regSCR, []byte{5, 5})
	wr(s, 8, 5)
	if rd(s, regSCR) != 0 {
		t.Fatal("wide write landed")
	}
}

func TestSerialOutput(t *testing.T) {
	var out syncBuf
	irq := &counter{}
	s := NewSerial(&out, irq)
	for _, c := range []byte("EMBER-GUEST: init\n") {
		wr(s, regData, c)
	}
	if out.String() != "EMBER-GUEST: init\n" {
		t.Fatalf("output %q", out.String())
	}
	if irq.count() != 0 {
		t.Fatal("interrupts with IER clear")
	}
	if st := s.Stats(); st.OutBytes != 18 || st.LostBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
	s2 := NewSerial(failWriter{}, irq)
	wr(s2, regData, 'x')
	if s2.Stats().LostBytes != 1 {
		t.Fatal("failed write not counted")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("full") }

func TestSerialDLAB(t *testing.T) {
	s := NewSerial(io.Discard, &counter{})
	wr(s, regLCR, 0x83)
	if rd(s, regData) != 0x0c || rd(s, regIER) != 0 {
		t.Fatal("default divisor is not 9600 baud")
	}
	wr(s, regData, 0x01)
	wr(s, regIER, 0x02)
	if rd(s, regData) != 0x01 || rd(s, regIER) != 0x02 {
		t.Fatal("divisor latch not written")
	}
	wr(s, regLCR, 0x03)
	if rd(s, regIER) != 0 {
		t.Fatal("divisor write reached IER")
	}
}

// TestSerialTHRETest replays the THRE test of Linux's 8250 startup: with
// THR empty, enabling IER.THRI must show a THRE interrupt both times, or
// the driver marks the port UART_BUG_THRE.
func TestSerialTHRETest(t *testing.T) {
	irq := &counter{}
	s := NewSerial(io.Discard, irq)
	wr(s, regIER, ierTHRE)
	iir1 := rd(s, regIIR)
	wr(s, regIER, 0)
	wr(s, regIER, ierTHRE)
	iir2 := rd(s, regIIR)
	wr(s, regIER, 0)
	if iir1 != 0xc2 || iir2 != 0xc2 {
		t.Fatalf("IIR %#x, %#x; want 0xc2 twice", iir1, iir2)
	}
	if irq.count() != 2 {
		t.Fatalf("%d interrupts, want 2", irq.count())
	}
	// Reading IIR acknowledged THRE.
	wr(s, regIER, ierTHRE)
	rd(s, regIIR)
	if got := rd(s, regIIR); got != 0xc1 {
		t.Fatalf("IIR after acknowledge %#x", got)
	}
	// Each write empties THR again: a new THRE interrupt.
	n := irq.count()
	wr(s, regData, 'a')
	if irq.count() != n+1 || rd(s, regIIR) != 0xc2 {
		t.Fatal("no THRE interrupt after a write")
	}
	// While pending, more writes raise no new edge.
	wr(s, regData, 'b')
	wr(s, regData, 'c')
	if irq.count() != n+2 {
		t.Fatalf("%d interrupts after 3 writes with one acknowledge, want %d", irq.count(), n+2)
	}
}

func TestSerialInput(t *testing.T) {
	irq := &counter{}
	s := NewSerial(io.Discard, irq)
	wr(s, regIER, ierRDA)
	if n := s.Enqueue([]byte("abc")); n != 3 {
		t.Fatalf("enqueued %d", n)
	}
	if irq.count() != 1 || rd(s, regLSR)&lsrDR == 0 || rd(s, regIIR) != 0xc4 {
		t.Fatal("no received-data interrupt")
	}
	s.Enqueue([]byte("d"))
	if irq.count() != 1 {
		t.Fatal("second edge while data was pending")
	}
	var got []byte
	for rd(s, regLSR)&lsrDR != 0 {
		got = append(got, rd(s, regData))
	}
	if string(got) != "abcd" || rd(s, regIIR) != 0xc1 {
		t.Fatalf("read %q, IIR %#x", got, rd(s, regIIR))
	}
	if n := s.Enqueue(bytes.Repeat([]byte{'x'}, 100)); n != SerialFIFOSize {
		t.Fatalf("FIFO took %d of 100", n)
	}
	wr(s, regIIR, fcrClearRx) // FCR: clear the receive FIFO
	if rd(s, regLSR)&lsrDR != 0 {
		t.Fatal("FIFO not cleared")
	}
}

func TestSerialLoopback(t *testing.T) {
	var out syncBuf
	s := NewSerial(&out, &counter{})
	wr(s, regMCR, mcrLoop|mcrRTS|mcrOUT2)
	if got := rd(s, regMSR) & 0xf0; got != 0x90 {
		t.Fatalf("loopback MSR %#x, want 0x90 (the 8250 probe's check)", got)
	}
	wr(s, regData, 'z')
	if out.String() != "" || rd(s, regData) != 'z' {
		t.Fatal("loopback byte went out or did not come back")
	}
	if s.Enqueue([]byte("x")) != 0 {
		t.Fatal("input accepted in loopback")
	}
	wr(s, regMCR, mcrOUT2)
	if rd(s, regMSR) != 0xb0 {
		t.Fatal("MSR after loopback")
	}
}

func TestSerialFeed(t *testing.T) {
	s := NewSerial(io.Discard, &counter{})
	input := strings.Repeat("0123456789", 30)
	done := make(chan error, 1)
	go func() { done <- s.Feed(context.Background(), strings.NewReader(input)) }()
	var got []byte
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < len(input) && time.Now().Before(deadline) {
		if rd(s, regLSR)&lsrDR != 0 {
			got = append(got, rd(s, regData))
		} else {
			time.Sleep(100 * time.Microsecond)
		}
	}
	if string(got) != input {
		t.Fatalf("guest read %d bytes, want %d in order", len(got), len(input))
	}
	if err := <-done; err != nil {
		t.Fatalf("Feed = %v, want nil at EOF", err)
	}
	// A full FIFO and a cancelled context end Feed.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- s.Feed(ctx, strings.NewReader(strings.Repeat("y", 200))) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Feed = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Feed ignored its context")
	}
}

func TestI8042Reset(t *testing.T) {
	var resets atomic.Int32
	k := NewI8042(func() { resets.Add(1) }, &counter{})
	wr(k, i8042Status, 0xfe)
	if resets.Load() != 1 || k.Resets() != 1 {
		t.Fatal("0xFE to port 0x64 did not reset")
	}
	wr(k, i8042Data, 0xfe) // not a reset on the data port
	if resets.Load() != 1 {
		t.Fatal("0xFE to port 0x60 reset")
	}
}

func TestI8042CtrlAltDel(t *testing.T) {
	irq := &counter{}
	k := NewI8042(func() {}, irq)
	if rd(k, i8042Status) != sbKbdEnabled {
		t.Fatalf("status %#x", rd(k, i8042Status))
	}
	if err := k.SendCtrlAltDel(); err != nil {
		t.Fatal(err)
	}
	if irq.count() != 3 {
		t.Fatalf("%d interrupts, want one per key", irq.count())
	}
	var got []byte
	for rd(k, i8042Status)&sbOutDataAvail != 0 {
		got = append(got, rd(k, i8042Data))
	}
	if !bytes.Equal(got, []byte{0x14, 0x11, 0xe0, 0x71}) {
		t.Fatalf("scan codes %x", got)
	}
	if irq.count() != 6 { // re-raised after each read that left data behind
		t.Fatalf("%d interrupts after reading", irq.count())
	}
	if rd(k, i8042Data) != 0 {
		t.Fatal("empty buffer did not read 0")
	}
	for range 4 {
		if err := k.SendCtrlAltDel(); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.SendCtrlAltDel(); !errors.Is(err, ErrI8042BufferFull) {
		t.Fatalf("fifth sequence into a full buffer: %v", err)
	}
}

func TestI8042Registers(t *testing.T) {
	irq := &counter{}
	k := NewI8042(func() {}, irq)
	wr(k, i8042Status, cmdReadCTR)
	if rd(k, i8042Data) != cbPostOK|cbKbdInt {
		t.Fatal("control register")
	}
	wr(k, i8042Status, cmdWriteCTR)
	if rd(k, i8042Status)&sbCmdData == 0 {
		t.Fatal("not waiting for the command byte")
	}
	wr(k, i8042Data, cbPostOK) // keyboard interrupt off
	wr(k, i8042Status, cmdReadCTR)
	if rd(k, i8042Data) != cbPostOK {
		t.Fatal("control register not written")
	}
	n := irq.count()
	k.SendCtrlAltDel()
	if irq.count() != n {
		t.Fatal("interrupt raised while disabled")
	}
	wr(k, i8042Status, cmdReadCTR) // flushes the buffer
	rd(k, i8042Data)
	wr(k, i8042Status, cmdWriteOut)
	wr(k, i8042Data, 0xab)
	wr(k, i8042Status, cmdReadOutp)
	if rd(k, i8042Data) != 0xab {
		t.Fatal("output port")
	}
	wr(k, i8042Status, cmdWriteCTR)
	wr(k, i8042Data, cbPostOK|cbKbdInt)
	n = irq.count()
	wr(k, i8042Data, 0xff) // keyboard reset command: acked
	if rd(k, i8042Data) != 0xfa || irq.count() != n+1 {
		t.Fatal("keyboard command not acknowledged")
	}
	b := []byte{1, 1}
	k.Read(i8042Status, b)
	if b[0] != 0 || b[1] != 0 {
		t.Fatal("wide read")
	}
	if rd(k, 1) != 0 {
		t.Fatal("port 0x61 is not the controller's")
	}
}
