package mptable

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/loader"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func sum(b []byte) uint8 {
	var s uint8
	for _, c := range b {
		s += c
	}
	return s
}

// parsed is what a guest reads out of the tables.
type parsed struct {
	apicIDs  []uint8
	bsp      uint8
	ioapicID uint8
	ioapic   uint32
	lapic    uint32
	irqs     map[uint8]uint8 // source IRQ -> IOAPIC pin
	lint     [][2]uint8      // (type, LINTn)
	buses    []string
}

// parse walks the tables the way Linux's MP parser does, checking
// signatures, lengths and checksums.
func parse(t *testing.T, b []byte, addr uint64) parsed {
	t.Helper()
	le := binary.LittleEndian
	if string(b[:4]) != "_MP_" || b[8] != 1 || b[9] != 4 || sum(b[:16]) != 0 {
		t.Fatalf("bad floating pointer % x", b[:16])
	}
	off := uint64(le.Uint32(b[4:])) - addr
	if off >= uint64(len(b)) {
		t.Fatalf("configuration table pointer %#x outside the tables", le.Uint32(b[4:]))
	}
	tb := b[off:]
	n := int(le.Uint16(tb[4:]))
	if string(tb[:4]) != "PCMP" || tb[6] != 4 || n > len(tb) || sum(tb[:n]) != 0 {
		t.Fatalf("bad configuration table header % x (length %d of %d)", tb[:44], n, len(tb))
	}
	p := parsed{lapic: le.Uint32(tb[36:]), irqs: map[uint8]uint8{}}
	count := 0
	for o := 44; o < n; count++ {
		switch tb[o] {
		case 0:
			p.apicIDs = append(p.apicIDs, tb[o+1])
			if tb[o+3]&2 != 0 {
				p.bsp = tb[o+1]
			}
			o += 20
		case 1:
			p.buses = append(p.buses, string(tb[o+2:o+8]))
			o += 8
		case 2:
			p.ioapicID, p.ioapic = tb[o+1], le.Uint32(tb[o+4:])
			o += 8
		case 3:
			if tb[o+6] != p.ioapicID {
				t.Errorf("IRQ %d routed to APIC %d, not the IOAPIC", tb[o+5], tb[o+6])
			}
			p.irqs[tb[o+5]] = tb[o+7]
			o += 8
		case 4:
			p.lint = append(p.lint, [2]uint8{tb[o+1], tb[o+7]})
			o += 8
		default:
			t.Fatalf("unknown entry type %d at %d", tb[o], o)
		}
	}
	if got := int(le.Uint16(tb[34:])); got != count {
		t.Errorf("entry count %d, table has %d", got, count)
	}
	return p
}

func TestBuild(t *testing.T) {
	for _, cpus := range []int{1, 2, 4, 32, MaxCPUs} {
		t.Run(fmt.Sprint(cpus), func(t *testing.T) {
			b, err := Build(Addr, cpus)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != Size(cpus) || Size(cpus) != 284+20*cpus {
				t.Errorf("size %d, Size %d, want %d", len(b), Size(cpus), 284+20*cpus)
			}
			p := parse(t, b, Addr)
			if len(p.apicIDs) != cpus || p.bsp != 0 {
				t.Errorf("%d processors, BSP %d", len(p.apicIDs), p.bsp)
			}
			for i, id := range p.apicIDs {
				if int(id) != i {
					t.Errorf("processor %d has APIC id %d", i, id)
				}
			}
			if int(p.ioapicID) != cpus+1 || p.ioapic != 0xfec00000 || p.lapic != 0xfee00000 {
				t.Errorf("IOAPIC id %d at %#x, LAPIC at %#x", p.ioapicID, p.ioapic, p.lapic)
			}
			if len(p.irqs) != 24 {
				t.Errorf("%d IRQs routed, want 24", len(p.irqs))
			}
			for irq, pin := range p.irqs {
				if irq != pin {
					t.Errorf("IRQ %d on pin %d", irq, pin)
				}
			}
			if fmt.Sprint(p.lint) != "[[3 0] [1 1]]" || fmt.Sprint(p.buses) != "[ISA   ]" {
				t.Errorf("local interrupts %v buses %q", p.lint, p.buses)
			}
		})
	}
	for _, bad := range []int{-1, 0, MaxCPUs + 1} {
		if _, err := Build(Addr, bad); !errors.Is(err, ErrTooManyCPUs) {
			t.Errorf("Build(%d) error %v, want ErrTooManyCPUs", bad, err)
		}
	}
}

func TestGolden(t *testing.T) {
	for _, cpus := range []int{1, 4} {
		b, err := Build(Addr, cpus)
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		for o := 0; o < len(b); o += 16 {
			fmt.Fprintf(&sb, "%08x  % x\n", Addr+o, b[o:min(o+16, len(b))])
		}
		path := filepath.Join("testdata", fmt.Sprintf("mptable-%dcpu.golden", cpus))
		if *update {
			if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -update creates it)", err)
		}
		if sb.String() != string(want) {
			t.Errorf("%s differs (go test -update rewrites it); got:\n%s", path, sb.String())
		}
	}
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name    string
		ram     uint64
		cpus    int
		wantErr error
	}{
		{"fits", 128 << 20, 2, nil},
		{"most vCPUs", 128 << 20, MaxCPUs, nil},
		{"too many vCPUs", 128 << 20, MaxCPUs + 1, ErrTooManyCPUs},
		{"RAM ends inside the table", Addr + 100, 1, ErrNotEnoughMemory},
		{"RAM ends before the table", 0x8_0000, 1, ErrNotEnoughMemory},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := guestmem.New([]guestmem.Region{{GPA: 0, Size: tt.ram}}, guestmem.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			end, err := Write(m, tt.cpus)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Write error %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				// Nothing was written.
				b := make([]byte, min(16, tt.ram-min(tt.ram, Addr)))
				m.ReadAt(b, Addr)
				if string(b) != string(make([]byte, len(b))) {
					t.Errorf("a failed Write left % x", b)
				}
				return
			}
			if end != Addr+uint64(Size(tt.cpus)) || end > loader.SystemMemEnd {
				t.Errorf("end %#x", end)
			}
			b := make([]byte, end-Addr)
			if err := m.ReadAt(b, Addr); err != nil {
				t.Fatal(err)
			}
			parse(t, b, Addr)
		})
	}
}
