package kvmstate

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/ember-vmm/ember/internal/kvm"
)

// FormatVersion is the version of the encoding Marshal writes and
// Unmarshal reads. Any change to the field set or meaning of the encoding
// increments it.
const FormatVersion = 1

// Arch names the architecture whose state the encoding holds.
const Arch = "x86_64"

// Bounds on decoded sizes: far above what KVM produces, low enough that a
// corrupt file cannot make restore allocate without limit.
const (
	maxVCPUs      = 256
	maxCPUID      = 256
	maxMSRs       = 4096
	maxXSAVEBytes = 1 << 20
	lapicBytes    = len(kvm.LAPICState{}.Regs)
	minXSAVEBytes = 4096
	maxXCRs       = len(kvm.XCRS{}.XCRS)
)

// State is a whole VM's KVM state: the VM-wide part and one VCPUState per
// vCPU, in vCPU id order.
type State struct {
	VM    *VMState
	VCPUs []*VCPUState
}

// envelope is the encoded State. The version and architecture are read
// before anything else so a newer format is reported as ErrVersion rather
// than as a decoding error.
type envelope struct {
	Version int               `json:"version"`
	Arch    string            `json:"arch"`
	VM      json.RawMessage   `json:"vm"`
	VCPUs   []json.RawMessage `json:"vcpus"`
}

// Marshal encodes s as JSON: a version and architecture, then the VM and
// vCPU states, with the XSAVE area and LAPIC page as base64.
func Marshal(s *State) ([]byte, error) {
	if s == nil || s.VM == nil {
		return nil, fmt.Errorf("kvmstate: marshal: no VM state: %w", ErrFormat)
	}
	if len(s.VCPUs) == 0 || len(s.VCPUs) > maxVCPUs {
		return nil, fmt.Errorf("kvmstate: marshal: %d vCPUs: %w", len(s.VCPUs), ErrFormat)
	}
	vm, err := s.VM.MarshalJSON()
	if err != nil {
		return nil, err
	}
	env := envelope{Version: FormatVersion, Arch: Arch, VM: vm}
	for i, c := range s.VCPUs {
		if c == nil {
			return nil, fmt.Errorf("kvmstate: marshal: vCPU %d has no state: %w", i, ErrFormat)
		}
		b, err := c.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("kvmstate: marshal vCPU %d: %w", i, err)
		}
		env.VCPUs = append(env.VCPUs, b)
	}
	return json.Marshal(&env)
}

// Unmarshal decodes what Marshal wrote. A different version or
// architecture is ErrVersion; anything malformed, unknown or out of bounds
// is ErrFormat.
func Unmarshal(b []byte) (*State, error) {
	var head struct {
		Version *int   `json:"version"`
		Arch    string `json:"arch"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("kvmstate: %v: %w", err, ErrFormat)
	}
	if err := checkVersion(head.Version, head.Arch); err != nil {
		return nil, err
	}
	var env envelope
	if err := strictDecode(b, &env); err != nil {
		return nil, err
	}
	if len(env.VCPUs) == 0 || len(env.VCPUs) > maxVCPUs {
		return nil, fmt.Errorf("kvmstate: %d vCPUs: %w", len(env.VCPUs), ErrFormat)
	}
	if len(env.VM) == 0 || string(env.VM) == "null" {
		return nil, fmt.Errorf("kvmstate: no VM state: %w", ErrFormat)
	}
	s := &State{VM: &VMState{}}
	if err := s.VM.UnmarshalJSON(env.VM); err != nil {
		return nil, err
	}
	for i, raw := range env.VCPUs {
		c := &VCPUState{}
		if err := c.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("vCPU %d: %w", i, err)
		}
		s.VCPUs = append(s.VCPUs, c)
	}
	return s, nil
}

func checkVersion(v *int, arch string) error {
	if v == nil {
		return fmt.Errorf("kvmstate: no format version: %w", ErrFormat)
	}
	if *v != FormatVersion {
		return fmt.Errorf("kvmstate: format version %d, this build reads %d: %w", *v, FormatVersion, ErrVersion)
	}
	if arch != Arch {
		return fmt.Errorf("kvmstate: state for architecture %q, this build reads %q: %w", arch, Arch, ErrVersion)
	}
	return nil
}

// strictDecode decodes exactly one JSON value with no unknown fields and
// nothing but white space after it.
func strictDecode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("kvmstate: %v: %w", err, ErrFormat)
	}
	if len(bytes.TrimSpace(b[d.InputOffset():])) != 0 {
		return fmt.Errorf("kvmstate: data after the state: %w", ErrFormat)
	}
	return nil
}

// The encoded forms. Field names are fixed here, apart from the Go names
// of internal/kvm, so renaming a Go field never changes the format.

type cpuidJSON struct {
	Function uint32 `json:"function"`
	Index    uint32 `json:"index"`
	Flags    uint32 `json:"flags"`
	EAX      uint32 `json:"eax"`
	EBX      uint32 `json:"ebx"`
	ECX      uint32 `json:"ecx"`
	EDX      uint32 `json:"edx"`
}

type msrJSON struct {
	Index uint32 `json:"index"`
	Data  uint64 `json:"data"`
}

type regsJSON struct {
	RAX    uint64 `json:"rax"`
	RBX    uint64 `json:"rbx"`
	RCX    uint64 `json:"rcx"`
	RDX    uint64 `json:"rdx"`
	RSI    uint64 `json:"rsi"`
	RDI    uint64 `json:"rdi"`
	RSP    uint64 `json:"rsp"`
	RBP    uint64 `json:"rbp"`
	R8     uint64 `json:"r8"`
	R9     uint64 `json:"r9"`
	R10    uint64 `json:"r10"`
	R11    uint64 `json:"r11"`
	R12    uint64 `json:"r12"`
	R13    uint64 `json:"r13"`
	R14    uint64 `json:"r14"`
	R15    uint64 `json:"r15"`
	RIP    uint64 `json:"rip"`
	RFLAGS uint64 `json:"rflags"`
}

type segmentJSON struct {
	Base     uint64 `json:"base"`
	Limit    uint32 `json:"limit"`
	Selector uint16 `json:"selector"`
	Type     uint8  `json:"type"`
	Present  uint8  `json:"present"`
	DPL      uint8  `json:"dpl"`
	DB       uint8  `json:"db"`
	S        uint8  `json:"s"`
	L        uint8  `json:"l"`
	G        uint8  `json:"g"`
	AVL      uint8  `json:"avl"`
	Unusable uint8  `json:"unusable"`
}

type dtableJSON struct {
	Base  uint64 `json:"base"`
	Limit uint16 `json:"limit"`
}

type sregsJSON struct {
	CS              segmentJSON `json:"cs"`
	DS              segmentJSON `json:"ds"`
	ES              segmentJSON `json:"es"`
	FS              segmentJSON `json:"fs"`
	GS              segmentJSON `json:"gs"`
	SS              segmentJSON `json:"ss"`
	TR              segmentJSON `json:"tr"`
	LDT             segmentJSON `json:"ldt"`
	GDT             dtableJSON  `json:"gdt"`
	IDT             dtableJSON  `json:"idt"`
	CR0             uint64      `json:"cr0"`
	CR2             uint64      `json:"cr2"`
	CR3             uint64      `json:"cr3"`
	CR4             uint64      `json:"cr4"`
	CR8             uint64      `json:"cr8"`
	EFER            uint64      `json:"efer"`
	APICBase        uint64      `json:"apic_base"`
	InterruptBitmap [4]uint64   `json:"interrupt_bitmap"`
}

type eventsJSON struct {
	Exception struct {
		Injected     uint8  `json:"injected"`
		Nr           uint8  `json:"nr"`
		HasErrorCode uint8  `json:"has_error_code"`
		Pending      uint8  `json:"pending"`
		ErrorCode    uint32 `json:"error_code"`
	} `json:"exception"`
	Interrupt struct {
		Injected uint8 `json:"injected"`
		Nr       uint8 `json:"nr"`
		Soft     uint8 `json:"soft"`
		Shadow   uint8 `json:"shadow"`
	} `json:"interrupt"`
	NMI struct {
		Injected uint8 `json:"injected"`
		Pending  uint8 `json:"pending"`
		Masked   uint8 `json:"masked"`
	} `json:"nmi"`
	SIPIVector uint32 `json:"sipi_vector"`
	Flags      uint32 `json:"flags"`
	SMI        struct {
		SMM          uint8 `json:"smm"`
		Pending      uint8 `json:"pending"`
		SMMInsideNMI uint8 `json:"smm_inside_nmi"`
		LatchedInit  uint8 `json:"latched_init"`
	} `json:"smi"`
	TripleFaultPending  uint8  `json:"triple_fault_pending"`
	ExceptionHasPayload uint8  `json:"exception_has_payload"`
	ExceptionPayload    uint64 `json:"exception_payload"`
}

type debugRegsJSON struct {
	DB    [4]uint64 `json:"db"`
	DR6   uint64    `json:"dr6"`
	DR7   uint64    `json:"dr7"`
	Flags uint64    `json:"flags"`
}

type xcrJSON struct {
	XCR   uint32 `json:"xcr"`
	Value uint64 `json:"value"`
}

type xcrsJSON struct {
	Flags uint32    `json:"flags"`
	XCRS  []xcrJSON `json:"xcrs"`
}

type vcpuJSON struct {
	Version   *int          `json:"version"`
	CPUID     []cpuidJSON   `json:"cpuid"`
	MSRs      []msrJSON     `json:"msrs"`
	DebugRegs debugRegsJSON `json:"debug_regs"`
	LAPIC     []byte        `json:"lapic"`
	MPState   uint32        `json:"mp_state"`
	Regs      regsJSON      `json:"regs"`
	Sregs     sregsJSON     `json:"sregs"`
	Events    eventsJSON    `json:"vcpu_events"`
	XCRS      xcrsJSON      `json:"xcrs"`
	XSAVE     []byte        `json:"xsave"`
	TSCKHz    uint32        `json:"tsc_khz"`
}

func segToJSON(s kvm.Segment) segmentJSON {
	return segmentJSON{s.Base, s.Limit, s.Selector, s.Type, s.Present, s.DPL, s.DB, s.S, s.L, s.G, s.AVL, s.Unusable}
}

func segFromJSON(j segmentJSON) kvm.Segment {
	return kvm.Segment{Base: j.Base, Limit: j.Limit, Selector: j.Selector, Type: j.Type, Present: j.Present,
		DPL: j.DPL, DB: j.DB, S: j.S, L: j.L, G: j.G, AVL: j.AVL, Unusable: j.Unusable}
}

// MarshalJSON encodes the vCPU state, with the format version.
func (s *VCPUState) MarshalJSON() ([]byte, error) {
	v := FormatVersion
	j := vcpuJSON{
		Version: &v,
		CPUID:   make([]cpuidJSON, 0, len(s.CPUID)),
		MSRs:    make([]msrJSON, 0, len(s.MSRs)),
		LAPIC:   s.LAPIC.Regs[:],
		MPState: uint32(s.MPState),
		XSAVE:   s.XSAVE,
		TSCKHz:  s.TSCKHz,
	}
	for _, e := range s.CPUID {
		j.CPUID = append(j.CPUID, cpuidJSON{e.Function, e.Index, e.Flags, e.EAX, e.EBX, e.ECX, e.EDX})
	}
	for _, m := range s.MSRs {
		j.MSRs = append(j.MSRs, msrJSON{m.Index, m.Data})
	}
	d := &s.DebugRegs
	j.DebugRegs = debugRegsJSON{d.DB, d.DR6, d.DR7, d.Flags}
	r := &s.Regs
	j.Regs = regsJSON{r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI, r.RSP, r.RBP,
		r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15, r.RIP, r.RFLAGS}
	sr := &s.Sregs
	j.Sregs = sregsJSON{
		CS: segToJSON(sr.CS), DS: segToJSON(sr.DS), ES: segToJSON(sr.ES), FS: segToJSON(sr.FS),
		GS: segToJSON(sr.GS), SS: segToJSON(sr.SS), TR: segToJSON(sr.TR), LDT: segToJSON(sr.LDT),
		GDT: dtableJSON{sr.GDT.Base, sr.GDT.Limit}, IDT: dtableJSON{sr.IDT.Base, sr.IDT.Limit},
		CR0: sr.CR0, CR2: sr.CR2, CR3: sr.CR3, CR4: sr.CR4, CR8: sr.CR8, EFER: sr.EFER,
		APICBase: sr.APICBase, InterruptBitmap: sr.InterruptBitmap,
	}
	e, je := &s.Events, &j.Events
	je.Exception.Injected, je.Exception.Nr = e.Exception.Injected, e.Exception.Nr
	je.Exception.HasErrorCode, je.Exception.Pending = e.Exception.HasErrorCode, e.Exception.Pending
	je.Exception.ErrorCode = e.Exception.ErrorCode
	je.Interrupt.Injected, je.Interrupt.Nr = e.Interrupt.Injected, e.Interrupt.Nr
	je.Interrupt.Soft, je.Interrupt.Shadow = e.Interrupt.Soft, e.Interrupt.Shadow
	je.NMI.Injected, je.NMI.Pending, je.NMI.Masked = e.NMI.Injected, e.NMI.Pending, e.NMI.Masked
	je.SIPIVector, je.Flags = e.SIPIVector, e.Flags
	je.SMI.SMM, je.SMI.Pending = e.SMI.SMM, e.SMI.Pending
	je.SMI.SMMInsideNMI, je.SMI.LatchedInit = e.SMI.SMMInsideNMI, e.SMI.LatchedInit
	je.TripleFaultPending = e.TripleFault.Pending
	je.ExceptionHasPayload, je.ExceptionPayload = e.ExceptionHasPayload, e.ExceptionPayload
	n := int(s.XCRS.NrXCRS)
	if n > maxXCRs {
		return nil, fmt.Errorf("kvmstate: %d XCRs: %w", n, ErrFormat)
	}
	j.XCRS = xcrsJSON{Flags: s.XCRS.Flags, XCRS: make([]xcrJSON, 0, n)}
	for _, x := range s.XCRS.XCRS[:n] {
		j.XCRS.XCRS = append(j.XCRS.XCRS, xcrJSON{x.XCR, x.Value})
	}
	return json.Marshal(&j)
}

// UnmarshalJSON decodes a vCPU state MarshalJSON wrote, checking version
// and bounds.
func (s *VCPUState) UnmarshalJSON(b []byte) error {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return fmt.Errorf("kvmstate: vCPU state: %v: %w", err, ErrFormat)
	}
	if err := checkVersion(head.Version, Arch); err != nil {
		return err
	}
	var j vcpuJSON
	if err := strictDecode(b, &j); err != nil {
		return err
	}
	switch {
	case len(j.CPUID) > maxCPUID:
		return fmt.Errorf("kvmstate: %d CPUID entries, at most %d: %w", len(j.CPUID), maxCPUID, ErrFormat)
	case len(j.MSRs) > maxMSRs:
		return fmt.Errorf("kvmstate: %d MSRs, at most %d: %w", len(j.MSRs), maxMSRs, ErrFormat)
	case len(j.LAPIC) != lapicBytes:
		return fmt.Errorf("kvmstate: LAPIC page of %d bytes, want %d: %w", len(j.LAPIC), lapicBytes, ErrFormat)
	case len(j.XSAVE) < minXSAVEBytes || len(j.XSAVE) > maxXSAVEBytes || len(j.XSAVE)%4 != 0:
		return fmt.Errorf("kvmstate: XSAVE area of %d bytes: %w", len(j.XSAVE), ErrFormat)
	case len(j.XCRS.XCRS) > maxXCRs:
		return fmt.Errorf("kvmstate: %d XCRs, at most %d: %w", len(j.XCRS.XCRS), maxXCRs, ErrFormat)
	}
	out := VCPUState{
		CPUID:   make([]kvm.CPUIDEntry, 0, len(j.CPUID)),
		MSRs:    make([]kvm.MSREntry, 0, len(j.MSRs)),
		MPState: kvm.MPState(j.MPState),
		XSAVE:   j.XSAVE,
		TSCKHz:  j.TSCKHz,
	}
	copy(out.LAPIC.Regs[:], j.LAPIC)
	for _, e := range j.CPUID {
		out.CPUID = append(out.CPUID, kvm.CPUIDEntry{Function: e.Function, Index: e.Index, Flags: e.Flags,
			EAX: e.EAX, EBX: e.EBX, ECX: e.ECX, EDX: e.EDX})
	}
	for _, m := range j.MSRs {
		out.MSRs = append(out.MSRs, kvm.MSREntry{Index: m.Index, Data: m.Data})
	}
	d := j.DebugRegs
	out.DebugRegs = kvm.DebugRegs{DB: d.DB, DR6: d.DR6, DR7: d.DR7, Flags: d.Flags}
	r := j.Regs
	out.Regs = kvm.Regs{RAX: r.RAX, RBX: r.RBX, RCX: r.RCX, RDX: r.RDX, RSI: r.RSI, RDI: r.RDI, RSP: r.RSP, RBP: r.RBP,
		R8: r.R8, R9: r.R9, R10: r.R10, R11: r.R11, R12: r.R12, R13: r.R13, R14: r.R14, R15: r.R15, RIP: r.RIP, RFLAGS: r.RFLAGS}
	sr := j.Sregs
	out.Sregs = kvm.Sregs{
		CS: segFromJSON(sr.CS), DS: segFromJSON(sr.DS), ES: segFromJSON(sr.ES), FS: segFromJSON(sr.FS),
		GS: segFromJSON(sr.GS), SS: segFromJSON(sr.SS), TR: segFromJSON(sr.TR), LDT: segFromJSON(sr.LDT),
		GDT: kvm.DTable{Base: sr.GDT.Base, Limit: sr.GDT.Limit}, IDT: kvm.DTable{Base: sr.IDT.Base, Limit: sr.IDT.Limit},
		CR0: sr.CR0, CR2: sr.CR2, CR3: sr.CR3, CR4: sr.CR4, CR8: sr.CR8, EFER: sr.EFER,
		APICBase: sr.APICBase, InterruptBitmap: sr.InterruptBitmap,
	}
	je, e := &j.Events, &out.Events
	e.Exception.Injected, e.Exception.Nr = je.Exception.Injected, je.Exception.Nr
	e.Exception.HasErrorCode, e.Exception.Pending = je.Exception.HasErrorCode, je.Exception.Pending
	e.Exception.ErrorCode = je.Exception.ErrorCode
	e.Interrupt.Injected, e.Interrupt.Nr = je.Interrupt.Injected, je.Interrupt.Nr
	e.Interrupt.Soft, e.Interrupt.Shadow = je.Interrupt.Soft, je.Interrupt.Shadow
	e.NMI.Injected, e.NMI.Pending, e.NMI.Masked = je.NMI.Injected, je.NMI.Pending, je.NMI.Masked
	e.SIPIVector, e.Flags = je.SIPIVector, je.Flags
	e.SMI.SMM, e.SMI.Pending = je.SMI.SMM, je.SMI.Pending
	e.SMI.SMMInsideNMI, e.SMI.LatchedInit = je.SMI.SMMInsideNMI, je.SMI.LatchedInit
	e.TripleFault.Pending = je.TripleFaultPending
	e.ExceptionHasPayload, e.ExceptionPayload = je.ExceptionHasPayload, je.ExceptionPayload
	out.XCRS.Flags = j.XCRS.Flags
	out.XCRS.NrXCRS = uint32(len(j.XCRS.XCRS))
	for i, x := range j.XCRS.XCRS {
		out.XCRS.XCRS[i] = kvm.XCR{XCR: x.XCR, Value: x.Value}
	}
	*s = out
	return nil
}

type picJSON struct {
	LastIRR                uint8 `json:"last_irr"`
	IRR                    uint8 `json:"irr"`
	IMR                    uint8 `json:"imr"`
	ISR                    uint8 `json:"isr"`
	PriorityAdd            uint8 `json:"priority_add"`
	IRQBase                uint8 `json:"irq_base"`
	ReadRegSelect          uint8 `json:"read_reg_select"`
	Poll                   uint8 `json:"poll"`
	SpecialMask            uint8 `json:"special_mask"`
	InitState              uint8 `json:"init_state"`
	AutoEOI                uint8 `json:"auto_eoi"`
	RotateOnAutoEOI        uint8 `json:"rotate_on_auto_eoi"`
	SpecialFullyNestedMode uint8 `json:"special_fully_nested_mode"`
	Init4                  uint8 `json:"init4"`
	ELCR                   uint8 `json:"elcr"`
	ELCRMask               uint8 `json:"elcr_mask"`
}

type ioapicJSON struct {
	BaseAddress uint64                    `json:"base_address"`
	IORegSel    uint32                    `json:"ioregsel"`
	ID          uint32                    `json:"id"`
	IRR         uint32                    `json:"irr"`
	RedirTbl    [kvm.IOAPICNumPins]uint64 `json:"redirtbl"`
}

type pitChannelJSON struct {
	Count         uint32 `json:"count"`
	LatchedCount  uint16 `json:"latched_count"`
	CountLatched  uint8  `json:"count_latched"`
	StatusLatched uint8  `json:"status_latched"`
	Status        uint8  `json:"status"`
	ReadState     uint8  `json:"read_state"`
	WriteState    uint8  `json:"write_state"`
	WriteLatch    uint8  `json:"write_latch"`
	RWMode        uint8  `json:"rw_mode"`
	Mode          uint8  `json:"mode"`
	BCD           uint8  `json:"bcd"`
	Gate          uint8  `json:"gate"`
	CountLoadTime int64  `json:"count_load_time"`
}

type pitJSON struct {
	Channels [3]pitChannelJSON `json:"channels"`
	Flags    uint32            `json:"flags"`
}

type clockJSON struct {
	Clock    uint64 `json:"clock"`
	Flags    uint32 `json:"flags"`
	Realtime uint64 `json:"realtime"`
	HostTSC  uint64 `json:"host_tsc"`
}

type vmJSON struct {
	Version   *int       `json:"version"`
	PICMaster picJSON    `json:"pic_master"`
	PICSlave  picJSON    `json:"pic_slave"`
	IOAPIC    ioapicJSON `json:"ioapic"`
	PIT       pitJSON    `json:"pit"`
	Clock     clockJSON  `json:"clock"`
}

// PICState has no padding, so it converts to its encoded form directly.
func picToJSON(p kvm.PICState) picJSON   { return picJSON(p) }
func picFromJSON(p picJSON) kvm.PICState { return kvm.PICState(p) }

// MarshalJSON encodes the VM state, with the format version.
func (s *VMState) MarshalJSON() ([]byte, error) {
	v := FormatVersion
	j := vmJSON{
		Version:   &v,
		PICMaster: picToJSON(s.PICMaster),
		PICSlave:  picToJSON(s.PICSlave),
		IOAPIC:    ioapicJSON{s.IOAPIC.BaseAddress, s.IOAPIC.IORegSel, s.IOAPIC.ID, s.IOAPIC.IRR, s.IOAPIC.RedirTbl},
		PIT:       pitJSON{Flags: s.PIT.Flags},
		Clock:     clockJSON{s.Clock.Clock, s.Clock.Flags, s.Clock.Realtime, s.Clock.HostTSC},
	}
	for i, c := range s.PIT.Channels {
		j.PIT.Channels[i] = pitChannelJSON(c)
	}
	return json.Marshal(&j)
}

// UnmarshalJSON decodes a VM state MarshalJSON wrote, checking the version.
func (s *VMState) UnmarshalJSON(b []byte) error {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return fmt.Errorf("kvmstate: VM state: %v: %w", err, ErrFormat)
	}
	if err := checkVersion(head.Version, Arch); err != nil {
		return err
	}
	var j vmJSON
	if err := strictDecode(b, &j); err != nil {
		return err
	}
	out := VMState{
		PICMaster: picFromJSON(j.PICMaster),
		PICSlave:  picFromJSON(j.PICSlave),
		IOAPIC: kvm.IOAPICState{BaseAddress: j.IOAPIC.BaseAddress, IORegSel: j.IOAPIC.IORegSel,
			ID: j.IOAPIC.ID, IRR: j.IOAPIC.IRR, RedirTbl: j.IOAPIC.RedirTbl},
		Clock: kvm.ClockData{Clock: j.Clock.Clock, Flags: j.Clock.Flags, Realtime: j.Clock.Realtime, HostTSC: j.Clock.HostTSC},
	}
	out.PIT.Flags = j.PIT.Flags
	for i, c := range j.PIT.Channels {
		out.PIT.Channels[i] = kvm.PITChannelState(c)
	}
	*s = out
	return nil
}
