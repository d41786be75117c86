package strictjson

import (
	"errors"
	"reflect"
	"strconv"
)

// Unmarshal decodes data into v (a non-nil pointer) with serde_json::from_slice's
// rules and error texts. On failure v may be partly written.
func Unmarshal(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errors.New("strictjson: Unmarshal needs a non-nil pointer")
	}
	c, err := codecFor(rv.Elem().Type())
	if err != nil {
		return err
	}
	r := newReader(data)
	if err := r.decode(c, rv.Elem(), true); err != nil {
		return err
	}
	if _, ok := r.skipSpace(); ok {
		return r.errPeek(codeTrailingChars)
	}
	return nil
}

// decode fills dst (settable) from the input, following what the Rust type's
// Deserialize impl asks serde_json for. keepRaw asks Values to remember their
// input bytes.
func (r *reader) decode(c *codec, dst reflect.Value, keepRaw bool) error {
	switch c.kind {
	case kPtr:
		return r.decodeOption(c, dst)
	case kBool:
		return r.decodeBool(c, dst)
	case kUint, kInt, kFloat32, kFloat64:
		return r.decodeNumber(c, dst)
	case kString, kStrVisitor:
		return r.decodeStr(c, dst)
	case kStringHook:
		return r.decodeStringHook(dst)
	case kEnum:
		return r.decodeEnum(c, dst)
	case kStruct:
		return r.decodeStruct(c, dst)
	case kSlice:
		return r.decodeSeq(c, dst)
	case kMap:
		return r.decodeMap(c, dst)
	case kValue, kRaw, kAny, kValueHook:
		return r.decodeValue(c, dst, keepRaw)
	}
	return unsupported(c.typ, "no decoder")
}

// invalidType scans the offending value to describe it (serde_json's
// peek_invalid_type); arrays and objects are named without being consumed.
func (r *reader) invalidType(expected string) error {
	var unexp Unexpected
	switch b := r.peekOrNul(); {
	case b == 'n':
		r.eat()
		if err := r.literal("ull"); err != nil {
			return err
		}
		unexp = UnexpectedNull()
	case b == 't':
		r.eat()
		if err := r.literal("rue"); err != nil {
			return err
		}
		unexp = UnexpectedBool(true)
	case b == 'f':
		r.eat()
		if err := r.literal("alse"); err != nil {
			return err
		}
		unexp = UnexpectedBool(false)
	case b == '-' || (b >= '0' && b <= '9'):
		n, err := r.signedNumber()
		if err != nil {
			return err
		}
		unexp = n.unexpected()
	case b == '"':
		r.eat()
		s, err := r.str()
		if err != nil {
			return err
		}
		unexp = UnexpectedString(string(s))
	case b == '[':
		unexp = UnexpectedSeq()
	case b == '{':
		unexp = UnexpectedMap()
	default:
		return r.errPeek(codeExpectedValue)
	}
	return r.fix(InvalidType(unexp, expected))
}

func (r *reader) decodeOption(c *codec, dst reflect.Value) error {
	if b, ok := r.skipSpace(); ok && b == 'n' {
		r.eat()
		if err := r.literal("ull"); err != nil {
			return err
		}
		dst.SetZero()
		return nil
	}
	p := reflect.New(c.elem.typ)
	if c.elem.defaulter {
		p.Interface().(Defaulter).SetSerdeDefaults()
	}
	if err := r.decode(c.elem, p.Elem(), true); err != nil {
		return err
	}
	dst.Set(p)
	return nil
}

func (r *reader) decodeBool(c *codec, dst reflect.Value) error {
	b, ok := r.skipSpace()
	if !ok {
		return r.errPeek(codeEOFValue)
	}
	var err error
	switch b {
	case 't':
		r.eat()
		if err = r.literal("rue"); err == nil {
			dst.SetBool(true)
		}
	case 'f':
		r.eat()
		if err = r.literal("alse"); err == nil {
			dst.SetBool(false)
		}
	default:
		err = r.invalidType(c.expecting)
	}
	return r.fix(err)
}

func (r *reader) decodeNumber(c *codec, dst reflect.Value) error {
	b, ok := r.skipSpace()
	if !ok {
		return r.errPeek(codeEOFValue)
	}
	if b != '-' && (b < '0' || b > '9') {
		return r.fix(r.invalidType(c.expecting))
	}
	n, err := r.signedNumber()
	if err != nil {
		return err
	}
	return r.fix(setNumber(c, n, dst))
}

// setNumber applies serde's primitive visitors: integers must fit the target
// (else "invalid value"), floats never fit an integer (else "invalid type").
func setNumber(c *codec, n Number, dst reflect.Value) error {
	switch c.kind {
	case kFloat64:
		dst.SetFloat(n.F64())
		return nil
	case kFloat32:
		dst.SetFloat(float64(float32ForRust(n)))
		return nil
	}
	if n.kind == numFloat {
		return InvalidType(UnexpectedFloat(n.f), c.expecting)
	}
	if c.kind == kUint {
		if n.kind == numPosInt && n.u <= c.max {
			dst.SetUint(n.u)
			return nil
		}
	} else {
		switch {
		case n.kind == numPosInt && n.u <= c.max:
			dst.SetInt(int64(n.u))
			return nil
		case n.kind == numNegInt && n.i >= c.min:
			dst.SetInt(n.i)
			return nil
		}
	}
	if n.kind == numPosInt {
		return InvalidValue(UnexpectedUnsigned(n.u), c.expecting)
	}
	return InvalidValue(UnexpectedSigned(n.i), c.expecting)
}

// float32ForRust converts like Rust's `as f32` from u64, i64 or f64.
func float32ForRust(n Number) float32 {
	switch n.kind {
	case numPosInt:
		return float32(n.u)
	case numNegInt:
		return float32(n.i)
	}
	return float32(n.f)
}

func (r *reader) decodeStr(c *codec, dst reflect.Value) error {
	b, ok := r.skipSpace()
	if !ok {
		return r.errPeek(codeEOFValue)
	}
	if b != '"' {
		return r.fix(r.invalidType(c.expecting))
	}
	r.eat()
	s, err := r.str()
	if err != nil {
		return err
	}
	if c.kind == kStrVisitor {
		v := dst.Addr().Interface().(StrVisitor)
		if herr := v.VisitSerdeStr(string(s)); herr != nil {
			return r.fix(dataError(herr.Error(), herr))
		}
		return nil
	}
	dst.SetString(string(s))
	return nil
}

// decodeStringHook reads a String, then lets the type judge it; its error is
// left without a position for the enclosing container to fill in.
func (r *reader) decodeStringHook(dst reflect.Value) error {
	b, ok := r.skipSpace()
	if !ok {
		return r.errPeek(codeEOFValue)
	}
	if b != '"' {
		return r.fix(r.invalidType("a string"))
	}
	r.eat()
	s, err := r.str()
	if err != nil {
		return err
	}
	if herr := dst.Addr().Interface().(StringUnmarshaler).UnmarshalSerdeString(string(s)); herr != nil {
		return dataError(herr.Error(), herr)
	}
	return nil
}

func (r *reader) decodeValue(c *codec, dst reflect.Value, keepRaw bool) error {
	if _, ok := r.skipSpace(); !ok {
		return r.errPeek(codeEOFValue)
	}
	start := r.i
	v, err := r.value()
	if err != nil {
		return err
	}
	if keepRaw || c.kind == kRaw {
		v.raw = append([]byte(nil), r.data[start:r.i]...)
	}
	switch c.kind {
	case kRaw:
		dst.SetBytes(v.raw)
	case kAny:
		dst.Set(reflect.ValueOf(v))
	case kValueHook:
		if herr := dst.Addr().Interface().(ValueUnmarshaler).UnmarshalSerde(v); herr != nil {
			return dataError(herr.Error(), herr)
		}
	default:
		dst.Set(reflect.ValueOf(v))
	}
	return nil
}

// decodeEnum follows serde_json's deserialize_enum for unit variants: "Name"
// or {"Name": null}; anything else is a syntax error ("expected value").
func (r *reader) decodeEnum(c *codec, dst reflect.Value) error {
	b, ok := r.skipSpace()
	switch {
	case !ok:
		return r.errPeek(codeEOFValue)
	case b == '"':
		r.eat()
		s, err := r.str()
		if err != nil {
			return err
		}
		if err := c.matchVariant(string(s), dst); err != nil {
			return r.fix(err)
		}
		return nil
	case b != '{':
		return r.errPeek(codeExpectedValue)
	}

	if err := r.enter(); err != nil {
		return err
	}
	r.eat()
	b, ok = r.skipSpace()
	switch {
	case !ok:
		return r.errPeek(codeEOFObject)
	case b == '}':
		return r.errPeek(codeExpectedValue)
	case b != '"':
		return r.errPeek(codeKeyMustBeString)
	}
	s, err := r.key()
	if err != nil {
		return err
	}
	if err := c.matchVariant(string(s), dst); err != nil {
		return r.fix(err)
	}
	if err := r.colon(); err != nil {
		return err
	}
	// A unit variant's content must be null (serde's `()`).
	b, ok = r.skipSpace()
	switch {
	case !ok:
		return r.errPeek(codeEOFValue)
	case b == 'n':
		r.eat()
		if err := r.literal("ull"); err != nil {
			return err
		}
	default:
		return r.fix(r.invalidType("unit"))
	}
	r.leave()
	b, ok = r.skipSpace()
	switch {
	case !ok:
		return r.errAt(codeEOFObject)
	case b != '}':
		return r.errAt(codeExpectedValue)
	}
	r.eat()
	return nil
}

func (c *codec) matchVariant(s string, dst reflect.Value) error {
	for _, v := range c.variants {
		if v == s {
			dst.SetString(s)
			return nil
		}
	}
	return unknownVariant(s, c.variants)
}

func (r *reader) decodeStruct(c *codec, dst reflect.Value) error {
	b, ok := r.skipSpace()
	if !ok {
		return r.errPeek(codeEOFValue)
	}
	var err error
	switch b {
	case '[':
		if err := r.enter(); err != nil {
			return err
		}
		r.eat()
		err = r.structFromSeq(c, dst)
		r.leave()
		err = firstErr(err, r.endSeq())
	case '{':
		if err := r.enter(); err != nil {
			return err
		}
		r.eat()
		err = r.structFromMap(c, dst)
		r.leave()
		err = firstErr(err, r.endMap())
	default:
		err = r.invalidType(c.expecting)
	}
	return r.fix(err)
}

// field decodes one struct field's value (Option fields accept null).
func (r *reader) field(f *fieldInfo, dst reflect.Value) error {
	return r.decode(f.codec, dst.Field(f.index), true)
}

func (r *reader) structFromMap(c *codec, dst reflect.Value) error {
	st := c.st
	seen := make([]bool, len(st.fields))
	for first := true; ; {
		more, err := r.hasKey(&first)
		if err != nil {
			return err
		}
		if !more {
			break
		}
		k, err := r.key()
		if err != nil {
			return err
		}
		idx, known := st.byName[string(k)]
		if !known {
			if !st.allowUnknown {
				return unknownField(string(k), st.names)
			}
			if err := r.colon(); err != nil {
				return err
			}
			if err := r.skipValue(); err != nil {
				return err
			}
			continue
		}
		f := &st.fields[idx]
		if seen[idx] {
			return duplicateField(f.name)
		}
		if err := r.colon(); err != nil {
			return err
		}
		if err := r.field(f, dst); err != nil {
			return err
		}
		seen[idx] = true
	}
	for k := range st.fields {
		f := &st.fields[k]
		switch {
		case seen[k] || f.hasDefault:
		case f.optional:
			dst.Field(f.index).SetZero()
		default:
			return missingField(f.name)
		}
	}
	return nil
}

// structFromSeq fills the fields in declaration order from array elements, as
// serde's derived visit_seq does; a missing element is only allowed for
// `serde:"default"` fields.
func (r *reader) structFromSeq(c *codec, dst reflect.Value) error {
	st := c.st
	first := true
	for k := range st.fields {
		f := &st.fields[k]
		more, err := r.hasElement(&first)
		if err != nil {
			return err
		}
		if more {
			if err := r.field(f, dst); err != nil {
				return err
			}
			continue
		}
		if !f.hasDefault {
			n := len(st.fields)
			what := c.expecting + " with " + strconv.Itoa(n) + " elements"
			if n == 1 {
				what = c.expecting + " with 1 element"
			}
			return invalidLength(k, what)
		}
	}
	return nil
}

// fresh allocates a zero T for a slice element or map value, with defaults.
func fresh(c *codec) reflect.Value {
	p := reflect.New(c.typ)
	if c.defaulter {
		p.Interface().(Defaulter).SetSerdeDefaults()
	}
	return p.Elem()
}

func (r *reader) decodeSeq(c *codec, dst reflect.Value) error {
	b, ok := r.skipSpace()
	if !ok {
		return r.errPeek(codeEOFValue)
	}
	if b != '[' {
		return r.fix(r.invalidType(c.expecting))
	}
	if err := r.enter(); err != nil {
		return err
	}
	r.eat()
	out := reflect.MakeSlice(c.typ, 0, 0)
	var err error
	for first := true; ; {
		var more bool
		if more, err = r.hasElement(&first); err != nil || !more {
			break
		}
		e := fresh(c.elem)
		if err = r.decode(c.elem, e, false); err != nil {
			break
		}
		out = reflect.Append(out, e)
	}
	r.leave()
	if err = firstErr(err, r.endSeq()); err != nil {
		return r.fix(err)
	}
	dst.Set(out)
	return nil
}

func (r *reader) decodeMap(c *codec, dst reflect.Value) error {
	b, ok := r.skipSpace()
	if !ok {
		return r.errPeek(codeEOFValue)
	}
	if b != '{' {
		return r.fix(r.invalidType(c.expecting))
	}
	if err := r.enter(); err != nil {
		return err
	}
	r.eat()
	out := reflect.MakeMap(c.typ)
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
		key := reflect.New(c.typ.Key()).Elem()
		key.SetString(string(k))
		if err = r.colon(); err != nil {
			break
		}
		e := fresh(c.elem)
		if err = r.decode(c.elem, e, false); err != nil {
			break
		}
		out.SetMapIndex(key, e)
	}
	r.leave()
	if err = firstErr(err, r.endMap()); err != nil {
		return r.fix(err)
	}
	dst.Set(out)
	return nil
}
