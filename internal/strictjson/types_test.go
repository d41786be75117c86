package strictjson

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
)

// Go mirrors of the Rust types in testdata/oracle/src/main.rs. Each testTypes
// entry returns a fresh pointer preset with the Rust Default values, decodes
// into it and re-marshals, so results compare with the oracle's.

type HugePageConfig string

func (HugePageConfig) SerdeVariants() []string { return []string{"None", "Transparent", "2M"} }

type StaticCpuTemplate string

func (StaticCpuTemplate) SerdeVariants() []string {
	return []string{"C3", "T2", "T2S", "T2CL", "T2A", "V1N1", "None"}
}

type MachineConfig struct {
	_               struct{}           `serde:"name=MachineConfig"`
	VcpuCount       uint8              `json:"vcpu_count"`
	MemSizeMib      Usize              `json:"mem_size_mib"`
	Smt             bool               `json:"smt" serde:"default"`
	CPUTemplate     *StaticCpuTemplate `json:"cpu_template" serde:"default,skip_if_none"`
	TrackDirtyPages bool               `json:"track_dirty_pages" serde:"default"`
	HugePages       HugePageConfig     `json:"huge_pages" serde:"default"`
}

func (m *MachineConfig) SetSerdeDefaults() { m.HugePages = "None" }

type MachineConfigUpdate struct {
	VcpuCount       *uint8             `json:"vcpu_count" serde:"default"`
	MemSizeMib      *Usize             `json:"mem_size_mib" serde:"default"`
	Smt             *bool              `json:"smt" serde:"default"`
	CPUTemplate     *StaticCpuTemplate `json:"cpu_template" serde:"default"`
	TrackDirtyPages *bool              `json:"track_dirty_pages" serde:"default"`
	HugePages       *HugePageConfig    `json:"huge_pages" serde:"default"`
}

type BootSource struct {
	KernelImagePath string  `json:"kernel_image_path"`
	InitrdPath      *string `json:"initrd_path"`
	BootArgs        *string `json:"boot_args"`
}

type TokenBucket struct {
	_            struct{} `serde:"allow_unknown"`
	Size         uint64   `json:"size"`
	OneTimeBurst *uint64  `json:"one_time_burst"`
	RefillTime   uint64   `json:"refill_time"`
}

type RateLimiter struct {
	Bandwidth *TokenBucket `json:"bandwidth"`
	Ops       *TokenBucket `json:"ops"`
}

type CacheType string

func (CacheType) SerdeVariants() []string { return []string{"Unsafe", "Writeback"} }

type FileEngineType string

func (FileEngineType) SerdeVariants() []string { return []string{"Async", "Sync"} }

type Drive struct {
	DriveID      string          `json:"drive_id"`
	Partuuid     *string         `json:"partuuid"`
	IsRootDevice bool            `json:"is_root_device"`
	CacheType    CacheType       `json:"cache_type" serde:"default"`
	IsReadOnly   *bool           `json:"is_read_only"`
	PathOnHost   *string         `json:"path_on_host"`
	RateLimiter  *RateLimiter    `json:"rate_limiter"`
	IoEngine     *FileEngineType `json:"io_engine"`
	Socket       *string         `json:"socket"`
}

func (d *Drive) SetSerdeDefaults() { d.CacheType = "Unsafe" }

// LevelFilter reads a String and then matches it case-insensitively, failing
// with a custom error, as Firecracker's impl does.
type LevelFilter string

func (l *LevelFilter) UnmarshalSerdeString(s string) error {
	switch strings.ToLower(s) {
	case "off":
		*l = "Off"
	case "trace":
		*l = "Trace"
	case "debug":
		*l = "Debug"
	case "info":
		*l = "Info"
	case "warn", "warning":
		*l = "Warn"
	case "error":
		*l = "Error"
	default:
		return errors.New("Invalid LevelFilter")
	}
	return nil
}

type Logger struct {
	LogPath       *Path        `json:"log_path"`
	Level         *LevelFilter `json:"level"`
	ShowLevel     *bool        `json:"show_level"`
	ShowLogOrigin *bool        `json:"show_log_origin"`
	Module        *string      `json:"module"`
}

type Metrics struct {
	_           struct{}           `serde:"allow_unknown"`
	MetricsPath Path               `json:"metrics_path"`
	EmitID      bool               `json:"emit_id" serde:"default"`
	Properties  *map[string]string `json:"properties" serde:"default,skip_if_none"`
}

type MmdsVersion string

func (MmdsVersion) SerdeVariants() []string { return []string{"V1", "V2"} }

// Ipv4 decodes like serde's Ipv4Addr: a str visitor expecting "IPv4 address".
type Ipv4 string

func (*Ipv4) SerdeExpecting() string { return "IPv4 address" }
func (a *Ipv4) VisitSerdeStr(s string) error {
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is4() || ip.String() != s {
		return errors.New("invalid IPv4 address syntax")
	}
	*a = Ipv4(s)
	return nil
}

type Mmds struct {
	Version           MmdsVersion `json:"version" serde:"default"`
	NetworkInterfaces []string    `json:"network_interfaces"`
	Ipv4Address       *Ipv4       `json:"ipv4_address"`
	ImdsCompat        bool        `json:"imds_compat" serde:"default"`
}

type MacAddr string

func (m *MacAddr) UnmarshalSerdeString(s string) error {
	parts := strings.Split(s, ":")
	ok := len(parts) == 6
	for _, p := range parts {
		// Rust's u8::from_str_radix also takes a leading '+'.
		if len(p) != 2 || !(isHex(p[0]) || p[0] == '+') || !isHex(p[1]) {
			ok = false
		}
	}
	if !ok {
		return errors.New("The provided MAC address is invalid.")
	}
	*m = MacAddr(s)
	return nil
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

type Net struct {
	IfaceID       string       `json:"iface_id"`
	HostDevName   string       `json:"host_dev_name"`
	GuestMac      *MacAddr     `json:"guest_mac"`
	RxRateLimiter *RateLimiter `json:"rx_rate_limiter"`
	TxRateLimiter *RateLimiter `json:"tx_rate_limiter"`
}

type Ints struct {
	A uint8   `json:"a" serde:"default"`
	B uint16  `json:"b" serde:"default"`
	C uint32  `json:"c" serde:"default"`
	D uint64  `json:"d" serde:"default"`
	E int8    `json:"e" serde:"default"`
	F int16   `json:"f" serde:"default"`
	G int32   `json:"g" serde:"default"`
	H int64   `json:"h" serde:"default"`
	I Usize   `json:"i" serde:"default"`
	J float64 `json:"j" serde:"default"`
	K float32 `json:"k" serde:"default"`
}

type Empty struct{}

type EmptyAllow struct {
	_ struct{} `serde:"allow_unknown"`
}

type One struct {
	A uint8 `json:"a"`
}

type Two struct {
	A uint8 `json:"a"`
	B bool  `json:"b"`
}

type WithValue struct {
	Data Value  `json:"data"`
	Opt  *Value `json:"opt"`
}

type NetOverride struct {
	IfaceID     string `json:"iface_id"`
	HostDevName string `json:"host_dev_name"`
}

type SnapLoad struct {
	SnapshotPath     Path          `json:"snapshot_path"`
	MemFilePath      *Path         `json:"mem_file_path"`
	ResumeVM         bool          `json:"resume_vm" serde:"default"`
	NetworkOverrides []NetOverride `json:"network_overrides" serde:"default"`
}

func (s *SnapLoad) SetSerdeDefaults() { s.NetworkOverrides = []NetOverride{} }

type Nest struct {
	Next *Nest `json:"next"`
}

type Macs struct {
	Macs []MacAddr   `json:"macs"`
	Opt  *[]*MacAddr `json:"opt" serde:"default"`
}

type Lone string

func (Lone) SerdeVariants() []string { return []string{"Only"} }

type Never string

func (Never) SerdeVariants() []string { return nil }

func newWith[T any](preset func(*T)) func() any {
	return func() any {
		v := new(T)
		if preset != nil {
			preset(v)
		}
		return v
	}
}

func defaults[T any, P interface {
	*T
	Defaulter
}]() func() any {
	return func() any {
		v := P(new(T))
		v.SetSerdeDefaults()
		return v
	}
}

// testTypes maps the oracle's type names to fresh Go targets.
var testTypes = map[string]func() any{
	"mc":           defaults[MachineConfig](),
	"mcu":          newWith[MachineConfigUpdate](nil),
	"boot":         newWith[BootSource](nil),
	"tb":           newWith[TokenBucket](nil),
	"rl":           newWith[RateLimiter](nil),
	"drive":        defaults[Drive](),
	"logger":       newWith[Logger](nil),
	"metrics":      newWith[Metrics](nil),
	"mmds":         newWith[Mmds](func(m *Mmds) { m.Version = "V1" }),
	"net":          newWith[Net](nil),
	"ints":         newWith[Ints](nil),
	"empty":        newWith[Empty](nil),
	"empty_allow":  newWith[EmptyAllow](nil),
	"one":          newWith[One](nil),
	"two":          newWith[Two](nil),
	"with_value":   newWith[WithValue](nil),
	"snap":         defaults[SnapLoad](),
	"nest":         newWith[Nest](nil),
	"value":        newWith[Value](nil),
	"vec_string":   newWith[[]string](nil),
	"vec_tb":       newWith[[]TokenBucket](nil),
	"map_string":   newWith[map[string]string](nil),
	"map_u32":      newWith[map[string]uint32](nil),
	"string":       newWith[string](nil),
	"bool":         newWith[bool](nil),
	"u8":           newWith[uint8](nil),
	"u16":          newWith[uint16](nil),
	"u32":          newWith[uint32](nil),
	"u64":          newWith[uint64](nil),
	"i8":           newWith[int8](nil),
	"i16":          newWith[int16](nil),
	"i32":          newWith[int32](nil),
	"i64":          newWith[int64](nil),
	"usize":        newWith[Usize](nil),
	"f64":          newWith[float64](nil),
	"f32":          newWith[float32](nil),
	"opt_u8":       newWith[*uint8](nil),
	"level":        newWith[LevelFilter](nil),
	"huge":         newWith[HugePageConfig](nil),
	"mmds_version": newWith[MmdsVersion](nil),
	"lone":         newWith[Lone](nil),
	"never":        newWith[Never](nil),
	"ipv4":         newWith[Ipv4](nil),
	"path":         newWith[Path](nil),
	"mac":          newWith[MacAddr](nil),
	"vec_level":    newWith[[]LevelFilter](nil),
	"macs":         newWith[Macs](nil),
	"map_level":    newWith[map[string]LevelFilter](nil),
}

// run decodes input as the named type and renders the outcome like the oracle:
// ("ok", serde_json::to_string of the value) or ("err", the error's Display).
func run(typ string, input []byte) (status, out string) {
	mk, ok := testTypes[typ]
	if !ok {
		return "err", "HARNESS: unknown type " + typ
	}
	v := mk()
	if err := Unmarshal(input, v); err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return "err", "NOT A SERDE ERROR: " + err.Error()
		}
		return "err", err.Error()
	}
	b, err := Marshal(reflect.ValueOf(v).Elem().Interface())
	if err != nil {
		return "err", "SER: " + err.Error()
	}
	return "ok", string(b)
}
