package legacy

import (
	"errors"
	"sync"
	"sync/atomic"
)

// i8042 ports as offsets from I8042Base.
const (
	i8042Data   = 0 // port 0x60
	i8042Status = 4 // port 0x64 (status on read, command on write)
)

// i8042 commands (writes to port 0x64).
const (
	cmdReadCTR  = 0x20
	cmdWriteCTR = 0x60
	cmdReadOutp = 0xd0
	cmdWriteOut = 0xd1
	cmdResetCPU = 0xfe
)

// Status and control register bits.
const (
	sbOutDataAvail = 0x01
	sbCmdData      = 0x08 // a command parameter is expected at port 0x60
	sbKbdEnabled   = 0x10

	cbKbdInt = 0x01
	cbPostOK = 0x04
)

// Scan codes (set 2) of the Ctrl+Alt+Del sequence, as Firecracker sends.
const (
	keyCtrl = 0x0014
	keyAlt  = 0x0011
	keyDel  = 0xe071
)

const i8042BufSize = 16

// ErrI8042BufferFull is returned by SendCtrlAltDel when the controller's
// buffer has no room for the sequence.
var ErrI8042BufferFull = errors.New("i8042 internal buffer full.")

// I8042 is the PS/2 controller, emulated just enough for what Firecracker
// uses it for: the guest resets the machine with command 0xFE (Linux's
// reboot=k), and the host can press Ctrl+Alt+Del. Keyboard commands are
// acknowledged with 0xFA; the control register and output port read back
// what was written.
type I8042 struct {
	reset func()
	irq   Interrupt

	mu      sync.Mutex
	status  byte
	control byte
	outp    byte
	cmd     byte
	buf     [i8042BufSize]byte
	head    int
	n       int

	resets, irqErrors atomic.Uint64
}

// NewI8042 returns a controller that calls reset when the guest asks for a
// CPU reset and raises irq (IRQ 1) for keyboard data. reset must not
// block.
func NewI8042(reset func(), irq Interrupt) *I8042 {
	return &I8042{
		reset:   reset,
		irq:     irq,
		status:  sbKbdEnabled,
		control: cbPostOK | cbKbdInt,
	}
}

func (k *I8042) push(b byte) bool {
	k.status |= sbOutDataAvail
	if k.n == i8042BufSize {
		return false
	}
	k.buf[(k.head+k.n)%i8042BufSize] = b
	k.n++
	return true
}

func (k *I8042) pop() (byte, bool) {
	if k.n == 0 {
		return 0, false
	}
	b := k.buf[k.head]
	k.head = (k.head + 1) % i8042BufSize
	k.n--
	if k.n == 0 {
		k.status &^= sbOutDataAvail
	}
	return b, true
}

func (k *I8042) flush() {
	k.head, k.n = 0, 0
	k.status &^= sbOutDataAvail
}

// kbdInterrupt raises IRQ 1 unless the guest disabled it.
func (k *I8042) kbdInterrupt() {
	if k.control&cbKbdInt == 0 {
		return
	}
	if err := k.irq.Signal(); err != nil {
		k.irqErrors.Add(1)
	}
}

// Read implements bus.Device.
func (k *I8042) Read(off uint64, data []byte) {
	clear(data)
	if len(data) != 1 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	switch off {
	case i8042Status:
		data[0] = k.status
	case i8042Data:
		data[0], _ = k.pop()
		if k.status&sbOutDataAvail != 0 {
			k.kbdInterrupt() // more to read: tell the guest again
		}
	}
}

// Write implements bus.Device.
func (k *I8042) Write(off uint64, data []byte) {
	if len(data) != 1 {
		return
	}
	v := data[0]
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case off == i8042Status && v == cmdResetCPU:
		k.resets.Add(1)
		k.reset()
	case off == i8042Status && v == cmdReadCTR:
		k.flush()
		k.push(k.control)
	case off == i8042Status && v == cmdWriteCTR:
		k.flush()
		k.status |= sbCmdData
		k.cmd = v
	case off == i8042Status && v == cmdReadOutp:
		k.flush()
		k.push(k.outp)
	case off == i8042Status && v == cmdWriteOut:
		k.status |= sbCmdData
		k.cmd = v
	case off == i8042Data && k.status&sbCmdData != 0:
		switch k.cmd {
		case cmdWriteCTR:
			k.control = v
		case cmdWriteOut:
			k.outp = v
		}
		k.status &^= sbCmdData
	case off == i8042Data:
		// A command for the keyboard itself: a dumb keyboard acks anything.
		k.flush()
		k.push(0xfa)
		k.kbdInterrupt()
	}
}

// SendCtrlAltDel presses Ctrl+Alt+Del: the scan codes go into the output
// buffer and the keyboard interrupt fires. It fails if the buffer cannot
// take the whole sequence.
func (k *I8042) SendCtrlAltDel() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if i8042BufSize-k.n < 4 {
		return ErrI8042BufferFull
	}
	for _, key := range []uint16{keyCtrl, keyAlt, keyDel} {
		if key>>8 != 0 {
			k.push(byte(key >> 8))
		}
		k.push(byte(key))
		k.kbdInterrupt()
	}
	return nil
}

// Resets returns how many times the guest asked for a reset.
func (k *I8042) Resets() uint64 { return k.resets.Load() }
