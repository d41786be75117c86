package strictjson

import (
	"math"
	"sort"
	"strconv"
)

type numKind uint8

const (
	numPosInt numKind = iota // u64
	numNegInt                // i64 < 0
	numFloat                 // finite f64
)

// Number is a JSON number as serde_json::Number holds it: a u64, a negative i64
// or a finite f64. The zero Number is the integer 0.
type Number struct {
	kind numKind
	u    uint64
	i    int64
	f    float64
}

func floatNumber(f float64) Number { return Number{kind: numFloat, f: f} }

// NumberFromU64 returns the integer u.
func NumberFromU64(u uint64) Number { return Number{kind: numPosInt, u: u} }

// NumberFromI64 returns the integer i (stored as unsigned when i >= 0, as serde_json does).
func NumberFromI64(i int64) Number {
	if i >= 0 {
		return Number{kind: numPosInt, u: uint64(i)}
	}
	return Number{kind: numNegInt, i: i}
}

// NumberFromF64 returns f as a float Number; ok is false for NaN and infinities,
// which JSON cannot carry.
func NumberFromF64(f float64) (n Number, ok bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Number{}, false
	}
	return floatNumber(f), true
}

// IsU64, IsI64 and IsF64 follow serde_json::Number: a non-negative integer is
// both u64 and (if it fits) i64; a float is only f64.
func (n Number) IsU64() bool { return n.kind == numPosInt }
func (n Number) IsI64() bool {
	return n.kind == numNegInt || (n.kind == numPosInt && n.u <= math.MaxInt64)
}
func (n Number) IsF64() bool { return n.kind == numFloat }

// U64 returns the number if it is a non-negative integer.
func (n Number) U64() (uint64, bool) { return n.u, n.kind == numPosInt }

// I64 returns the number if it is an integer that fits in int64.
func (n Number) I64() (int64, bool) {
	switch {
	case n.kind == numNegInt:
		return n.i, true
	case n.kind == numPosInt && n.u <= math.MaxInt64:
		return int64(n.u), true
	}
	return 0, false
}

// F64 converts to float64 (integers round to nearest).
func (n Number) F64() float64 {
	switch n.kind {
	case numPosInt:
		return float64(n.u)
	case numNegInt:
		return float64(n.i)
	}
	return n.f
}

// String formats the number as serde_json writes it.
func (n Number) String() string { return string(n.appendJSON(nil)) }

func (n Number) appendJSON(dst []byte) []byte {
	switch n.kind {
	case numPosInt:
		return strconv.AppendUint(dst, n.u, 10)
	case numNegInt:
		return strconv.AppendInt(dst, n.i, 10)
	}
	return appendFloat64(dst, n.f)
}

// unexpected renders the number for "invalid type" messages.
func (n Number) unexpected() Unexpected {
	switch n.kind {
	case numPosInt:
		return UnexpectedUnsigned(n.u)
	case numNegInt:
		return UnexpectedSigned(n.i)
	}
	return UnexpectedFloat(n.f)
}

// Kind is the JSON type of a Value.
type Kind uint8

const (
	KindNull Kind = iota
	KindBool
	KindNumber
	KindString
	KindArray
	KindObject
)

func (k Kind) String() string {
	switch k {
	case KindNull:
		return "null"
	case KindBool:
		return "bool"
	case KindNumber:
		return "number"
	case KindString:
		return "string"
	case KindArray:
		return "array"
	case KindObject:
		return "object"
	}
	return "invalid"
}

// Member is one key of an object Value.
type Member struct {
	Key   string
	Value Value
}

// Value is arbitrary JSON with serde_json::Value's semantics: object keys are
// unique and kept sorted bytewise (a later duplicate replaces an earlier one),
// numbers follow Number (floats parse as serde_json's default parser does, which
// is not always correctly rounded, so a float may not survive text -> Value ->
// text unchanged, exactly as in Firecracker). The zero Value is null. A Value decoded as a field or
// top-level target also keeps the exact input bytes it came from (Raw).
type Value struct {
	kind Kind
	b    bool
	n    Number
	s    string
	arr  []Value
	obj  []Member
	raw  []byte
}

// Null, Bool, ... construct Values.
func Null() Value                { return Value{} }
func BoolValue(b bool) Value     { return Value{kind: KindBool, b: b} }
func NumberValue(n Number) Value { return Value{kind: KindNumber, n: n} }
func StringValue(s string) Value { return Value{kind: KindString, s: s} }

// ArrayValue wraps elems (not copied).
func ArrayValue(elems []Value) Value {
	if elems == nil {
		elems = []Value{}
	}
	return Value{kind: KindArray, arr: elems}
}

// ObjectValue builds an object from members in any order; for a repeated key
// the last one wins, like inserting into serde_json's map.
func ObjectValue(members []Member) Value {
	obj := make([]Member, len(members))
	copy(obj, members)
	return Value{kind: KindObject, obj: normalizeMembers(obj)}
}

// normalizeMembers sorts in place and drops all but the last of equal keys.
func normalizeMembers(obj []Member) []Member {
	sort.SliceStable(obj, func(a, b int) bool { return obj[a].Key < obj[b].Key })
	out := obj[:0]
	for k := 0; k < len(obj); k++ {
		if k+1 < len(obj) && obj[k+1].Key == obj[k].Key {
			continue
		}
		out = append(out, obj[k])
	}
	if out == nil {
		out = []Member{}
	}
	return out
}

func (v Value) Kind() Kind             { return v.kind }
func (v Value) IsNull() bool           { return v.kind == KindNull }
func (v Value) Bool() (bool, bool)     { return v.b, v.kind == KindBool }
func (v Value) Number() (Number, bool) { return v.n, v.kind == KindNumber }

// Str returns the string if v is one.
func (v Value) Str() (string, bool) { return v.s, v.kind == KindString }

// Array returns the elements if v is an array (shared, not copied).
func (v Value) Array() ([]Value, bool) { return v.arr, v.kind == KindArray }

// Object returns the members, sorted by key, if v is an object (shared, not copied).
func (v Value) Object() ([]Member, bool) { return v.obj, v.kind == KindObject }

// Get looks a key up in an object.
func (v Value) Get(key string) (Value, bool) {
	if v.kind != KindObject {
		return Value{}, false
	}
	k := sort.Search(len(v.obj), func(i int) bool { return v.obj[i].Key >= key })
	if k < len(v.obj) && v.obj[k].Key == key {
		return v.obj[k].Value, true
	}
	return Value{}, false
}

// Raw returns the input bytes the Value was decoded from, or nil for Values
// built in code or nested inside another Value.
func (v Value) Raw() []byte { return v.raw }

// Compact returns serde_json::to_string's rendering: no whitespace, sorted keys.
func (v Value) Compact() []byte { return v.appendJSON(nil) }

// String is Compact as a string.
func (v Value) String() string { return string(v.appendJSON(nil)) }

// MarshalJSON lets encoding/json embed a Value in serde_json's form.
func (v Value) MarshalJSON() ([]byte, error) { return v.appendJSON(nil), nil }

// Equal reports deep equality of content (Raw is ignored; numbers compare as
// serde_json::Number does: same kind and value).
func (v Value) Equal(w Value) bool {
	if v.kind != w.kind {
		return false
	}
	switch v.kind {
	case KindBool:
		return v.b == w.b
	case KindNumber:
		return v.n == w.n
	case KindString:
		return v.s == w.s
	case KindArray:
		if len(v.arr) != len(w.arr) {
			return false
		}
		for k := range v.arr {
			if !v.arr[k].Equal(w.arr[k]) {
				return false
			}
		}
	case KindObject:
		if len(v.obj) != len(w.obj) {
			return false
		}
		for k := range v.obj {
			if v.obj[k].Key != w.obj[k].Key || !v.obj[k].Value.Equal(w.obj[k].Value) {
				return false
			}
		}
	}
	return true
}

func (v Value) appendJSON(dst []byte) []byte {
	switch v.kind {
	case KindBool:
		if v.b {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case KindNumber:
		return v.n.appendJSON(dst)
	case KindString:
		return appendQuoted(dst, v.s)
	case KindArray:
		dst = append(dst, '[')
		for k, e := range v.arr {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = e.appendJSON(dst)
		}
		return append(dst, ']')
	case KindObject:
		dst = append(dst, '{')
		for k, m := range v.obj {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = appendQuoted(dst, m.Key)
			dst = append(dst, ':')
			dst = m.Value.appendJSON(dst)
		}
		return append(dst, '}')
	}
	return append(dst, "null"...)
}

// ParseValue decodes data as one serde_json::Value, with serde_json's errors.
func ParseValue(data []byte) (Value, error) {
	var v Value
	err := Unmarshal(data, &v)
	return v, err
}

// value reads any JSON value (serde_json's deserialize_any with Value's visitor).
func (r *reader) value() (Value, error) {
	b, ok := r.skipSpace()
	if !ok {
		return Value{}, r.errPeek(codeEOFValue)
	}
	switch {
	case b == 'n':
		r.eat()
		return Value{}, r.literal("ull")
	case b == 't':
		r.eat()
		return BoolValue(true), r.literal("rue")
	case b == 'f':
		r.eat()
		return BoolValue(false), r.literal("alse")
	case b == '-' || (b >= '0' && b <= '9'):
		n, err := r.signedNumber()
		return NumberValue(n), err
	case b == '"':
		r.eat()
		s, err := r.str()
		if err != nil {
			return Value{}, err
		}
		return StringValue(string(s)), nil
	case b == '[':
		if err := r.enter(); err != nil {
			return Value{}, err
		}
		r.eat()
		elems := []Value{}
		var err error
		for first := true; ; {
			var more bool
			if more, err = r.hasElement(&first); err != nil || !more {
				break
			}
			var e Value
			if e, err = r.value(); err != nil {
				break
			}
			elems = append(elems, e)
		}
		r.leave()
		if err = firstErr(err, r.endSeq()); err != nil {
			return Value{}, err
		}
		return Value{kind: KindArray, arr: elems}, nil
	case b == '{':
		if err := r.enter(); err != nil {
			return Value{}, err
		}
		r.eat()
		members := []Member{}
		var err error
		for first := true; ; {
			var more bool
			if more, err = r.hasKey(&first); err != nil || !more {
				break
			}
			var k []byte
			if k, err = r.key(); err != nil {
				break
			}
			key := string(k)
			if err = r.colon(); err != nil {
				break
			}
			var e Value
			if e, err = r.value(); err != nil {
				break
			}
			members = append(members, Member{Key: key, Value: e})
		}
		r.leave()
		if err = firstErr(err, r.endMap()); err != nil {
			return Value{}, err
		}
		return Value{kind: KindObject, obj: normalizeMembers(members)}, nil
	}
	return Value{}, r.errPeek(codeExpectedValue)
}
