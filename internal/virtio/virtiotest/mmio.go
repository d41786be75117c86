package virtiotest

import (
	"encoding/binary"
	"fmt"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/virtio"
	"github.com/ember-vmm/ember/internal/virtio/mmio"
)

// Registers is a device window reached through MMIO (a *mmio.Transport).
type Registers interface {
	Read(off uint64, data []byte)
	Write(off uint64, data []byte)
}

// MMIODriver brings a device up through its virtio-mmio registers in the
// order Linux's virtio_mmio driver uses.
type MMIODriver struct {
	Regs     Registers
	Mem      *guestmem.Memory
	Alloc    *Allocator
	VQs      []*VQ // nil for queues left disabled
	Features uint64
}

// Read32 reads a register.
func (d *MMIODriver) Read32(off uint64) uint32 {
	var b [4]byte
	d.Regs.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// Write32 writes a register.
func (d *MMIODriver) Write32(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	d.Regs.Write(off, b[:])
}

// Status writes the status register.
func (d *MMIODriver) Status(v uint32) { d.Write32(mmio.RegStatus, v) }

// Setup resets the device, negotiates the offered features that are also
// in want, sets up each queue whose size in sizes is not 0 (0 leaves it
// disabled) and sets DRIVER_OK. It returns the device status afterwards.
func (d *MMIODriver) Setup(want uint64, sizes []uint16) (uint32, error) {
	if m := d.Read32(mmio.RegMagic); m != mmio.MagicValue {
		return 0, fmt.Errorf("magic %#x", m)
	}
	if v := d.Read32(mmio.RegVersion); v != mmio.Version {
		return 0, fmt.Errorf("version %d", v)
	}
	d.Status(0)
	d.Status(virtio.StatusAcknowledge)
	d.Status(virtio.StatusAcknowledge | virtio.StatusDriver)
	d.Write32(mmio.RegDeviceFeatSel, 0)
	offered := uint64(d.Read32(mmio.RegDeviceFeatures))
	d.Write32(mmio.RegDeviceFeatSel, 1)
	offered |= uint64(d.Read32(mmio.RegDeviceFeatures)) << 32
	d.Features = offered & want
	d.Write32(mmio.RegDriverFeatSel, 0)
	d.Write32(mmio.RegDriverFeatures, uint32(d.Features))
	d.Write32(mmio.RegDriverFeatSel, 1)
	d.Write32(mmio.RegDriverFeatures, uint32(d.Features>>32))
	d.Status(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK)
	if d.Read32(mmio.RegStatus)&virtio.StatusFeaturesOK == 0 {
		return 0, fmt.Errorf("device refused features %#x", d.Features)
	}
	d.VQs = make([]*VQ, len(sizes))
	for i, size := range sizes {
		if size == 0 {
			continue
		}
		d.Write32(mmio.RegQueueSel, uint32(i))
		if d.Read32(mmio.RegQueueReady) != 0 {
			return 0, fmt.Errorf("queue %d already ready", i)
		}
		max := d.Read32(mmio.RegQueueNumMax)
		if max == 0 || uint32(size) > max {
			return 0, fmt.Errorf("queue %d: max size %d, want %d", i, max, size)
		}
		vq := NewVQ(d.Mem, d.Alloc, size)
		d.Write32(mmio.RegQueueNum, uint32(size))
		d.Write32(mmio.RegQueueDescLow, uint32(vq.Desc))
		d.Write32(mmio.RegQueueDescHigh, uint32(vq.Desc>>32))
		d.Write32(mmio.RegQueueDriverLow, uint32(vq.Avail))
		d.Write32(mmio.RegQueueDriverHigh, uint32(vq.Avail>>32))
		d.Write32(mmio.RegQueueDeviceLow, uint32(vq.UsedRing))
		d.Write32(mmio.RegQueueDeviceHigh, uint32(vq.UsedRing>>32))
		d.Write32(mmio.RegQueueReady, 1)
		d.VQs[i] = vq
	}
	d.Status(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK | virtio.StatusDriverOK)
	return d.Read32(mmio.RegStatus), nil
}

// Kick notifies queue q through QueueNotify.
func (d *MMIODriver) Kick(q int) { d.Write32(mmio.RegQueueNotify, uint32(q)) }

// Ack reads InterruptStatus and acknowledges what it found.
func (d *MMIODriver) Ack() uint32 {
	isr := d.Read32(mmio.RegInterruptStatus)
	d.Write32(mmio.RegInterruptAck, isr)
	return isr
}

// ReadConfig reads n bytes of the device's config space.
func (d *MMIODriver) ReadConfig(off uint64, n int) []byte {
	b := make([]byte, n)
	d.Regs.Read(mmio.ConfigOffset+off, b)
	return b
}
