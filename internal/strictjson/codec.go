package strictjson

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
)

// Usize is a Go uint64 that serde messages call `usize` (Rust's usize on the
// 64-bit hosts ember runs on).
type Usize uint64

// Path is a string that serde messages call a `path string` (Rust's PathBuf).
type Path string

// Variants is implemented by string types that stand for a Rust enum of unit
// variants (#[derive(Deserialize)] enum), listing the variant names in
// declaration order, renames applied. Such a type decodes from "Name" or from
// {"Name": null}, exactly like serde_json's externally tagged enums.
type Variants interface {
	SerdeVariants() []string
}

// StringUnmarshaler is for types whose Rust Deserialize first reads a String
// and then validates it (Firecracker's MacAddr, LevelFilter, ...). A non-string
// input fails with "expected a string"; an error from the method becomes a
// serde custom error which, as in serde_json, gets the position of the end of
// the enclosing object or array (no position at top level).
type StringUnmarshaler interface {
	UnmarshalSerdeString(s string) error
}

// StrVisitor is for types decoded by a string visitor inside the deserializer,
// like serde's own FromStr-based impls (Ipv4Addr: expecting "IPv4 address").
// Errors are positioned right after the string.
type StrVisitor interface {
	SerdeExpecting() string
	VisitSerdeStr(s string) error
}

// ValueUnmarshaler is for types whose Rust Deserialize reads a
// serde_json::Value first and converts it; errors are placed as for
// StringUnmarshaler.
type ValueUnmarshaler interface {
	UnmarshalSerde(v Value) error
}

// Defaulter is called on every struct the decoder allocates itself (behind a
// pointer, in a slice or map) before filling it, to preset the values that
// `serde:"default"` fields keep when absent, like Rust's Default impls.
type Defaulter interface {
	SetSerdeDefaults()
}

// Marshaler lets a type choose what Marshal writes for it: the returned Go
// value is marshaled in its place.
type Marshaler interface {
	MarshalSerde() (any, error)
}

type kind uint8

const (
	kBool kind = iota
	kUint
	kInt
	kFloat32
	kFloat64
	kString
	kStrVisitor
	kStringHook
	kValueHook
	kEnum
	kStruct
	kSlice
	kMap
	kPtr
	kValue
	kRaw
	kAny
)

type codec struct {
	kind      kind
	typ       reflect.Type
	expecting string // how serde names the Rust type in "expected ..."
	min       int64  // kInt
	max       uint64 // kUint, kInt
	elem      *codec // kSlice, kMap, kPtr
	variants  []string
	st        *structInfo
	marshaler bool // T or *T implements Marshaler
	defaulter bool // *T implements Defaulter
}

type fieldInfo struct {
	name       string
	index      int
	codec      *codec
	optional   bool // pointer field: Rust Option<T>
	hasDefault bool // serde:"default"
	skipIfNone bool // serde:"skip_if_none"
}

type structInfo struct {
	name         string
	allowUnknown bool
	fields       []fieldInfo
	names        []string
	byName       map[string]int
}

var (
	codecCache sync.Map // reflect.Type -> *codec
	buildMu    sync.Mutex

	typValue      = reflect.TypeFor[Value]()
	typRaw        = reflect.TypeFor[json.RawMessage]()
	typUsize      = reflect.TypeFor[Usize]()
	typPath       = reflect.TypeFor[Path]()
	typVariants   = reflect.TypeFor[Variants]()
	typStrHook    = reflect.TypeFor[StringUnmarshaler]()
	typStrVisitor = reflect.TypeFor[StrVisitor]()
	typValueHook  = reflect.TypeFor[ValueUnmarshaler]()
	typDefaulter  = reflect.TypeFor[Defaulter]()
	typMarshaler  = reflect.TypeFor[Marshaler]()
)

func codecFor(t reflect.Type) (*codec, error) {
	if c, ok := codecCache.Load(t); ok {
		return c.(*codec), nil
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	building := map[reflect.Type]*codec{}
	c, err := build(t, building)
	if err != nil {
		return nil, err
	}
	for bt, bc := range building {
		codecCache.Store(bt, bc)
	}
	return c, nil
}

func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || reflect.PointerTo(t).Implements(iface)
}

func unsupported(t reflect.Type, why string) error {
	return fmt.Errorf("%w: %v: %s", ErrUnsupportedType, t, why)
}

func build(t reflect.Type, building map[reflect.Type]*codec) (*codec, error) {
	if c, ok := codecCache.Load(t); ok {
		return c.(*codec), nil
	}
	if c, ok := building[t]; ok {
		return c, nil // recursive type: filled in by the outer call
	}
	c := &codec{typ: t}
	building[t] = c
	c.marshaler = implements(t, typMarshaler)
	c.defaulter = reflect.PointerTo(t).Implements(typDefaulter)

	switch {
	case t.Kind() == reflect.Pointer:
		// Before the hooks: *T is Option<T> even when *T has T's methods.
		if t.Elem().Kind() == reflect.Pointer {
			return nil, unsupported(t, "pointer to pointer")
		}
		c.kind = kPtr
		elem, err := build(t.Elem(), building)
		if err != nil {
			return nil, err
		}
		c.elem = elem
		c.expecting = elem.expecting
		return c, nil
	case t == typValue:
		c.kind, c.expecting = kValue, "any valid JSON value"
		return c, nil
	case t == typRaw:
		c.kind, c.expecting = kRaw, "any valid JSON value"
		return c, nil
	case implements(t, typValueHook):
		c.kind, c.expecting = kValueHook, "any valid JSON value"
		return c, nil
	case implements(t, typStrHook):
		c.kind, c.expecting = kStringHook, "a string"
		return c, nil
	case implements(t, typStrVisitor):
		c.kind = kStrVisitor
		c.expecting = reflect.New(t).Interface().(StrVisitor).SerdeExpecting()
		return c, nil
	case implements(t, typVariants):
		if t.Kind() != reflect.String {
			return nil, unsupported(t, "SerdeVariants needs a string type")
		}
		c.kind = kEnum
		c.variants = reflect.New(t).Interface().(Variants).SerdeVariants()
		c.expecting = "enum " + t.Name()
		return c, nil
	case t == typPath:
		c.kind, c.expecting = kString, "path string"
		return c, nil
	}

	switch t.Kind() {
	case reflect.Bool:
		c.kind, c.expecting = kBool, "a boolean"
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		c.kind = kUint
		c.max = math.MaxUint64 >> (64 - t.Bits())
		c.expecting = fmt.Sprintf("u%d", t.Bits())
		if t == typUsize || t.Kind() == reflect.Uint {
			c.expecting = "usize"
		}
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		c.kind = kInt
		c.max = math.MaxInt64 >> (64 - t.Bits())
		c.min = math.MinInt64 >> (64 - t.Bits())
		c.expecting = fmt.Sprintf("i%d", t.Bits())
		if t.Kind() == reflect.Int {
			c.expecting = "isize"
		}
	case reflect.Float32:
		c.kind, c.expecting = kFloat32, "f32"
	case reflect.Float64:
		c.kind, c.expecting = kFloat64, "f64"
	case reflect.String:
		c.kind, c.expecting = kString, "a string"
	case reflect.Slice:
		c.kind, c.expecting = kSlice, "a sequence"
		elem, err := build(t.Elem(), building)
		if err != nil {
			return nil, err
		}
		c.elem = elem
	case reflect.Map:
		if t.Key().Kind() != reflect.String || implements(t.Key(), typVariants) ||
			implements(t.Key(), typStrHook) || implements(t.Key(), typStrVisitor) {
			return nil, unsupported(t, "map keys must be plain strings")
		}
		c.kind, c.expecting = kMap, "a map"
		elem, err := build(t.Elem(), building)
		if err != nil {
			return nil, err
		}
		c.elem = elem
	case reflect.Interface:
		if t.NumMethod() != 0 {
			return nil, unsupported(t, "only the empty interface is supported")
		}
		c.kind, c.expecting = kAny, "any valid JSON value"
	case reflect.Struct:
		c.kind = kStruct
		st, err := buildStruct(t, building)
		if err != nil {
			return nil, err
		}
		c.st = st
		c.expecting = "struct " + st.name
	default:
		return nil, unsupported(t, "no serde equivalent")
	}
	return c, nil
}

func buildStruct(t reflect.Type, building map[reflect.Type]*codec) (*structInfo, error) {
	st := &structInfo{name: t.Name(), byName: map[string]int{}}
	for k := 0; k < t.NumField(); k++ {
		f := t.Field(k)
		opts := tagOptions(f.Tag.Get("serde"))
		if f.Name == "_" {
			for _, o := range opts {
				switch {
				case strings.HasPrefix(o, "name="):
					st.name = strings.TrimPrefix(o, "name=")
				case o == "allow_unknown":
					st.allowUnknown = true
				case o == "":
				default:
					return nil, unsupported(t, "unknown struct option "+o)
				}
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if f.Anonymous {
			return nil, unsupported(t, "embedded field "+f.Name+" (serde flatten is not supported)")
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fi := fieldInfo{name: name, index: k, optional: f.Type.Kind() == reflect.Pointer}
		for _, o := range opts {
			switch o {
			case "default":
				fi.hasDefault = true
			case "skip_if_none":
				fi.skipIfNone = true
			case "":
			default:
				return nil, unsupported(t, "unknown option "+o+" on field "+f.Name)
			}
		}
		if _, dup := st.byName[name]; dup {
			return nil, unsupported(t, "two fields named "+name)
		}
		fc, err := build(f.Type, building)
		if err != nil {
			return nil, err
		}
		fi.codec = fc
		st.byName[name] = len(st.fields)
		st.fields = append(st.fields, fi)
		st.names = append(st.names, name)
	}
	return st, nil
}

func tagOptions(tag string) []string {
	if tag == "" {
		return nil
	}
	opts := strings.Split(tag, ",")
	for k := range opts {
		opts[k] = strings.TrimSpace(opts[k])
	}
	return opts
}
