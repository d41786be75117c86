package mmio_test

import (
	"encoding/binary"
	"testing"

	"github.com/ember-vmm/ember/internal/virtio"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
	vt "github.com/ember-vmm/ember/internal/virtio/virtiotest"
)

// FuzzRegisters drives the register interface with arbitrary accesses over
// guest memory holding arbitrary bytes. Nothing may panic, the status may
// only take values of the initialization sequence (plus FAILED and
// NEEDS_RESET), and every notification ends (the device drains the queue
// synchronously, so an unbounded ring would hang the fuzzer).
func FuzzRegisters(f *testing.F) {
	op := func(write bool, off uint16, v uint32, width uint8) []byte {
		b := make([]byte, 8)
		if write {
			b[0] = 1
		}
		binary.LittleEndian.PutUint16(b[1:], off)
		binary.LittleEndian.PutUint32(b[3:], v)
		b[7] = width
		return b
	}
	var bringUp []byte
	for _, o := range [][]byte{
		op(true, mmio.RegStatus, 1, 4), op(true, mmio.RegStatus, 3, 4),
		op(true, mmio.RegDriverFeatSel, 1, 4), op(true, mmio.RegDriverFeatures, 1, 4),
		op(true, mmio.RegStatus, 11, 4),
		op(true, mmio.RegQueueNum, 4, 4), op(true, mmio.RegQueueDescLow, 0x100, 4),
		op(true, mmio.RegQueueDriverLow, 0x200, 4), op(true, mmio.RegQueueDeviceLow, 0x300, 4),
		op(true, mmio.RegQueueReady, 1, 4), op(true, mmio.RegStatus, 15, 4),
		op(true, mmio.RegQueueNotify, 0, 4), op(false, mmio.RegInterruptStatus, 0, 4),
		op(true, mmio.RegInterruptAck, 3, 4), op(false, 0x100, 0, 8),
		op(true, mmio.RegStatus, 0, 4),
	} {
		bringUp = append(bringUp, o...)
	}
	ring := make([]byte, 0x400)
	binary.LittleEndian.PutUint64(ring[0x100:], 0x800) // desc 0 -> 0x800, 16 bytes, write
	binary.LittleEndian.PutUint32(ring[0x108:], 16)
	binary.LittleEndian.PutUint16(ring[0x10c:], virtio.DescFlagWrite)
	binary.LittleEndian.PutUint16(ring[0x202:], 3) // avail.idx = 3
	f.Add(bringUp, ring)
	f.Add(bringUp, []byte{})
	f.Fuzz(func(t *testing.T, ops, memory []byte) {
		const size = 64 << 10
		m := vt.NewMemory(t, size)
		if len(memory) > size {
			memory = memory[:size]
		}
		m.WriteAt(memory, 0)
		dev := newEcho()
		tr := mmio.New(dev, m, &vt.Interrupt{}, vtLog)
		valid := map[uint32]bool{0: true, 1: true, 3: true, 11: true, 15: true}
		for len(ops) >= 8 {
			o := ops[:8]
			ops = ops[8:]
			off := uint64(binary.LittleEndian.Uint16(o[1:])) % (mmio.Size + 8)
			width := int(o[7]%8) + 1
			data := make([]byte, width)
			copy(data, o[3:7])
			if o[0]&1 != 0 {
				tr.Write(off, data)
			} else {
				tr.Read(off, data)
			}
			s := tr.Status() &^ (virtio.StatusFailed | virtio.StatusDeviceNeedsReset)
			if !valid[s] {
				t.Fatalf("status %#x is not on the initialization path", s)
			}
			if tr.Active() != (dev.act != nil) {
				t.Fatalf("transport active %v, device activated %v", tr.Active(), dev.act != nil)
			}
		}
	})
}
