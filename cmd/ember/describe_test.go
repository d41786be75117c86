package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-vmm/ember/internal/cli"
	"github.com/ember-vmm/ember/internal/snapshot"
)

// captured runs f with os.Stdout and os.Stderr sent to files and returns
// what was written to each.
func captured(t *testing.T, f func()) (stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	out, _ := os.Create(filepath.Join(dir, "out"))
	errf, _ := os.Create(filepath.Join(dir, "err"))
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = out, errf
	defer func() { os.Stdout, os.Stderr = oldOut, oldErr }()
	f()
	o, _ := os.ReadFile(out.Name())
	e, _ := os.ReadFile(errf.Name())
	out.Close()
	errf.Close()
	return string(o), string(e)
}

var logTime = regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9} `)

func TestDescribeSnapshot(t *testing.T) {
	// Firecracker's own test checks that --describe-snapshot of a fresh
	// snapshot prints what --snapshot-version does.
	if snapshot.Version != cli.SnapshotVersion {
		t.Fatalf("snapshot.Version %s differs from --snapshot-version %s", snapshot.Version, cli.SnapshotVersion)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "vm.snap")
	if err := snapshot.Write(good, &snapshot.File{Header: snapshot.Header{Backend: "qemu", Created: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	flipped := append([]byte{}, b...)
	flipped[len(flipped)/2] ^= 1
	magic := append([]byte{}, b...)
	magic[0] ^= 1
	const prefix = "Error: PrintSnapshotDataFormat("
	tests := []struct {
		name, path     string
		code           int
		stdout, stderr string // stdout without the log lines
		log            string
	}{
		{"good", good, 0, "v" + cli.SnapshotVersion + "\n", "", "Firecracker exiting successfully. exit_code=0"},
		{"missing", filepath.Join(dir, "nope"), 1, "",
			prefix + `OpenSnapshot(Os { code: 2, kind: NotFound, message: "No such file or directory" }))` + "\n",
			"When printing Snapshot Data format: Unable to open snapshot state file: No such file or directory (os error 2)"},
		{"empty", write("empty", nil), 1, "",
			prefix + `SnapshotVersion(Io(Custom { kind: UnexpectedEof, error: "File too short to contain CRC" })))` + "\n",
			"When printing Snapshot Data format: Invalid data format version of snapshot file: IO Error: File too short to contain CRC"},
		{"directory", dir, 1, "",
			prefix + `SnapshotVersion(Io(Os { code: 21, kind: IsADirectory, message: "Is a directory" })))` + "\n",
			"IO Error: Is a directory (os error 21)"},
		{"flipped", write("flipped", flipped), 1, "", prefix + "SnapshotVersion(Crc64))\n",
			"Invalid data format version of snapshot file: CRC64 validation failed"},
		{"magic", write("magic", magic), 1, "", prefix + "SnapshotVersion(InvalidMagic(" + strconv.FormatUint(snapshot.HostMagic()^1, 10) + ")))\n",
			"Magic value does not match arch: " + strconv.FormatUint(snapshot.HostMagic()^1, 10)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			stdout, stderr := captured(t, func() { code = describeSnapshot(tc.path) })
			if code != tc.code || stderr != tc.stderr {
				t.Errorf("code %d, stderr %q; want %d, %q", code, stderr, tc.code, tc.stderr)
			}
			var out, logs []string
			for _, l := range strings.SplitAfter(stdout, "\n") {
				if logTime.MatchString(l) {
					logs = append(logs, l)
				} else if l != "" {
					out = append(out, l)
				}
			}
			if strings.Join(out, "") != tc.stdout {
				t.Errorf("stdout %q, want %q", strings.Join(out, ""), tc.stdout)
			}
			all := strings.Join(logs, "")
			if !strings.Contains(all, "[anonymous-instance:main] ") || !strings.Contains(all, tc.log) {
				t.Errorf("log lines %q lack %q", all, tc.log)
			}
			if tc.code != 0 && !strings.HasSuffix(all, "Firecracker exiting with error. exit_code=1\n") {
				t.Errorf("log lines %q lack the exit line", all)
			}
		})
	}
}
