package strictjson

import (
	"strings"
	"testing"
)

// serdeCases pairs inputs with what real serde_json 1.0.150 / serde 1.0.228
// answer for the mirrored Rust type (types_test.go): the error's Display, or the
// value re-serialized with serde_json::to_string. Every row was produced by the
// oracle in testdata/oracle; TestSerdeCasesAgainstOracle re-checks them.
var serdeCases = []struct {
	typ, in, status, want string
}{
	{"mc", "{\"mem_size_mib\": 128}", "err", "missing field `vcpu_count` at line 1 column 21"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 128}", "ok", "{\"vcpu_count\":2,\"mem_size_mib\":128,\"smt\":false,\"track_dirty_pages\":false,\"huge_pages\":\"None\"}"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"foo\": 1}", "err", "unknown field `foo`, expected one of `vcpu_count`, `mem_size_mib`, `smt`, `cpu_template`, `track_dirty_pages`, `huge_pages` at line 1 column 44"},
	{"mc", "{\"vcpu_count\": \"2\", \"mem_size_mib\": 128}", "err", "invalid type: string \"2\", expected u8 at line 1 column 18"},
	{"mc", "{\"vcpu_count\": 256, \"mem_size_mib\": 128}", "err", "invalid value: integer `256`, expected u8 at line 1 column 18"},
	{"mc", "{\"vcpu_count\": -1, \"mem_size_mib\": 128}", "err", "invalid value: integer `-1`, expected u8 at line 1 column 17"},
	{"mc", "{\"vcpu_count\": 1.5, \"mem_size_mib\": 128}", "err", "invalid type: floating point `1.5`, expected u8 at line 1 column 18"},
	{"mc", "{\"vcpu_count\": 2.0, \"mem_size_mib\": 128}", "err", "invalid type: floating point `2.0`, expected u8 at line 1 column 18"},
	{"mc", "{\"vcpu_count\": 1e2, \"mem_size_mib\": 128}", "err", "invalid type: floating point `100.0`, expected u8 at line 1 column 18"},
	{"mc", "{\"vcpu_count\": null, \"mem_size_mib\": 128}", "err", "invalid type: null, expected u8 at line 1 column 19"},
	{"mc", "{\"vcpu_count\": true, \"mem_size_mib\": 128}", "err", "invalid type: boolean `true`, expected u8 at line 1 column 19"},
	{"mc", "{\"vcpu_count\": [2], \"mem_size_mib\": 128}", "err", "invalid type: sequence, expected u8 at line 1 column 15"},
	{"mc", "{\"vcpu_count\": {}, \"mem_size_mib\": 128}", "err", "invalid type: map, expected u8 at line 1 column 15"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 18446744073709551616}", "err", "invalid type: floating point `1.8446744073709552e+19`, expected usize at line 1 column 54"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 18446744073709551615}", "ok", "{\"vcpu_count\":2,\"mem_size_mib\":18446744073709551615,\"smt\":false,\"track_dirty_pages\":false,\"huge_pages\":\"None\"}"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": -9223372036854775809}", "err", "invalid type: floating point `-9.223372036854776e+18`, expected usize at line 1 column 54"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"vcpu_count\": 3}", "err", "duplicate field `vcpu_count` at line 1 column 51"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"smt\": \"true\"}", "err", "invalid type: string \"true\", expected a boolean at line 1 column 52"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"smt\": null}", "err", "invalid type: null, expected a boolean at line 1 column 50"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"huge_pages\": \"1G\"}", "err", "unknown variant `1G`, expected one of `None`, `Transparent`, `2M` at line 1 column 57"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"huge_pages\": \"2M\", \"cpu_template\": \"T2\"}", "ok", "{\"vcpu_count\":2,\"mem_size_mib\":128,\"smt\":false,\"cpu_template\":\"T2\",\"track_dirty_pages\":false,\"huge_pages\":\"2M\"}"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"huge_pages\": null}", "err", "expected value at line 1 column 54"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"huge_pages\": {\"Transparent\": null}}", "ok", "{\"vcpu_count\":2,\"mem_size_mib\":128,\"smt\":false,\"track_dirty_pages\":false,\"huge_pages\":\"Transparent\"}"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"cpu_template\": \"c3\"}", "err", "unknown variant `c3`, expected one of `C3`, `T2`, `T2S`, `T2CL`, `T2A`, `V1N1`, `None` at line 1 column 59"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"cpu_template\": null}", "ok", "{\"vcpu_count\":2,\"mem_size_mib\":128,\"smt\":false,\"track_dirty_pages\":false,\"huge_pages\":\"None\"}"},
	{"mc", "[2, 128]", "ok", "{\"vcpu_count\":2,\"mem_size_mib\":128,\"smt\":false,\"track_dirty_pages\":false,\"huge_pages\":\"None\"}"},
	{"mc", "[2]", "err", "invalid length 1, expected struct MachineConfig with 6 elements at line 1 column 3"},
	{"mc", "\"machine\"", "err", "invalid type: string \"machine\", expected struct MachineConfig at line 1 column 9"},
	{"mc", "null", "err", "invalid type: null, expected struct MachineConfig at line 1 column 4"},
	{"mc", "", "err", "EOF while parsing a value at line 1 column 0"},
	{"mc", "   ", "err", "EOF while parsing a value at line 1 column 3"},
	{"mc", "{", "err", "EOF while parsing an object at line 1 column 1"},
	{"mc", "{\"vcpu_count\"", "err", "EOF while parsing an object at line 1 column 13"},
	{"mc", "{\"vcpu_count\":", "err", "EOF while parsing a value at line 1 column 14"},
	{"mc", "{\"vcpu_count\": 2", "err", "EOF while parsing an object at line 1 column 16"},
	{"mc", "{\"vcpu_count\": 2,", "err", "EOF while parsing a value at line 1 column 17"},
	{"mc", "{\"vcpu_count\": 2 \"mem_size_mib\": 128}", "err", "expected `,` or `}` at line 1 column 18"},
	{"mc", "{\"vcpu_count\" 2}", "err", "expected `:` at line 1 column 15"},
	{"mc", "{vcpu_count: 2}", "err", "key must be a string at line 1 column 2"},
	{"mc", "{\"vcpu_count\": 2,}", "err", "trailing comma at line 1 column 18"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 128} x", "err", "trailing characters at line 1 column 40"},
	{"mc", "{\"vcpu_count\": 2, \"mem_size_mib\": 128}}", "err", "trailing characters at line 1 column 39"},
	{"mc", "{\"vcpu_count\": tru, \"mem_size_mib\": 128}", "err", "expected ident at line 1 column 19"},
	{"mc", "{\"vcpu_count\": 02, \"mem_size_mib\": 128}", "err", "invalid number at line 1 column 17"},
	{"mc", "{\"vcpu_count\": 2., \"mem_size_mib\": 128}", "err", "invalid number at line 1 column 18"},
	{"mc", "{\"vcpu_count\": 2e, \"mem_size_mib\": 128}", "err", "invalid number at line 1 column 18"},
	{"mc", "{\"vcpu_count\": -, \"mem_size_mib\": 128}", "err", "invalid number at line 1 column 17"},
	{"mc", "{\"vcpu_count\": 1e400, \"mem_size_mib\": 128}", "err", "number out of range at line 1 column 20"},
	{"mc", "{\"vcpu_count\": 2,\n \"mem_size_mib\": 128,\n \"bogus\": 1}", "err", "unknown field `bogus`, expected one of `vcpu_count`, `mem_size_mib`, `smt`, `cpu_template`, `track_dirty_pages`, `huge_pages` at line 3 column 8"},
	{"mcu", "{}", "ok", "{\"vcpu_count\":null,\"mem_size_mib\":null,\"smt\":null,\"cpu_template\":null,\"track_dirty_pages\":null,\"huge_pages\":null}"},
	{"mcu", "{\"vcpu_count\": 4, \"huge_pages\": \"Transparent\"}", "ok", "{\"vcpu_count\":4,\"mem_size_mib\":null,\"smt\":null,\"cpu_template\":null,\"track_dirty_pages\":null,\"huge_pages\":\"Transparent\"}"},
	{"mcu", "{\"vcpu_count\": null, \"smt\": null}", "ok", "{\"vcpu_count\":null,\"mem_size_mib\":null,\"smt\":null,\"cpu_template\":null,\"track_dirty_pages\":null,\"huge_pages\":null}"},
	{"mcu", "{\"is_read_only\": true}", "err", "unknown field `is_read_only`, expected one of `vcpu_count`, `mem_size_mib`, `smt`, `cpu_template`, `track_dirty_pages`, `huge_pages` at line 1 column 15"},
	{"boot", "{\"kernel_image_path\": \"/vmlinux\", \"boot_args\": \"console=ttyS0\"}", "ok", "{\"kernel_image_path\":\"/vmlinux\",\"initrd_path\":null,\"boot_args\":\"console=ttyS0\"}"},
	{"boot", "{\"kernel_image_path\": 5}", "err", "invalid type: integer `5`, expected a string at line 1 column 23"},
	{"boot", "{\"kernel_image_path\": \"a\\qb\"}", "err", "invalid escape at line 1 column 26"},
	{"boot", "{\"kernel_image_path\": \"a\\u12\"}", "err", "invalid escape at line 1 column 30"},
	{"boot", "{\"kernel_image_path\": \"\\ud800\"}", "err", "unexpected end of hex escape at line 1 column 30"},
	{"boot", "{\"kernel_image_path\": \"\\udc00\"}", "err", "lone leading surrogate in hex escape at line 1 column 29"},
	{"boot", "{\"kernel_image_path\": \"\\ud800\\u0041\"}", "err", "lone leading surrogate in hex escape at line 1 column 35"},
	{"boot", "{\"kernel_image_path\": \"\\ud800x\"}", "err", "unexpected end of hex escape at line 1 column 30"},
	{"boot", "{\"kernel_image_path\": \"\\ud83d\\ude00 \\u00e9 \\u0000\"}", "ok", "{\"kernel_image_path\":\"😀 é \\u0000\",\"initrd_path\":null,\"boot_args\":null}"},
	{"boot", "{\"kernel_image_path\": \"tab\there\"}", "err", "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 27"},
	{"boot", "{\"kernel_image_path\": \"open", "err", "EOF while parsing a string at line 1 column 27"},
	{"boot", "{\"kernel_image_path\": \"/k\", \"initrd_path\": [\"x\"]}", "err", "invalid type: sequence, expected a string at line 1 column 43"},
	{"tb", "{\"size\": 1, \"refill_time\": 2, \"extra\": {\"deep\": [1, 2, {\"x\": null}]}}", "ok", "{\"size\":1,\"one_time_burst\":null,\"refill_time\":2}"},
	{"tb", "{\"size\": 1, \"refill_time\": 2, \"extra\": [1,]}", "err", "expected value at line 1 column 43"},
	{"tb", "{\"size\": -1, \"refill_time\": 2}", "err", "invalid value: integer `-1`, expected u64 at line 1 column 11"},
	{"tb", "{\"size\": 1}", "err", "missing field `refill_time` at line 1 column 11"},
	{"tb", "{\"size\": 1, \"one_time_burst\": null, \"refill_time\": 0}", "ok", "{\"size\":1,\"one_time_burst\":null,\"refill_time\":0}"},
	{"rl", "{\"bandwidth\": {\"size\": 1, \"refill_time\": 2}, \"ops\": {\"size\": 1}}", "err", "missing field `refill_time` at line 1 column 63"},
	{"rl", "{\"bandwidth\": {\"size\": 1, \"refill_time\": 2}, \"opz\": null}", "err", "unknown field `opz`, expected `bandwidth` or `ops` at line 1 column 50"},
	{"drive", "{\"drive_id\": \"rootfs\", \"path_on_host\": \"/r.ext4\", \"is_root_device\": true, \"cache_type\": \"Writeback\", \"io_engine\": \"Async\"}", "ok", "{\"drive_id\":\"rootfs\",\"partuuid\":null,\"is_root_device\":true,\"cache_type\":\"Writeback\",\"is_read_only\":null,\"path_on_host\":\"/r.ext4\",\"rate_limiter\":null,\"io_engine\":\"Async\",\"socket\":null}"},
	{"drive", "{\"drive_id\": \"rootfs\", \"is_root_device\": true, \"io_engine\": \"async\"}", "err", "unknown variant `async`, expected `Async` or `Sync` at line 1 column 67"},
	{"logger", "{\"level\": \"WARNING\", \"show_level\": true}", "ok", "{\"log_path\":null,\"level\":\"Warn\",\"show_level\":true,\"show_log_origin\":null,\"module\":null}"},
	{"logger", "{\"level\": \"bogus\"}", "err", "Invalid LevelFilter at line 1 column 18"},
	{"logger", "{\"level\": \"bogus\" , \"module\": \"x\"}", "err", "Invalid LevelFilter at line 1 column 18"},
	{"logger", "{\"level\": 3}", "err", "invalid type: integer `3`, expected a string at line 1 column 11"},
	{"logger", "{\"log_path\": 3}", "err", "invalid type: integer `3`, expected path string at line 1 column 14"},
	{"metrics", "{\"metrics_path\": \"/m\", \"properties\": {\"a\": \"1\", \"b\": \"2\"}, \"other\": 1}", "ok", "{\"metrics_path\":\"/m\",\"emit_id\":false,\"properties\":{\"a\":\"1\",\"b\":\"2\"}}"},
	{"metrics", "{\"metrics_path\": \"/m\", \"properties\": {\"a\": 1}}", "err", "invalid type: integer `1`, expected a string at line 1 column 44"},
	{"mmds", "{\"network_interfaces\": [\"eth0\"], \"version\": \"V3\"}", "err", "unknown variant `V3`, expected `V1` or `V2` at line 1 column 48"},
	{"mmds", "{\"network_interfaces\": [\"eth0\"], \"ipv4_address\": \"169.254.169.300\"}", "err", "invalid IPv4 address syntax at line 1 column 66"},
	{"mmds", "{\"network_interfaces\": \"eth0\"}", "err", "invalid type: string \"eth0\", expected a sequence at line 1 column 29"},
	{"mmds", "{\"version\": \"V2\", \"network_interfaces\": [], \"version\": \"V1\"}", "err", "duplicate field `version` at line 1 column 53"},
	{"net", "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"06:00:00:00:00:0z\"}", "err", "The provided MAC address is invalid. at line 1 column 79"},
	{"net", "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"06:00:00:00:00:01\"}", "ok", "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"guest_mac\":\"06:00:00:00:00:01\",\"rx_rate_limiter\":null,\"tx_rate_limiter\":null}"},
	{"ints", "{\"a\": 255, \"b\": 65536}", "err", "invalid value: integer `65536`, expected u16 at line 1 column 21"},
	{"ints", "{\"c\": 4294967296}", "err", "invalid value: integer `4294967296`, expected u32 at line 1 column 16"},
	{"ints", "{\"e\": -129}", "err", "invalid value: integer `-129`, expected i8 at line 1 column 10"},
	{"ints", "{\"f\": 32768}", "err", "invalid value: integer `32768`, expected i16 at line 1 column 11"},
	{"ints", "{\"g\": -2147483649}", "err", "invalid value: integer `-2147483649`, expected i32 at line 1 column 17"},
	{"ints", "{\"h\": 9223372036854775808}", "err", "invalid value: integer `9223372036854775808`, expected i64 at line 1 column 25"},
	{"ints", "{\"h\": -9223372036854775808, \"d\": 18446744073709551615}", "ok", "{\"a\":0,\"b\":0,\"c\":0,\"d\":18446744073709551615,\"e\":0,\"f\":0,\"g\":0,\"h\":-9223372036854775808,\"i\":0,\"j\":0.0,\"k\":0.0}"},
	{"ints", "{\"j\": 1, \"k\": -2}", "ok", "{\"a\":0,\"b\":0,\"c\":0,\"d\":0,\"e\":0,\"f\":0,\"g\":0,\"h\":0,\"i\":0,\"j\":1.0,\"k\":-2.0}"},
	{"ints", "{\"j\": 0.1, \"k\": 0.1}", "ok", "{\"a\":0,\"b\":0,\"c\":0,\"d\":0,\"e\":0,\"f\":0,\"g\":0,\"h\":0,\"i\":0,\"j\":0.1,\"k\":0.1}"},
	{"ints", "{\"j\": \"1\"}", "err", "invalid type: string \"1\", expected f64 at line 1 column 9"},
	{"empty", "{\"a\": 1}", "err", "unknown field `a`, there are no fields at line 1 column 4"},
	{"empty", "{}", "ok", "{}"},
	{"empty_allow", "{\"a\": {\"b\": [1, 2]}}", "ok", "{}"},
	{"one", "{\"b\": 1}", "err", "unknown field `b`, expected `a` at line 1 column 4"},
	{"two", "{\"c\": 1}", "err", "unknown field `c`, expected `a` or `b` at line 1 column 4"},
	{"one", "[]", "err", "invalid length 0, expected struct One with 1 element at line 1 column 2"},
	{"one", "[1, 2]", "err", "trailing characters at line 1 column 5"},
	{"value", "{\"b\": 1, \"a\": [true, null, -0, 1.5, 1e21, \"x\\u0001y\"], \"b\": 2}", "ok", "{\"a\":[true,null,-0.0,1.5,1e+21,\"x\\u0001y\"],\"b\":2}"},
	{"value", "[1, 2,]", "err", "trailing comma at line 1 column 7"},
	{"value", "[1 2]", "err", "expected `,` or `]` at line 1 column 4"},
	{"value", "{\"a\" 1}", "err", "expected `:` at line 1 column 6"},
	{"value", "{\"a\": 1,, \"b\": 2}", "err", "key must be a string at line 1 column 9"},
	{"value", "[-9223372036854775808, 9223372036854775807, 18446744073709551615, 18446744073709551616]", "ok", "[-9223372036854775808,9223372036854775807,18446744073709551615,1.8446744073709552e+19]"},
	{"value", "[0.1, 1e-7, 123.456, 5e-324, 1.7976931348623157e308]", "ok", "[0.1,1e-7,123.456,5e-324,1.7976931348623157e+308]"},
	{"value", "1.7976931348623159e308", "err", "number out of range at line 1 column 22"},
	{"value", "\"\\u0080\\u00ff\\u2028 /\\/\"", "ok", "\"\u0080ÿ\u2028 //\""},
	{"value", "nul", "err", "EOF while parsing a value at line 1 column 3"},
	{"value", "falsy", "err", "expected ident at line 1 column 5"},
	{"vec_string", "[\"a\", 1]", "err", "invalid type: integer `1`, expected a string at line 1 column 7"},
	{"vec_string", "{\"a\": 1}", "err", "invalid type: map, expected a sequence at line 1 column 0"},
	{"vec_string", "[]", "ok", "[]"},
	{"map_u32", "{\"a\": 1, \"a\": 2}", "ok", "{\"a\":2}"},
	{"map_u32", "{\"a\": -1}", "err", "invalid value: integer `-1`, expected u32 at line 1 column 8"},
	{"string", "\"x\" \"y\"", "err", "trailing characters at line 1 column 5"},
	{"bool", "1", "err", "invalid type: integer `1`, expected a boolean at line 1 column 1"},
	{"u8", "\"\\u00ad\\u0301\\u200b'\"", "err", "invalid type: string \"\\u{ad}\\u{301}\\u{200b}'\", expected u8 at line 1 column 21"},
	{"f64", "-0", "ok", "-0.0"},
	{"f64", ".5", "err", "expected value at line 1 column 1"},
	{"f64", "+1", "err", "expected value at line 1 column 1"},
	{"i64", "-", "err", "EOF while parsing a value at line 1 column 1"},
	{"usize", "1e3", "err", "invalid type: floating point `1000.0`, expected usize at line 1 column 3"},
	{"level", "\"bogus\"", "err", "Invalid LevelFilter"},
	{"level", "\"Trace\"", "ok", "\"Trace\""},
	{"huge", "5", "err", "expected value at line 1 column 1"},
	{"huge", "\"1G\"", "err", "unknown variant `1G`, expected one of `None`, `Transparent`, `2M` at line 1 column 4"},
	{"huge", "{\"2M\": 1}", "err", "invalid type: integer `1`, expected unit at line 1 column 8"},
	{"huge", "{\"2M\": null, \"x\": null}", "err", "expected value at line 1 column 11"},
	{"huge", "{}", "err", "expected value at line 1 column 2"},
	{"huge", "{5: null}", "err", "key must be a string at line 1 column 2"},
	{"lone", "\"x\"", "err", "unknown variant `x`, expected `Only` at line 1 column 3"},
	{"never", "\"x\"", "err", "unknown variant `x`, there are no variants at line 1 column 3"},
	{"mmds_version", "\"x\"", "err", "unknown variant `x`, expected `V1` or `V2` at line 1 column 3"},
	{"ipv4", "\"1.2.3\"", "err", "invalid IPv4 address syntax at line 1 column 7"},
	{"path", "5", "err", "invalid type: integer `5`, expected path string at line 1 column 1"},
	{"with_value", "{\"data\": {\"z\": 1, \"a\": {\"y\": [], \"b\": {}}}, \"opt\": null}", "ok", "{\"data\":{\"a\":{\"b\":{},\"y\":[]},\"z\":1},\"opt\":null}"},
	{"with_value", "{\"opt\": 1}", "err", "missing field `data` at line 1 column 10"},
	{"snap", "{\"snapshot_path\": \"/s\", \"network_overrides\": [{\"iface_id\": \"e\", \"host_dev_name\": \"t\"}]}", "ok", "{\"snapshot_path\":\"/s\",\"mem_file_path\":null,\"resume_vm\":false,\"network_overrides\":[{\"iface_id\":\"e\",\"host_dev_name\":\"t\"}]}"},
	{"snap", "{\"snapshot_path\": \"/s\", \"network_overrides\": [{\"iface_id\": \"e\"}]}", "err", "missing field `host_dev_name` at line 1 column 63"},
	{"opt_u8", "null", "ok", "null"},
	{"opt_u8", "nul", "err", "EOF while parsing a value at line 1 column 3"},
	// Invalid UTF-8 is only refused inside strings serde_json actually reads.
	{"boot", "{\"kernel_image_path\": \"a\xffb\"}", "err", "invalid unicode code point at line 1 column 27"},
	{"boot", "{\"kernel_\xff\": \"a\"}", "err", "invalid unicode code point at line 1 column 11"},
	{"tb", "{\"size\": 1, \"x\": \"\xff\\udc00\", \"refill_time\": 2}", "ok", "{\"size\":1,\"one_time_burst\":null,\"refill_time\":2}"},
	{"value", "[1, \xff]", "err", "expected value at line 1 column 5"},
	{"boot", "{\"kernel_image_path\": {\"a\": 1}}", "err", "invalid type: map, expected a string at line 1 column 22"},
	// The 128th nested array/object/struct exceeds serde_json's recursion limit.
	{"value", strings.Repeat("[", 128), "err", "recursion limit exceeded at line 1 column 128"},
	{"value", strings.Repeat("[", 127) + strings.Repeat("]", 127), "ok", strings.Repeat("[", 127) + strings.Repeat("]", 127)},
	{"nest", strings.Repeat(`{"next":`, 128), "err", "recursion limit exceeded at line 1 column 1017"},
}

func TestSerdeCases(t *testing.T) {
	if len(serdeCases) < 80 {
		t.Fatalf("only %d cases", len(serdeCases))
	}
	for _, c := range serdeCases {
		status, got := run(c.typ, []byte(c.in))
		if status != c.status || got != c.want {
			t.Errorf("%s %q:\n got %s %q\nwant %s %q", c.typ, c.in, status, got, c.status, c.want)
		}
	}
}

func TestSerdeCasesAgainstOracle(t *testing.T) {
	needOracle(t)
	var cases []oracleCase
	for _, c := range serdeCases {
		cases = append(cases, oracleCase{c.typ, []byte(c.in)})
	}
	for k, o := range askOracle(t, cases) {
		c := serdeCases[k]
		if o.Status != c.status || o.Out != c.want {
			t.Errorf("table row %s %q is stale: serde_json says %s %q", c.typ, c.in, o.Status, o.Out)
		}
	}
}
