package logger

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func fixedLogger(buf *bytes.Buffer) *Logger {
	l := New("vm-1", buf)
	l.now = func() time.Time { return time.Date(2026, 11, 25, 8, 5, 3, 7, time.Local) }
	return l
}

func TestLineFormat(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		log  func(Log)
		want string // "" means nothing written
	}{
		{"plain", Config{}, func(g Log) { g.Infof("API server started.") },
			"2026-11-25T08:05:03.000000007 [vm-1:fc_api] API server started.\n"},
		{"with level", Config{ShowLevel: ptr(true)}, func(g Log) { g.Warnf("w %d", 1) },
			"2026-11-25T08:05:03.000000007 [vm-1:fc_api:WARN] w 1\n"},
		{"below level", Config{}, func(g Log) { g.Debugf("hidden") }, ""},
		{"debug enabled", Config{Level: ptr(Debug)}, func(g Log) { g.Debugf("shown") },
			"2026-11-25T08:05:03.000000007 [vm-1:fc_api] shown\n"},
		{"off", Config{Level: ptr(Off)}, func(g Log) { g.Errorf("nothing") }, ""},
		{"module filter excludes", Config{Module: ptr("internal/vmm")}, func(g Log) { g.Infof("x") }, ""},
		{"module filter includes", Config{Module: ptr("internal/log")}, func(g Log) { g.Infof("x") },
			"2026-11-25T08:05:03.000000007 [vm-1:fc_api] x\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := fixedLogger(&buf)
			if err := l.Update(tt.cfg); err != nil {
				t.Fatal(err)
			}
			tt.log(l.Thread("fc_api"))
			if got := buf.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOrigin(t *testing.T) {
	var buf bytes.Buffer
	l := fixedLogger(&buf)
	l.Update(Config{ShowLevel: ptr(true), ShowLogOrigin: ptr(true)})
	l.Thread("main").Infof("here")
	re := regexp.MustCompile(`^\S+ \[vm-1:main:INFO:internal/logger/logger_test\.go:\d+\] here\n$`)
	if !re.MatchString(buf.String()) {
		t.Errorf("got %q", buf.String())
	}
}

func TestAbsentLevelResetsToInfo(t *testing.T) {
	l := New("x", &bytes.Buffer{})
	l.Update(Config{Level: ptr(Trace)})
	l.Update(Config{ShowLevel: ptr(true)})
	if l.Level() != Info {
		t.Errorf("level = %v, want Info", l.Level())
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]Level{"off": Off, "TRACE": Trace, "Debug": Debug, "info": Info,
		"warn": Warn, "Warning": Warn, "ERROR": Error} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseLevel("loud"); !errors.Is(err, ErrInvalidLevel) {
		t.Errorf("bad level: %v", err)
	}
	if Warn.APIName() != "Warn" {
		t.Errorf("APIName = %q", Warn.APIName())
	}
}

func TestPathTarget(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	os.WriteFile(p, []byte("old\n"), 0o644)
	l := New("x", &bytes.Buffer{})
	if err := l.Update(Config{Path: &p}); err != nil {
		t.Fatal(err)
	}
	l.Thread("main").Infof("new")
	l.Close()
	b, _ := os.ReadFile(p)
	// Opened as Firecracker opens it: not truncated, not in append mode, so
	// the first line is written over the old content from offset 0.
	if !strings.HasSuffix(strings.SplitN(string(b), "\n", 2)[0], "[x:main] new") {
		t.Errorf("file = %q", b)
	}
	bad := filepath.Join(t.TempDir(), "no", "such", "dir")
	if err := l.Update(Config{Path: &bad}); err == nil {
		t.Errorf("opening a path in a missing directory succeeded")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("full") }

func TestMissedCount(t *testing.T) {
	l := New("x", failWriter{})
	g := l.Thread("main")
	g.Infof("a")
	g.Infof("b")
	if n := l.MissedCount(); n != 2 {
		t.Errorf("missed = %d, want 2", n)
	}
	if n := l.MissedCount(); n != 0 {
		t.Errorf("missed after reset = %d", n)
	}
}

func TestDiscard(t *testing.T) {
	Discard.Infof("nothing happens")
	if Discard.Enabled(Error) {
		t.Error("Discard reports enabled")
	}
}

func ptr[T any](v T) *T { return &v }
