package metrics

import (
	"fmt"
	"reflect"
	"strconv"
	"unicode/utf8"
)

// Sections are described once, by reflection over their `metric` tags, into
// a flat list of leaves holding typed pointers; writing a line then walks the
// leaves with no reflection and, once buffers have grown, no allocation.

type kind uint8

const (
	kindCounter kind = iota + 1
	kindGauge
	kindLatency
)

var (
	counterType = reflect.TypeFor[Counter]()
	gaugeType   = reflect.TypeFor[Gauge]()
	latencyType = reflect.TypeFor[LatencyAgg]()
)

// field is one metric of a section type: its pre-encoded `"key":` and kind.
type field struct {
	key   string
	kind  kind
	index int
}

// planOf describes a section struct type. A field without a tag or of another
// type is a programming error in this package, reported as an error so the
// tests name it.
func planOf(t reflect.Type) ([]field, error) {
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("metrics: %v is not a struct", t)
	}
	plan := make([]field, 0, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		name := sf.Tag.Get("metric")
		if name == "" {
			return nil, fmt.Errorf("metrics: %v.%s has no metric tag", t, sf.Name)
		}
		var k kind
		switch sf.Type {
		case counterType:
			k = kindCounter
		case gaugeType:
			k = kindGauge
		case latencyType:
			k = kindLatency
		default:
			return nil, fmt.Errorf("metrics: %v.%s has unsupported type %v", t, sf.Name, sf.Type)
		}
		plan = append(plan, field{key: string(appendKey(nil, name)), kind: k, index: i})
	}
	return plan, nil
}

// mustPlan is for the package's own section types, whose plans the tests check.
func mustPlan(t reflect.Type) []field {
	p, err := planOf(t)
	if err != nil {
		panic(err)
	}
	return p
}

// leaf is one metric of one section instance.
type leaf struct {
	key string
	c   *Counter
	g   *Gauge
	l   *LatencyAgg
}

// bind resolves plan against the section that ptr points to.
func bind(plan []field, ptr any) []leaf {
	v := reflect.ValueOf(ptr).Elem()
	leaves := make([]leaf, len(plan))
	for i, f := range plan {
		fv := v.Field(f.index).Addr().Interface()
		leaves[i].key = f.key
		switch f.kind {
		case kindCounter:
			leaves[i].c = fv.(*Counter)
		case kindGauge:
			leaves[i].g = fv.(*Gauge)
		case kindLatency:
			leaves[i].l = fv.(*LatencyAgg)
		}
	}
	return leaves
}

// snapshot remembers a counter total that becomes its baseline once the line
// that reported it has been written.
type snapshot struct {
	c     *Counter
	total uint64
}

// frame carries the state of writing one line.
type frame struct {
	b       []byte
	commit  bool
	pending []snapshot
}

func (fr *frame) counter(c *Counter) uint64 {
	total, d := c.delta()
	if fr.commit && d != 0 {
		fr.pending = append(fr.pending, snapshot{c, total})
	}
	return d
}

// object writes one section as `"key":{...}`; agg, if not nil, receives each
// counter's delta (a latency's sum delta) by field position.
func (fr *frame) object(key string, leaves []leaf, agg []uint64) {
	fr.b = append(fr.b, key...)
	fr.b = append(fr.b, '{')
	for i := range leaves {
		lf := &leaves[i]
		if i > 0 {
			fr.b = append(fr.b, ',')
		}
		fr.b = append(fr.b, lf.key...)
		switch {
		case lf.c != nil:
			d := fr.counter(lf.c)
			if agg != nil {
				agg[i] += d
			}
			fr.b = strconv.AppendUint(fr.b, d, 10)
		case lf.g != nil:
			fr.b = strconv.AppendUint(fr.b, lf.g.Get(), 10)
		case lf.l != nil:
			d := fr.counter(&lf.l.sum)
			if agg != nil {
				agg[i] += d
			}
			fr.b = appendLatency(fr.b, lf.l.min.Get(), lf.l.max.Get(), d)
		}
	}
	fr.b = append(fr.b, '}')
}

// aggregate writes the sum section of a device family. As in Firecracker,
// only counters (and latency sums) add up; gauges and latency min/max stay 0.
func (fr *frame) aggregate(key string, plan []field, agg []uint64) {
	fr.b = append(fr.b, key...)
	fr.b = append(fr.b, '{')
	for i, f := range plan {
		if i > 0 {
			fr.b = append(fr.b, ',')
		}
		fr.b = append(fr.b, f.key...)
		switch f.kind {
		case kindCounter:
			fr.b = strconv.AppendUint(fr.b, agg[i], 10)
		case kindGauge:
			fr.b = append(fr.b, '0')
		case kindLatency:
			fr.b = appendLatency(fr.b, 0, 0, agg[i])
		}
	}
	fr.b = append(fr.b, '}')
}

func appendLatency(b []byte, minUs, maxUs, sumUs uint64) []byte {
	b = append(b, `{"min_us":`...)
	b = strconv.AppendUint(b, minUs, 10)
	b = append(b, `,"max_us":`...)
	b = strconv.AppendUint(b, maxUs, 10)
	b = append(b, `,"sum_us":`...)
	b = strconv.AppendUint(b, sumUs, 10)
	return append(b, '}')
}

// appendKey appends `"name":`.
func appendKey(b []byte, name string) []byte {
	return append(appendString(b, name), ':')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string escaped the way serde_json does:
// only '"', '\\' and control characters are escaped (\b \t \n \f \r by name,
// the rest as \u00xx); everything else, including '<', DEL and non-ASCII,
// is written as is. Invalid UTF-8 becomes U+FFFD so the line stays valid JSON.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, "\ufffd"...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\b':
			b = append(b, '\\', 'b')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\f':
			b = append(b, '\\', 'f')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// reflectElem returns the type a pointer points to.
func reflectElem(ptr any) reflect.Type { return reflect.TypeOf(ptr).Elem() }
