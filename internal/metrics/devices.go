package metrics

import (
	"reflect"
	"sort"
	"sync"
)

// family holds the per-device sections of one device kind, kept sorted by id
// (byte order, as Firecracker's BTreeMap keeps them). Sections are never
// removed: a device id once seen keeps reporting, as in Firecracker.
type family[T any] struct {
	prefix string // "block_", "net_", ...
	aggKey string // pre-encoded `"block":`, or "" when the kind has no sum
	plan   []field

	mu   sync.Mutex
	devs []*device[T]
	agg  []uint64 // scratch for the sum; used only while writing a line
}

type device[T any] struct {
	id     string
	key    string // pre-encoded `"block_<id>":`
	m      *T
	leaves []leaf
}

func newFamily[T any](prefix, aggName string) *family[T] {
	f := &family[T]{prefix: prefix, plan: mustPlan(reflect.TypeFor[T]())}
	if aggName != "" {
		f.aggKey = string(appendKey(nil, aggName))
		f.agg = make([]uint64, len(f.plan))
	}
	return f
}

// get returns the section for id, creating it on first use.
func (f *family[T]) get(id string) *T {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := sort.Search(len(f.devs), func(i int) bool { return f.devs[i].id >= id })
	if i < len(f.devs) && f.devs[i].id == id {
		return f.devs[i].m
	}
	m := new(T)
	d := &device[T]{id: id, key: string(appendKey(nil, f.prefix+id)), m: m, leaves: bind(f.plan, m)}
	f.devs = append(f.devs, nil)
	copy(f.devs[i+1:], f.devs[i:])
	f.devs[i] = d
	return m
}

// write appends `,"<prefix><id>":{...}` for each device, then the sum section.
func (f *family[T]) write(fr *frame) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var agg []uint64
	if f.aggKey != "" {
		agg = f.agg
		clear(agg)
	}
	for _, d := range f.devs {
		fr.b = append(fr.b, ',')
		fr.object(d.key, d.leaves, agg)
	}
	if f.aggKey != "" {
		fr.b = append(fr.b, ',')
		fr.aggregate(f.aggKey, f.plan, agg)
	}
}
