// Package legacy holds ember's legacy PC devices on the port I/O bus: the
// 16550A UART that is the guest's console (COM1, 0x3f8, IRQ 4) and the
// i8042 keyboard controller (0x60-0x64, IRQ 1), which carries the guest's
// reset (reboot=k) and Firecracker's SendCtrlAltDel.
//
// Both are bus.Devices reached from vCPU threads; they lock themselves and
// never block. Interrupts are raised through an Interrupt, which the kvm
// backend implements with an irqfd on the device's GSI (a *kvm.EventFD
// fits): each Signal is one edge, as Firecracker's event fds give.
package legacy

// Interrupt is a device's interrupt line; Signal raises one edge. It must
// not block.
type Interrupt interface {
	Signal() error
}

// Port bases and sizes on the PIO bus, and interrupt lines.
const (
	SerialBase = 0x3f8
	SerialSize = 8
	SerialIRQ  = 4

	I8042Base = 0x60
	I8042Size = 5
	I8042IRQ  = 1
)
