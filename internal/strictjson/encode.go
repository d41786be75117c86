package strictjson

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
)

// Marshal writes v the way serde_json::to_string writes the matching Rust type:
// compact, struct fields in declaration order, nil pointers as null (or left
// out when tagged `serde:"skip_if_none"`), nil slices as [] and nil maps as {},
// map keys sorted (BTreeMap order), floats and strings formatted as serde_json
// formats them.
func Marshal(v any) ([]byte, error) {
	if v == nil {
		return []byte("null"), nil
	}
	rv := reflect.ValueOf(v)
	c, err := codecFor(rv.Type())
	if err != nil {
		return nil, err
	}
	return appendValue(nil, c, rv)
}

func appendValue(dst []byte, c *codec, v reflect.Value) ([]byte, error) {
	if c.kind == kPtr {
		if v.IsNil() {
			return append(dst, "null"...), nil
		}
		return appendValue(dst, c.elem, v.Elem())
	}
	if c.marshaler {
		m, ok := asMarshaler(v)
		if ok {
			out, err := m.MarshalSerde()
			if err != nil {
				return nil, fmt.Errorf("strictjson: %v.MarshalSerde: %w", c.typ, err)
			}
			if out == nil {
				return append(dst, "null"...), nil
			}
			oc, err := codecFor(reflect.TypeOf(out))
			if err != nil {
				return nil, err
			}
			if oc == c {
				return nil, fmt.Errorf("strictjson: %v.MarshalSerde returned its own type", c.typ)
			}
			return appendValue(dst, oc, reflect.ValueOf(out))
		}
	}
	switch c.kind {
	case kBool:
		return strconv.AppendBool(dst, v.Bool()), nil
	case kUint:
		return strconv.AppendUint(dst, v.Uint(), 10), nil
	case kInt:
		return strconv.AppendInt(dst, v.Int(), 10), nil
	case kFloat64:
		return appendFloat64(dst, v.Float()), nil
	case kFloat32:
		return appendFloat32(dst, float32(v.Float())), nil
	case kEnum:
		s := v.String()
		for _, name := range c.variants {
			if name == s {
				return appendQuoted(dst, s), nil
			}
		}
		return nil, fmt.Errorf("strictjson: %q is not a variant of %v", s, c.typ)
	case kString, kStrVisitor, kStringHook:
		if v.Kind() != reflect.String {
			return nil, unsupported(c.typ, "needs a MarshalSerde method to be marshaled")
		}
		return appendQuoted(dst, v.String()), nil
	case kValue:
		return v.Interface().(Value).appendJSON(dst), nil
	case kRaw:
		raw := v.Bytes()
		if len(raw) == 0 {
			return append(dst, "null"...), nil
		}
		val, err := ParseValue(raw)
		if err != nil {
			return nil, fmt.Errorf("strictjson: invalid json.RawMessage: %w", err)
		}
		return val.appendJSON(dst), nil
	case kAny:
		if v.IsNil() {
			return append(dst, "null"...), nil
		}
		inner := v.Elem()
		ic, err := codecFor(inner.Type())
		if err != nil {
			return nil, err
		}
		return appendValue(dst, ic, inner)
	case kSlice:
		dst = append(dst, '[')
		for k := 0; k < v.Len(); k++ {
			if k > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendValue(dst, c.elem, v.Index(k)); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case kMap:
		keys := v.MapKeys()
		sort.Slice(keys, func(a, b int) bool { return keys[a].String() < keys[b].String() })
		dst = append(dst, '{')
		for k, key := range keys {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = appendQuoted(dst, key.String())
			dst = append(dst, ':')
			var err error
			if dst, err = appendValue(dst, c.elem, v.MapIndex(key)); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	case kStruct:
		dst = append(dst, '{')
		n := 0
		for k := range c.st.fields {
			f := &c.st.fields[k]
			fv := v.Field(f.index)
			if f.skipIfNone && f.optional && fv.IsNil() {
				continue
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = appendQuoted(dst, f.name)
			dst = append(dst, ':')
			var err error
			if dst, err = appendValue(dst, f.codec, fv); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	case kValueHook:
		return nil, unsupported(c.typ, "needs a MarshalSerde method to be marshaled")
	}
	return nil, unsupported(c.typ, "no encoder")
}

func asMarshaler(v reflect.Value) (Marshaler, bool) {
	if m, ok := v.Interface().(Marshaler); ok {
		return m, true
	}
	if v.CanAddr() {
		if m, ok := v.Addr().Interface().(Marshaler); ok {
			return m, true
		}
	}
	// A pointer-receiver method on a non-addressable value: copy it.
	p := reflect.New(v.Type())
	p.Elem().Set(v)
	m, ok := p.Interface().(Marshaler)
	return m, ok
}
