package strictjson

import (
	"strconv"
	"strings"
	"testing"
)

func BenchmarkUnmarshalMachineConfig(b *testing.B) {
	in := []byte(`{"vcpu_count": 2, "mem_size_mib": 1024, "smt": false, "track_dirty_pages": true, "huge_pages": "2M"}`)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		var mc MachineConfig
		if err := Unmarshal(in, &mc); err != nil {
			b.Fatal(err)
		}
	}
}

// An MMDS-sized (about 50 KB) document through Value and back to text.
func BenchmarkValueRoundTrip(b *testing.B) {
	var parts []string
	for k := 0; len(strings.Join(parts, ",")) < 50000; k++ {
		parts = append(parts, `"key`+strconv.Itoa(k)+`": {"n": `+strconv.Itoa(k*7919)+`, "f": 1.5e-3, "s": "v\u00e9\n", "a": [true, null]}`)
	}
	in := []byte("{" + strings.Join(parts, ",") + "}")
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		v, err := ParseValue(in)
		if err != nil {
			b.Fatal(err)
		}
		_ = v.Compact()
	}
}
