package vmconfig

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ember-vmm/ember/internal/strictjson"
)

// Every expected message and position below was observed, not derived: it
// is what serde_json 1.0.150 with serde 1.0.228 (the versions
// internal/strictjson is checked against) printed for Firecracker's x86-64
// template types. TestCPUTemplateOracle repeats such a comparison on
// mutated inputs when given that program (-cputemplate.oracle).
var (
	cptOracle = flag.String("cputemplate.oracle", "", "path to a serde_json program answering `template`/`config` requests (see testdata/cputemplate/README.md)")
	cptUpdate = flag.Bool("cputemplate.update", false, "rewrite testdata/cputemplate/*.golden from -cputemplate.oracle")
)

// cptOutcome renders a ParseCPUTemplate result the way the oracle answers:
// the serialized template, or the error's text.
func cptOutcome(in []byte) (status, out string) {
	t, err := ParseCPUTemplate(in)
	if err != nil {
		if t != nil {
			return "err", "template returned with error " + err.Error()
		}
		return "err", err.Error()
	}
	b, err := strictjson.Marshal(t)
	if err != nil {
		return "err", "marshal: " + err.Error()
	}
	return "ok", string(b)
}

func TestCPUTemplateParse(t *testing.T) {
	cases := []struct {
		name     string
		in       string
		wantJSON string // Firecracker's serialization of the decoded template
		wantErr  string
	}{
		{name: "empty object", in: `{}`, wantJSON: `{"kvm_capabilities":[],"cpuid_modifiers":[],"msr_modifiers":[]}`},
		{name: "empty array (struct as sequence)", in: `[]`, wantJSON: `{"kvm_capabilities":[],"cpuid_modifiers":[],"msr_modifiers":[]}`},
		{name: "whitespace around", in: ` { } `, wantJSON: `{"kvm_capabilities":[],"cpuid_modifiers":[],"msr_modifiers":[]}`},
		{name: "kvm capabilities add/remove/plus sign", in: `{"kvm_capabilities":["69","!69","+5","!+5","0","4294967295","!0"]}`, wantJSON: `{"kvm_capabilities":["69","!69","5","!5","0","4294967295","!0"],"cpuid_modifiers":[],"msr_modifiers":[]}`},
		{name: "docs example", in: `{"kvm_capabilities":["!56"],"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"0bxxxx000000000011xx00011011110010"}]}],"msr_modifiers":[{"addr":"0x10a","bitmap":"0b0000000000000000000000000000000000000000000000000000000000000000"}]}`, wantJSON: `{"kvm_capabilities":["!56"],"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"0bxxxx000000000011xx00011011110010"}]}],"msr_modifiers":[{"addr":"0x10a","bitmap":"0b0000000000000000000000000000000000000000000000000000000000000000"}]}`},
		{name: "short, empty and separated bitmaps", in: `{"cpuid_modifiers":[{"leaf":"0x80000001","subleaf":"0b000111","flags":1,"modifiers":[{"register":"ebx","bitmap":"0b101"},{"register":"ecx","bitmap":""},{"register":"edx","bitmap":"0b"},{"register":"eax","bitmap":"1x_0"}]}]}`, wantJSON: `{"kvm_capabilities":[],"cpuid_modifiers":[{"leaf":"0x80000001","subleaf":"0x7","flags":1,"modifiers":[{"register":"ebx","bitmap":"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxx101"},{"register":"ecx","bitmap":"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},{"register":"edx","bitmap":"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},{"register":"eax","bitmap":"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1x0"}]}],"msr_modifiers":[]}`},
		{name: "extreme leaf values and 0x+ prefix", in: `{"cpuid_modifiers":[{"leaf":"0xFFFFFFFF","subleaf":"0x+1f","flags":4294967295,"modifiers":[]},{"leaf":"0x0000000000000045","subleaf":"0b11111111111111111111111111111111","flags":2,"modifiers":[]}]}`, wantJSON: `{"kvm_capabilities":[],"cpuid_modifiers":[{"leaf":"0xffffffff","subleaf":"0x1f","flags":4294967295,"modifiers":[]},{"leaf":"0x45","subleaf":"0xffffffff","flags":2,"modifiers":[]}],"msr_modifiers":[]}`},
		{name: "underscores after a full bitmap", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"0b1111_1111_1111_1111_1111_1111_1111_111x__"}]}]}`, wantJSON: `{"kvm_capabilities":[],"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"0b1111111111111111111111111111111x"}]}],"msr_modifiers":[]}`},
		{name: "unknown keys in modifiers are ignored", in: `{"cpuid_modifiers":[{"extra":{"deep":[1,{"x":null}]},"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"0b1","note":"kept out"}]}]}`, wantJSON: `{"kvm_capabilities":[],"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1"}]}],"msr_modifiers":[]}`},
		{name: "modifiers as sequences", in: `{"cpuid_modifiers":[["0x1","0x0",0,[["edx","0b0x1"]]]],"msr_modifiers":[["0xc0000080","0bx1"]]}`, wantJSON: `{"kvm_capabilities":[],"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"edx","bitmap":"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0x1"}]}],"msr_modifiers":[{"addr":"0xc0000080","bitmap":"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1"}]}`},
		{name: "full msr bitmap", in: `{"msr_modifiers":[{"addr":"0xFFFFFFFF","bitmap":"0b1111111111111111111111111111111111111111111111111111111111111111"}]}`, wantJSON: `{"kvm_capabilities":[],"cpuid_modifiers":[],"msr_modifiers":[{"addr":"0xffffffff","bitmap":"0b1111111111111111111111111111111111111111111111111111111111111111"}]}`},
		{name: "kvm capability empty", in: `{"kvm_capabilities":["69","!69",""]}`, wantErr: `Failed to parse string [] as a kvm capability - can not convert to numeric: cannot parse integer from empty string at line 1 column 35`},
		{name: "kvm capability bang only", in: `{"kvm_capabilities":["!"]}`, wantErr: `Failed to parse string [!] as a kvm capability - can not convert to numeric: cannot parse integer from empty string at line 1 column 25`},
		{name: "kvm capability negative", in: `{"kvm_capabilities":["-1"]}`, wantErr: `Failed to parse string [-1] as a kvm capability - can not convert to numeric: invalid digit found in string at line 1 column 26`},
		{name: "kvm capability overflow", in: `{"kvm_capabilities":["4294967296"]}`, wantErr: `Failed to parse string [4294967296] as a kvm capability - can not convert to numeric: number too large to fit in target type at line 1 column 34`},
		{name: "kvm capability double bang", in: `{"kvm_capabilities":["!!5"]}`, wantErr: `Failed to parse string [!!5] as a kvm capability - can not convert to numeric: invalid digit found in string at line 1 column 27`},
		{name: "kvm capability hex", in: `{"kvm_capabilities":["0x10"]}`, wantErr: `Failed to parse string [0x10] as a kvm capability - can not convert to numeric: invalid digit found in string at line 1 column 28`},
		{name: "kvm capability lone plus", in: `{"kvm_capabilities":["+"]}`, wantErr: `Failed to parse string [+] as a kvm capability - can not convert to numeric: invalid digit found in string at line 1 column 25`},
		{name: "kvm capability leading space", in: `{"kvm_capabilities":[" 5"]}`, wantErr: `Failed to parse string [ 5] as a kvm capability - can not convert to numeric: invalid digit found in string at line 1 column 26`},
		{name: "kvm capability non-ascii", in: `{"kvm_capabilities":["Ͻ"]}`, wantErr: `Failed to parse string [Ͻ] as a kvm capability - can not convert to numeric: invalid digit found in string at line 1 column 26`},
		{name: "kvm capability not a string", in: `{"kvm_capabilities":[69]}`, wantErr: "invalid type: integer `69`, expected a string at line 1 column 23"},
		{name: "kvm capabilities not a list", in: `{"kvm_capabilities":"69"}`, wantErr: `invalid type: string "69", expected a sequence at line 1 column 24`},
		{name: "kvm capabilities map", in: `{"kvm_capabilities":{}}`, wantErr: `invalid type: map, expected a sequence at line 1 column 20`},
		{name: "kvm capabilities null", in: `{"kvm_capabilities":null}`, wantErr: `invalid type: null, expected a sequence at line 1 column 24`},
		{name: "leaf without prefix", in: `{"cpuid_modifiers":[{"leaf":"1","subleaf":"0x0","flags":0,"modifiers":[]}]}`, wantErr: `No supported number system prefix found in value [1]. Make sure to prefix the number with '0x' for hexadecimal numbers or '0b' for binary numbers. at line 1 column 31`},
		{name: "leaf uppercase prefix", in: `{"cpuid_modifiers":[{"leaf":"0X1","subleaf":"0x0","flags":0,"modifiers":[]}]}`, wantErr: `No supported number system prefix found in value [0X1]. Make sure to prefix the number with '0x' for hexadecimal numbers or '0b' for binary numbers. at line 1 column 33`},
		{name: "leaf empty", in: `{"cpuid_modifiers":[{"leaf":"","subleaf":"0x0","flags":0,"modifiers":[]}]}`, wantErr: `No supported number system prefix found in value []. Make sure to prefix the number with '0x' for hexadecimal numbers or '0b' for binary numbers. at line 1 column 30`},
		{name: "leaf prefix only", in: `{"cpuid_modifiers":[{"leaf":"0x","subleaf":"0x0","flags":0,"modifiers":[]}]}`, wantErr: `Failed to parse string [0x] as a number for CPU template - ParseIntError { kind: Empty } at line 1 column 32`},
		{name: "leaf bad hex digit", in: `{"cpuid_modifiers":[{"leaf":"0xZZ","subleaf":"0x0","flags":0,"modifiers":[]}]}`, wantErr: `Failed to parse string [0xZZ] as a number for CPU template - ParseIntError { kind: InvalidDigit } at line 1 column 34`},
		{name: "leaf overflow", in: `{"cpuid_modifiers":[{"leaf":"0x100000000","subleaf":"0x0","flags":0,"modifiers":[]}]}`, wantErr: `Failed to parse string [0x100000000] as a number for CPU template - ParseIntError { kind: PosOverflow } at line 1 column 41`},
		{name: "leaf overflow before bad digit", in: `{"cpuid_modifiers":[{"leaf":"0xFFFFFFFFFZ","subleaf":"0x0","flags":0,"modifiers":[]}]}`, wantErr: `Failed to parse string [0xFFFFFFFFFZ] as a number for CPU template - ParseIntError { kind: PosOverflow } at line 1 column 42`},
		{name: "leaf negative", in: `{"cpuid_modifiers":[{"leaf":"0x-1","subleaf":"0x0","flags":0,"modifiers":[]}]}`, wantErr: `Failed to parse string [0x-1] as a number for CPU template - ParseIntError { kind: InvalidDigit } at line 1 column 34`},
		{name: "leaf sign only", in: `{"cpuid_modifiers":[{"leaf":"0x+","subleaf":"0x0","flags":0,"modifiers":[]}]}`, wantErr: `Failed to parse string [0x+] as a number for CPU template - ParseIntError { kind: InvalidDigit } at line 1 column 33`},
		{name: "leaf underscore", in: `{"cpuid_modifiers":[{"leaf":"0x1_0","subleaf":"0x0","flags":0,"modifiers":[]}]}`, wantErr: `Failed to parse string [0x1_0] as a number for CPU template - ParseIntError { kind: InvalidDigit } at line 1 column 35`},
		{name: "subleaf bad binary digit", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0b2","flags":0,"modifiers":[]}]}`, wantErr: `Failed to parse string [0b2] as a number for CPU template - ParseIntError { kind: InvalidDigit } at line 1 column 49`},
		{name: "subleaf binary overflow", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0b111111111111111111111111111111111","flags":0,"modifiers":[]}]}`, wantErr: `Failed to parse string [0b111111111111111111111111111111111] as a number for CPU template - ParseIntError { kind: PosOverflow } at line 1 column 81`},
		{name: "second leaf modifier bad", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[]},{"leaf":"0x1","subleaf":"0xg","flags":0,"modifiers":[]}]}`, wantErr: `Failed to parse string [0xg] as a number for CPU template - ParseIntError { kind: InvalidDigit } at line 1 column 105`},
		{name: "leaf not a string", in: `{"cpuid_modifiers":[{"leaf":1,"subleaf":"0x0","flags":0,"modifiers":[]}]}`, wantErr: "invalid type: integer `1`, expected a string at line 1 column 29"},
		{name: "flags negative", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":-1,"modifiers":[]}]}`, wantErr: "invalid value: integer `-1`, expected u32 at line 1 column 60"},
		{name: "flags float", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":1.5,"modifiers":[]}]}`, wantErr: "invalid type: floating point `1.5`, expected u32 at line 1 column 61"},
		{name: "flags string", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":"0","modifiers":[]}]}`, wantErr: `invalid type: string "0", expected u32 at line 1 column 61`},
		{name: "flags overflow", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":4294967296,"modifiers":[]}]}`, wantErr: "invalid value: integer `4294967296`, expected u32 at line 1 column 68"},
		{name: "flags null", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":null,"modifiers":[]}]}`, wantErr: `invalid type: null, expected u32 at line 1 column 62`},
		{name: "register unknown", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"ekx","bitmap":"0b1"}]}]}`, wantErr: `Invalid CPUID register. Must be one of [eax, ebx, ecx, edx] at line 1 column 90`},
		{name: "register uppercase", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"bitmap":"0b1","register":"EAX"},{"register":"eax","bitmap":"0b1"}]}]}`, wantErr: `Invalid CPUID register. Must be one of [eax, ebx, ecx, edx] at line 1 column 106`},
		{name: "register not a string", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":1,"bitmap":"0b1"}]}]}`, wantErr: "invalid type: integer `1`, expected a string at line 1 column 86"},
		{name: "cpuid bitmap too long", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"0b111111111111111111111111111111111"}]}]}`, wantErr: `Failed to parse string [0b111111111111111111111111111111111] as a bitmap - string is too long at line 1 column 138`},
		{name: "bitmap rightmost bad char wins", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"0bx0?1_0_0x_?x1xxxx"}]}]}`, wantErr: `Failed to parse string [0bx0?1_0_0x_?x1xxxx] as a bitmap - unknown character: 63 at line 1 column 122`},
		{name: "bitmap non-ascii byte value", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"0b0_xϽ1_xx_xx"}]}]}`, wantErr: `Failed to parse string [0b0_xϽ1_xx_xx] as a bitmap - unknown character: 189 at line 1 column 117`},
		{name: "bitmap uppercase x", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"0bX"}]}]}`, wantErr: `Failed to parse string [0bX] as a bitmap - unknown character: 88 at line 1 column 106`},
		{name: "bitmap double prefix", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"0b0b1"}]}]}`, wantErr: `Failed to parse string [0b0b1] as a bitmap - unknown character: 98 at line 1 column 108`},
		{name: "bitmap too long before bad char", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"?0b11111111111111111111111111111111"}]}]}`, wantErr: `Failed to parse string [?0b11111111111111111111111111111111] as a bitmap - string is too long at line 1 column 138`},
		{name: "bitmap underscore past width", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"_11111111111111111111111111111111"}]}]}`, wantErr: `Failed to parse string [_11111111111111111111111111111111] as a bitmap - string is too long at line 1 column 136`},
		{name: "bitmap not a string", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":1}]}]}`, wantErr: "invalid type: integer `1`, expected a string at line 1 column 101"},
		{name: "missing bitmap", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax"}]}]}`, wantErr: "missing field `bitmap` at line 1 column 91"},
		{name: "missing register", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"bitmap":"0b1"}]}]}`, wantErr: "missing field `register` at line 1 column 89"},
		{name: "missing leaf", in: `{"cpuid_modifiers":[{"subleaf":"0x0","flags":0,"modifiers":[]}]}`, wantErr: "missing field `leaf` at line 1 column 62"},
		{name: "missing modifiers", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0}]}`, wantErr: "missing field `modifiers` at line 1 column 60"},
		{name: "duplicate leaf", in: `{"cpuid_modifiers":[{"leaf":"0x1","leaf":"0x2","subleaf":"0x0","flags":0,"modifiers":[]}]}`, wantErr: "duplicate field `leaf` at line 1 column 40"},
		{name: "modifiers not a list", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":5}]}`, wantErr: "invalid type: integer `5`, expected a sequence at line 1 column 73"},
		{name: "leaf modifier not an object", in: `{"cpuid_modifiers":[1]}`, wantErr: "invalid type: integer `1`, expected struct CpuidLeafModifier at line 1 column 21"},
		{name: "cpuid modifiers string", in: `{"cpuid_modifiers":"x"}`, wantErr: `invalid type: string "x", expected a sequence at line 1 column 22`},
		{name: "leaf modifier sequence too short", in: `{"cpuid_modifiers":[["0x1","0x0",0]]}`, wantErr: `invalid length 3, expected struct CpuidLeafModifier with 4 elements at line 1 column 35`},
		{name: "leaf modifier sequence bad subleaf", in: `{"cpuid_modifiers":[["0x1","zz",0,[]]]}`, wantErr: `No supported number system prefix found in value [zz]. Make sure to prefix the number with '0x' for hexadecimal numbers or '0b' for binary numbers. at line 1 column 32`},
		{name: "leaf modifier sequence too long", in: `{"cpuid_modifiers":[["0x1","0x0",0,[],5]]}`, wantErr: `trailing characters at line 1 column 39`},
		{name: "msr addr without prefix", in: `{"msr_modifiers":[{"addr":"0jj0","bitmap":"0bx00100xxx1xxxx00xxx1xxxxxxxxxxx1"}]}`, wantErr: `No supported number system prefix found in value [0jj0]. Make sure to prefix the number with '0x' for hexadecimal numbers or '0b' for binary numbers. at line 1 column 32`},
		{name: "msr bitmap bad char", in: `{"msr_modifiers":[{"addr":"0x200","bitmap":"0bx0?1_0_0x_?x1xxxx00xxx1xxxxxxxxxxx1"}]}`, wantErr: `Failed to parse string [0bx0?1_0_0x_?x1xxxx00xxx1xxxxxxxxxxx1] as a bitmap - unknown character: 63 at line 1 column 83`},
		{name: "msr bitmap bad digit", in: `{"msr_modifiers":[{"addr":"0x200","bitmap":"0bx00100x0x1xxxx05xxx1xxxxxxxxxxx1"}]}`, wantErr: `Failed to parse string [0bx00100x0x1xxxx05xxx1xxxxxxxxxxx1] as a bitmap - unknown character: 53 at line 1 column 80`},
		{name: "msr bitmap too long", in: `{"msr_modifiers":[{"addr":"0x200","bitmap":"0b11111111111111111111111111111111111111111111111111111111111111111"}]}`, wantErr: `Failed to parse string [0b11111111111111111111111111111111111111111111111111111111111111111] as a bitmap - string is too long at line 1 column 113`},
		{name: "msr missing bitmap", in: `{"msr_modifiers":[{"addr":"0x200"}]}`, wantErr: "missing field `bitmap` at line 1 column 34"},
		{name: "msr missing addr", in: `{"msr_modifiers":[{"bitmap":"0b1"}]}`, wantErr: "missing field `addr` at line 1 column 34"},
		{name: "msr duplicate addr", in: `{"msr_modifiers":[{"addr":"0x1","bitmap":"0b1","addr":"0x2"}]}`, wantErr: "duplicate field `addr` at line 1 column 53"},
		{name: "msr addr overflow", in: `{"msr_modifiers":[{"addr":"0x100000000","bitmap":"0b1"}]}`, wantErr: `Failed to parse string [0x100000000] as a number for CPU template - ParseIntError { kind: PosOverflow } at line 1 column 39`},
		{name: "unknown top-level key", in: `{"foo":1}`, wantErr: "unknown field `foo`, expected one of `kvm_capabilities`, `cpuid_modifiers`, `msr_modifiers` at line 1 column 6"},
		{name: "arm64 key reg_modifiers", in: `{"kvm_capabilities":[],"reg_modifiers":[]}`, wantErr: "unknown field `reg_modifiers`, expected one of `kvm_capabilities`, `cpuid_modifiers`, `msr_modifiers` at line 1 column 38"},
		{name: "arm64 key vcpu_features", in: `{"vcpu_features":[]}`, wantErr: "unknown field `vcpu_features`, expected one of `kvm_capabilities`, `cpuid_modifiers`, `msr_modifiers` at line 1 column 16"},
		{name: "duplicate kvm_capabilities", in: `{"kvm_capabilities":[],"kvm_capabilities":[]}`, wantErr: "duplicate field `kvm_capabilities` at line 1 column 41"},
		{name: "top-level string", in: `"template"`, wantErr: `invalid type: string "template", expected struct CustomCpuTemplate at line 1 column 10`},
		{name: "top-level number", in: `1`, wantErr: "invalid type: integer `1`, expected struct CustomCpuTemplate at line 1 column 1"},
		{name: "top-level null", in: `null`, wantErr: `invalid type: null, expected struct CustomCpuTemplate at line 1 column 4`},
		{name: "sequence too long", in: `[[], [], [], []]`, wantErr: `trailing characters at line 1 column 14`},
		{name: "sequence wrong element type", in: `[1]`, wantErr: "invalid type: integer `1`, expected a sequence at line 1 column 2"},
		{name: "trailing characters", in: `{"kvm_capabilities":[]}x`, wantErr: `trailing characters at line 1 column 24`},
		{name: "trailing comma", in: `{"kvm_capabilities":[],}`, wantErr: `trailing comma at line 1 column 24`},
		{name: "eof inside list", in: `{"kvm_capabilities":[`, wantErr: `EOF while parsing a list at line 1 column 21`},
		{name: "multi-line bad register", in: "{\n  \"cpuid_modifiers\": [\n    {\n      \"leaf\": \"0x80000007\",\n      \"subleaf\": \"0b000111\",\n      \"flags\": 0,\n      \"modifiers\": [\n        {\n          \"register\": \"ekx\",\n          \"bitmap\": \"0bx00100xxx1xxxxxxxxxxxxxxxxxxxxx1\"\n        }\n      ]\n    },\n  ],\n}", wantErr: `Invalid CPUID register. Must be one of [eax, ebx, ecx, edx] at line 9 column 27`},
		{name: "multi-line msr bitmap", in: "{\n  \"msr_modifiers\": [\n    {\n      \"addr\": \"0x200\",\n      \"bitmap\": \"0bx00100x0x1xxxx05xxx1xxxxxxxxxxx1\"\n    }\n  ]\n}", wantErr: `Failed to parse string [0bx00100x0x1xxxx05xxx1xxxxxxxxxxx1] as a bitmap - unknown character: 53 at line 6 column 5`},
		{name: "multi-line leaf", in: "{\n  \"cpuid_modifiers\": [\n    {\n      \"leaf\": \"k\",\n      \"subleaf\": \"0b000111\",\n      \"flags\": 0,\n      \"modifiers\": []\n    }\n  ]\n}", wantErr: `No supported number system prefix found in value [k]. Make sure to prefix the number with '0x' for hexadecimal numbers or '0b' for binary numbers. at line 4 column 17`},
		{name: "escaped capability", in: `{"kvm_capabilities":["\u0035\u0036"]}`, wantJSON: `{"kvm_capabilities":["56"],"cpuid_modifiers":[],"msr_modifiers":[]}`},
		{name: "escaped register name", in: `{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"e\u0061x","bitmap":"0b1"}]}]}`, wantJSON: `{"kvm_capabilities":[],"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":0,"modifiers":[{"register":"eax","bitmap":"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1"}]}],"msr_modifiers":[]}`},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, got := cptOutcome([]byte(c.in))
			switch {
			case c.wantErr != "" && (status != "err" || got != c.wantErr):
				t.Errorf("input %q\n got %s %q\nwant err %q", c.in, status, got, c.wantErr)
			case c.wantErr == "" && (status != "ok" || got != c.wantJSON):
				t.Errorf("input %q\n got %s %q\nwant ok %q", c.in, status, got, c.wantJSON)
			}
		})
	}
}

// TestCPUTemplateValues checks decoded numbers, not only their re-encoding.
func TestCPUTemplateValues(t *testing.T) {
	tmpl, err := ParseCPUTemplate([]byte(`{
		"kvm_capabilities": ["171", "!56"],
		"cpuid_modifiers": [{"leaf": "0x80000001", "subleaf": "0b101", "flags": 1,
			"modifiers": [{"register": "ecx", "bitmap": "0b1_0xx_01"}]}],
		"msr_modifiers": [{"addr": "0x10a", "bitmap": "0b1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0"}]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []KVMCapability{{Cap: 171}, {Cap: 56, Remove: true}}; fmt.Sprint(tmpl.KVMCapabilities) != fmt.Sprint(want) {
		t.Errorf("kvm_capabilities = %v, want %v", tmpl.KVMCapabilities, want)
	}
	leaf := tmpl.CPUIDModifiers[0]
	if leaf.Leaf != 0x80000001 || leaf.Subleaf != 5 || leaf.Flags != 1 || len(leaf.Modifiers) != 1 {
		t.Fatalf("leaf modifier = %+v", leaf)
	}
	m := leaf.Modifiers[0]
	if m.Register != CPUIDECX || m.Bitmap.Filter != 0b110011 || m.Bitmap.Value != 0b100001 {
		t.Errorf("register modifier = %v %#b/%#b", m.Register, m.Bitmap.Filter, m.Bitmap.Value)
	}
	if got := m.Bitmap.Apply(0b011110); got != 0b101101 {
		t.Errorf("Apply = %#b, want %#b", got, 0b101101)
	}
	msr := tmpl.MSRModifiers[0]
	if msr.Addr != 0x10a || msr.Bitmap.Filter != 1<<63|1 || msr.Bitmap.Value != 1<<63 {
		t.Errorf("msr modifier = %#x %#x/%#x", uint32(msr.Addr), msr.Bitmap.Filter, msr.Bitmap.Value)
	}
	if got := msr.Bitmap.Apply(^uint64(0)); got != ^uint64(0)-1 {
		t.Errorf("Apply = %#x", got)
	}
}

// TestCPUTemplateGolden decodes Firecracker's example templates (the arm64
// ones must be refused by an x86-64 build).
func TestCPUTemplateGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/cputemplate/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no templates in testdata/cputemplate: %v", err)
	}
	if *cptUpdate {
		if *cptOracle == "" {
			t.Fatal("-cputemplate.update needs -cputemplate.oracle")
		}
		var reqs []cptRequest
		for _, f := range files {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			reqs = append(reqs, cptRequest{"template", in})
		}
		for k, a := range cptAsk(t, reqs) {
			golden := strings.TrimSuffix(files[k], ".json") + ".golden"
			if err := os.WriteFile(golden, []byte(a.status+"\n"+a.out+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".golden")
			if err != nil {
				t.Fatal(err)
			}
			status, out := cptOutcome(in)
			if got := status + "\n" + out + "\n"; got != string(want) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// cpuConfigHolder stands for the --config-file struct around "cpu-config".
type cpuConfigHolder struct {
	_         struct{}         `serde:"name=VmmConfig,allow_unknown"`
	CPUConfig *CPUConfigOrPath `json:"cpu-config"`
	Other     []uint32         `json:"other" serde:"default"`
}

// cptConfigOutcome renders the decoded variant as the oracle does.
func cptConfigOutcome(in []byte) (status, out string) {
	var h cpuConfigHolder
	if err := strictjson.Unmarshal(in, &h); err != nil {
		return "err", err.Error()
	}
	switch c := h.CPUConfig; {
	case c == nil:
		return "ok", "none"
	case c.Template() != nil:
		b, err := strictjson.Marshal(c.Template())
		if err != nil {
			return "err", "marshal: " + err.Error()
		}
		return "ok", "template:" + string(b)
	default:
		p, ok := c.Path()
		if !ok {
			return "err", "neither path nor template"
		}
		return "ok", "path:" + p
	}
}

func TestCPUTemplateConfigOrPath(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    string // "none", "path:<path>" or "template:<serialized>"
		wantErr string
	}{
		{name: "absent", in: `{}`, want: `none`},
		{name: "null", in: `{"cpu-config":null}`, want: `none`},
		{name: "path", in: `{"cpu-config":"/tmp/t2.json"}`, want: `path:/tmp/t2.json`},
		{name: "empty path", in: `{"cpu-config":""}`, want: `path:`},
		{name: "path with escapes", in: `{"cpu-config":"a\u0000b\u000a"}`, want: "path:a\u0000b\n"},
		{name: "inline empty template", in: `{"cpu-config":{}}`, want: `template:{"kvm_capabilities":[],"cpuid_modifiers":[],"msr_modifiers":[]}`},
		{name: "inline template", in: `{"cpu-config":{"kvm_capabilities":["!56"],"msr_modifiers":[{"addr":"0x10a","bitmap":"0b0"}]},"other":[1]}`, want: `template:{"kvm_capabilities":["!56"],"cpuid_modifiers":[],"msr_modifiers":[{"addr":"0x10a","bitmap":"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0"}]}`},
		{name: "inline sequence template", in: `{"cpu-config":[["1"]]}`, want: `template:{"kvm_capabilities":["1"],"cpuid_modifiers":[],"msr_modifiers":[]}`},
		{name: "inline template with bad leaf", in: `{"cpu-config":{"cpuid_modifiers":[{"leaf":"1","subleaf":"0x0","flags":0,"modifiers":[]}]},"other":[1]}`, wantErr: `data did not match any variant of untagged enum CustomCpuTemplateOrPath at line 1 column 89`},
		{name: "inline template unknown key", in: `{"cpu-config":{"foo":1}}`, wantErr: `data did not match any variant of untagged enum CustomCpuTemplateOrPath at line 1 column 24`},
		{name: "inline duplicate key", in: `{"cpu-config":{"kvm_capabilities":[],"kvm_capabilities":[]}}`, wantErr: `data did not match any variant of untagged enum CustomCpuTemplateOrPath at line 1 column 60`},
		{name: "number", in: `{"cpu-config":1}`, wantErr: `data did not match any variant of untagged enum CustomCpuTemplateOrPath at line 1 column 16`},
		{name: "bool", in: `{"cpu-config":true}`, wantErr: `data did not match any variant of untagged enum CustomCpuTemplateOrPath at line 1 column 19`},
		{name: "empty list", in: `{"cpu-config":[]}`, want: `template:{"kvm_capabilities":[],"cpuid_modifiers":[],"msr_modifiers":[]}`},
		{name: "list of strings", in: `{"cpu-config":["a"]}`, wantErr: `data did not match any variant of untagged enum CustomCpuTemplateOrPath at line 1 column 20`},
		{name: "mismatch then more keys", in: "{\"cpu-config\":5,\n \"other\": [1, 2]\n}", wantErr: `data did not match any variant of untagged enum CustomCpuTemplateOrPath at line 1 column 15`},
		{name: "mismatch then bad later key", in: `{"cpu-config":5, "other": ["x"]}`, wantErr: `data did not match any variant of untagged enum CustomCpuTemplateOrPath at line 1 column 15`},
		{name: "syntax error inside", in: `{"cpu-config":{"kvm_capabilities":[}}`, wantErr: `expected value at line 1 column 36`},
		{name: "eof inside", in: `{"cpu-config":{"kvm_capabilities":[`, wantErr: `EOF while parsing a list at line 1 column 35`},
		{name: "bad escape inside", in: `{"cpu-config":{"x":"\q"}}`, wantErr: `invalid escape at line 1 column 22`},
		{name: "big number inside", in: `{"cpu-config":{"x":1e400}}`, wantErr: `number out of range at line 1 column 24`},
		{name: "float flags", in: `{"cpu-config":{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0x0","flags":1.0,"modifiers":[]}]}}`, wantErr: `data did not match any variant of untagged enum CustomCpuTemplateOrPath at line 1 column 94`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, got := cptConfigOutcome([]byte(c.in))
			switch {
			case c.wantErr != "" && (status != "err" || got != c.wantErr):
				t.Errorf("input %q\n got %s %q\nwant err %q", c.in, status, got, c.wantErr)
			case c.wantErr == "" && (status != "ok" || got != c.want):
				t.Errorf("input %q\n got %s %q\nwant ok %q", c.in, status, got, c.want)
			}
		})
	}
}

func TestCPUTemplateConfigMarshal(t *testing.T) {
	var h cpuConfigHolder
	for in, want := range map[string]string{
		`{}`:                       `{"cpu-config":null,"other":[]}`,
		`{"cpu-config":"/t.json"}`: `{"cpu-config":"/t.json","other":[]}`,
		`{"cpu-config":{"kvm_capabilities":["!1"]}}`: `{"cpu-config":{"kvm_capabilities":["!1"],"cpuid_modifiers":[],"msr_modifiers":[]},"other":[]}`,
	} {
		h = cpuConfigHolder{}
		if err := strictjson.Unmarshal([]byte(in), &h); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		got, err := strictjson.Marshal(h)
		if err != nil || string(got) != want {
			t.Errorf("%s: Marshal = %s, %v; want %s", in, got, err, want)
		}
	}
}

func TestCPUTemplateLoad(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile("testdata/cputemplate/mask_avx512.json")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"good.json":    good,
		"unknown.json": []byte("{\n  \"foo\": 1\n}\n"),
		"empty.json":   nil,
		"latin1.json":  []byte("{\"kvm_capabilities\":[\"\xe9\"]}"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name       string
		path       string
		wantPrefix string // "" for success
		wantErr    string
		wantIs     error
	}{
		{name: "good file", path: filepath.Join(dir, "good.json")},
		{name: "missing file", path: filepath.Join(dir, "nope.json"), wantPrefix: "File operation error",
			wantErr: "No such file or directory (os error 2)", wantIs: syscall.ENOENT},
		{name: "empty path", path: "", wantPrefix: "File operation error",
			wantErr: "No such file or directory (os error 2)", wantIs: syscall.ENOENT},
		{name: "directory", path: dir, wantPrefix: "File operation error",
			wantErr: "Is a directory (os error 21)", wantIs: syscall.EISDIR},
		{name: "through a file", path: filepath.Join(dir, "good.json", "x"), wantPrefix: "File operation error",
			wantErr: "Not a directory (os error 20)", wantIs: syscall.ENOTDIR},
		{name: "NUL in path", path: dir + "/a\x00b", wantPrefix: "File operation error",
			wantErr: "file name contained an unexpected NUL byte", wantIs: ErrCPUConfigFile},
		{name: "not UTF-8", path: filepath.Join(dir, "latin1.json"), wantPrefix: "File operation error",
			wantErr: "stream did not contain valid UTF-8", wantIs: ErrCPUConfigFile},
		{name: "bad template", path: filepath.Join(dir, "unknown.json"), wantPrefix: "Invalid JSON",
			wantErr: "unknown field `foo`, expected one of `kvm_capabilities`, `cpuid_modifiers`, `msr_modifiers` at line 2 column 7",
			wantIs:  ErrCPUConfigJSON},
		{name: "empty file", path: filepath.Join(dir, "empty.json"), wantPrefix: "Invalid JSON",
			wantErr: "EOF while parsing a value at line 1 column 0", wantIs: ErrCPUConfigJSON},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body, err := strictjson.Marshal(map[string]string{"cpu-config": c.path})
			if err != nil {
				t.Fatal(err)
			}
			var h cpuConfigHolder
			if err := strictjson.Unmarshal(body, &h); err != nil {
				t.Fatal(err)
			}
			cfg := h.CPUConfig
			if cfg.Template() != nil {
				t.Fatal("template before Load")
			}
			err = cfg.Load()
			if c.wantPrefix == "" {
				if err != nil || cfg.ErrorPrefix() != "" || cfg.Template() == nil {
					t.Fatalf("Load = %v (prefix %q), template %v", err, cfg.ErrorPrefix(), cfg.Template())
				}
				got, _ := strictjson.Marshal(cfg.Template())
				want, _ := strictjson.Marshal(mustParse(t, good))
				if !bytes.Equal(got, want) {
					t.Errorf("loaded %s\nwant %s", got, want)
				}
				return
			}
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if cfg.ErrorPrefix() != c.wantPrefix || err.Error() != c.wantErr {
				t.Errorf("got %q: %q\nwant %q: %q", cfg.ErrorPrefix(), err, c.wantPrefix, c.wantErr)
			}
			if !errors.Is(err, c.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, c.wantIs)
			}
			if cfg.Template() != nil {
				t.Error("template after a failed Load")
			}
		})
	}

	inline := &CPUConfigOrPath{}
	if err := inline.UnmarshalSerde(mustValue(t, `{"kvm_capabilities":["5"]}`)); err != nil {
		t.Fatal(err)
	}
	if err := inline.Load(); err != nil || inline.ErrorPrefix() != "" || inline.Template() == nil {
		t.Errorf("inline Load = %v, prefix %q, template %v", err, inline.ErrorPrefix(), inline.Template())
	}
}

// TestCPUTemplateNoVariantCause keeps the refused template's reason
// reachable, although Firecracker does not print it.
func TestCPUTemplateNoVariantCause(t *testing.T) {
	var c CPUConfigOrPath
	err := c.UnmarshalSerde(mustValue(t, `{"foo":1}`))
	var serr *strictjson.Error
	if err == nil || !errors.As(err, &serr) || !strings.Contains(serr.Error(), "unknown field `foo`") {
		t.Fatalf("UnmarshalSerde = %v", err)
	}
	// Without the input bytes (an element of a list) the compact form is used.
	if err := c.UnmarshalSerde(strictjson.ObjectValue([]strictjson.Member{{Key: "kvm_capabilities", Value: strictjson.ArrayValue(nil)}})); err != nil || c.Template() == nil {
		t.Fatalf("UnmarshalSerde(built value) = %v", err)
	}
}

func mustParse(t *testing.T, in []byte) *CPUTemplate {
	t.Helper()
	tmpl, err := ParseCPUTemplate(in)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func mustValue(t *testing.T, in string) strictjson.Value {
	t.Helper()
	v, err := strictjson.ParseValue([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type cptRequest struct {
	kind string // "template" or "config"
	in   []byte
}

type cptAnswer struct{ status, out string }

// cptAsk runs requests through the oracle: one `<kind>\t<hex input>` line
// each, answered by `ok|err\t<hex text>`.
func cptAsk(t *testing.T, reqs []cptRequest) []cptAnswer {
	t.Helper()
	var in bytes.Buffer
	for _, r := range reqs {
		fmt.Fprintf(&in, "%s\t%s\n", r.kind, hex.EncodeToString(r.in))
	}
	cmd := exec.Command(*cptOracle)
	cmd.Stdin = &in
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("oracle: %v\n%s", err, stderr.String())
	}
	var answers []cptAnswer
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		status, h, _ := strings.Cut(sc.Text(), "\t")
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatalf("oracle line %q: %v", sc.Text(), err)
		}
		answers = append(answers, cptAnswer{status, string(b)})
	}
	if len(answers) != len(reqs) {
		t.Fatalf("oracle answered %d of %d", len(answers), len(reqs))
	}
	return answers
}

// TestCPUTemplateOracle compares mutated templates and config values with
// real serde_json.
func TestCPUTemplateOracle(t *testing.T) {
	if *cptOracle == "" {
		t.Skip("SKIPPED: no -cputemplate.oracle=<program>; the differential check against serde_json needs it (see testdata/cputemplate/README.md)")
	}
	seeds := [][]byte{
		[]byte(`{"kvm_capabilities":["69","!69"],"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0b0","flags":0,"modifiers":[{"register":"eax","bitmap":"0b1x_0"}]}],"msr_modifiers":[{"addr":"0x10a","bitmap":"0bx1"}]}`),
		[]byte(`{"cpuid_modifiers":[["0xffffffff","0x0",1,[["edx","0b11111111111111111111111111111111"]]]],"msr_modifiers":[["0x1","0b0"]]}`),
	}
	files, _ := filepath.Glob("testdata/cputemplate/*.json")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && len(b) < 2500 {
			seeds = append(seeds, b)
		}
	}
	alphabet := []string{`"`, `0`, `1`, `x`, `_`, `!`, `+`, `-`, `b`, `Z`, `9`, `}`, `]`, `,`, `:`, ` `, "\n", `{`, `[`, `null`, `1.5`, `\u0030`, "\xcf\xbd", `0x`, `0b`, `eax`}
	rng := rand.New(rand.NewSource(1))
	mutate := func(in []byte) []byte {
		out := append([]byte(nil), in...)
		for n := 1 + rng.Intn(3); n > 0 && len(out) > 0; n-- {
			k := rng.Intn(len(out))
			switch rng.Intn(3) {
			case 0: // delete a run
				end := min(len(out), k+1+rng.Intn(4))
				out = append(out[:k], out[end:]...)
			case 1: // insert
				out = append(out[:k], append([]byte(alphabet[rng.Intn(len(alphabet))]), out[k:]...)...)
			default: // replace one byte
				out = append(out[:k], append([]byte(alphabet[rng.Intn(len(alphabet))]), out[k+1:]...)...)
			}
		}
		return out
	}
	var reqs []cptRequest
	for k := 0; k < 6000; k++ {
		in := mutate(seeds[rng.Intn(len(seeds))])
		if k%2 == 0 {
			reqs = append(reqs, cptRequest{"template", in})
		} else {
			reqs = append(reqs, cptRequest{"config", append(append([]byte(`{"other":[1], "cpu-config":`), in...), `, "other2": {}}`...)})
		}
	}
	answers := cptAsk(t, reqs)
	failures, oks := 0, 0
	kinds := map[string]bool{} // distinct messages, positions cut off
	for k, r := range reqs {
		var status, got string
		if r.kind == "template" {
			status, got = cptOutcome(r.in)
		} else {
			status, got = cptConfigOutcome(r.in)
		}
		if answers[k].status == "ok" {
			oks++
		} else {
			msg, _, _ := strings.Cut(answers[k].out, " at line ")
			msg, _, _ = strings.Cut(msg, "[")
			kinds[msg] = true
		}
		if status != answers[k].status || got != answers[k].out {
			failures++
			if failures <= 20 {
				t.Errorf("%s %q:\n got %s %q\nwant %s %q", r.kind, r.in, status, got, answers[k].status, answers[k].out)
			}
		}
	}
	t.Logf("%d cases (%d accepted, %d kinds of error), %d mismatches", len(reqs), oks, len(kinds), failures)
}
