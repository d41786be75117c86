package kvm

import (
	"encoding/binary"
	"fmt"
)

// Local APIC register offsets in LAPICState (the xAPIC MMIO layout).
const (
	LAPICRegID       = 0x20
	LAPICRegVersion  = 0x30
	LAPICRegTPR      = 0x80
	LAPICRegPPR      = 0xA0
	LAPICRegEOI      = 0xB0
	LAPICRegLDR      = 0xD0
	LAPICRegDFR      = 0xE0
	LAPICRegSpurious = 0xF0
	// ISR and IRR are eight registers each, 16 bytes apart, for vectors
	// 32*i to 32*i+31.
	LAPICRegISR            = 0x100
	LAPICRegIRR            = 0x200
	LAPICRegICRLow         = 0x300
	LAPICRegICRHigh        = 0x310
	LAPICRegLVTTimer       = 0x320
	LAPICRegLVTThermal     = 0x330
	LAPICRegLVTPerf        = 0x340
	LAPICRegLVTLINT0       = 0x350
	LAPICRegLVTLINT1       = 0x360
	LAPICRegLVTError       = 0x370
	LAPICRegTimerInitCount = 0x380
	LAPICRegTimerCurrCount = 0x390
	LAPICRegTimerDivide    = 0x3E0
)

// Delivery modes of an LVT entry (bits 8-10).
const (
	LAPICDeliveryFixed  = 0
	LAPICDeliverySMI    = 2
	LAPICDeliveryNMI    = 4
	LAPICDeliveryINIT   = 5
	LAPICDeliveryExtINT = 7
)

const lapicDeliveryShift, lapicDeliveryMask = 8, 0x7 << 8

func lapicCheck(off int) error {
	if off < 0 || off > len(LAPICState{}.Regs)-4 || off%16 != 0 {
		return fmt.Errorf("kvm: LAPIC register offset %#x: %w", off, ErrBadArgument)
	}
	return nil
}

// Reg reads the 32-bit register at off (16-byte aligned, below 0x400).
func (l *LAPICState) Reg(off int) (uint32, error) {
	if err := lapicCheck(off); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(l.Regs[off:]), nil
}

// SetReg writes the 32-bit register at off (16-byte aligned, below 0x400).
func (l *LAPICState) SetReg(off int, v uint32) error {
	if err := lapicCheck(off); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(l.Regs[off:], v)
	return nil
}

// SetDeliveryMode sets the delivery mode bits of the LVT register at off,
// keeping its other bits (as for LINT0 = ExtINT and LINT1 = NMI).
func (l *LAPICState) SetDeliveryMode(off int, mode uint32) error {
	if mode > 7 {
		return fmt.Errorf("kvm: LAPIC delivery mode %d: %w", mode, ErrBadArgument)
	}
	v, err := l.Reg(off)
	if err != nil {
		return err
	}
	return l.SetReg(off, v&^lapicDeliveryMask|mode<<lapicDeliveryShift)
}
