// Package metrics keeps ember's metrics and writes them exactly as
// Firecracker does: one compact JSON object per line, with Firecracker's key
// names, nesting and key order, so that tools validating Firecracker's
// metrics schema (which rejects unknown and missing keys) accept ember's.
//
// Invariants:
//   - A line is {"utc_timestamp_ms":…,["id":…,]["properties":{…},]<sections>}
//     followed by '\n', written with a single Write call.
//   - Counters report their increase since the last line that was written
//     successfully; gauges and latency min/max report absolute values.
//     Rendering a line without writing it (Line) or a failed write consumes
//     nothing, so the next written line still carries the increase.
//   - Every section is present on every line, device sums ("block", "net",
//     "pmem") included when no such device exists; per-device sections appear
//     once a device id has been registered and never go away.
//   - Counters, gauges and latencies are lock-free and safe from any
//     goroutine; writing lines is serialized.
//
// When to write (at start, every 60 s, on FlushMetrics, at exit and on fatal
// signals) is the controller's business, not this package's.
package metrics

import (
	"errors"
	"io"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/syserr"
)

// ErrReinit is returned by a second Init; the text is Firecracker's.
var ErrReinit = errors.New("Reinitialization of metrics not allowed.")

// ErrNilWriter is returned by Init without a destination.
var ErrNilWriter = errors.New("metrics destination is nil")

// ErrWrite classifies a failed write of a metrics line; see WriteError.
var ErrWrite = errors.New("Failed to write metrics")

// WriteError is a failed write of a metrics line. Its text is Firecracker's,
// "Failed to write metrics: <OS error as Rust prints it>".
type WriteError struct {
	Err error
}

func (e *WriteError) Error() string { return ErrWrite.Error() + ": " + syserr.Display(e.Err) }

// Unwrap makes errors.Is match both ErrWrite and the underlying error.
func (e *WriteError) Unwrap() []error { return []error{ErrWrite, e.Err} }

// Metrics is the process's set of metrics. Update its sections through the
// exported fields (m.PutAPIRequests.DriveCount.Inc()) and per-device sections
// through Block, Net, Pmem and VhostUserBlock. A Metrics must not be copied.
type Metrics struct {
	APIServer        APIServerMetrics
	Balloon          BalloonMetrics
	DeprecatedAPI    DeprecatedAPIMetrics
	GetAPIRequests   GetRequestsMetrics
	I8042            I8042Metrics
	RTC              RTCMetrics // written on arm64 only, as Firecracker does
	Uart             UartMetrics
	Latencies        LatencyMetrics
	Logger           LoggerMetrics
	MMDS             MMDSMetrics
	PatchAPIRequests PatchRequestsMetrics
	PutAPIRequests   PutRequestsMetrics
	Seccomp          SeccompMetrics
	Vcpu             VcpuMetrics
	VMM              VMMMetrics
	Signals          SignalMetrics
	Vsock            VsockMetrics
	Entropy          EntropyMetrics
	Interrupts       InterruptMetrics
	MemoryHotplug    MemoryHotplugMetrics

	blocks    *family[BlockDeviceMetrics]
	nets      *family[NetDeviceMetrics]
	pmems     *family[PmemDeviceMetrics]
	vhostUser *family[VhostUserBlockMetrics]

	now   func() time.Time
	parts []part // the sections after the header, in Firecracker's order

	initialized atomic.Bool

	mu     sync.Mutex // serializes lines; guards everything below
	w      io.Writer
	header []byte // `,"id":…` and `,"properties":{…}`, fixed by Init
	fr     frame  // reused between lines
}

// part is one piece of a line after the header; it appends its own leading ','.
type part interface{ write(fr *frame) }

type section struct {
	key    string
	leaves []leaf
}

func (s *section) write(fr *frame) {
	fr.b = append(fr.b, ',')
	fr.object(s.key, s.leaves, nil)
}

// Option adjusts a new Metrics.
type Option func(*options)

type options struct {
	now func() time.Time
	rtc bool
}

// WithClock sets the clock read for utc_timestamp_ms (tests use a fixed one).
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithRTC forces the "rtc" section on or off; by default it is written on
// arm64 only, where the guest has a PL031.
func WithRTC(on bool) Option { return func(o *options) { o.rtc = on } }

// New returns a Metrics with every value zero, not yet initialized.
func New(opts ...Option) *Metrics {
	o := options{now: time.Now, rtc: runtime.GOARCH == "arm64"}
	for _, opt := range opts {
		opt(&o)
	}
	m := &Metrics{
		blocks:    newFamily[BlockDeviceMetrics]("block_", "block"),
		nets:      newFamily[NetDeviceMetrics]("net_", "net"),
		pmems:     newFamily[PmemDeviceMetrics]("pmem_", "pmem"),
		vhostUser: newFamily[VhostUserBlockMetrics]("vhost_user_block_", ""),
		now:       o.now,
	}
	static := func(name string, ptr any) part {
		return &section{
			key:    string(appendKey(nil, name)),
			leaves: bind(mustPlan(reflectElem(ptr)), ptr),
		}
	}
	// The order is Firecracker's serialization order, which is not the
	// alphabetical one: legacy devices sit after get_api_requests, vmm before
	// signals, device kinds near the end.
	m.parts = []part{
		static("api_server", &m.APIServer),
		static("balloon", &m.Balloon),
		m.blocks,
		static("deprecated_api", &m.DeprecatedAPI),
		static("get_api_requests", &m.GetAPIRequests),
		static("i8042", &m.I8042),
	}
	if o.rtc {
		m.parts = append(m.parts, static("rtc", &m.RTC))
	}
	m.parts = append(m.parts,
		static("uart", &m.Uart),
		static("latencies_us", &m.Latencies),
		static("logger", &m.Logger),
		static("mmds", &m.MMDS),
		m.nets,
		static("patch_api_requests", &m.PatchAPIRequests),
		static("put_api_requests", &m.PutAPIRequests),
		static("seccomp", &m.Seccomp),
		static("vcpu", &m.Vcpu),
		static("vmm", &m.VMM),
		static("signals", &m.Signals),
		static("vsock", &m.Vsock),
		static("entropy", &m.Entropy),
		m.pmems,
		m.vhostUser,
		static("interrupts", &m.Interrupts),
		static("memory_hotplug", &m.MemoryHotplug),
	)
	return m
}

// Block returns the "block_<driveID>" section, creating it on first use.
func (m *Metrics) Block(driveID string) *BlockDeviceMetrics { return m.blocks.get(driveID) }

// Net returns the "net_<ifaceID>" section, creating it on first use.
func (m *Metrics) Net(ifaceID string) *NetDeviceMetrics { return m.nets.get(ifaceID) }

// Pmem returns the "pmem_<id>" section, creating it on first use.
func (m *Metrics) Pmem(id string) *PmemDeviceMetrics { return m.pmems.get(id) }

// VhostUserBlock returns the "vhost_user_block_<driveID>" section of a
// vhost-user drive, creating it on first use.
func (m *Metrics) VhostUserBlock(driveID string) *VhostUserBlockMetrics {
	return m.vhostUser.get(driveID)
}

// Init sets where lines go, once. emitID adds "id" (id, or Firecracker's
// default instance id when empty) to every line; a non-nil properties map,
// even an empty one, adds "properties" with its keys sorted. A second call
// returns ErrReinit and changes nothing.
func (m *Metrics) Init(w io.Writer, emitID bool, id string, properties map[string]string) error {
	if w == nil {
		return ErrNilWriter
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.w != nil {
		return ErrReinit
	}
	var h []byte
	if emitID {
		if id == "" {
			id = logger.DefaultInstanceID
		}
		h = append(h, `,"id":`...)
		h = appendString(h, id)
	}
	if properties != nil {
		h = append(h, `,"properties":{`...)
		keys := make([]string, 0, len(properties))
		for k := range properties {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				h = append(h, ',')
			}
			h = appendKey(h, k)
			h = appendString(h, properties[k])
		}
		h = append(h, '}')
	}
	m.w, m.header = w, h
	m.initialized.Store(true)
	return nil
}

// Initialized reports whether Init has succeeded.
func (m *Metrics) Initialized() bool { return m.initialized.Load() }

// Flush writes one line. Before Init it does nothing and returns nil, as
// Firecracker does, and counters keep accumulating. A failed write returns a
// *WriteError and leaves the counters' increases for the next line (where
// Firecracker loses whatever it had serialized before the failure). Who
// counts the failure is up to the caller: Firecracker counts
// logger.missed_metrics_count only on its periodic write (see
// FlushPeriodic), not on FlushMetrics, exit or signal writes.
func (m *Metrics) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.w == nil {
		return nil
	}
	m.render(true)
	m.fr.b = append(m.fr.b, '\n')
	if _, err := m.w.Write(m.fr.b); err != nil {
		return &WriteError{Err: err}
	}
	for _, s := range m.fr.pending {
		s.c.prev.Store(s.total)
	}
	return nil
}

// FlushPeriodic is Flush for the periodic timer: a failed write also
// increments logger.missed_metrics_count, as Firecracker's timer does.
func (m *Metrics) FlushPeriodic() error {
	err := m.Flush()
	if err != nil {
		m.Logger.MissedMetricsCount.Inc()
	}
	return err
}

// Line returns the line Flush would write now, without its trailing newline
// and without consuming any counter increase.
func (m *Metrics) Line() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.render(false)
	return slices.Clone(m.fr.b)
}

// render builds the line in m.fr.b; with commit, it also records the counter
// totals to make baselines of once the line is written. Callers hold m.mu.
func (m *Metrics) render(commit bool) {
	fr := &m.fr
	fr.b = fr.b[:0]
	fr.pending = fr.pending[:0]
	fr.commit = commit
	fr.b = append(fr.b, `{"utc_timestamp_ms":`...)
	fr.b = strconv.AppendInt(fr.b, m.now().UnixMilli(), 10)
	fr.b = append(fr.b, m.header...)
	for _, p := range m.parts {
		p.write(fr)
	}
	fr.b = append(fr.b, '}')
}
