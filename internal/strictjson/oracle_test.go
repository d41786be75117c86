package strictjson

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

var (
	oraclePath = flag.String("oracle", "", "path to the built testdata/oracle binary (real serde_json); enables oracle checks")
	update     = flag.Bool("update", false, "rewrite testdata golden files from -oracle")
)

type oracleCase struct {
	Type  string
	Input []byte
}

type outcome struct {
	Status string // "ok" or "err"
	Out    string
}

// askOracle runs every case through the Rust oracle in one process.
func askOracle(t *testing.T, cases []oracleCase) []outcome {
	t.Helper()
	var in bytes.Buffer
	for _, c := range cases {
		fmt.Fprintf(&in, "%s\t%s\n", c.Type, hex.EncodeToString(c.Input))
	}
	cmd := exec.Command(*oraclePath)
	cmd.Stdin = &in
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("oracle %s: %v\n%s", *oraclePath, err, stderr.String())
	}
	var res []outcome
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		status, h, _ := strings.Cut(sc.Text(), "\t")
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatalf("oracle output %q: %v", sc.Text(), err)
		}
		res = append(res, outcome{status, string(b)})
	}
	if len(res) != len(cases) {
		t.Fatalf("oracle answered %d of %d cases", len(res), len(cases))
	}
	return res
}

func needOracle(t *testing.T) {
	t.Helper()
	if *oraclePath == "" {
		t.Skip("SKIPPED: no -oracle=<path to testdata/oracle binary>; the differential check against real serde_json needs it (see testdata/oracle/README.md)")
	}
}
