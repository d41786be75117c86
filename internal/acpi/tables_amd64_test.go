package acpi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ember-vmm/ember/internal/guestmem"
	"github.com/ember-vmm/ember/internal/loader"
	"github.com/ember-vmm/ember/internal/mptable"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// sample is the machine of the golden files: two vCPUs, a root disk, a
// second disk and a network device.
var sample = Config{VCPUs: 2, Virtio: []VirtioDevice{
	{Addr: 0xc000_1000, Size: 0x1000, GSI: 5},
	{Addr: 0xc000_2000, Size: 0x1000, GSI: 6},
	{Addr: 0xc000_3000, Size: 0x1000, GSI: 7},
}}

// sampleStart is where the tables go after the sample's MP table.
var sampleStart = uint64(mptable.Addr + mptable.Size(2))

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// checkSDT checks a table's header as a guest's ACPI code does.
func checkSDT(t *testing.T, tb Table, sig string, revision byte) {
	t.Helper()
	b := tb.Data
	if len(b) < headerSize || string(b[:4]) != sig || tb.Signature != sig {
		t.Fatalf("table %q: bad signature or size %d", tb.Signature, len(b))
	}
	if n := binary.LittleEndian.Uint32(b[4:]); int(n) != len(b) {
		t.Errorf("%s: length field %d, table is %d bytes", sig, n, len(b))
	}
	if sum(b) != 0 {
		t.Errorf("%s: checksum does not sum to zero", sig)
	}
	if b[8] != revision || string(b[10:16]) != "EMBER " || string(b[28:32]) != "EMBR" {
		t.Errorf("%s: revision %d OEM %q creator %q", sig, b[8], b[10:16], b[28:32])
	}
}

func TestBuild(t *testing.T) {
	for _, vcpus := range []int{1, 2, 32, MaxVCPUs} {
		t.Run(fmt.Sprint(vcpus), func(t *testing.T) {
			cfg := sample
			cfg.VCPUs = vcpus
			tb, err := Build(sampleStart, cfg)
			if err != nil {
				t.Fatal(err)
			}
			le := binary.LittleEndian
			r := tb.RSDP.Data
			if tb.RSDP.Addr != loader.RSDPAddr || len(r) != 36 || string(r[:8]) != "RSD PTR " || sum(r[:20]) != 0 || sum(r) != 0 || r[15] != 2 || le.Uint32(r[20:]) != 36 {
				t.Errorf("bad RSDP at %#x: % x", tb.RSDP.Addr, r)
			}
			if le.Uint64(r[24:]) != tb.XSDT.Addr || le.Uint32(r[16:]) != 0 {
				t.Errorf("RSDP points at %#x/%#x, XSDT is at %#x", le.Uint64(r[24:]), le.Uint32(r[16:]), tb.XSDT.Addr)
			}
			checkSDT(t, tb.XSDT, "XSDT", 1)
			checkSDT(t, tb.FADT, "FACP", 6)
			checkSDT(t, tb.MADT, "APIC", 6)
			checkSDT(t, tb.DSDT, "DSDT", 2)
			x := tb.XSDT.Data[headerSize:]
			if len(x) != 16 || le.Uint64(x) != tb.FADT.Addr || le.Uint64(x[8:]) != tb.MADT.Addr {
				t.Errorf("XSDT entries % x; FADT %#x MADT %#x", x, tb.FADT.Addr, tb.MADT.Addr)
			}
			f := tb.FADT.Data
			if len(f) != 276 || le.Uint64(f[140:]) != tb.DSDT.Addr || le.Uint32(f[40:]) != 0 {
				t.Errorf("FADT length %d X_DSDT %#x DSDT %#x", len(f), le.Uint64(f[140:]), le.Uint32(f[40:]))
			}
			if le.Uint32(f[112:]) != 1<<20|1<<4|1<<5 || le.Uint16(f[109:]) != 1<<2 || f[131] != 5 || string(f[268:]) != "EMBERVMM" {
				t.Errorf("FADT flags %#x boot arch %#x minor %d vendor %q", le.Uint32(f[112:]), le.Uint16(f[109:]), f[131], f[268:])
			}
			checkMADT(t, tb.MADT.Data, vcpus)
			// Tables are placed in order from start, aligned, not overlapping.
			prev := sampleStart
			for _, tbl := range tb.All()[:4] {
				if tbl.Addr < prev || tbl.Addr%8 != 0 {
					t.Errorf("%s at %#x, after %#x", tbl.Signature, tbl.Addr, prev)
				}
				prev = tbl.Addr + uint64(len(tbl.Data))
			}
			if tb.End != prev || tb.End > loader.SystemMemEnd {
				t.Errorf("End %#x, last table ends at %#x", tb.End, prev)
			}
		})
	}
}

func checkMADT(t *testing.T, m []byte, vcpus int) {
	t.Helper()
	le := binary.LittleEndian
	if le.Uint32(m[36:]) != 0xfee00000 || le.Uint32(m[40:]) != 0 {
		t.Errorf("MADT LAPIC address %#x flags %#x", le.Uint32(m[36:]), le.Uint32(m[40:]))
	}
	var lapics []byte
	ioapics := 0
	for o := 44; o < len(m); {
		typ, n := m[o], int(m[o+1])
		if n < 2 || o+n > len(m) {
			t.Fatalf("MADT entry at %d has length %d", o, n)
		}
		switch typ {
		case 0:
			if n != 8 || m[o+2] != m[o+3] || le.Uint32(m[o+4:]) != 1 {
				t.Errorf("local APIC entry % x", m[o:o+n])
			}
			lapics = append(lapics, m[o+3])
		case 1:
			if n != 12 || m[o+2] != 0 || le.Uint32(m[o+4:]) != 0xfec00000 || le.Uint32(m[o+8:]) != 0 {
				t.Errorf("IOAPIC entry % x", m[o:o+n])
			}
			ioapics++
		default:
			t.Errorf("unexpected MADT entry type %d", typ)
		}
		o += n
	}
	if len(lapics) != vcpus || ioapics != 1 {
		t.Fatalf("%d local APICs, %d IOAPICs; want %d, 1", len(lapics), ioapics, vcpus)
	}
	for i, id := range lapics {
		if int(id) != i {
			t.Errorf("local APIC %d has id %d", i, id)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	dev := func(addr, size uint64, gsi uint32) Config {
		return Config{VCPUs: 1, Virtio: []VirtioDevice{{addr, size, gsi}}}
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no vCPUs", Config{}},
		{"too many vCPUs", Config{VCPUs: MaxVCPUs + 1}},
		{"GSI beyond the IOAPIC", dev(0xc0001000, 0x1000, 24)},
		{"device above 4 GiB", dev(0xffff_f000, 0x2000, 5)},
		{"empty device", dev(0xc0001000, 0, 5)},
		{"wrapping device", dev(^uint64(0)-10, 0x1000, 5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Build(sampleStart, tt.cfg); !errors.Is(err, ErrConfig) {
				t.Errorf("Build error %v, want ErrConfig", err)
			}
		})
	}
}

func newMem(t *testing.T, size uint64) *guestmem.Memory {
	t.Helper()
	m, err := guestmem.New([]guestmem.Region{{GPA: 0, Size: size}}, guestmem.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name    string
		ram     uint64
		start   uint64
		wantErr error
	}{
		{"after the MP table", 128 << 20, sampleStart, nil},
		{"at the start of the system area", 128 << 20, loader.SystemMemStart, nil},
		{"past the RSDP", 128 << 20, loader.SystemMemEnd - 64, ErrNoSpace},
		{"below the system area", 128 << 20, 0x1000, ErrNoSpace},
		{"RAM ends inside the system area", loader.SystemMemStart + 0x100, sampleStart, ErrNoSpace},
		{"RAM ends before the RSDP", 0xd0000, sampleStart, ErrNoSpace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMem(t, tt.ram)
			end, err := Write(m, tt.start, sample)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Write error %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				// Nothing was written.
				area := make([]byte, min(tt.ram, loader.SystemMemEnd)-loader.SystemMemStart)
				m.ReadAt(area, loader.SystemMemStart)
				if !bytes.Equal(area, make([]byte, len(area))) {
					t.Error("a failed Write left bytes in the system area")
				}
				return
			}
			want, _ := Build(tt.start, sample)
			if end != want.End {
				t.Errorf("end %#x, want %#x", end, want.End)
			}
			for _, tb := range want.All() {
				got := make([]byte, len(tb.Data))
				if err := m.ReadAt(got, tb.Addr); err != nil || !bytes.Equal(got, tb.Data) {
					t.Errorf("%s not written at %#x (%v)", tb.Signature, tb.Addr, err)
				}
			}
		})
	}
	// The MP table and the ACPI tables share the system area.
	m := newMem(t, 128<<20)
	mpEnd, err := mptable.Write(m, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(m, mpEnd, Config{VCPUs: 4}); err != nil {
		t.Fatal(err)
	}
	mp := make([]byte, 4)
	m.ReadAt(mp, mptable.Addr)
	if string(mp) != "_MP_" {
		t.Errorf("the ACPI tables overwrote the MP table: % x", mp)
	}
}

func hexdump(base uint64, b []byte) string {
	var sb strings.Builder
	for o := 0; o < len(b); o += 16 {
		fmt.Fprintf(&sb, "%08x  % x\n", base+uint64(o), b[o:min(o+16, len(b))])
	}
	return sb.String()
}

// TestGolden pins the bytes of the sample machine's tables.
func TestGolden(t *testing.T) {
	tb, err := Build(sampleStart, sample)
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range tb.All() {
		name := map[string]string{"RSD PTR ": "rsdp"}[tbl.Signature]
		if name == "" {
			name = strings.ToLower(tbl.Signature)
		}
		name += ".golden"
		path := filepath.Join("testdata", name)
		got := hexdump(tbl.Addr, tbl.Data)
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -update creates it)", err)
		}
		if got != string(want) {
			t.Errorf("%s differs (go test -update rewrites it); got:\n%s", path, got)
		}
	}
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("SKIP LOUDLY: %s not found; the ACPI tables are NOT checked by ACPICA (apt-get install acpica-tools)", name)
	}
	return p
}

// TestACPICA has ACPICA's disassembler read every table, then its
// compiler rebuild each from the disassembly: the rebuilt tables must be
// byte for byte ours (the compiler's own creator fields aside).
func TestACPICA(t *testing.T) {
	iasl := needTool(t, "iasl")
	tb, err := Build(sampleStart, sample)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tbl := range []Table{tb.DSDT, tb.FADT, tb.MADT, tb.XSDT} {
		t.Run(tbl.Signature, func(t *testing.T) {
			base := filepath.Join(dir, tbl.Signature)
			if err := os.WriteFile(base+".dat", tbl.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(iasl, "-d", base+".dat").CombinedOutput()
			if err != nil {
				t.Fatalf("iasl -d: %v\n%s", err, out)
			}
			dsl, err := os.ReadFile(base + ".dsl")
			if err != nil {
				t.Fatalf("no disassembly: %v\n%s", err, out)
			}
			if bad := regexp.MustCompile(`(?i)(error|warning|incorrect|invalid|unknown)`).Find(dsl); bad != nil {
				t.Errorf("disassembly mentions %q:\n%s", bad, dsl)
			}
			if *update && tbl.Signature == "DSDT" {
				// For readers: the DSDT as ASL, its dated banner dropped.
				body := dsl[bytes.Index(dsl, []byte("DefinitionBlock")):]
				os.WriteFile(filepath.Join("testdata", "dsdt.dsl"), body, 0o644)
			}
			out, err = exec.Command(iasl, "-p", base+"_re", base+".dsl").CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("0 Errors, 0 Warnings")) {
				t.Fatalf("iasl could not rebuild the table: %v\n%s", err, out)
			}
			re, err := os.ReadFile(base + "_re.aml")
			if err != nil {
				t.Fatal(err)
			}
			// Bytes 0..27 (signature to OEM revision, checksum aside) and the
			// body must match; the creator fields are the compiler's own.
			if len(re) != len(tbl.Data) || !bytes.Equal(re[:9], tbl.Data[:9]) || !bytes.Equal(re[10:28], tbl.Data[10:28]) ||
				!bytes.Equal(re[headerSize:], tbl.Data[headerSize:]) {
				t.Errorf("rebuilt table differs:\n ours %s\niasl's %s", hexdump(0, tbl.Data), hexdump(0, re))
			}
		})
	}
	dsl, _ := os.ReadFile(filepath.Join(dir, "DSDT.dsl"))
	for _, want := range []string{
		`Device (_SB.V000)`, `Device (_SB.V002)`, `Name (_HID, "LNRO0005")`, `Name (_UID, 0x02)`,
		"Memory32Fixed (ReadWrite,\n                0xC0003000,", "0x00000007,",
		`Device (_SB.COM1)`, `EisaId ("PNP0501")`, `Device (_SB.PS2)`, `EisaId ("PNP0303")`,
		"IO (Decode16,\n                0x0064,", "0x00000001,",
	} {
		if !bytes.Contains(dsl, []byte(want)) {
			t.Errorf("DSDT disassembly lacks %q", want)
		}
	}
}

// TestACPIExec loads the DSDT into ACPICA's interpreter and evaluates the
// objects a guest evaluates.
func TestACPIExec(t *testing.T) {
	acpiexec := needTool(t, "acpiexec")
	tb, err := Build(sampleStart, sample)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dsdt.dat")
	if err := os.WriteFile(path, tb.DSDT.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(acpiexec, "-b",
		`Evaluate \_SB.PS2_._STA; Evaluate \_SB.V001._CRS; Evaluate \_SB.V001._HID; Evaluate \_SB.COM1._CRS`, path).CombinedOutput()
	if err != nil {
		t.Fatalf("acpiexec: %v\n%s", err, out)
	}
	for _, want := range []string{
		"[Integer] = 000000000000000F",
		"[String] Length 08 = \"LNRO0005\"",
		"86 09 00 01 00 20 00 C0 00 10 00 00 89 06 00 03", // V001: its registers and an edge, active-high consumer interrupt
		"89 06 00 03 01 04 00 00 00 47 01 F8 03 F8 03 01", // COM1: IRQ 4, ports 0x3f8
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("acpiexec output lacks %q:\n%s", want, out)
		}
	}
	if bad := regexp.MustCompile(`(?i)(AE_[A-Z_]+ERROR|exception|AE_NOT_FOUND)`).Find(out); bad != nil {
		t.Errorf("acpiexec reports %q:\n%s", bad, out)
	}
}
