package legacy

import (
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
)

// registers reads every UART register that reading does not change.
func registers(s *Serial) []byte {
	var out []byte
	for _, off := range []uint64{regIER, regLCR, regMCR, regLSR, regMSR, regSCR} {
		out = append(out, rd(s, off))
	}
	return out
}

func TestSerialStateRoundTrip(t *testing.T) {
	a := NewSerial(io.Discard, &counter{})
	wr(a, regLCR, lcrDLAB|0x03)
	wr(a, regData, 0x01) // divisor 0x0201
	wr(a, regIER, 0x02)
	wr(a, regLCR, 0x1b)
	wr(a, regMCR, 0x0b)
	wr(a, regSCR, 0x5a)
	wr(a, regIER, ierRDA|ierTHRE)
	if n := a.Enqueue([]byte("hello, snapshot")); n != 15 {
		t.Fatalf("Enqueue took %d", n)
	}
	for i := 0; i < 3; i++ { // move the FIFO's head off zero
		rd(a, regData)
	}
	// Through JSON, as the state file carries it.
	b, err := json.Marshal(a.SaveState())
	if err != nil {
		t.Fatal(err)
	}
	var st SerialState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	irq := &counter{}
	c := NewSerial(io.Discard, irq)
	if err := c.RestoreState(st); err != nil {
		t.Fatal(err)
	}
	if irq.count() != 0 {
		t.Errorf("restore raised the interrupt %d times", irq.count())
	}
	if got, want := registers(c), registers(a); !reflect.DeepEqual(got, want) {
		t.Errorf("registers after restore %x, want %x", got, want)
	}
	if got, want := rd(c, regIIR), rd(a, regIIR); got != want {
		t.Errorf("IIR %#x, want %#x", got, want)
	}
	wr(c, regLCR, lcrDLAB|0x1b)
	if dll, dlm := rd(c, regData), rd(c, regIER); dll != 0x01 || dlm != 0x02 {
		t.Errorf("divisor %#x:%#x after restore, want 0x02:0x01", dlm, dll)
	}
	wr(c, regLCR, 0x1b)
	var rest []byte
	for rd(c, regLSR)&lsrDR != 0 {
		rest = append(rest, rd(c, regData))
	}
	if string(rest) != "lo, snapshot" {
		t.Errorf("input after restore %q, want %q", rest, "lo, snapshot")
	}
}

func TestI8042StateRoundTrip(t *testing.T) {
	a := NewI8042(func() {}, &counter{})
	wr(a, i8042Status, cmdWriteCTR)
	wr(a, i8042Data, cbKbdInt)
	if err := a.SendCtrlAltDel(); err != nil {
		t.Fatal(err)
	}
	first := rd(a, i8042Data)
	b, err := json.Marshal(a.SaveState())
	if err != nil {
		t.Fatal(err)
	}
	var st I8042State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	reset := false
	c := NewI8042(func() { reset = true }, &counter{})
	if err := c.RestoreState(st); err != nil {
		t.Fatal(err)
	}
	got := []byte{first}
	for rd(c, i8042Status)&sbOutDataAvail != 0 {
		got = append(got, rd(c, i8042Data))
	}
	if want := []byte{0x14, 0x11, 0xe0, 0x71}; !reflect.DeepEqual(got, want) {
		t.Errorf("scan codes across restore %x, want %x", got, want)
	}
	wr(c, i8042Status, cmdReadCTR)
	if v := rd(c, i8042Data); v != cbKbdInt {
		t.Errorf("control %#x after restore, want %#x", v, cbKbdInt)
	}
	wr(c, i8042Status, cmdResetCPU)
	if !reset {
		t.Error("restored controller does not reset the machine")
	}
}

func TestLegacyStateRefused(t *testing.T) {
	long := make([]byte, SerialFIFOSize+1)
	for _, tc := range []struct {
		name string
		load func() error
	}{
		{"serial version", func() error { return NewSerial(io.Discard, &counter{}).RestoreState(SerialState{Version: 2}) }},
		{"serial FIFO", func() error {
			return NewSerial(io.Discard, &counter{}).RestoreState(SerialState{Version: StateVersion, RX: long})
		}},
		{"serial IER", func() error {
			return NewSerial(io.Discard, &counter{}).RestoreState(SerialState{Version: StateVersion, IER: 0xf0})
		}},
		{"i8042 version", func() error { return NewI8042(func() {}, &counter{}).RestoreState(I8042State{}) }},
		{"i8042 buffer", func() error {
			return NewI8042(func() {}, &counter{}).RestoreState(I8042State{Version: StateVersion, Buf: long[:i8042BufSize+1]})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.load(); !errors.Is(err, ErrState) {
				t.Errorf("error %v, want ErrState", err)
			}
		})
	}
}
