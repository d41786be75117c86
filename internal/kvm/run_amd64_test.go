//go:build linux && amd64

package kvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// fakeRun is a kvm_run mapping filled the way the kernel fills it, at the
// offsets the C compiler reported (testdata/abi_amd64.golden), so these
// tests do not trust the Go struct they exercise.
type fakeRun struct {
	t   *testing.T
	buf []byte
	off map[string]uint64
}

func newFakeRun(t *testing.T, size int) *fakeRun {
	t.Helper()
	b, err := os.ReadFile(abiGolden)
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseFacts(b)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeRun{t: t, buf: make([]byte, size), off: m}
}

func (f *fakeRun) at(field string) uint64 {
	v, ok := f.off["offsetof(struct kvm_run, "+field+")"]
	if !ok {
		f.t.Fatalf("no offset for kvm_run.%s in the golden file", field)
	}
	return v
}

func (f *fakeRun) put8(field string, v uint8) { f.buf[f.at(field)] = v }
func (f *fakeRun) put16(field string, v uint16) {
	binary.LittleEndian.PutUint16(f.buf[f.at(field):], v)
}
func (f *fakeRun) put32(field string, v uint32) {
	binary.LittleEndian.PutUint32(f.buf[f.at(field):], v)
}
func (f *fakeRun) put64(field string, v uint64) {
	binary.LittleEndian.PutUint64(f.buf[f.at(field):], v)
}

func (f *fakeRun) data(t *testing.T) *RunData {
	t.Helper()
	d, err := newRunData(f.buf)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRunHeader(t *testing.T) {
	f := newFakeRun(t, 3*4096)
	f.put32("exit_reason", uint32(ExitHLT))
	f.put8("ready_for_interrupt_injection", 1)
	f.put8("if_flag", 1)
	f.put16("flags", 0x2)
	f.put64("cr8", 0xf)
	f.put64("apic_base", 0xfee00900)
	d := f.data(t)
	if d.ExitReason() != ExitHLT || !d.ReadyForInterruptInjection() || !d.IfFlag() ||
		d.Flags() != 2 || d.CR8() != 0xf || d.APICBase() != 0xfee00900 {
		t.Fatalf("header misread: reason %v ready %v if %v flags %d cr8 %d apic %#x",
			d.ExitReason(), d.ReadyForInterruptInjection(), d.IfFlag(), d.Flags(), d.CR8(), d.APICBase())
	}
	d.SetImmediateExit(true)
	if f.buf[f.at("immediate_exit")] != 1 || !d.ImmediateExit() {
		t.Fatal("SetImmediateExit(true) did not set the kernel's byte")
	}
	d.SetImmediateExit(false)
	if f.buf[f.at("immediate_exit")] != 0 || d.ImmediateExit() {
		t.Fatal("SetImmediateExit(false) did not clear the kernel's byte")
	}
	d.SetRequestInterruptWindow(true)
	if f.buf[f.at("request_interrupt_window")] != 1 || !d.RequestInterruptWindow() {
		t.Fatal("SetRequestInterruptWindow did not set the kernel's byte")
	}
}

func TestRunDataTooSmall(t *testing.T) {
	if _, err := newRunData(make([]byte, 100)); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("100-byte mapping: err %v, want ErrOutOfRange", err)
	}
	if _, err := newRunData(nil); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("nil mapping: err %v, want ErrOutOfRange", err)
	}
}

func TestIOExit(t *testing.T) {
	const size = 3 * 4096
	io := func(dir, sz uint8, port uint16, count uint32, off uint64) *fakeRun {
		f := newFakeRun(t, size)
		f.put32("exit_reason", uint32(ExitIO))
		f.put8("io.direction", dir)
		f.put8("io.size", sz)
		f.put16("io.port", port)
		f.put32("io.count", count)
		f.put64("io.data_offset", off)
		return f
	}
	t.Run("out", func(t *testing.T) {
		f := io(IODirectionOut, 1, 0x3f8, 2, 4096)
		copy(f.buf[4096:], "OK")
		e, err := f.data(t).IO()
		if err != nil {
			t.Fatal(err)
		}
		if !e.Out || e.Size != 1 || e.Port != 0x3f8 || e.Count != 2 || string(e.Data) != "OK" {
			t.Fatalf("got %+v", e)
		}
	})
	t.Run("in writes through", func(t *testing.T) {
		f := io(IODirectionIn, 4, 0xcfc, 1, 4096)
		e, err := f.data(t).IO()
		if err != nil {
			t.Fatal(err)
		}
		if e.Out || len(e.Data) != 4 || cap(e.Data) != 4 {
			t.Fatalf("got %+v (cap %d)", e, cap(e.Data))
		}
		binary.LittleEndian.PutUint32(e.Data, 0xdeadbeef)
		if got := binary.LittleEndian.Uint32(f.buf[4096:]); got != 0xdeadbeef {
			t.Fatalf("IN data not written into the mapping: %#x", got)
		}
	})
	for _, c := range []struct {
		name  string
		sz    uint8
		count uint32
		off   uint64
	}{
		{"offset past the mapping", 1, 1, size},
		{"offset far past", 1, 1, 1 << 62},
		{"length past the mapping", 4, 1024, 2*4096 + 1},
		{"count overflow", 4, 0xffffffff, 4096},
		{"offset inside kvm_run", 1, 1, 8},
		{"item size 3", 3, 1, 4096},
		{"item size 0", 0, 1, 4096},
		{"item size 8", 8, 1, 4096},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := io(IODirectionOut, c.sz, 0x3f8, c.count, c.off).data(t).IO()
			if !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("err %v, want ErrOutOfRange", err)
			}
		})
	}
	t.Run("exactly at the end", func(t *testing.T) {
		e, err := io(IODirectionOut, 2, 0x60, 8, size-16).data(t).IO()
		if err != nil || len(e.Data) != 16 {
			t.Fatalf("err %v, %d bytes", err, len(e.Data))
		}
	})
}

func TestMMIOExit(t *testing.T) {
	mk := func(n uint32, write uint8) *fakeRun {
		f := newFakeRun(t, 4096)
		f.put32("exit_reason", uint32(ExitMMIO))
		f.put64("mmio.phys_addr", 0xd0000000)
		f.put32("mmio.len", n)
		f.put8("mmio.is_write", write)
		copy(f.buf[f.at("mmio.data"):], []byte{1, 2, 3, 4, 5, 6, 7, 8})
		return f
	}
	f := mk(4, 1)
	e, err := f.data(t).MMIO()
	if err != nil {
		t.Fatal(err)
	}
	if e.Addr != 0xd0000000 || !e.IsWrite || !bytes.Equal(e.Data, []byte{1, 2, 3, 4}) || cap(e.Data) != 4 {
		t.Fatalf("got %+v", e)
	}
	f = mk(2, 0)
	e, err = f.data(t).MMIO()
	if err != nil || e.IsWrite || len(e.Data) != 2 {
		t.Fatalf("read: %+v, %v", e, err)
	}
	e.Data[0], e.Data[1] = 0xaa, 0xbb
	if d := f.at("mmio.data"); f.buf[d] != 0xaa || f.buf[d+1] != 0xbb {
		t.Fatal("read data not written into the mapping")
	}
	for _, n := range []uint32{9, 0xffffffff} {
		if _, err := mk(n, 1).data(t).MMIO(); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("len %d: err %v, want ErrOutOfRange", n, err)
		}
	}
}

func TestWrongExitAccessor(t *testing.T) {
	f := newFakeRun(t, 4096)
	f.put32("exit_reason", uint32(ExitHLT))
	d := f.data(t)
	checks := map[string]error{}
	_, checks["IO"] = d.IO()
	_, checks["MMIO"] = d.MMIO()
	_, checks["SystemEvent"] = d.SystemEvent()
	_, checks["FailEntry"] = d.FailEntry()
	_, checks["InternalError"] = d.InternalError()
	_, _, checks["Exception"] = d.Exception()
	_, checks["HardwareExitReason"] = d.HardwareExitReason()
	for name, err := range checks {
		if !errors.Is(err, ErrWrongExit) {
			t.Errorf("%s on a HLT exit: err %v, want ErrWrongExit", name, err)
		}
	}
}

func TestOtherExits(t *testing.T) {
	t.Run("system event", func(t *testing.T) {
		for _, c := range []struct {
			ndata uint32
			want  int
		}{{0, 0}, {1, 1}, {16, 16}, {1000, 16}} {
			f := newFakeRun(t, 4096)
			f.put32("exit_reason", uint32(ExitSystemEvent))
			f.put32("system_event.type", uint32(SystemEventReset))
			f.put32("system_event.ndata", c.ndata)
			for i := uint64(0); i < 16; i++ {
				binary.LittleEndian.PutUint64(f.buf[f.at("system_event.data")+8*i:], 100+i)
			}
			e, err := f.data(t).SystemEvent()
			if err != nil {
				t.Fatal(err)
			}
			if e.Type != SystemEventReset || e.Flags != 100 || len(e.Data) != c.want ||
				(c.want > 0 && e.Data[c.want-1] != 100+uint64(c.want-1)) {
				t.Fatalf("ndata %d: got %+v", c.ndata, e)
			}
		}
	})
	t.Run("internal error", func(t *testing.T) {
		f := newFakeRun(t, 4096)
		f.put32("exit_reason", uint32(ExitInternalError))
		f.put32("internal.suberror", InternalErrorEmulation)
		f.put32("internal.ndata", 99)
		binary.LittleEndian.PutUint64(f.buf[f.at("internal.data")+8*15:], 7)
		e, err := f.data(t).InternalError()
		if err != nil || e.Suberror != InternalErrorEmulation || len(e.Data) != 16 || e.Data[15] != 7 {
			t.Fatalf("got %+v, %v", e, err)
		}
	})
	t.Run("fail entry", func(t *testing.T) {
		f := newFakeRun(t, 4096)
		f.put32("exit_reason", uint32(ExitFailEntry))
		f.put64("fail_entry.hardware_entry_failure_reason", 0x80000021)
		f.put32("fail_entry.cpu", 3)
		e, err := f.data(t).FailEntry()
		if err != nil || e.HardwareEntryFailureReason != 0x80000021 || e.CPU != 3 {
			t.Fatalf("got %+v, %v", e, err)
		}
	})
	t.Run("exception", func(t *testing.T) {
		f := newFakeRun(t, 4096)
		f.put32("exit_reason", uint32(ExitException))
		f.put32("ex.exception", 13)
		f.put32("ex.error_code", 0x18)
		v, code, err := f.data(t).Exception()
		if err != nil || v != 13 || code != 0x18 {
			t.Fatalf("got %d %#x %v", v, code, err)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		f := newFakeRun(t, 4096)
		f.put32("exit_reason", uint32(ExitUnknown))
		f.put64("hw.hardware_exit_reason", 0x7b)
		v, err := f.data(t).HardwareExitReason()
		if err != nil || v != 0x7b {
			t.Fatalf("got %#x %v", v, err)
		}
	})
}
