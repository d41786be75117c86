package vmconfig

// Custom CPU templates: the body of PUT /cpu-config and the "cpu-config" key
// of --config-file, decoded as Firecracker's x86-64 build decodes them, with
// its serde messages and positions.
//
// The leaf values are strings that Firecracker checks in custom deserializers
// after reading a String, so every such type here is a
// strictjson.StringUnmarshaler: a non-string gets serde's "expected a string"
// at the value, while a rejected string gets Firecracker's own message at the
// position serde_json gives custom errors (the end of the enclosing object or
// array, where the parser stood when the error surfaced).
//
// An arm64 build differs: its template has kvm_capabilities, vcpu_features
// ({"index": u32, "bitmap": 32-bit filter}) and reg_modifiers ({"addr": 0x/0b
// string as u64, "bitmap": 128-bit filter}); cpuid_modifiers and msr_modifiers
// are unknown fields there (and reg_modifiers one here); and its validation
// after decoding rejects bitmaps wider than the register ("Invalid size of
// bitmap for register ...") and unsupported register sizes. The x86-64
// validation accepts every decoded template.

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ember-vmm/ember/internal/strictjson"
	"github.com/ember-vmm/ember/internal/syserr"
)

// CPUTemplate is a validated custom CPU template (x86-64), Firecracker's
// CustomCpuTemplate: unknown keys are refused; every list may be absent.
// Marshal writes it as Firecracker serializes it (hex addresses, tri-state
// bitmaps of the full register width).
type CPUTemplate struct {
	_ struct{} `serde:"name=CustomCpuTemplate"`
	// KVMCapabilities adds capabilities to, or removes them from, the set
	// checked before the vCPUs are configured.
	KVMCapabilities []KVMCapability `json:"kvm_capabilities" serde:"default"`
	// CPUIDModifiers adjust CPUID leaves.
	CPUIDModifiers []CPUIDLeafModifier `json:"cpuid_modifiers" serde:"default"`
	// MSRModifiers adjust model-specific registers.
	MSRModifiers []MSRModifier `json:"msr_modifiers" serde:"default"`
}

// CPUIDLeafModifier selects one CPUID leaf and subleaf and the registers to
// adjust there. Unknown keys are ignored, as Firecracker does.
type CPUIDLeafModifier struct {
	_       struct{}    `serde:"name=CpuidLeafModifier,allow_unknown"`
	Leaf    PrefixedU32 `json:"leaf"`
	Subleaf PrefixedU32 `json:"subleaf"`
	// Flags are KVM's CPUID entry flags (KVM_CPUID_FLAG_*), a plain JSON number.
	Flags     uint32                  `json:"flags"`
	Modifiers []CPUIDRegisterModifier `json:"modifiers"`
}

// CPUIDRegisterModifier adjusts one output register of a CPUID leaf.
type CPUIDRegisterModifier struct {
	_        struct{}                    `serde:"name=CpuidRegisterModifier,allow_unknown"`
	Register CPUIDRegister               `json:"register"`
	Bitmap   RegisterValueFilter[uint32] `json:"bitmap"`
}

// MSRModifier adjusts one model-specific register (Firecracker's
// RegisterModifier). Unknown keys are ignored.
type MSRModifier struct {
	_      struct{}                    `serde:"name=RegisterModifier,allow_unknown"`
	Addr   PrefixedU32                 `json:"addr"`
	Bitmap RegisterValueFilter[uint64] `json:"bitmap"`
}

// ParseCPUTemplate decodes and validates a template as Firecracker's
// CustomCpuTemplate::try_from(&[u8]) does. The error is the serde error (its
// Error() is serde_json's Display, e.g. "... at line 1 column 5").
func ParseCPUTemplate(body []byte) (*CPUTemplate, error) {
	t := &CPUTemplate{}
	if err := strictjson.Unmarshal(body, t); err != nil {
		return nil, err
	}
	// Firecracker's x86-64 validation has nothing to refuse once decoding
	// succeeded; the arm64 one checks bitmap widths (see the file comment).
	return t, nil
}

// KVMCapability is one "kvm_capabilities" entry: a decimal KVM_CAP_* number
// to require, or "!<number>" to drop it from the built-in checks.
type KVMCapability struct {
	Cap    uint32
	Remove bool
}

// UnmarshalSerdeString parses "<u32>" or "!<u32>" in decimal, with Rust's
// u32::from_str rules (a leading '+' is accepted).
func (c *KVMCapability) UnmarshalSerdeString(s string) error {
	digits, remove := strings.CutPrefix(s, "!")
	n, kind := parseRustU32(digits, 10)
	if kind != intOK {
		return fmt.Errorf("Failed to parse string [%s] as a kvm capability - can not convert to numeric: %s",
			s, kind.display())
	}
	*c = KVMCapability{Cap: n, Remove: remove}
	return nil
}

// String renders the capability as Firecracker serializes it.
func (c KVMCapability) String() string {
	s := strconv.FormatUint(uint64(c.Cap), 10)
	if c.Remove {
		return "!" + s
	}
	return s
}

// MarshalSerde writes the capability as its string form.
func (c KVMCapability) MarshalSerde() (any, error) { return c.String(), nil }

// PrefixedU32 is a u32 that a template writes as a string with a mandatory
// "0x" (hexadecimal) or "0b" (binary) prefix; there is no decimal form.
type PrefixedU32 uint32

// UnmarshalSerdeString parses the prefixed digits with Rust's
// u32::from_str_radix rules.
func (p *PrefixedU32) UnmarshalSerdeString(s string) error {
	var radix uint64
	var digits string
	switch {
	case strings.HasPrefix(s, "0b"):
		radix, digits = 2, s[2:]
	case strings.HasPrefix(s, "0x"):
		radix, digits = 16, s[2:]
	default:
		return fmt.Errorf("No supported number system prefix found in value [%s]. Make sure to prefix "+
			"the number with '0x' for hexadecimal numbers or '0b' for binary numbers.", s)
	}
	n, kind := parseRustU32(digits, radix)
	if kind != intOK {
		return fmt.Errorf("Failed to parse string [%s] as a number for CPU template - ParseIntError { kind: %s }",
			s, kind.debug())
	}
	*p = PrefixedU32(n)
	return nil
}

// MarshalSerde writes the number as Firecracker does: lowercase hex, "0x0" for zero.
func (p PrefixedU32) MarshalSerde() (any, error) {
	return "0x" + strconv.FormatUint(uint64(p), 16), nil
}

// CPUIDRegister names a CPUID output register.
type CPUIDRegister uint8

// The CPUID output registers.
const (
	CPUIDEAX CPUIDRegister = iota
	CPUIDEBX
	CPUIDECX
	CPUIDEDX
)

var cpuidRegisterNames = [...]string{"eax", "ebx", "ecx", "edx"}

// UnmarshalSerdeString accepts the lowercase register names only.
func (r *CPUIDRegister) UnmarshalSerdeString(s string) error {
	for k, name := range cpuidRegisterNames {
		if s == name {
			*r = CPUIDRegister(k)
			return nil
		}
	}
	return errors.New("Invalid CPUID register. Must be one of [eax, ebx, ecx, edx]")
}

// String returns the register's name ("eax").
func (r CPUIDRegister) String() string {
	if int(r) < len(cpuidRegisterNames) {
		return cpuidRegisterNames[r]
	}
	return "CPUIDRegister(" + strconv.Itoa(int(r)) + ")"
}

// MarshalSerde writes the register's name.
func (r CPUIDRegister) MarshalSerde() (any, error) {
	if int(r) >= len(cpuidRegisterNames) {
		return nil, fmt.Errorf("vmconfig: no such CPUID register %d", int(r))
	}
	return r.String(), nil
}

// RegisterValueFilter is a tri-state bitmap over a register of T's width:
// Filter has a bit set for every bit the template decides, Value holds the
// decided bits. In a template it is a string of '0', '1' and 'x' (keep),
// most significant first, with an optional "0b" prefix and '_' separators
// anywhere; a shorter string leaves the high bits alone.
type RegisterValueFilter[T uint32 | uint64] struct {
	Filter T
	Value  T
}

// Apply returns v with the decided bits replaced.
func (f RegisterValueFilter[T]) Apply(v T) T { return v&^f.Filter | f.Value }

func filterWidth[T uint32 | uint64]() int {
	if uint64(^T(0)) == math.MaxUint32 {
		return 32
	}
	return 64
}

// UnmarshalSerdeString scans the string from its last byte, as Firecracker
// does: so the error names the rightmost bad byte (as a decimal byte value,
// even inside a multi-byte character), and a string becomes "too long" when
// a byte remains after the register is full, underscores included.
func (f *RegisterValueFilter[T]) UnmarshalSerdeString(s string) error {
	width := filterWidth[T]()
	body := strings.TrimPrefix(s, "0b")
	var filter, value T
	bit := 0
	for k := len(body) - 1; k >= 0; k-- {
		if bit == width {
			return fmt.Errorf("Failed to parse string [%s] as a bitmap - string is too long", s)
		}
		switch c := body[k]; c {
		case '_':
			continue
		case 'x':
		case '0':
			filter |= T(1) << bit
		case '1':
			filter |= T(1) << bit
			value |= T(1) << bit
		default:
			return fmt.Errorf("Failed to parse string [%s] as a bitmap - unknown character: %d", s, c)
		}
		bit++
	}
	*f = RegisterValueFilter[T]{Filter: filter, Value: value}
	return nil
}

// String renders the full-width tri-state form Firecracker serializes.
func (f RegisterValueFilter[T]) String() string {
	width := filterWidth[T]()
	b := make([]byte, 0, width+2)
	b = append(b, "0b"...)
	for bit := width - 1; bit >= 0; bit-- {
		switch {
		case f.Filter>>bit&1 == 0:
			b = append(b, 'x')
		case f.Value>>bit&1 == 1:
			b = append(b, '1')
		default:
			b = append(b, '0')
		}
	}
	return string(b)
}

// MarshalSerde writes the tri-state string.
func (f RegisterValueFilter[T]) MarshalSerde() (any, error) { return f.String(), nil }

// intErrorKind is the kind of a Rust ParseIntError for an unsigned target.
type intErrorKind uint8

const (
	intOK intErrorKind = iota
	intEmpty
	intInvalidDigit
	intPosOverflow
)

// debug is the variant name that ParseIntError's Debug shows.
func (k intErrorKind) debug() string {
	return [...]string{"", "Empty", "InvalidDigit", "PosOverflow"}[k]
}

// display is ParseIntError's Display text.
func (k intErrorKind) display() string {
	return [...]string{"", "cannot parse integer from empty string", "invalid digit found in string",
		"number too large to fit in target type"}[k]
}

// parseRustU32 follows u32::from_str_radix: empty is Empty; a lone sign and
// '-' (unsigned) are InvalidDigit; one leading '+' is allowed; digits are
// read left to right and the first invalid digit or overflow decides.
func parseRustU32(s string, radix uint64) (uint32, intErrorKind) {
	switch {
	case s == "":
		return 0, intEmpty
	case s == "+" || s == "-":
		return 0, intInvalidDigit
	case s[0] == '+':
		s = s[1:]
	}
	var acc uint64
	for k := 0; k < len(s); k++ {
		d, ok := rustDigit(s[k], radix)
		if !ok {
			return 0, intInvalidDigit
		}
		acc = acc*radix + d
		if acc > math.MaxUint32 {
			return 0, intPosOverflow
		}
	}
	return uint32(acc), intOK
}

// rustDigit is char::to_digit for radix 2, 10 or 16 (ASCII digits and
// letters of either case only).
func rustDigit(c byte, radix uint64) (uint64, bool) {
	var d uint64
	switch {
	case c >= '0' && c <= '9':
		d = uint64(c - '0')
	case c >= 'a' && c <= 'z':
		d = uint64(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		d = uint64(c-'A') + 10
	default:
		return 0, false
	}
	return d, d < radix
}

// Load failures, as the prefixes Firecracker's ResourcesError prints them with.
var (
	// ErrCPUConfigFile: the template file could not be read as UTF-8 text.
	ErrCPUConfigFile = errors.New("File operation error")
	// ErrCPUConfigJSON: the file's content is not a valid template.
	ErrCPUConfigJSON = errors.New("Invalid JSON")
)

// CPUConfigOrPath is the "cpu-config" value of --config-file: a path to a
// template file or an inline template (Firecracker's untagged enum
// CustomCpuTemplateOrPath, tried in that order: any JSON string is a path).
// Use it as an Option field, `CPUConfig *CPUConfigOrPath`; null gives nil.
type CPUConfigOrPath struct {
	path     string
	isPath   bool
	template *CPUTemplate
	loadErr  error // the kind (ErrCPUConfigFile, ErrCPUConfigJSON) of the last Load failure
}

// errNoVariant is serde's untagged-enum mismatch; Unwrap gives why the
// template variant was refused, which Firecracker does not print.
type errNoVariant struct{ template error }

func (e *errNoVariant) Error() string {
	return "data did not match any variant of untagged enum CustomCpuTemplateOrPath"
}
func (e *errNoVariant) Unwrap() error { return e.template }

// UnmarshalSerde decides the variant. serde buffers an untagged enum's
// input keeping duplicate keys, which a Value merges, so the template is
// decoded again from the value's input bytes (kept for struct fields); a
// Value without them (an element of a list) is decoded from its compact
// form, where a duplicated key can no longer be refused.
func (c *CPUConfigOrPath) UnmarshalSerde(v strictjson.Value) error {
	if s, ok := v.Str(); ok {
		*c = CPUConfigOrPath{path: s, isPath: true}
		return nil
	}
	raw := v.Raw()
	if raw == nil {
		raw = v.Compact()
	}
	t, err := ParseCPUTemplate(raw)
	if err != nil {
		return &errNoVariant{template: err}
	}
	*c = CPUConfigOrPath{template: t}
	return nil
}

// MarshalSerde writes the variant's own form (the path string or the
// template), as serde serializes an untagged enum.
func (c CPUConfigOrPath) MarshalSerde() (any, error) {
	if c.isPath {
		return c.path, nil
	}
	if c.template == nil {
		return nil, nil
	}
	return c.template, nil
}

// Path returns the template file's path when the value is one.
func (c *CPUConfigOrPath) Path() (string, bool) { return c.path, c.isPath }

// Load reads and parses the template file when the value is a path (an
// inline template was parsed when decoded). Its error prints as Firecracker
// prints the cause after ErrorPrefix(): Rust's io::Error for a file that
// cannot be read as UTF-8 text, the serde error for a bad template.
func (c *CPUConfigOrPath) Load() error {
	c.loadErr = nil
	if c.template != nil || !c.isPath {
		return nil
	}
	if strings.IndexByte(c.path, 0) >= 0 {
		// Rust refuses such a path before asking the kernel.
		return c.fail(ErrCPUConfigFile, "file name contained an unexpected NUL byte", nil)
	}
	data, err := os.ReadFile(c.path)
	if err != nil {
		return c.fail(ErrCPUConfigFile, syserr.Display(err), err)
	}
	if !utf8.Valid(data) {
		// std::fs::read_to_string's refusal.
		return c.fail(ErrCPUConfigFile, "stream did not contain valid UTF-8", nil)
	}
	t, err := ParseCPUTemplate(data)
	if err != nil {
		return c.fail(ErrCPUConfigJSON, err.Error(), err)
	}
	c.template = t
	return nil
}

// ErrorPrefix names the ResourcesError variant of the last Load failure
// ("File operation error" or "Invalid JSON"); it is empty when Load has not
// failed.
func (c *CPUConfigOrPath) ErrorPrefix() string {
	if c.loadErr == nil {
		return ""
	}
	return c.loadErr.Error()
}

// Template returns the template: an inline one at once, a file's after a
// successful Load; nil otherwise.
func (c *CPUConfigOrPath) Template() *CPUTemplate { return c.template }

func (c *CPUConfigOrPath) fail(kind error, text string, cause error) error {
	c.loadErr = kind
	return &cpuConfigError{kind: kind, text: text, cause: cause}
}

// cpuConfigError prints only the cause's text (the caller adds the prefix)
// and matches its kind with errors.Is.
type cpuConfigError struct {
	kind  error
	text  string
	cause error
}

func (e *cpuConfigError) Error() string { return e.text }
func (e *cpuConfigError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}
