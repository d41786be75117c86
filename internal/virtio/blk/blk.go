// Package blk is ember's virtio block device (device id 2) as Firecracker
// has it: one queue of 256 entries, a config space holding only the
// capacity in 512-byte sectors (the file size rounded down), features
// VERSION_1 and EVENT_IDX, plus FLUSH when the cache type is Writeback and
// RO when the drive is read-only. Requests are IN, OUT, FLUSH and GET_ID;
// anything else is answered VIRTIO_BLK_S_UNSUPP.
//
// The I/O engine is Firecracker's Sync engine: preadv/pwritev straight
// between the backing file and guest memory, on the device's own goroutine
// (never a vCPU thread). A flush is an fsync with Writeback; with Unsafe
// the host page cache keeps the data and a flush (which a driver is not
// offered) completes at once. A read-only drive refuses writes with
// VIRTIO_BLK_S_IOERR. GET_ID returns Firecracker's serial: the decimal
// st_dev, st_rdev and st_ino of the backing file run together, cut to 20
// bytes.
//
// Requests that are malformed but carry a status byte (a data length that
// is not a whole number of sectors, a range past the end of the disk, a
// GET_ID buffer shorter than 20 bytes) complete with VIRTIO_BLK_S_IOERR;
// Firecracker completes them without writing a status. Chains without room
// for a status complete with length 0. A Limiter, when set, is asked for
// one operation plus the data bytes of each request; a refused request
// stays in the ring until the limiter allows it.
package blk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/virtio"
)

// Feature bits of virtio-blk.
const (
	FeatureRO    = 5 // VIRTIO_BLK_F_RO
	FeatureFlush = 9 // VIRTIO_BLK_F_FLUSH
)

// Request types and status values (virtio 1.2 §5.2.6).
const (
	TypeIn    = 0
	TypeOut   = 1
	TypeFlush = 4
	TypeGetID = 8

	StatusOK     = 0
	StatusIOErr  = 1
	StatusUnsupp = 2
)

// SectorSize is the unit of capacity and request offsets.
const SectorSize = 512

// IDBytes is the length of the GET_ID answer.
const IDBytes = 20

const (
	headerSize = 16
	bitQueue   = 0
	bitRetry   = 1
	maxIov     = 1024 // IOV_MAX
)

// CacheType is Firecracker's cache_type.
type CacheType int

// The cache types.
const (
	// Unsafe leaves writes in the host page cache and offers no flush.
	Unsafe CacheType = iota
	// Writeback offers VIRTIO_BLK_F_FLUSH, and a flush is an fsync.
	Writeback
)

// Config configures a drive.
type Config struct {
	// ID is the drive id, for logs.
	ID       string
	ReadOnly bool
	Cache    CacheType
	Limiter  virtio.Limiter // nil: unlimited
	Log      logger.Log
}

// Stats are a drive's cumulative counters, as Firecracker's block metrics
// count them.
type Stats struct {
	ReadBytes, WriteBytes, ReadCount, WriteCount, FlushCount uint64
}

// disk is an open backing file.
type disk struct {
	f       *os.File
	fd      int
	path    string
	sectors uint64
	id      [IDBytes]byte
}

func openDisk(path string, readOnly bool) (*disk, error) {
	flags := os.O_RDWR
	if readOnly {
		flags = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, err
	}
	d, err := newDisk(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

func newDisk(f *os.File) (*disk, error) {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, &os.PathError{Op: "seek", Path: f.Name(), Err: err}
	}
	d := &disk{f: f, fd: int(f.Fd()), path: f.Name(), sectors: uint64(size) / SectorSize}
	if fi, err := f.Stat(); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			copy(d.id[:], fmt.Sprintf("%d%d%d", st.Dev, st.Rdev, st.Ino))
		}
	}
	return d, nil
}

// Device is a virtio-blk device.
type Device struct {
	cfg Config

	mu       sync.Mutex // act, capacity
	act      *active
	capacity uint64 // sectors, as the config space shows them

	diskMu sync.Mutex // the backing file; held by the worker while it does I/O
	disk   *disk

	readBytes, writeBytes, readCount, writeCount, flushCount atomic.Uint64
}

type active struct {
	w     *virtio.Worker
	q     *virtio.Queue
	t     virtio.Transport
	chain virtio.Chain
	iov   [][]byte
}

// Open opens the backing file at path (read-only if cfg.ReadOnly) and
// returns an inactive drive owning it.
func Open(path string, cfg Config) (*Device, error) {
	dk, err := openDisk(path, cfg.ReadOnly)
	if err != nil {
		return nil, err
	}
	return newDevice(dk, cfg), nil
}

// New returns an inactive drive on f, which it owns from now on. f must be
// open for writing unless cfg.ReadOnly.
func New(f *os.File, cfg Config) (*Device, error) {
	dk, err := newDisk(f)
	if err != nil {
		return nil, err
	}
	return newDevice(dk, cfg), nil
}

func newDevice(dk *disk, cfg Config) *Device {
	d := &Device{cfg: cfg, disk: dk, capacity: dk.sectors}
	d.warnSize(dk)
	return d
}

func (d *Device) warnSize(dk *disk) {
	if size, err := dk.f.Seek(0, io.SeekEnd); err == nil && size%SectorSize != 0 {
		d.cfg.Log.Warnf("Disk size %d is not a multiple of sector size %d; the remainder will not be visible to the guest.", size, SectorSize)
	}
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeBlock }

// Features implements virtio.Device.
func (d *Device) Features() uint64 {
	f := virtio.Bit(virtio.FeatureVersion1) | virtio.Bit(virtio.FeatureRingEventIdx)
	if d.cfg.Cache == Writeback {
		f |= virtio.Bit(FeatureFlush)
	}
	if d.cfg.ReadOnly {
		f |= virtio.Bit(FeatureRO)
	}
	return f
}

// QueueMaxSizes implements virtio.Device.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{virtio.MaxQueueSize} }

// ReadConfig implements virtio.Device: the config space is the 8-byte
// capacity.
func (d *Device) ReadConfig(off uint64, data []byte) {
	var cfg [8]byte
	d.mu.Lock()
	binary.LittleEndian.PutUint64(cfg[:], d.capacity)
	d.mu.Unlock()
	clear(data)
	if off < uint64(len(cfg)) {
		copy(data, cfg[off:])
	}
}

// WriteConfig implements virtio.Device: the config space is read-only.
func (d *Device) WriteConfig(off uint64, data []byte) {
	d.cfg.Log.Warnf("virtio-block: guest driver attempted to write device config (offset=%#x, len=%#x)", off, len(data))
}

// Capacity returns the disk size in sectors as the guest sees it.
func (d *Device) Capacity() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.capacity
}

// Serial returns the GET_ID answer.
func (d *Device) Serial() [IDBytes]byte {
	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	return d.disk.id
}

// Activate implements virtio.Device.
func (d *Device) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.act != nil {
		return errors.New("block device already active")
	}
	if len(a.Queues) != 1 || a.Queues[0] == nil {
		return errors.New("block device: the driver did not enable its queue")
	}
	act := &active{q: a.Queues[0], t: a.Transport}
	act.w = virtio.StartWorker(func(uint64) { d.process(act) })
	d.act = act
	return nil
}

// Notify implements virtio.Device.
func (d *Device) Notify(int) {
	d.mu.Lock()
	act := d.act
	d.mu.Unlock()
	if act != nil {
		act.w.Notify(bitQueue)
	}
}

// Reset implements virtio.Device. Requests already taken from the ring
// complete first (the Sync engine has none in flight otherwise).
func (d *Device) Reset() error {
	d.mu.Lock()
	act := d.act
	d.act = nil
	d.mu.Unlock()
	if act != nil {
		act.w.Stop()
	}
	return nil
}

// Close stops the device, flushes a Writeback drive and closes the file.
func (d *Device) Close() error {
	d.Reset()
	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	if d.disk == nil {
		return nil
	}
	var err error
	if d.cfg.Cache == Writeback {
		err = d.disk.f.Sync()
	}
	if cerr := d.disk.f.Close(); err == nil {
		err = cerr
	}
	d.disk = nil
	return err
}

// UpdateFile swaps the backing file for the one at path (opened with the
// drive's read-only setting), as PATCH /drives does: the capacity is read
// again and, if a driver is active, it gets a config-change interrupt.
// Requests in progress finish on the old file.
func (d *Device) UpdateFile(path string) error {
	dk, err := openDisk(path, d.cfg.ReadOnly)
	if err != nil {
		return err
	}
	d.warnSize(dk)
	d.diskMu.Lock()
	old := d.disk
	d.disk = dk
	d.diskMu.Unlock()
	if old != nil {
		old.f.Close()
	}
	d.mu.Lock()
	act := d.act
	if act == nil {
		d.capacity = dk.sectors
	}
	d.mu.Unlock()
	if act != nil {
		return act.t.ChangeConfig(func() {
			d.mu.Lock()
			d.capacity = dk.sectors
			d.mu.Unlock()
		})
	}
	return nil
}

// Stats returns the cumulative counters.
func (d *Device) Stats() Stats {
	return Stats{
		ReadBytes:  d.readBytes.Load(),
		WriteBytes: d.writeBytes.Load(),
		ReadCount:  d.readCount.Load(),
		WriteCount: d.writeCount.Load(),
		FlushCount: d.flushCount.Load(),
	}
}

func (d *Device) process(a *active) {
	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	for {
		ok, err := a.q.Next(&a.chain)
		if err != nil {
			a.t.NeedsReset(err)
			return
		}
		if !ok {
			break
		}
		n, throttled := d.request(a)
		if throttled {
			a.q.Undo()
			break
		}
		if err := a.q.Push(a.chain.Head, n); err != nil {
			a.t.NeedsReset(err)
			return
		}
	}
	if a.q.NeedsSignal() {
		if err := a.t.SignalUsed(0); err != nil {
			d.cfg.Log.Errorf("Failed to send irq to the guest: %v", err)
		}
	}
}

// request executes one chain and returns the bytes written into its
// buffers (data and status), or throttled if the limiter refused it.
func (d *Device) request(a *active) (written uint32, throttled bool) {
	c := &a.chain
	var hdr [headerSize]byte
	if c.OutLen < headerSize || c.InLen < 1 {
		d.cfg.Log.Errorf("Failed to parse available descriptor chain: %d readable and %d writable bytes", c.OutLen, c.InLen)
		return 0, false
	}
	c.ReadOut(hdr[:], 0)
	typ := binary.LittleEndian.Uint32(hdr[0:])
	sector := binary.LittleEndian.Uint64(hdr[8:])
	statusAt := c.InLen - 1

	var dataLen uint64
	switch typ {
	case TypeIn:
		dataLen = statusAt
	case TypeOut:
		dataLen = c.OutLen - headerSize
	}
	if l := d.cfg.Limiter; l != nil {
		if ok, wait := l.Allow(1, dataLen); !ok {
			a.w.After(wait, bitRetry)
			return 0, true
		}
	}

	status, toMem := d.execute(a, typ, sector, dataLen)
	c.WriteIn([]byte{status}, statusAt)
	return uint32(toMem) + 1, false
}

// execute performs a parsed request and returns its status and how many
// bytes it wrote into guest memory before the status byte.
func (d *Device) execute(a *active, typ uint32, sector, dataLen uint64) (status byte, toMem uint64) {
	c := &a.chain
	dk := d.disk
	checkRange := func() error {
		if dataLen%SectorSize != 0 {
			return fmt.Errorf("data length %d is not a multiple of %d", dataLen, SectorSize)
		}
		if end := sector + dataLen/SectorSize; end < sector || end > dk.sectors {
			return fmt.Errorf("sectors %d+%d pass the end of the disk (%d)", sector, dataLen/SectorSize, dk.sectors)
		}
		return nil
	}
	switch typ {
	case TypeIn:
		if err := checkRange(); err != nil {
			d.cfg.Log.Errorf("Failed to execute In virtio block request: %v", err)
			return StatusIOErr, 0
		}
		a.iov = virtio.Range(c.In, 0, dataLen, a.iov[:0])
		n, err := rw(unix.Preadv, dk.fd, a.iov, int64(sector*SectorSize))
		clear(a.iov)
		d.readBytes.Add(uint64(n))
		if err != nil {
			d.cfg.Log.Errorf("Failed to execute In virtio block request: %v", err)
			return StatusIOErr, uint64(n)
		}
		d.readCount.Add(1)
		return StatusOK, uint64(n)
	case TypeOut:
		if d.cfg.ReadOnly {
			d.cfg.Log.Errorf("Failed to execute Out virtio block request: the drive is read-only")
			return StatusIOErr, 0
		}
		if err := checkRange(); err != nil {
			d.cfg.Log.Errorf("Failed to execute Out virtio block request: %v", err)
			return StatusIOErr, 0
		}
		a.iov = virtio.Range(c.Out, headerSize, dataLen, a.iov[:0])
		n, err := rw(unix.Pwritev, dk.fd, a.iov, int64(sector*SectorSize))
		clear(a.iov)
		d.writeBytes.Add(uint64(n))
		if err != nil {
			d.cfg.Log.Errorf("Failed to execute Out virtio block request: %v", err)
			return StatusIOErr, 0
		}
		d.writeCount.Add(1)
		return StatusOK, 0
	case TypeFlush:
		if d.cfg.Cache == Writeback {
			if err := dk.f.Sync(); err != nil {
				d.cfg.Log.Errorf("Failed to execute Flush virtio block request: %v", err)
				return StatusIOErr, 0
			}
		}
		d.flushCount.Add(1)
		return StatusOK, 0
	case TypeGetID:
		if c.InLen-1 < IDBytes {
			d.cfg.Log.Errorf("Failed to execute GetDeviceID virtio block request: %d-byte buffer", c.InLen-1)
			return StatusIOErr, 0
		}
		return StatusOK, uint64(c.WriteIn(dk.id[:], 0))
	}
	d.cfg.Log.Errorf("Received unsupported virtio block request: %d", typ)
	return StatusUnsupp, 0
}

// rw runs preadv or pwritev until all of iov is done, the file ends, or an
// error; it returns the bytes transferred.
func rw(op func(int, [][]byte, int64) (int, error), fd int, iov [][]byte, off int64) (int, error) {
	total := 0
	for len(iov) > 0 {
		n, err := op(fd, iov[:min(len(iov), maxIov)], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, io.ErrUnexpectedEOF
		}
		total += n
		off += int64(n)
		for n > 0 {
			if n >= len(iov[0]) {
				n -= len(iov[0])
				iov = iov[1:]
				continue
			}
			iov[0] = iov[0][n:]
			n = 0
		}
	}
	return total, nil
}
