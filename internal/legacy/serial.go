package legacy

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
)

// UART registers (offsets from the base port).
const (
	regData = 0 // RBR (read), THR (write); DLL with DLAB
	regIER  = 1 // DLM with DLAB
	regIIR  = 2 // IIR (read), FCR (write)
	regLCR  = 3
	regMCR  = 4
	regLSR  = 5
	regMSR  = 6
	regSCR  = 7
)

const (
	ierRDA  = 0x01
	ierTHRE = 0x02
	ierMask = 0x0f // the interrupts a 16550 has

	iirNone     = 0x01
	iirTHRE     = 0x02
	iirRDA      = 0x04
	iirFIFOBits = 0xc0 // FIFOs enabled: the guest sees a 16550A

	fcrClearRx = 0x02

	lcrDLAB = 0x80

	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10

	lsrDR   = 0x01
	lsrTHRE = 0x20
	lsrTEMT = 0x40

	msrCTS = 0x10
	msrDSR = 0x20
	msrRI  = 0x40
	msrDCD = 0x80

	// SerialFIFOSize is the receive FIFO, as Firecracker's UART has.
	SerialFIFOSize = 64
)

// Serial is a 16550A UART. Output goes to an io.Writer byte by byte as the
// guest writes THR; input comes through Enqueue or Feed into a 64-byte
// FIFO. The transmitter is always empty (output never waits), so THR-empty
// interrupts follow every write, as on Firecracker's UART.
//
// Interrupt identification is computed from the state, 16550-style: data
// in the FIFO with IER.RDA gives "received data" until the FIFO drains;
// IER.THRE gives "THR empty" after each write and when the guest enables
// it, until the guest reads IIR reporting it or writes THR. The line is
// triggered whenever the UART goes from no pending interrupt to some.
type Serial struct {
	out io.Writer
	irq Interrupt

	mu         sync.Mutex
	ier        byte
	lcr        byte
	mcr        byte
	scr        byte
	dll, dlm   byte
	thrPending bool
	asserted   bool
	rx         [SerialFIFOSize]byte
	rxHead     int
	rxLen      int
	room       chan struct{} // a token whenever the guest drains input
	one        [1]byte

	outBytes, lostBytes, irqErrors atomic.Uint64
}

// NewSerial returns a UART in its reset state writing to out, which must
// never block (ember's console sink drops rather than waits), and raising
// irq.
func NewSerial(out io.Writer, irq Interrupt) *Serial {
	return &Serial{
		out:  out,
		irq:  irq,
		lcr:  0x03, // 8 data bits
		mcr:  mcrOUT2,
		dll:  0x0c, // 9600 baud
		room: make(chan struct{}, 1),
	}
}

// source returns the highest-priority pending interrupt (IIR bits 0-3).
func (s *Serial) source() byte {
	switch {
	case s.ier&ierRDA != 0 && s.rxLen > 0:
		return iirRDA
	case s.ier&ierTHRE != 0 && s.thrPending:
		return iirTHRE
	}
	return iirNone
}

// update raises the line on a transition to a pending interrupt.
func (s *Serial) update() {
	pending := s.source() != iirNone
	if pending && !s.asserted {
		if err := s.irq.Signal(); err != nil {
			s.irqErrors.Add(1)
		}
	}
	s.asserted = pending
}

func (s *Serial) loop() bool { return s.mcr&mcrLoop != 0 }

// Read implements bus.Device.
func (s *Serial) Read(off uint64, data []byte) {
	clear(data)
	if len(data) != 1 || off >= SerialSize {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var v byte
	switch {
	case off == regData && s.lcr&lcrDLAB != 0:
		v = s.dll
	case off == regIER && s.lcr&lcrDLAB != 0:
		v = s.dlm
	case off == regData:
		if s.rxLen > 0 {
			v = s.rx[s.rxHead]
			s.rxHead = (s.rxHead + 1) % SerialFIFOSize
			s.rxLen--
			select {
			case s.room <- struct{}{}:
			default:
			}
		}
		s.update()
	case off == regIER:
		v = s.ier
	case off == regIIR:
		src := s.source()
		if src == iirTHRE {
			s.thrPending = false // reading IIR acknowledges THR empty
		}
		v = iirFIFOBits | src
		s.update()
	case off == regLCR:
		v = s.lcr
	case off == regMCR:
		v = s.mcr
	case off == regLSR:
		v = lsrTHRE | lsrTEMT
		if s.rxLen > 0 {
			v |= lsrDR
		}
	case off == regMSR:
		v = s.msr()
	case off == regSCR:
		v = s.scr
	}
	data[0] = v
}

// msr returns the modem status: carrier, DSR and CTS always up, or in
// loopback the modem control outputs wired back, as the 8250 driver's
// probe checks.
func (s *Serial) msr() byte {
	if !s.loop() {
		return msrDCD | msrDSR | msrCTS
	}
	var v byte
	if s.mcr&mcrDTR != 0 {
		v |= msrDSR
	}
	if s.mcr&mcrRTS != 0 {
		v |= msrCTS
	}
	if s.mcr&mcrOUT1 != 0 {
		v |= msrRI
	}
	if s.mcr&mcrOUT2 != 0 {
		v |= msrDCD
	}
	return v
}

// Write implements bus.Device.
func (s *Serial) Write(off uint64, data []byte) {
	if len(data) != 1 || off >= SerialSize {
		return
	}
	v := data[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case off == regData && s.lcr&lcrDLAB != 0:
		s.dll = v
	case off == regIER && s.lcr&lcrDLAB != 0:
		s.dlm = v
	case off == regData:
		if s.loop() {
			s.push(v)
		} else {
			s.one[0] = v
			if n, err := s.out.Write(s.one[:]); n == 1 && err == nil {
				s.outBytes.Add(1)
			} else {
				s.lostBytes.Add(1)
			}
		}
		s.thrPending = true // the byte left at once: THR is empty again
		s.update()
	case off == regIER:
		if v&ierTHRE != 0 && s.ier&ierTHRE == 0 {
			s.thrPending = true // enabling it with THR empty raises it
		}
		s.ier = v & ierMask
		s.update()
	case off == regIIR: // FCR
		if v&fcrClearRx != 0 {
			s.rxHead, s.rxLen = 0, 0
			s.update()
			select {
			case s.room <- struct{}{}:
			default:
			}
		}
	case off == regLCR:
		s.lcr = v
	case off == regMCR:
		s.mcr = v
	case off == regSCR:
		s.scr = v
	}
}

func (s *Serial) push(b byte) bool {
	if s.rxLen == SerialFIFOSize {
		return false
	}
	s.rx[(s.rxHead+s.rxLen)%SerialFIFOSize] = b
	s.rxLen++
	return true
}

// Enqueue gives the guest input bytes, as many as fit in the FIFO, and
// returns how many it took. In loopback mode the line is disconnected and
// it takes none.
func (s *Serial) Enqueue(b []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loop() {
		return 0
	}
	n := 0
	for n < len(b) && s.push(b[n]) {
		n++
	}
	if n > 0 {
		s.update()
	}
	return n
}

func (s *Serial) free() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SerialFIFOSize - s.rxLen
}

// Feed copies r into the guest's input until r fails or ctx ends, reading
// only as much as the FIFO has room for, so no input is dropped. It
// returns nil at io.EOF. A Read blocked in r is not interrupted by ctx.
func (s *Serial) Feed(ctx context.Context, r io.Reader) error {
	buf := make([]byte, SerialFIFOSize)
	for {
		free := s.free()
		for free == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.room:
			}
			free = s.free()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(buf[:free])
		if n > 0 {
			s.Enqueue(buf[:n])
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// SerialStats counts the UART's traffic.
type SerialStats struct {
	// OutBytes reached the writer; LostBytes did not (it failed).
	OutBytes, LostBytes uint64
}

// Stats returns the cumulative counters.
func (s *Serial) Stats() SerialStats {
	return SerialStats{OutBytes: s.outBytes.Load(), LostBytes: s.lostBytes.Load()}
}
