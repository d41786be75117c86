package uffd

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func mappingsJSON(t testing.TB, ms []Mapping) []byte {
	t.Helper()
	b, err := json.Marshal(ms)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeMappings(t *testing.T) {
	const mem = 8 << 20
	m4 := func(base, size, off uint64) Mapping {
		return Mapping{BaseHostVirtAddr: base, Size: size, Offset: off, PageSize: PageSize4K, PageSizeKiB: PageSize4K}
	}
	many := make([]Mapping, MaxMappings+1)
	for i := range many {
		many[i] = m4(uint64(i+1)<<20, 4096, uint64(i)*4096)
	}
	huge := Mapping{BaseHostVirtAddr: 1 << 30, Size: 4 << 20, Offset: 4 << 20, PageSize: PageSize2M, PageSizeKiB: PageSize2M}

	tests := []struct {
		name    string
		data    string
		want    []Mapping
		wantErr string // substring; "" means accepted
	}{
		{name: "firecracker two regions", data: string(mappingsJSON(t, []Mapping{m4(0x7f0000000000, 0x100000, 0), m4(0x7f1000000000, 0x200000, 0x100000)})),
			want: []Mapping{m4(0x7f0000000000, 0x100000, 0), m4(0x7f1000000000, 0x200000, 0x100000)}},
		{name: "huge pages", data: string(mappingsJSON(t, []Mapping{huge})), want: []Mapping{huge}},
		{name: "page_size_kib absent", data: `[{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":4096}]`,
			want: []Mapping{{BaseHostVirtAddr: 4096, Size: 4096, PageSize: 4096}}},
		{name: "unknown keys ignored", data: `[{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":4096,"page_size_kib":4096,"x":1}]`,
			want: []Mapping{m4(4096, 4096, 0)}},
		{name: "exactly the file", data: string(mappingsJSON(t, []Mapping{m4(4096, mem, 0)})), want: []Mapping{m4(4096, mem, 0)}},
		{name: "max mappings", data: string(mappingsJSON(t, many[:MaxMappings])), want: many[:MaxMappings]},

		{name: "not JSON", data: `{"nope"`, wantErr: "not a JSON array"},
		{name: "object not array", data: `{"size":4096}`, wantErr: "not a JSON array"},
		{name: "trailing garbage", data: string(mappingsJSON(t, []Mapping{m4(4096, 4096, 0)})) + "x", wantErr: "not a JSON array"},
		{name: "negative size", data: `[{"base_host_virt_addr":4096,"size":-4096,"offset":0,"page_size":4096}]`, wantErr: "not a JSON array"},
		{name: "empty", data: `[]`, wantErr: "no mappings"},
		{name: "null", data: `null`, wantErr: "no mappings"},
		{name: "65 mappings", data: string(mappingsJSON(t, many)), wantErr: "65 mappings, at most 64"},
		{name: "page size 8K", data: `[{"base_host_virt_addr":8192,"size":8192,"offset":0,"page_size":8192,"page_size_kib":8192}]`, wantErr: "page_size 8192 is neither"},
		{name: "page size 0", data: `[{"base_host_virt_addr":8192,"size":8192,"offset":0}]`, wantErr: "page_size 0"},
		{name: "kib differs", data: `[{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":4096,"page_size_kib":4}]`, wantErr: "page_size_kib 4 differs"},
		{name: "size 0", data: string(mappingsJSON(t, []Mapping{m4(4096, 0, 0)})), wantErr: "size is 0"},
		{name: "unaligned base", data: string(mappingsJSON(t, []Mapping{m4(4097, 4096, 0)})), wantErr: "must be multiples of page_size"},
		{name: "unaligned size", data: string(mappingsJSON(t, []Mapping{m4(4096, 4095, 0)})), wantErr: "must be multiples of page_size"},
		{name: "unaligned offset", data: string(mappingsJSON(t, []Mapping{m4(4096, 4096, 512)})), wantErr: "must be multiples of page_size"},
		{name: "huge unaligned to 2M", data: string(mappingsJSON(t, []Mapping{{BaseHostVirtAddr: 1 << 30, Size: 4096, PageSize: PageSize2M}})), wantErr: "must be multiples of page_size 0x200000"},
		{name: "offset beyond file", data: string(mappingsJSON(t, []Mapping{m4(4096, 4096, mem)})), wantErr: "exceeds the memory file"},
		{name: "size beyond file", data: string(mappingsJSON(t, []Mapping{m4(4096, mem+4096, 0)})), wantErr: "exceeds the memory file"},
		{name: "offset+size overflows", data: string(mappingsJSON(t, []Mapping{m4(4096, 4096, 1<<64-4096)})), wantErr: "exceeds the memory file"},
		{name: "address wraps", data: string(mappingsJSON(t, []Mapping{m4(1<<64-4096, 8192, 0)})), wantErr: "overflows"},
		{name: "overlap", data: string(mappingsJSON(t, []Mapping{m4(1<<20, 8192, 0), m4(1<<20+4096, 4096, 8192)})), wantErr: "mapping 1: host range overlaps mapping 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeMappings([]byte(tt.data), mem)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %+v, want %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %+v, want an error containing %q", got, tt.wantErr)
			}
			if !errors.Is(err, ErrBadHandshake) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q: want ErrBadHandshake containing %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzMappings checks that the handshake decoder never panics and that what
// it accepts honours every bound a handler relies on.
func FuzzMappings(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, memSize uint32) {
		ms, err := decodeMappings(data, int64(memSize))
		if err != nil {
			if !errors.Is(err, ErrBadHandshake) {
				t.Fatalf("error not classified: %v", err)
			}
			return
		}
		if len(ms) == 0 || len(ms) > MaxMappings {
			t.Fatalf("accepted %d mappings", len(ms))
		}
		for i, m := range ms {
			if m.PageSize != PageSize4K && m.PageSize != PageSize2M {
				t.Fatalf("mapping %d: page size %d", i, m.PageSize)
			}
			if m.Size == 0 || (m.BaseHostVirtAddr|m.Size|m.Offset)%m.PageSize != 0 {
				t.Fatalf("mapping %d unaligned: %+v", i, m)
			}
			if end := m.Offset + m.Size; end < m.Offset || end > uint64(memSize) {
				t.Fatalf("mapping %d outside the %d-byte file: %+v", i, memSize, m)
			}
			if m.BaseHostVirtAddr+m.Size < m.BaseHostVirtAddr {
				t.Fatalf("mapping %d wraps: %+v", i, m)
			}
		}
		again, err := decodeMappings(mappingsJSON(t, ms), int64(memSize))
		if err != nil || !reflect.DeepEqual(again, ms) {
			t.Fatalf("re-encoded mappings decode differently: %v %+v vs %+v", err, again, ms)
		}
	})
}

func TestRangeSet(t *testing.T) {
	tests := []struct {
		name string
		adds [][2]uint64
		want [][2]uint64
	}{
		{"one", [][2]uint64{{0x1000, 0x3000}}, [][2]uint64{{0x1000, 0x3000}}},
		{"empty range ignored", [][2]uint64{{0x3000, 0x3000}, {0x5000, 0x4000}}, nil},
		{"adjacent merge", [][2]uint64{{0x1000, 0x2000}, {0x2000, 0x3000}, {0x0, 0x1000}}, [][2]uint64{{0x0, 0x3000}}},
		{"disjoint sorted", [][2]uint64{{0x5000, 0x6000}, {0x1000, 0x2000}, {0x3000, 0x4000}}, [][2]uint64{{0x1000, 0x2000}, {0x3000, 0x4000}, {0x5000, 0x6000}}},
		{"bridge", [][2]uint64{{0x1000, 0x2000}, {0x5000, 0x6000}, {0x1800, 0x5800}}, [][2]uint64{{0x1000, 0x6000}}},
		{"contained", [][2]uint64{{0x1000, 0x9000}, {0x2000, 0x3000}}, [][2]uint64{{0x1000, 0x9000}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rs rangeSet
			for _, a := range tt.adds {
				rs.add(a[0], a[1])
			}
			if fmt.Sprint(rs.r) != fmt.Sprint(tt.want) {
				t.Fatalf("ranges %v, want %v", rs.r, tt.want)
			}
			for a := uint64(0); a < 0xa000; a += 0x400 {
				in := false
				for _, w := range tt.want {
					in = in || (a >= w[0] && a < w[1])
				}
				if rs.contains(a) != in {
					t.Fatalf("contains(%#x) = %v, want %v", a, !in, in)
				}
			}
		})
	}
}
