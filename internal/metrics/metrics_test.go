package metrics

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

var fixedTime = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

func fixedClock() time.Time { return fixedTime }

// newInit returns a Metrics writing to a buffer, initialized without id or
// properties, with the x86 layout and a fixed clock.
func newInit(t *testing.T) (*Metrics, *bytes.Buffer) {
	t.Helper()
	m := New(WithClock(fixedClock), WithRTC(false))
	var buf bytes.Buffer
	if err := m.Init(&buf, false, "", nil); err != nil {
		t.Fatal(err)
	}
	return m, &buf
}

// flushValues flushes and returns the values of the line written.
func flushValues(t *testing.T, m *Metrics, buf *bytes.Buffer) map[string]string {
	t.Helper()
	buf.Reset()
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	line := buf.Bytes()
	if bytes.Count(line, []byte{'\n'}) != 1 || line[len(line)-1] != '\n' {
		t.Fatalf("flush wrote %q, want one newline-terminated line", line)
	}
	_, v := leaves(t, line[:len(line)-1])
	return v
}

func expect(t *testing.T, v map[string]string, want map[string]uint64) {
	t.Helper()
	for k, w := range want {
		got, ok := v[k]
		if !ok {
			t.Errorf("%s missing", k)
			continue
		}
		if got != strconv.FormatUint(w, 10) {
			t.Errorf("%s = %s, want %d", k, got, w)
		}
	}
}

func TestGoldenFresh(t *testing.T) {
	m, buf := newInit(t)
	m.Block("rootfs")
	m.Net("eth0")
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	path := filepath.Join("testdata", "fresh.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("line differs from %s (run with -update after checking):\ngot  %s\nwant %s", path, got, want)
	}
	// The golden file itself must hold exactly the expected keys.
	paths, values := leaves(t, bytes.TrimSuffix(want, []byte{'\n'}))
	diffPaths(t, paths, wantPaths(devs{blocks: []string{"rootfs"}, nets: []string{"eth0"}}))
	if values["utc_timestamp_ms"] != strconv.FormatInt(fixedTime.UnixMilli(), 10) {
		t.Errorf("utc_timestamp_ms = %s", values["utc_timestamp_ms"])
	}
	for p, v := range values {
		if p != "utc_timestamp_ms" && v != "0" {
			t.Errorf("fresh %s = %s, want 0", p, v)
		}
	}
}

func TestTimestampIsWallClockMillis(t *testing.T) {
	m := New()
	before := time.Now().UnixMilli()
	_, v := leaves(t, m.Line())
	after := time.Now().UnixMilli()
	ts, err := strconv.ParseInt(v["utc_timestamp_ms"], 10, 64)
	if err != nil || ts < before || ts > after {
		t.Fatalf("utc_timestamp_ms = %s, want within [%d,%d]", v["utc_timestamp_ms"], before, after)
	}
}

func TestCounterDeltas(t *testing.T) {
	m, buf := newInit(t)
	c := &m.PutAPIRequests.DriveCount
	c.Add(3)
	expect(t, flushValues(t, m, buf), map[string]uint64{"put_api_requests.drive_count": 3})
	expect(t, flushValues(t, m, buf), map[string]uint64{"put_api_requests.drive_count": 0})
	c.Inc()
	c.Inc()
	expect(t, flushValues(t, m, buf), map[string]uint64{"put_api_requests.drive_count": 2})
	if c.Count() != 5 {
		t.Errorf("Count() = %d, want the running total 5", c.Count())
	}
	// signals: fatal ones are absolute, sigpipe counts
	m.Signals.SIGBUS.Set(1)
	m.Signals.SIGPIPE.Inc()
	expect(t, flushValues(t, m, buf), map[string]uint64{"signals.sigbus": 1, "signals.sigpipe": 1})
	expect(t, flushValues(t, m, buf), map[string]uint64{"signals.sigbus": 1, "signals.sigpipe": 0})
}

func TestGaugeIsAbsolute(t *testing.T) {
	m, buf := newInit(t)
	m.Latencies.PauseVM.Set(1234)
	m.APIServer.ProcessStartupTimeUs.Set(7)
	for range 2 {
		expect(t, flushValues(t, m, buf), map[string]uint64{
			"latencies_us.pause_vm":              1234,
			"api_server.process_startup_time_us": 7,
		})
	}
	m.Latencies.PauseVM.Set(5)
	expect(t, flushValues(t, m, buf), map[string]uint64{"latencies_us.pause_vm": 5})
	if m.Latencies.PauseVM.Get() != 5 {
		t.Errorf("Get() = %d", m.Latencies.PauseVM.Get())
	}
}

func TestLatencyAgg(t *testing.T) {
	m, buf := newInit(t)
	a := &m.Vcpu.ExitIOInAgg
	for _, us := range []uint64{5, 3, 9} {
		a.Record(us)
	}
	expect(t, flushValues(t, m, buf), map[string]uint64{
		"vcpu.exit_io_in_agg.min_us": 3, "vcpu.exit_io_in_agg.max_us": 9, "vcpu.exit_io_in_agg.sum_us": 17,
	})
	// min and max persist across lines, as Firecracker's store metrics; sum is a delta
	expect(t, flushValues(t, m, buf), map[string]uint64{
		"vcpu.exit_io_in_agg.min_us": 3, "vcpu.exit_io_in_agg.max_us": 9, "vcpu.exit_io_in_agg.sum_us": 0,
	})
	a.Record(4)
	a.Record(20)
	expect(t, flushValues(t, m, buf), map[string]uint64{
		"vcpu.exit_io_in_agg.min_us": 3, "vcpu.exit_io_in_agg.max_us": 20, "vcpu.exit_io_in_agg.sum_us": 24,
	})

	// 0 means "no sample": a zero sample leaves min at 0 and the next
	// sample replaces it, as in Firecracker.
	var z LatencyAgg
	z.Record(0)
	z.Record(8)
	if z.Min() != 8 || z.Max() != 8 || z.Sum() != 8 {
		t.Errorf("after 0,8: min/max/sum = %d/%d/%d, want 8/8/8", z.Min(), z.Max(), z.Sum())
	}
	var s LatencyAgg
	s.Since(time.Now().Add(-1500 * time.Microsecond))
	if s.Sum() < 1500 || s.Sum() > 1_000_000 {
		t.Errorf("Since recorded %d us, want about 1500", s.Sum())
	}
}

func TestDeviceAggregate(t *testing.T) {
	m, buf := newInit(t)
	a, b := m.Block("a"), m.Block("b")
	if m.Block("a") != a {
		t.Fatal("Block returned a new section for a known id")
	}
	a.ReadCount.Add(2)
	b.ReadCount.Add(5)
	b.WriteBytes.Add(4096)
	a.ReadAgg.Record(10)
	b.ReadAgg.Record(30)
	n := m.Net("eth0")
	n.TxCount.Add(7)
	n.TapWriteAgg.Record(4)
	m.Pmem("p").QueueEventCount.Inc()
	vu := m.VhostUserBlock("vub")
	vu.InitTimeUs.Set(99)
	vu.ActivateFails.Inc()

	v := flushValues(t, m, buf)
	expect(t, v, map[string]uint64{
		"block_a.read_count": 2, "block_b.read_count": 5, "block.read_count": 7,
		"block.write_bytes": 4096, "block_b.write_bytes": 4096,
		"block_a.read_agg.min_us": 10, "block_b.read_agg.max_us": 30,
		// the sum adds sum_us only; min/max of the aggregate stay 0
		"block.read_agg.sum_us": 40, "block.read_agg.min_us": 0, "block.read_agg.max_us": 0,
		"net_eth0.tx_count": 7, "net.tx_count": 7, "net.tap_write_agg.sum_us": 4,
		"pmem_p.queue_event_count": 1, "pmem.queue_event_count": 1,
		"vhost_user_block_vub.init_time_us": 99, "vhost_user_block_vub.activate_fails": 1,
	})
	for k := range v {
		if strings.HasPrefix(k, "vhost_user_block.") || k == "vhost_user" {
			t.Errorf("vhost-user has no aggregate, found %s", k)
		}
	}
	v = flushValues(t, m, buf)
	expect(t, v, map[string]uint64{
		"block_a.read_count": 0, "block.read_count": 0, "block.read_agg.sum_us": 0,
		"block_a.read_agg.min_us": 10, "net.tx_count": 0,
		"vhost_user_block_vub.init_time_us": 99, "vhost_user_block_vub.activate_fails": 0,
	})
}

func TestHeader(t *testing.T) {
	tests := []struct {
		name   string
		emitID bool
		id     string
		props  map[string]string
		header []string          // expected paths after utc_timestamp_ms
		vals   map[string]string // expected header values
		raw    string            // expected bytes right after the timestamp
	}{
		{name: "default", raw: `,"api_server":`},
		{name: "id", emitID: true, id: "vm-1", header: []string{"id"},
			vals: map[string]string{"id": "vm-1"}, raw: `,"id":"vm-1","api_server":`},
		{name: "id given but not emitted", id: "vm-1", raw: `,"api_server":`},
		{name: "default id", emitID: true, header: []string{"id"},
			vals: map[string]string{"id": "anonymous-instance"}},
		{name: "properties sorted", props: map[string]string{"customer_id": "1234", "bundle_id": "fn-abc"},
			header: []string{"properties.bundle_id", "properties.customer_id"},
			raw:    `,"properties":{"bundle_id":"fn-abc","customer_id":"1234"},"api_server":`},
		{name: "empty properties still shown", props: map[string]string{},
			header: []string{"properties"}, raw: `,"properties":{},"api_server":`},
		{name: "both, escaped", emitID: true, id: "a", props: map[string]string{"k\"ey": "v\n<é>"},
			header: []string{"id", "properties.k\"ey"},
			vals:   map[string]string{"properties.k\"ey": "v\n<é>"},
			raw:    `,"id":"a","properties":{"k\"ey":"v\n<é>"},"api_server":`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(WithClock(fixedClock), WithRTC(false))
			var buf bytes.Buffer
			if err := m.Init(&buf, tt.emitID, tt.id, tt.props); err != nil {
				t.Fatal(err)
			}
			if err := m.Flush(); err != nil {
				t.Fatal(err)
			}
			line := bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
			paths, values := leaves(t, line)
			diffPaths(t, paths, wantPaths(devs{}, tt.header...))
			for k, w := range tt.vals {
				if values[k] != w {
					t.Errorf("%s = %q, want %q", k, values[k], w)
				}
			}
			prefix := `{"utc_timestamp_ms":` + strconv.FormatInt(fixedTime.UnixMilli(), 10)
			if tt.raw != "" && !bytes.HasPrefix(line, []byte(prefix+tt.raw)) {
				t.Errorf("line starts %.120s, want %s%s", line, prefix, tt.raw)
			}
		})
	}
}

func TestInit(t *testing.T) {
	m := New()
	if m.Initialized() {
		t.Fatal("Initialized before Init")
	}
	if err := m.Init(nil, false, "", nil); !errors.Is(err, ErrNilWriter) {
		t.Fatalf("Init(nil) = %v, want ErrNilWriter", err)
	}
	if m.Initialized() {
		t.Fatal("Initialized after a failed Init")
	}
	var first, second bytes.Buffer
	if err := m.Init(&first, false, "", nil); err != nil {
		t.Fatal(err)
	}
	err := m.Init(&second, true, "x", map[string]string{"a": "b"})
	if !errors.Is(err, ErrReinit) || err.Error() != "Reinitialization of metrics not allowed." {
		t.Fatalf("second Init = %v, want Firecracker's reinit error", err)
	}
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	if second.Len() != 0 || first.Len() == 0 {
		t.Fatalf("line went to the wrong writer (first %d bytes, second %d)", first.Len(), second.Len())
	}
	if bytes.Contains(first.Bytes(), []byte(`"id"`)) || bytes.Contains(first.Bytes(), []byte(`"properties"`)) {
		t.Fatal("the rejected Init changed the header")
	}
}

func TestFlushBeforeInitConsumesNothing(t *testing.T) {
	m := New(WithClock(fixedClock))
	m.Uart.WriteCount.Add(11)
	if err := m.Flush(); err != nil {
		t.Fatalf("Flush before Init = %v, want nil", err)
	}
	var buf bytes.Buffer
	if err := m.Init(&buf, false, "", nil); err != nil {
		t.Fatal(err)
	}
	expect(t, flushValues(t, m, &buf), map[string]uint64{"uart.write_count": 11})
}

func TestLineConsumesNothing(t *testing.T) {
	m, buf := newInit(t)
	m.MMDS.RxCount.Add(4)
	m.Block("d").ReadAgg.Record(6)
	for range 3 {
		_, v := leaves(t, m.Line())
		expect(t, v, map[string]uint64{"mmds.rx_count": 4, "block.read_agg.sum_us": 6})
	}
	if buf.Len() != 0 {
		t.Fatal("Line wrote to the destination")
	}
	expect(t, flushValues(t, m, buf), map[string]uint64{"mmds.rx_count": 4, "block.read_agg.sum_us": 6})
	_, v := leaves(t, m.Line())
	expect(t, v, map[string]uint64{"mmds.rx_count": 0, "block.read_agg.sum_us": 0})
}

// failingWriter fails while fail is set.
type failingWriter struct {
	fail bool
	buf  bytes.Buffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.fail {
		return 0, syscall.ENOSPC
	}
	return w.buf.Write(p)
}

func TestWriteFailure(t *testing.T) {
	m := New(WithClock(fixedClock))
	w := &failingWriter{fail: true}
	if err := m.Init(w, false, "", nil); err != nil {
		t.Fatal(err)
	}
	m.Vsock.TxBytesCount.Add(100)
	err := m.Flush()
	var we *WriteError
	if !errors.As(err, &we) || !errors.Is(err, ErrWrite) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush = %v, want a WriteError for ENOSPC", err)
	}
	if got, want := err.Error(), "Failed to write metrics: No space left on device (os error 28)"; got != want {
		t.Errorf("error text %q, want %q", got, want)
	}
	if m.Logger.MissedMetricsCount.Count() != 0 {
		t.Error("Flush counted a missed line; only the periodic write does")
	}
	if err := m.FlushPeriodic(); !errors.Is(err, ErrWrite) {
		t.Fatalf("FlushPeriodic = %v", err)
	}
	if m.Logger.MissedMetricsCount.Count() != 1 {
		t.Errorf("missed_metrics_count = %d after a failed periodic write, want 1", m.Logger.MissedMetricsCount.Count())
	}
	// The failed lines consumed nothing: the next written line carries it all.
	w.fail = false
	if err := m.FlushPeriodic(); err != nil {
		t.Fatal(err)
	}
	_, v := leaves(t, bytes.TrimSuffix(w.buf.Bytes(), []byte{'\n'}))
	expect(t, v, map[string]uint64{"vsock.tx_bytes_count": 100, "logger.missed_metrics_count": 1})
}

func TestWriteFailureBrokenPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r.Close()
	m := New()
	if err := m.Init(w, false, "", nil); err != nil {
		t.Fatal(err)
	}
	err = m.Flush()
	if got, want := errString(err), "Failed to write metrics: Broken pipe (os error 32)"; got != want {
		t.Fatalf("Flush to a pipe without reader = %q, want %q", got, want)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestAppendString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"\b\t\n\f\r", `"\b\t\n\f\r"`},
		{"\x00\x01\x1f\x7f", `"\u0000\u0001\u001f` + "\x7f\""},
		{"<&> é 日本 \u2028", "\"<&> é 日本 \u2028\""},
		{"bad\xffutf8", "\"bad\ufffdutf8\""},
	}
	for _, tt := range tests {
		if got := string(appendString(nil, tt.in)); got != tt.want {
			t.Errorf("appendString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestReportStartup(t *testing.T) {
	m := New()
	now := clockUs(unix.CLOCK_MONOTONIC)
	m.ReportStartTime(now - 2_000_000)
	if got := m.APIServer.ProcessStartupTimeUs.Get(); got < 2_000_000 || got > 60_000_000 {
		t.Errorf("process_startup_time_us = %d, want about 2 s", got)
	}
	m.ReportStartTime(now + 3_600_000_000)
	if got := m.APIServer.ProcessStartupTimeUs.Get(); got != 0 {
		t.Errorf("a start stamp in the future gave %d, want 0", got)
	}
	m.ReportCPUStartTime(0, 500)
	if got := m.APIServer.ProcessStartupTimeCPUUs.Get(); got <= 500 {
		t.Errorf("process_startup_time_cpu_us = %d, want our CPU time + 500", got)
	}
}

// TestConcurrent hammers counters, latencies and device registration while
// lines are written; every increment must show up in exactly one line.
func TestConcurrent(t *testing.T) {
	m := New(WithClock(fixedClock))
	var out bytes.Buffer
	if err := m.Init(&out, false, "", nil); err != nil {
		t.Fatal(err)
	}
	const workers, perWorker = 8, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
				if err := m.Flush(); err != nil {
					t.Error(err)
					return
				}
				_ = m.Line()
			}
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			blk := m.Block("d" + strconv.Itoa(w%3))
			for i := range perWorker {
				m.Vcpu.ExitMMIORead.Inc()
				m.Vcpu.ExitMMIOReadAgg.Record(uint64(i%7 + 1))
				blk.ReadBytes.Add(2)
				m.Net("eth" + strconv.Itoa(i%2)).RxCount.Inc()
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-flushed
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	var exits, bytesRead, aggBytes, rx, rxAgg, latSum uint64
	for _, line := range bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte{'\n'}), []byte{'\n'}) {
		_, v := leaves(t, line)
		num := func(k string) uint64 {
			n, err := strconv.ParseUint(v[k], 10, 64)
			if err != nil {
				t.Fatalf("%s: %q", k, v[k])
			}
			return n
		}
		exits += num("vcpu.exit_mmio_read")
		latSum += num("vcpu.exit_mmio_read_agg.sum_us")
		aggBytes += num("block.read_bytes")
		rxAgg += num("net.rx_count")
		for k := range v {
			if strings.HasPrefix(k, "block_") && strings.HasSuffix(k, ".read_bytes") {
				bytesRead += num(k)
			}
			if strings.HasPrefix(k, "net_") && strings.HasSuffix(k, ".rx_count") {
				rx += num(k)
			}
		}
	}
	total := uint64(workers * perWorker)
	if exits != total || rx != total || rxAgg != total || bytesRead != 2*total || aggBytes != 2*total {
		t.Errorf("deltas add up to exits %d, rx %d/%d, bytes %d/%d; want %d, %d, %d",
			exits, rx, rxAgg, bytesRead, aggBytes, total, total, 2*total)
	}
	if latSum != m.Vcpu.ExitMMIOReadAgg.Sum() {
		t.Errorf("latency sums add up to %d, want %d", latSum, m.Vcpu.ExitMMIOReadAgg.Sum())
	}
	if m.Vcpu.ExitMMIOReadAgg.Min() != 1 || m.Vcpu.ExitMMIOReadAgg.Max() != 7 {
		t.Errorf("min/max = %d/%d, want 1/7", m.Vcpu.ExitMMIOReadAgg.Min(), m.Vcpu.ExitMMIOReadAgg.Max())
	}
}

func BenchmarkFlush(b *testing.B) {
	m := New()
	if err := m.Init(discard{}, true, "bench", map[string]string{"k": "v"}); err != nil {
		b.Fatal(err)
	}
	m.Block("rootfs").ReadCount.Inc()
	m.Net("eth0").TxCount.Inc()
	b.ReportAllocs()
	for b.Loop() {
		m.Vcpu.ExitIOIn.Inc()
		if err := m.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(m.fr.b)), "bytes/line")
}

func BenchmarkCounterIncParallel(b *testing.B) {
	m := New()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Vcpu.ExitMMIOWrite.Inc()
		}
	})
}

func BenchmarkLatencyRecordParallel(b *testing.B) {
	m := New()
	b.RunParallel(func(pb *testing.PB) {
		var i uint64
		for pb.Next() {
			i++
			m.Vcpu.ExitMMIOWriteAgg.Record(i & 63)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
