package strictjson

import (
	"math"
	"strconv"
)

// pow10 holds the correctly rounded doubles 1e0..1e308.
var pow10 = func() (t [309]float64) {
	for k := range t {
		t[k], _ = strconv.ParseFloat("1e"+strconv.Itoa(k), 64)
	}
	return t
}()

// wouldOverflow reports whether acc*10+digit exceeds limit.
func wouldOverflow(acc, digit, limit uint64) bool {
	return acc >= limit/10 && (acc > limit/10 || digit > limit%10)
}

// number reads a JSON number whose '-' (if any) was consumed. Like serde_json
// without its float_roundtrip feature it yields a u64 when non-negative and
// integral, an i64 when negative and in range (but -0 is the float -0.0), and
// otherwise a double computed as significand*10^exp with one rounding step per
// operation — not always the nearest double, but exactly what Firecracker gets.
func (r *reader) number(positive bool) (Number, error) {
	c, ok := r.next()
	if !ok {
		return Number{}, r.errAt(codeEOFValue)
	}
	var sig uint64
	switch {
	case c == '0':
		if d := r.peekOrNul(); d >= '0' && d <= '9' {
			return Number{}, r.errPeek(codeInvalidNumber)
		}
	case c >= '1' && c <= '9':
		sig = uint64(c - '0')
		for {
			d := r.peekOrNul()
			if d < '0' || d > '9' {
				break
			}
			if wouldOverflow(sig, uint64(d-'0'), math.MaxUint64) {
				f, err := r.longInteger(positive, sig)
				return floatNumber(f), err
			}
			r.eat()
			sig = sig*10 + uint64(d-'0')
		}
	default:
		return Number{}, r.errAt(codeInvalidNumber)
	}

	switch r.peekOrNul() {
	case '.':
		f, err := r.fraction(positive, sig, 0)
		return floatNumber(f), err
	case 'e', 'E':
		f, err := r.exponent(positive, sig, 0)
		return floatNumber(f), err
	}
	if positive {
		return Number{kind: numPosInt, u: sig}, nil
	}
	if neg := -int64(sig); neg < 0 {
		return Number{kind: numNegInt, i: neg}, nil
	}
	// -0, or a magnitude beyond i64: serde_json falls back to a double.
	return floatNumber(-float64(sig)), nil
}

// longInteger continues an integer too long for u64: later digits only scale it.
func (r *reader) longInteger(positive bool, sig uint64) (float64, error) {
	exp := int32(0)
	for {
		switch d := r.peekOrNul(); {
		case d >= '0' && d <= '9':
			r.eat()
			exp++
		case d == '.':
			return r.fraction(positive, sig, exp)
		case d == 'e' || d == 'E':
			return r.exponent(positive, sig, exp)
		default:
			return r.compose(positive, sig, exp)
		}
	}
}

// fraction reads '.' and the digits after it.
func (r *reader) fraction(positive bool, sig uint64, exp int32) (float64, error) {
	r.eat()
	digits := int32(0)
	for {
		d := r.peekOrNul()
		if d < '0' || d > '9' {
			break
		}
		if wouldOverflow(sig, uint64(d-'0'), math.MaxUint64) {
			// Further fraction digits cannot change the significand; drop them.
			r.skipDigits()
			if c := r.peekOrNul(); c == 'e' || c == 'E' {
				return r.exponent(positive, sig, exp-digits)
			}
			return r.compose(positive, sig, exp-digits)
		}
		r.eat()
		sig = sig*10 + uint64(d-'0')
		digits++
	}
	if digits == 0 {
		if _, ok := r.peek(); ok {
			return 0, r.errPeek(codeInvalidNumber)
		}
		return 0, r.errPeek(codeEOFValue)
	}
	if c := r.peekOrNul(); c == 'e' || c == 'E' {
		return r.exponent(positive, sig, exp-digits)
	}
	return r.compose(positive, sig, exp-digits)
}

// exponent reads 'e', an optional sign and the exponent digits.
func (r *reader) exponent(positive bool, sig uint64, base int32) (float64, error) {
	r.eat()
	expPositive := true
	switch r.peekOrNul() {
	case '+':
		r.eat()
	case '-':
		r.eat()
		expPositive = false
	}
	c, ok := r.next()
	if !ok {
		return 0, r.errAt(codeEOFValue)
	}
	if c < '0' || c > '9' {
		return 0, r.errAt(codeInvalidNumber)
	}
	e := uint64(c - '0')
	for {
		d := r.peekOrNul()
		if d < '0' || d > '9' {
			break
		}
		r.eat()
		if wouldOverflow(e, uint64(d-'0'), math.MaxInt32) {
			// A huge exponent: infinity is an error, zero is fine.
			if sig != 0 && expPositive {
				return 0, r.errAt(codeNumberOutOfRange)
			}
			r.skipDigits()
			if positive {
				return 0, nil
			}
			return math.Copysign(0, -1), nil
		}
		e = e*10 + uint64(d-'0')
	}
	total := int64(base)
	if expPositive {
		total += int64(e)
	} else {
		total -= int64(e)
	}
	// Saturate like i32::saturating_add/sub.
	if total > math.MaxInt32 {
		total = math.MaxInt32
	} else if total < math.MinInt32 {
		total = math.MinInt32
	}
	return r.compose(positive, sig, int32(total))
}

// compose computes sig*10^exp the way serde_json does by default.
func (r *reader) compose(positive bool, sig uint64, exp int32) (float64, error) {
	f := float64(sig)
	e := int64(exp)
	for {
		abs := e
		if abs < 0 {
			abs = -abs
		}
		if abs <= 308 {
			if e >= 0 {
				f *= pow10[abs]
				if math.IsInf(f, 0) {
					return 0, r.errAt(codeNumberOutOfRange)
				}
			} else {
				f /= pow10[abs]
			}
			break
		}
		if f == 0 {
			break
		}
		if e >= 0 {
			return 0, r.errAt(codeNumberOutOfRange)
		}
		f /= 1e308
		e += 308
	}
	if !positive {
		f = -f
	}
	return f, nil
}

// signedNumber reads a number, consuming a leading '-'.
func (r *reader) signedNumber() (Number, error) {
	if b, _ := r.peek(); b == '-' {
		r.eat()
		return r.number(false)
	}
	return r.number(true)
}
