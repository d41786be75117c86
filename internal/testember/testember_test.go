package testember

import (
	"fmt"
	"testing"
)

// recorder is a testing.TB that keeps what Errorf reports.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestCheckRace(t *testing.T) {
	const report = `==================
WARNING: DATA RACE
Write at 0x00c0001a2b38 by goroutine 12:
  main.main.func1()
      /tmp/race.go:9 +0x44

Previous read at 0x00c0001a2b38 by main goroutine:
  main.main()
      /tmp/race.go:11 +0x9c
==================
`
	for _, tc := range []struct {
		name   string
		stderr string
		fails  bool
	}{
		{"nothing", "", false},
		{"ordinary stderr", "2026-11-26T06:30:00.000000000 [anonymous-instance:main] Running Firecracker v1.17.0-dev\n", false},
		{"goroutine dump", "SIGQUIT: quit\nPC=0x46b0a1 m=0 sigcode=0\n\ngoroutine 1 [running]:\n", false},
		{"race report", report, true},
		{"race report after other output", "some line\n" + report + "Found 1 data race(s)\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			CheckRace(r, 42, tc.stderr)
			if got := len(r.errors) > 0; got != tc.fails {
				t.Errorf("CheckRace failed the test: %v (%q), want %v", got, r.errors, tc.fails)
			}
		})
	}
}

func TestRace(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
	}{{"", false}, {"0", false}, {"yes", false}, {"1", true}} {
		t.Setenv(RaceEnv, tc.value)
		if got := Race(); got != tc.want {
			t.Errorf("%s=%q: Race() = %v, want %v", RaceEnv, tc.value, got, tc.want)
		}
	}
}
