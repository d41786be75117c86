package badrequests

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// knownDivergences lists corpus cases (file/name) where ember is known to
// answer differently from Firecracker, each with the reason. A listed case
// is reported loudly but does not fail the run; a listed case that now
// matches does fail, so the list only ever shrinks. Every entry is a bug
// to fix in ember, not a different expectation.
var knownDivergences = map[string]string{}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// servingEvery is how many cases run between two checks that the process
// still serves.
const servingEvery = 25

// TestReplay sends every corpus case, each on a fresh connection, to an
// ember process per corpus file and compares the answer byte for byte.
func TestReplay(t *testing.T) {
	files := loadCorpus(t)
	total, matched, known := 0, 0, 0
	for _, f := range files {
		t.Run(strings.TrimSuffix(f.name, ".txt"), func(t *testing.T) {
			m, k := replayFile(t, f)
			total += len(f.cases)
			matched += m
			known += k
		})
	}
	t.Logf("replayed %d cases: %d as Firecracker answers, %d known divergences", total, matched, known)
}

// replayFile runs one corpus file and returns how many cases matched and
// how many diverged as knownDivergences says.
func replayFile(t *testing.T, f *corpusFile) (matched, known int) {
	vars := map[string]string{}
	if f.state == "booted" {
		vars = guestVars(t)
	}
	dir := shortTempDir(t)
	for _, fs := range f.files {
		if err := os.WriteFile(filepath.Join(dir, fs.name), make([]byte, fs.size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := startEmber(t, dir, f.args...)
	for _, s := range f.setup {
		parts := strings.SplitN(expand(s, vars), " ", 3)
		body := []byte(nil)
		if len(parts) == 3 {
			body = []byte(parts[2])
		}
		got, err := e.exchange(buildRequest(parts[0], parts[1], body, body != nil), false)
		if err != nil || !bytes.HasPrefix(got, []byte("HTTP/1.1 2")) {
			t.Fatalf("setup %q failed: %v\n%s", s, err, got)
		}
	}
	for i, c := range f.cases {
		want := c.want.wantBytes(vars)
		if c.want.none {
			want = nil
		} else if c.want.interim != "" {
			want = append(interimBytes(c.want.interim), want...)
		}
		got, err := e.exchange(c.requestBytes(vars), c.want.none)
		reason, listed := knownDivergences[c.id()]
		switch {
		case bytes.Equal(got, want) && err == nil:
			matched++
			if listed {
				t.Errorf("%s:%d %q now answers as Firecracker does: remove it from knownDivergences (%s)", c.file, c.line, c.name, reason)
			}
		case listed:
			known++
			t.Logf("KNOWN DIVERGENCE %s:%d %q: %s\n  want %q\n  got  %q (%v)", c.file, c.line, c.name, reason, want, got, err)
		default:
			t.Errorf("%s:%d %q: ember differs from Firecracker\n  sent %q\n  want %q\n  got  %q (%v)",
				c.file, c.line, c.name, truncate(c.requestBytes(vars), 300), want, got, err)
		}
		if (i+1)%servingEvery == 0 || i == len(f.cases)-1 {
			if err := e.serving(); err != nil {
				t.Fatalf("after case %q (%s:%d), ember no longer serves: %v", c.name, c.file, c.line, err)
			}
		}
	}
	return matched, known
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return append(b[:n:n], "..."...)
	}
	return b
}
