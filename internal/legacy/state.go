package legacy

import (
	"errors"
	"fmt"
)

// ErrState means saved device state cannot be loaded: it is malformed, out
// of bounds or of another layout version.
var ErrState = errors.New("invalid legacy device state")

// StateVersion is the layout version of SerialState and I8042State.
const StateVersion = 1

// SerialState is the UART's registers and receive FIFO, for snapshots.
type SerialState struct {
	Version    int    `json:"version"`
	IER        byte   `json:"ier"`
	LCR        byte   `json:"lcr"`
	MCR        byte   `json:"mcr"`
	SCR        byte   `json:"scr"`
	DLL        byte   `json:"dll"`
	DLM        byte   `json:"dlm"`
	THRPending bool   `json:"thr_pending"`
	Asserted   bool   `json:"asserted"`
	RX         []byte `json:"rx"` // the FIFO's bytes, oldest first
}

// SaveState returns the UART's state.
func (s *Serial) SaveState() SerialState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SerialState{
		Version: StateVersion,
		IER:     s.ier, LCR: s.lcr, MCR: s.mcr, SCR: s.scr, DLL: s.dll, DLM: s.dlm,
		THRPending: s.thrPending, Asserted: s.asserted,
		RX: make([]byte, s.rxLen),
	}
	for i := range st.RX {
		st.RX[i] = s.rx[(s.rxHead+i)%SerialFIFOSize]
	}
	return st
}

// RestoreState loads st. The interrupt line is not raised: the interrupt
// controller's own restored state says what the guest has seen.
func (s *Serial) RestoreState(st SerialState) error {
	switch {
	case st.Version != StateVersion:
		return fmt.Errorf("%w: serial state version %d, this ember reads %d", ErrState, st.Version, StateVersion)
	case len(st.RX) > SerialFIFOSize:
		return fmt.Errorf("%w: serial FIFO of %d bytes, the UART has %d", ErrState, len(st.RX), SerialFIFOSize)
	case st.IER&^ierMask != 0:
		return fmt.Errorf("%w: serial IER %#x", ErrState, st.IER)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ier, s.lcr, s.mcr, s.scr, s.dll, s.dlm = st.IER, st.LCR, st.MCR, st.SCR, st.DLL, st.DLM
	s.thrPending, s.asserted = st.THRPending, st.Asserted
	s.rxHead, s.rxLen = 0, copy(s.rx[:], st.RX)
	return nil
}

// I8042State is the controller's registers and output buffer, for
// snapshots.
type I8042State struct {
	Version int    `json:"version"`
	Status  byte   `json:"status"`
	Control byte   `json:"control"`
	Outp    byte   `json:"outp"`
	Cmd     byte   `json:"cmd"`
	Buf     []byte `json:"buf"` // oldest first
}

// SaveState returns the controller's state.
func (k *I8042) SaveState() I8042State {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := I8042State{Version: StateVersion, Status: k.status, Control: k.control, Outp: k.outp, Cmd: k.cmd, Buf: make([]byte, k.n)}
	for i := range st.Buf {
		st.Buf[i] = k.buf[(k.head+i)%i8042BufSize]
	}
	return st
}

// RestoreState loads st.
func (k *I8042) RestoreState(st I8042State) error {
	switch {
	case st.Version != StateVersion:
		return fmt.Errorf("%w: i8042 state version %d, this ember reads %d", ErrState, st.Version, StateVersion)
	case len(st.Buf) > i8042BufSize:
		return fmt.Errorf("%w: i8042 buffer of %d bytes, the controller has %d", ErrState, len(st.Buf), i8042BufSize)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.status, k.control, k.outp, k.cmd = st.Status, st.Control, st.Outp, st.Cmd
	k.head, k.n = 0, copy(k.buf[:], st.Buf)
	return nil
}
