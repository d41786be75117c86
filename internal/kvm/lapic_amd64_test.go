package kvm

import (
	"errors"
	"testing"
)

func TestLAPICRegs(t *testing.T) {
	var l LAPICState
	if err := l.SetReg(LAPICRegLVTLINT0, 0x0001_0700); err != nil {
		t.Fatal(err)
	}
	// Little-endian at the register's offset, as the APIC page holds it.
	if l.Regs[0x350] != 0x00 || l.Regs[0x351] != 0x07 || l.Regs[0x352] != 0x01 {
		t.Fatalf("bytes % x", l.Regs[0x350:0x354])
	}
	if err := l.SetDeliveryMode(LAPICRegLVTLINT0, LAPICDeliveryExtINT); err != nil {
		t.Fatal(err)
	}
	if err := l.SetReg(LAPICRegLVTLINT1, 0xffff_ffff); err != nil {
		t.Fatal(err)
	}
	if err := l.SetDeliveryMode(LAPICRegLVTLINT1, LAPICDeliveryNMI); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		off  int
		want uint32
	}{
		{LAPICRegLVTLINT0, 0x0001_0700},
		{LAPICRegLVTLINT1, 0xffff_fcff},
		{LAPICRegLVTTimer, 0},
	} {
		got, err := l.Reg(c.off)
		if err != nil || got != c.want {
			t.Errorf("reg %#x = %#x (%v), want %#x", c.off, got, err, c.want)
		}
	}
	for _, off := range []int{-16, 0x351, 0x3f4, 0x400, 1 << 30} {
		if _, err := l.Reg(off); !errors.Is(err, ErrBadArgument) {
			t.Errorf("Reg(%#x): %v", off, err)
		}
		if err := l.SetReg(off, 1); !errors.Is(err, ErrBadArgument) {
			t.Errorf("SetReg(%#x): %v", off, err)
		}
	}
	if err := l.SetDeliveryMode(LAPICRegLVTLINT0, 8); !errors.Is(err, ErrBadArgument) {
		t.Errorf("delivery mode 8: %v", err)
	}
}

func TestIRQChipUnion(t *testing.T) {
	var c IRQChip
	c.SetPIC(PICState{IRR: 1, IMR: 0xfb, ELCRMask: 0xf8})
	if p := c.PIC(); p.IRR != 1 || p.IMR != 0xfb || p.ELCRMask != 0xf8 {
		t.Fatalf("PIC round trip %+v", p)
	}
	var io IOAPICState
	io.BaseAddress = 0xfec00000
	io.ID = 7
	io.RedirTbl[23] = 1 << 16
	c.SetIOAPIC(io)
	if got := c.IOAPIC(); got != io {
		t.Fatalf("IOAPIC round trip %+v", got)
	}
	// The union starts at the chip's first byte: the PIC's first field
	// shares it with the IOAPIC's base address.
	if c.Chip[0] != 0xfec00000 {
		t.Fatalf("IOAPIC base not at the union's start: %#x", c.Chip[0])
	}
}
