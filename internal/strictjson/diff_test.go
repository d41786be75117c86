package strictjson

import (
	"bytes"
	"flag"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var (
	diffN    = flag.Int("diff.n", 20000, "number of generated inputs for TestDifferential")
	diffSeed = flag.Uint64("diff.seed", 1, "seed for TestDifferential")
)

// seedInputs are valid or nearly valid documents per type, the starting points
// of mutation.
var seedInputs = map[string][]string{
	"mc": {`{"vcpu_count": 2, "mem_size_mib": 1024, "smt": false, "cpu_template": "T2", "track_dirty_pages": true, "huge_pages": "2M"}`,
		`[1, 128, true, "C3", false, {"Transparent": null}]`},
	"mcu":         {`{"vcpu_count": 4, "mem_size_mib": null, "huge_pages": "None"}`},
	"boot":        {`{"kernel_image_path": "/vmlinux", "initrd_path": null, "boot_args": "console=ttyS0 reboot=k panic=1"}`},
	"tb":          {`{"size": 1000, "one_time_burst": 10, "refill_time": 100, "x": [1, {"y": "z"}]}`},
	"rl":          {`{"bandwidth": {"size": 1, "refill_time": 2}, "ops": {"size": 3, "one_time_burst": null, "refill_time": 4}}`},
	"drive":       {`{"drive_id": "rootfs", "partuuid": null, "is_root_device": true, "cache_type": "Unsafe", "is_read_only": false, "path_on_host": "/r", "rate_limiter": {"ops": {"size": 1, "refill_time": 1}}, "io_engine": "Sync", "socket": null}`},
	"logger":      {`{"log_path": "/l", "level": "Debug", "show_level": true, "show_log_origin": false, "module": "api"}`},
	"metrics":     {`{"metrics_path": "/m", "emit_id": true, "properties": {"k": "v", "a": "b"}}`},
	"mmds":        {`{"version": "V2", "network_interfaces": ["eth0", "eth1"], "ipv4_address": "169.254.169.254", "imds_compat": true}`},
	"net":         {`{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:AC:10:00:02", "rx_rate_limiter": null, "tx_rate_limiter": {"bandwidth": {"size": 1, "refill_time": 1}}}`},
	"ints":        {`{"a": 1, "b": 2, "c": 3, "d": 4, "e": -5, "f": -6, "g": -7, "h": -8, "i": 9, "j": 1.25, "k": -0.5}`},
	"empty":       {`{}`},
	"empty_allow": {`{"a": [1, "b", {"c": null}]}`},
	"one":         {`{"a": 7}`, `[7]`},
	"two":         {`{"a": 7, "b": true}`, `[7, false]`},
	"with_value":  {`{"data": {"b": [1, 2.5, "x", null, true], "a": {"c": -1}}, "opt": {"z": {}}}`},
	"snap":        {`{"snapshot_path": "/s", "mem_file_path": "/m", "resume_vm": true, "network_overrides": [{"iface_id": "a", "host_dev_name": "b"}]}`},
	"nest":        {`{"next": {"next": {"next": null}}}`},
	"value":       {`{"a": [1, -2, 3.5e10, "s\n\u00e9", true, false, null], "b": {"c": {}}, "a": 0}`},
	"vec_string":  {`["a", "b\"c", "\ud83d\ude00"]`},
	"vec_tb":      {`[{"size": 1, "refill_time": 2}, {"size": 3, "refill_time": 4, "q": 1}]`},
	"map_string":  {`{"b": "1", "a": "2", "b": "3"}`},
	"map_u32":     {`{"x": 4294967295, "y": 0}`},
	"string":      {`"hello \u0041\t"`},
	"bool":        {`true`},
	"u8":          {`255`}, "u16": {`65535`}, "u32": {`4294967295`}, "u64": {`18446744073709551615`},
	"i8": {`-128`}, "i16": {`-32768`}, "i32": {`-2147483648`}, "i64": {`-9223372036854775808`},
	"usize": {`123`}, "f64": {`-1.5e-7`}, "f32": {`3.4028235e38`}, "opt_u8": {`null`, `7`},
	"level": {`"WaRn"`}, "huge": {`"Transparent"`, `{"2M": null}`}, "mmds_version": {`"V1"`},
	"vec_level": {`["info", "TRACE", "warning"]`}, "map_level": {`{"a": "Off", "b": "error"}`},
	"macs": {`{"macs": ["01:02:03:04:05:06"], "opt": [null, "aa:bb:cc:dd:ee:ff"]}`},
	"lone": {`"Only"`, `{"Only": null}`}, "never": {`"x"`, `{"x": null}`}, "ipv4": {`"10.0.0.1"`}, "path": {`"/tmp/x"`}, "mac": {`"aa:bb:cc:dd:ee:ff"`},
}

// pieces are fragments spliced into inputs by the mutator.
var pieces = []string{
	`{`, `}`, `[`, `]`, `,`, `:`, `"`, `\`, ` `, "\n", "\t", "\r", `null`, `true`, `false`, `nul`, `tru`,
	`0`, `-`, `.`, `e`, `E`, `+`, `1e400`, `-0`, `0.1`, `1.5`, `1e-400`, `18446744073709551616`, `-9223372036854775809`,
	`256`, `-1`, `65536`, `4294967296`, `\u`, `\ud800`, `\udc00`, `\u00e9`, `\ud83d\ude00`, `\x`, "\x00", "\x1f", "\x7f",
	"\xff", "\xc3", "\xe2\x80\xa8", "\u00ad", "\u0301", `"V1"`, `"2M"`, `"None"`, `"x"`, `"vcpu_count"`, `"size"`,
	`{"2M": null}`, `[1]`, `{}`, `[]`, `"a":1,`, `""`,
}

func genNumber(rnd *rand.Rand) string {
	switch rnd.IntN(8) {
	case 0:
		return strconv.FormatUint(rnd.Uint64()>>rnd.UintN(64), 10)
	case 1:
		return "-" + strconv.FormatUint(rnd.Uint64()>>rnd.UintN(64), 10)
	case 2:
		return strconv.FormatFloat(math.Float64frombits(rnd.Uint64()), 'g', -1, 64)
	case 3:
		return strconv.FormatFloat(rnd.NormFloat64()*math.Pow(10, float64(rnd.IntN(40)-20)), 'e', rnd.IntN(20)-1, 64)
	case 4:
		digits := make([]byte, 1+rnd.IntN(40))
		for k := range digits {
			digits[k] = byte('0' + rnd.IntN(10))
		}
		if digits[0] == '0' {
			digits[0] = '1'
		}
		s := string(digits)
		if rnd.IntN(2) == 0 {
			p := 1 + rnd.IntN(len(s))
			s = s[:p] + "." + s[p:] + "1"
		}
		if rnd.IntN(2) == 0 {
			s += "e" + []string{"", "+", "-"}[rnd.IntN(3)] + strconv.Itoa(rnd.IntN(700))
		}
		return s
	case 5:
		return "0." + strings.Repeat("0", rnd.IntN(330)) + strconv.Itoa(rnd.IntN(1000)+1)
	case 6:
		return strconv.Itoa(rnd.IntN(300) - 20)
	default:
		return "1e" + strconv.Itoa(rnd.IntN(20)+290) + []string{"", "0", "1"}[rnd.IntN(3)]
	}
}

func genString(rnd *rand.Rand) string {
	var b strings.Builder
	b.WriteByte('"')
	for n := rnd.IntN(8); n > 0; n-- {
		switch rnd.IntN(6) {
		case 0:
			b.WriteString(pieces[rnd.IntN(len(pieces))])
		case 1:
			b.WriteString(`\u` + strconv.FormatInt(int64(0x10000+rnd.IntN(0x10000)), 16)[1:])
		case 2:
			b.WriteRune(rune(rnd.IntN(0x30000)))
		default:
			b.WriteByte(byte('a' + rnd.IntN(26)))
		}
	}
	b.WriteByte('"')
	return b.String()
}

func genValue(rnd *rand.Rand, depth int) string {
	switch k := rnd.IntN(10); {
	case depth > 4 || k < 3:
		return genNumber(rnd)
	case k < 5:
		return genString(rnd)
	case k < 6:
		return []string{"null", "true", "false"}[rnd.IntN(3)]
	case k < 8:
		var parts []string
		for n := rnd.IntN(4); n > 0; n-- {
			parts = append(parts, genValue(rnd, depth+1))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	default:
		var parts []string
		for n := rnd.IntN(4); n > 0; n-- {
			parts = append(parts, genString(rnd)+": "+genValue(rnd, depth+1))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
}

func mutate(rnd *rand.Rand, in string) string {
	for n := 1 + rnd.IntN(3); n > 0; n-- {
		p := 0
		if len(in) > 0 {
			p = rnd.IntN(len(in) + 1)
		}
		switch rnd.IntN(8) {
		case 0:
			if p < len(in) {
				in = in[:p] + in[p+1:]
			}
		case 1:
			in = in[:p] + pieces[rnd.IntN(len(pieces))] + in[p:]
		case 2:
			in = in[:p]
		case 3:
			in = in[:p] + genNumber(rnd) + in[p:]
		case 4:
			in = in[:p] + genString(rnd) + in[p:]
		case 5:
			in = in[:p] + genValue(rnd, 2) + in[p:]
		case 6:
			if p < len(in) {
				in = in[:p] + string(rune(rnd.IntN(128))) + in[p+1:]
			}
		default:
			// Replace the value after a colon with a generated one.
			if c := strings.Index(in[p:], ":"); c >= 0 {
				q := p + c + 1
				end := q
				for end < len(in) && !strings.ContainsRune(",}]", rune(in[end])) {
					end++
				}
				in = in[:q] + " " + genValue(rnd, 3) + in[end:]
			}
		}
	}
	return in
}

// depthCases probe the recursion limit around 127/128 levels.
func depthCases() []oracleCase {
	var cs []oracleCase
	for _, d := range []int{126, 127, 128, 129, 300} {
		cs = append(cs,
			oracleCase{"value", []byte(strings.Repeat("[", d) + strings.Repeat("]", d))},
			oracleCase{"value", []byte(strings.Repeat(`{"a":`, d) + "1" + strings.Repeat("}", d))},
			oracleCase{"nest", []byte(strings.Repeat(`{"next":`, d) + "null" + strings.Repeat("}", d))},
			oracleCase{"tb", []byte(`{"size":1,"refill_time":2,"x":` + strings.Repeat("[", d) + strings.Repeat("]", d) + "}")},
			oracleCase{"with_value", []byte(`{"data":` + strings.Repeat("[", d) + strings.Repeat("]", d) + "}")},
			oracleCase{"vec_tb", []byte(strings.Repeat("[", d))},
			oracleCase{"huge", []byte(strings.Repeat(`{"2M":`, d))},
		)
	}
	return cs
}

func generateCases(seed uint64, n int) []oracleCase {
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	types := make([]string, 0, len(seedInputs))
	for t := range seedInputs {
		types = append(types, t)
	}
	sort.Strings(types)
	cases := depthCases()
	for _, c := range serdeCases {
		cases = append(cases, oracleCase{c.typ, []byte(c.in)})
	}
	for len(cases) < n {
		typ := types[rnd.IntN(len(types))]
		var in string
		switch rnd.IntN(10) {
		case 0:
			in = genValue(rnd, 0)
		case 1:
			seeds := seedInputs[typ]
			in = seeds[rnd.IntN(len(seeds))]
		case 2:
			c := serdeCases[rnd.IntN(len(serdeCases))]
			typ, in = c.typ, mutate(rnd, c.in)
		default:
			seeds := seedInputs[typ]
			in = mutate(rnd, seeds[rnd.IntN(len(seeds))])
		}
		cases = append(cases, oracleCase{typ, []byte(in)})
	}
	return cases
}

// TestDifferential compares ember's decoder with real serde_json on generated
// inputs: same acceptance, same error text and position, same re-serialization.
func TestDifferential(t *testing.T) {
	needOracle(t)
	cases := generateCases(*diffSeed, *diffN)
	want := askOracle(t, cases)
	bad := 0
	kinds := map[string]int{}
	for k, c := range cases {
		status, got := run(c.Type, c.Input)
		msg, _, _ := strings.Cut(want[k].Out, " at line")
		if want[k].Status == "ok" {
			msg = "ok"
		} else if i := strings.IndexAny(msg, ":`"); i > 0 {
			msg = msg[:i]
		}
		kinds[msg]++
		if status == want[k].Status && got == want[k].Out {
			continue
		}
		bad++
		if bad <= 30 {
			t.Errorf("%s %q:\n got %s %q\nwant %s %q", c.Type, c.Input, status, got, want[k].Status, want[k].Out)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d generated cases differ from serde_json", bad, len(cases))
	}
	t.Logf("%d generated cases compared; outcomes: %v", len(cases), kinds)
	_ = bytes.MinRead
}

// TestDifferentialFloats stresses number parsing and float formatting: random
// doubles written in many notations, read as f64, f32 and Value.
func TestDifferentialFloats(t *testing.T) {
	needOracle(t)
	rnd := rand.New(rand.NewPCG(*diffSeed, 42))
	var cases []oracleCase
	for len(cases) < *diffN {
		var s string
		f := math.Float64frombits(rnd.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		switch rnd.IntN(4) {
		case 0:
			s = strconv.FormatFloat(f, 'g', -1, 64)
		case 1:
			s = strconv.FormatFloat(f, 'e', rnd.IntN(25), 64)
		case 2:
			s = strconv.FormatFloat(float64(float32(f)), 'g', -1, 32)
		default:
			s = genNumber(rnd)
		}
		s = strings.Replace(s, "e+", []string{"e+", "e", "E+", "E"}[rnd.IntN(4)], 1)
		typ := []string{"f64", "f32", "value", "u64", "i64"}[rnd.IntN(5)]
		cases = append(cases, oracleCase{typ, []byte(s)})
	}
	want := askOracle(t, cases)
	bad := 0
	for k, c := range cases {
		status, got := run(c.Type, c.Input)
		if status != want[k].Status || got != want[k].Out {
			if bad++; bad <= 30 {
				t.Errorf("%s %q:\n got %s %q\nwant %s %q", c.Type, c.Input, status, got, want[k].Status, want[k].Out)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d float cases differ from serde_json", bad, len(cases))
	}
}
