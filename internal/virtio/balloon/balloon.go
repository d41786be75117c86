// Package balloon is ember's virtio memory balloon (device id 5) as
// Firecracker has it: queues inflate (0) and deflate (1), then a statistics
// queue when a polling interval is set and a free page reporting queue
// when reporting is on; a 12-byte config space (num_pages, the target the
// device sets; actual, which the driver writes; free_page_hint_cmd_id);
// features VERSION_1 plus DEFLATE_ON_OOM, STATS_VQ and FREE_PAGE_REPORTING
// as configured. Sizes are in 4 KiB pages, 256 to the MiB.
//
// Pages the guest gives up (inflated or reported free) go back to the
// host: madvise(MADV_DONTNEED) on their host mapping, and for memory that
// is a shared memfd (vhost-user) a hole punched in the file, so the host
// frees them; the guest reads zeros if it touches them again. Each inflate
// chain may name at most 256 pages, as in Firecracker; longer ones are
// skipped. Deflated pages need nothing: the guest simply uses them again.
//
// Statistics follow the virtio protocol: the device holds the buffer the
// driver last filled and returns it every polling interval, which makes
// the driver refill it. The latest values are kept under Firecracker's
// names (hypervisor.BalloonStats). Free page hinting, a developer preview
// in Firecracker, is not implemented.
package balloon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-vmm/ember/internal/hypervisor"
	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/virtio"
)

// Feature bits of virtio-balloon.
const (
	FeatureStatsVQ           = 1
	FeatureDeflateOnOOM      = 2
	FeatureFreePageHinting   = 3
	FeatureFreePageReporting = 5
)

// Sizes.
const (
	PageShift       = 12
	PagesPerMiB     = 256
	ConfigSize      = 12
	MaxPagesPerDesc = 256 // pages one inflate chain may name
	statSize        = 10  // struct virtio_balloon_stat: le16 tag, le64 val
	maxStats        = 256 // tags read from one statistics buffer
)

// Queue indexes that do not move.
const (
	InflateQueue = 0
	DeflateQueue = 1
)

const (
	bitStatsTimer = 62 // worker bits beyond any queue index
	bitStatsNow   = 63
)

// Errors, with Firecracker's texts.
var (
	ErrStatsDisabled    = errors.New("Received stats query when stats are disabled.")
	ErrStatsStateChange = errors.New("Statistics cannot be enabled/disabled after activation.")
	ErrTooMuchMemory    = errors.New("Amount of pages requested is too large.")
)

// TooMuchMemoryError refuses a target beyond the guest's memory. It
// matches ErrTooMuchMemory.
type TooMuchMemoryError struct{ MiB uint32 }

func (e *TooMuchMemoryError) Error() string {
	return fmt.Sprintf("Requested memory should be less than %dMiB", e.MiB)
}

// Is makes errors.Is(err, ErrTooMuchMemory) true.
func (e *TooMuchMemoryError) Is(target error) bool { return target == ErrTooMuchMemory }

// Statistics tags (linux/virtio_balloon.h).
const (
	tagSwapIn = iota
	tagSwapOut
	tagMajorFaults
	tagMinorFaults
	tagFreeMemory
	tagTotalMemory
	tagAvailMemory
	tagDiskCaches
	tagHugetlbAlloc
	tagHugetlbFail
	tagOOMKill
	tagAllocStall
	tagAsyncScan
	tagDirectScan
	tagAsyncReclaim
	tagDirectReclaim
)

// Config configures the balloon.
type Config struct {
	AmountMiB         uint32
	DeflateOnOOM      bool
	StatsIntervalS    uint16
	FreePageReporting bool
	Log               logger.Log
}

// Device is a virtio-balloon device.
type Device struct {
	log       logger.Log
	features  uint64
	queues    int
	statsQ    int // -1 without statistics
	reportQ   int // -1 without free page reporting
	withStats bool

	mu       sync.Mutex
	act      *active
	config   [ConfigSize]byte
	interval uint16
	stats    hypervisor.BalloonStats
}

type active struct {
	w      *virtio.Worker
	mem    virtio.Memory
	t      virtio.Transport
	queues []*virtio.Queue
	chain  virtio.Chain
	pfns   []uint32
	held   int // head of the statistics buffer the device holds, or -1
	timer  *time.Timer
}

// New returns an inactive balloon.
func New(cfg Config) (*Device, error) {
	if uint64(cfg.AmountMiB)*PagesPerMiB > 0xffffffff {
		return nil, ErrTooMuchMemory
	}
	d := &Device{log: cfg.Log, statsQ: -1, reportQ: -1, interval: cfg.StatsIntervalS}
	d.features = virtio.Bit(virtio.FeatureVersion1)
	d.queues = 2
	if cfg.DeflateOnOOM {
		d.features |= virtio.Bit(FeatureDeflateOnOOM)
	}
	if cfg.StatsIntervalS > 0 {
		d.withStats = true
		d.features |= virtio.Bit(FeatureStatsVQ)
		d.statsQ = d.queues
		d.queues++
	}
	if cfg.FreePageReporting {
		d.features |= virtio.Bit(FeatureFreePageReporting)
		d.reportQ = d.queues
		d.queues++
	}
	binary.LittleEndian.PutUint32(d.config[0:], cfg.AmountMiB*PagesPerMiB)
	return d, nil
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeBalloon }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return d.features }

// QueueMaxSizes implements virtio.Device.
func (d *Device) QueueMaxSizes() []uint16 {
	s := make([]uint16, d.queues)
	for i := range s {
		s[i] = virtio.MaxQueueSize
	}
	return s
}

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(data)
	if off < ConfigSize {
		copy(data, d.config[off:])
	}
}

// WriteConfig implements virtio.Device: the driver reports actual there.
func (d *Device) WriteConfig(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off >= ConfigSize || uint64(len(data)) > ConfigSize-off {
		d.log.Warnf("virtio-balloon: guest driver attempted to write device config out of bounds (offset=%#x, len=%#x)", off, len(data))
		return
	}
	copy(d.config[off:], data)
}

// TargetPages returns the size the device asks the guest to give up.
func (d *Device) TargetPages() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return binary.LittleEndian.Uint32(d.config[0:])
}

// ActualPages returns the size the guest reports giving up.
func (d *Device) ActualPages() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return binary.LittleEndian.Uint32(d.config[4:])
}

// StatsInterval returns the statistics polling interval in seconds.
func (d *Device) StatsInterval() uint16 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.interval
}

// Activate implements virtio.Device.
func (d *Device) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.act != nil {
		return errors.New("balloon device already active")
	}
	if len(a.Queues) != d.queues || a.Queues[InflateQueue] == nil || a.Queues[DeflateQueue] == nil {
		return errors.New("balloon device: the driver did not enable the inflate and deflate queues")
	}
	act := &active{mem: a.Mem, t: a.Transport, queues: a.Queues, held: -1}
	act.w = virtio.StartWorker(func(bits uint64) { d.process(act, bits) })
	if d.statsQ >= 0 && a.Queues[d.statsQ] != nil {
		act.timer = time.AfterFunc(time.Duration(d.interval)*time.Second, func() { act.w.Notify(bitStatsTimer) })
	}
	d.act = act
	return nil
}

// Notify implements virtio.Device.
func (d *Device) Notify(q int) {
	d.mu.Lock()
	act := d.act
	d.mu.Unlock()
	if act != nil {
		act.w.Notify(q)
	}
}

// Reset implements virtio.Device.
func (d *Device) Reset() error {
	d.mu.Lock()
	act := d.act
	d.act = nil
	binary.LittleEndian.PutUint32(d.config[4:], 0)
	binary.LittleEndian.PutUint32(d.config[8:], 0)
	d.stats = hypervisor.BalloonStats{}
	d.mu.Unlock()
	if act != nil {
		if act.timer != nil {
			act.timer.Stop()
		}
		act.w.Stop()
	}
	return nil
}

// Close stops the device.
func (d *Device) Close() error { return d.Reset() }

// SetTarget asks the guest to give up amountMiB (PATCH /balloon).
func (d *Device) SetTarget(amountMiB uint32) error {
	d.mu.Lock()
	act := d.act
	d.mu.Unlock()
	if act == nil {
		return virtio.ErrNotActive
	}
	if uint64(amountMiB)*PagesPerMiB > 0xffffffff {
		return &TooMuchMemoryError{0xffffffff / PagesPerMiB}
	}
	if sz, ok := act.mem.(interface{ Size() uint64 }); ok && uint64(amountMiB) > sz.Size()>>20 {
		return &TooMuchMemoryError{amountMiB}
	}
	return act.t.ChangeConfig(func() {
		d.mu.Lock()
		binary.LittleEndian.PutUint32(d.config[0:], amountMiB*PagesPerMiB)
		d.mu.Unlock()
	})
}

// SetStatsInterval changes the polling interval (PATCH
// /balloon/statistics). Statistics cannot be turned on or off this way;
// a new interval takes effect at once.
func (d *Device) SetStatsInterval(seconds uint16) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if seconds == d.interval {
		return nil
	}
	if seconds == 0 || d.interval == 0 {
		return ErrStatsStateChange
	}
	d.interval = seconds
	if act := d.act; act != nil && act.timer != nil {
		act.timer.Reset(time.Duration(seconds) * time.Second)
		act.w.Notify(bitStatsNow)
	}
	return nil
}

// Stats returns the latest statistics the guest reported, with the target
// and actual sizes.
func (d *Device) Stats() (hypervisor.BalloonStats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.withStats {
		return hypervisor.BalloonStats{}, ErrStatsDisabled
	}
	s := d.stats
	s.TargetPages = binary.LittleEndian.Uint32(d.config[0:])
	s.ActualPages = binary.LittleEndian.Uint32(d.config[4:])
	s.TargetMiB = s.TargetPages / PagesPerMiB
	s.ActualMiB = s.ActualPages / PagesPerMiB
	return s, nil
}

func (d *Device) process(a *active, bits uint64) {
	for q := 0; q < d.queues; q++ {
		if bits&(1<<q) == 0 || a.queues[q] == nil {
			continue
		}
		var err error
		switch q {
		case InflateQueue:
			err = d.inflate(a)
		case DeflateQueue:
			err = d.complete(a, DeflateQueue)
		case d.statsQ:
			err = d.readStats(a)
		case d.reportQ:
			err = d.report(a)
		}
		if err != nil {
			a.t.NeedsReset(err)
			return
		}
	}
	if bits&(1<<bitStatsTimer|1<<bitStatsNow) != 0 && d.statsQ >= 0 && a.queues[d.statsQ] != nil {
		if err := d.returnStatsBuffer(a); err != nil {
			a.t.NeedsReset(err)
			return
		}
		if bits&(1<<bitStatsTimer) != 0 {
			d.mu.Lock()
			a.timer.Reset(time.Duration(d.interval) * time.Second)
			d.mu.Unlock()
		}
	}
}

func (d *Device) signal(a *active, q int) {
	if a.queues[q].NeedsSignal() {
		if err := a.t.SignalUsed(q); err != nil {
			d.log.Errorf("Failed to send irq to the guest: %v", err)
		}
	}
}

// inflate gives the pages each chain names back to the host.
func (d *Device) inflate(a *active) error {
	q := a.queues[InflateQueue]
	for {
		ok, err := q.Next(&a.chain)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		c := &a.chain
		if n := c.OutLen / 4; n > MaxPagesPerDesc {
			d.log.Errorf("Inflate descriptor has bogus page count %d > %d, skipping.", n, MaxPagesPerDesc)
		} else {
			var b [4 * MaxPagesPerDesc]byte
			c.ReadOut(b[:4*n], 0)
			a.pfns = a.pfns[:0]
			for i := range n {
				a.pfns = append(a.pfns, binary.LittleEndian.Uint32(b[4*i:]))
			}
			d.discardPFNs(a)
		}
		if err := q.Push(c.Head, 0); err != nil {
			return err
		}
	}
	d.signal(a, InflateQueue)
	return nil
}

// discardPFNs releases a.pfns, merged into runs.
func (d *Device) discardPFNs(a *active) {
	slices.Sort(a.pfns)
	pfns := slices.Compact(a.pfns)
	for i := 0; i < len(pfns); {
		j := i + 1
		for j < len(pfns) && pfns[j] == pfns[j-1]+1 {
			j++
		}
		gpa := uint64(pfns[i]) << PageShift
		if err := Discard(a.mem, gpa, uint64(j-i)<<PageShift); err != nil {
			d.log.Errorf("Error removing memory range: %v", err)
		}
		i = j
	}
}

// report releases the ranges in each free page report.
func (d *Device) report(a *active) error {
	q := a.queues[d.reportQ]
	for {
		ok, err := q.Next(&a.chain)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		c := &a.chain
		for i, gpa := range c.InAddr {
			if err := Discard(a.mem, gpa, uint64(len(c.In[i]))); err != nil {
				d.log.Errorf("balloon: failed to remove range: %v", err)
			}
		}
		for i, gpa := range c.OutAddr {
			if err := Discard(a.mem, gpa, uint64(len(c.Out[i]))); err != nil {
				d.log.Errorf("balloon: failed to remove range: %v", err)
			}
		}
		if err := q.Push(c.Head, 0); err != nil {
			return err
		}
	}
	d.signal(a, d.reportQ)
	return nil
}

// complete returns every chain of queue qi unread (deflate).
func (d *Device) complete(a *active, qi int) error {
	q := a.queues[qi]
	for {
		ok, err := q.Next(&a.chain)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if err := q.Push(a.chain.Head, 0); err != nil {
			return err
		}
	}
	d.signal(a, qi)
	return nil
}

// readStats takes the statistics buffers the driver filled, keeping the
// last one to return at the next poll.
func (d *Device) readStats(a *active) error {
	q := a.queues[d.statsQ]
	for {
		ok, err := q.Pop(&a.chain)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if a.held >= 0 {
			// A compliant driver has one buffer out; give the older one back.
			d.log.Errorf("balloon: driver is not compliant, more than one stats buffer received")
			if err := q.Push(uint16(a.held), 0); err != nil {
				return err
			}
			d.signal(a, d.statsQ)
		}
		a.held = int(a.chain.Head)
		c := &a.chain
		if c.OutLen > maxStats*statSize {
			d.log.Warnf("balloon: stats descriptor too large: %d > %d, skipping", c.OutLen, maxStats*statSize)
			continue
		}
		var b [maxStats * statSize]byte
		n := c.ReadOut(b[:c.OutLen], 0)
		d.mu.Lock()
		for off := 0; off+statSize <= n; off += statSize {
			d.setStat(binary.LittleEndian.Uint16(b[off:]), binary.LittleEndian.Uint64(b[off+2:]))
		}
		d.mu.Unlock()
	}
	return nil
}

// returnStatsBuffer hands the held buffer back, asking for fresh figures.
func (d *Device) returnStatsBuffer(a *active) error {
	if a.held < 0 {
		d.log.Errorf("Failed to update balloon stats, missing descriptor.")
		return nil
	}
	q := a.queues[d.statsQ]
	if err := q.Push(uint16(a.held), 0); err != nil {
		return err
	}
	a.held = -1
	d.signal(a, d.statsQ)
	return nil
}

func (d *Device) setStat(tag uint16, v uint64) {
	s := &d.stats
	var p **uint64
	switch tag {
	case tagSwapIn:
		p = &s.SwapIn
	case tagSwapOut:
		p = &s.SwapOut
	case tagMajorFaults:
		p = &s.MajorFaults
	case tagMinorFaults:
		p = &s.MinorFaults
	case tagFreeMemory:
		p = &s.FreeMemory
	case tagTotalMemory:
		p = &s.TotalMemory
	case tagAvailMemory:
		p = &s.AvailMemory
	case tagDiskCaches:
		p = &s.DiskCaches
	case tagHugetlbAlloc:
		p = &s.HugetlbAlloc
	case tagHugetlbFail:
		p = &s.HugetlbFail
	case tagOOMKill:
		p = &s.OOMKill
	case tagAllocStall:
		p = &s.AllocStall
	case tagAsyncScan:
		p = &s.AsyncScan
	case tagDirectScan:
		p = &s.DirectScan
	case tagAsyncReclaim:
		p = &s.AsyncReclaim
	case tagDirectReclaim:
		p = &s.DirectReclam
	default:
		d.log.Debugf("balloon: unknown stats update tag: %d", tag)
		return
	}
	*p = &v
}

// Discard gives n bytes of guest RAM at gpa back to the host. Memory that
// another process maps (a memfd, for vhost-user) also has a hole punched
// in its file, or the host would keep the pages.
func Discard(mem virtio.Memory, gpa, n uint64) error {
	b, err := mem.Slice(gpa, n)
	if err != nil {
		return err
	}
	if f, ok := mem.(interface{ Fd(uint64) (int, uint64) }); ok {
		if fd, off := f.Fd(gpa); fd >= 0 {
			if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(off), int64(n)); err != nil {
				return fmt.Errorf("punching %#x+%#x: %w", gpa, n, err)
			}
		}
	}
	if err := unix.Madvise(b, unix.MADV_DONTNEED); err != nil {
		return fmt.Errorf("madvise %#x+%#x: %w", gpa, n, err)
	}
	return nil
}
