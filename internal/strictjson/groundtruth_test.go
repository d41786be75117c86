package strictjson

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"unicode/utf8"
)

const groundTruthFile = "testdata/groundtruth.jsonl"

// groundTruthRow is one line of testdata/groundtruth.jsonl: an input (as text,
// or hex when it is not UTF-8) and what serde_json answered for it.
type groundTruthRow struct {
	Type   string `json:"type"`
	In     string `json:"in,omitempty"`
	InHex  string `json:"in_hex,omitempty"`
	Status string `json:"status"`
	Out    string `json:"out"`
}

// TestGroundTruth replays a corpus of generated inputs whose answers were
// recorded from real serde_json (regenerate with -update -oracle=...).
func TestGroundTruth(t *testing.T) {
	if *update {
		needOracle(t)
		cases := generateCases(1, 4000)
		answers := askOracle(t, cases)
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		for k, c := range cases {
			row := groundTruthRow{Type: c.Type, Status: answers[k].Status, Out: answers[k].Out}
			if utf8.Valid(c.Input) {
				row.In = string(c.Input)
			} else {
				row.InHex = hex.EncodeToString(c.Input)
			}
			if err := enc.Encode(row); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(groundTruthFile, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(groundTruthFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		var row groundTruthRow
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		in := []byte(row.In)
		if row.InHex != "" {
			if in, err = hex.DecodeString(row.InHex); err != nil {
				t.Fatalf("line %d: %v", n+1, err)
			}
		}
		n++
		status, got := run(row.Type, in)
		if status != row.Status || got != row.Out {
			t.Errorf("line %d, %s %q:\n got %s %q\nwant %s %q", n, row.Type, in, status, got, row.Status, row.Out)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 1000 {
		t.Fatalf("corpus has only %d rows", n)
	}
}
