// Package logger writes ember's log in Firecracker's line format:
//
//	<YYYY-MM-DDTHH:MM:SS.nnnnnnnnn> [<instance-id>:<thread>[:<LEVEL>][:<file>:<line>]] <message>
//
// One Logger exists per process; it is safe for concurrent use and every line
// reaches its target in a single write, so lines never interleave. Callers log
// through a Log, a cheap value naming the "thread" (fc_api, main, fc_vcpu 0)
// that test harnesses look for. A failed write is counted, never reported.
package logger

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Level is a log level filter, ordered from Off (nothing) to Trace (everything).
type Level int32

// The levels, in Firecracker's order.
const (
	Off Level = iota
	Error
	Warn
	Info
	Debug
	Trace
)

// DefaultLevel is the level before any configuration, as in Firecracker.
const DefaultLevel = Info

// DefaultInstanceID is the instance id when --id is not given.
const DefaultInstanceID = "anonymous-instance"

// ErrInvalidLevel is returned by ParseLevel for an unknown level name.
var ErrInvalidLevel = errors.New("Invalid LevelFilter")

// String returns the name shown in a log line (ERROR, WARN, ...).
func (l Level) String() string {
	switch l {
	case Off:
		return "OFF"
	case Error:
		return "ERROR"
	case Warn:
		return "WARN"
	case Info:
		return "INFO"
	case Debug:
		return "DEBUG"
	case Trace:
		return "TRACE"
	}
	return fmt.Sprintf("Level(%d)", int32(l))
}

// APIName returns the level as the API's LoggerConfig names it ("Info", ...).
func (l Level) APIName() string {
	s := l.String()
	return s[:1] + strings.ToLower(s[1:])
}

// ParseLevel accepts Firecracker's level names in any case, including the
// legacy "warning".
func ParseLevel(s string) (Level, error) {
	switch strings.ToLower(s) {
	case "off":
		return Off, nil
	case "trace":
		return Trace, nil
	case "debug":
		return Debug, nil
	case "info":
		return Info, nil
	case "warn", "warning":
		return Warn, nil
	case "error":
		return Error, nil
	}
	return 0, ErrInvalidLevel
}

// Config is an update to the logger, as PUT /logger carries it. Nil fields
// leave the current setting, except Level: an absent level resets to Info,
// as Firecracker does.
type Config struct {
	Path          *string
	Level         *Level
	ShowLevel     *bool
	ShowLogOrigin *bool
	Module        *string
}

// Logger is the process-wide log sink.
type Logger struct {
	id     string
	level  atomic.Int32
	missed atomic.Uint64

	mu         sync.RWMutex
	out        io.Writer
	file       *os.File // owned target opened from a path, closed on replacement
	showLevel  bool
	showOrigin bool
	module     string

	now func() time.Time
}

// New returns a logger for instance id writing to w (stdout in ember).
func New(id string, w io.Writer) *Logger {
	l := &Logger{id: id, out: w, now: time.Now}
	l.level.Store(int32(DefaultLevel))
	return l
}

// OpenTarget opens a log, metrics or serial path as Firecracker does:
// created if missing, never truncated, non-blocking so a FIFO without a
// reader neither blocks nor fails at open.
func OpenTarget(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_NONBLOCK, 0o644)
}

// Update applies c. On error nothing changes.
func (l *Logger) Update(c Config) error {
	var f *os.File
	if c.Path != nil {
		var err error
		if f, err = OpenTarget(*c.Path); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.Level != nil {
		l.level.Store(int32(*c.Level))
	} else {
		l.level.Store(int32(DefaultLevel))
	}
	if f != nil {
		if l.file != nil {
			l.file.Close()
		}
		l.file, l.out = f, f
	}
	if c.ShowLevel != nil {
		l.showLevel = *c.ShowLevel
	}
	if c.ShowLogOrigin != nil {
		l.showOrigin = *c.ShowLogOrigin
	}
	if c.Module != nil {
		l.module = *c.Module
	}
	return nil
}

// SetLevel sets the level filter.
func (l *Logger) SetLevel(v Level) { l.level.Store(int32(v)) }

// Level returns the current level filter.
func (l *Logger) Level() Level { return Level(l.level.Load()) }

// Enabled reports whether a line at v would be written.
func (l *Logger) Enabled(v Level) bool { return v != Off && v <= Level(l.level.Load()) }

// MissedCount returns and resets the number of lines that could not be
// written since the last call (the logger.missed_log_count metric).
func (l *Logger) MissedCount() uint64 { return l.missed.Swap(0) }

// Close closes a target file the logger opened.
func (l *Logger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		err := l.file.Close()
		l.file = nil
		l.out = io.Discard
		return err
	}
	return nil
}

// Thread returns a Log that tags its lines with the given thread name.
func (l *Logger) Thread(name string) Log { return Log{l: l, thread: name} }

// Log is a handle for one thread of execution; the zero value discards.
type Log struct {
	l      *Logger
	thread string
}

// Discard is a Log that writes nothing, for tests and optional wiring.
var Discard = Log{}

// Thread returns a Log on the same logger under another thread name.
func (g Log) Thread(name string) Log { return Log{l: g.l, thread: name} }

// Enabled reports whether a line at v would be written.
func (g Log) Enabled(v Level) bool { return g.l != nil && g.l.Enabled(v) }

// Errorf logs at Error.
func (g Log) Errorf(format string, args ...any) { g.logf(Error, format, args...) }

// Warnf logs at Warn.
func (g Log) Warnf(format string, args ...any) { g.logf(Warn, format, args...) }

// Infof logs at Info.
func (g Log) Infof(format string, args ...any) { g.logf(Info, format, args...) }

// Debugf logs at Debug.
func (g Log) Debugf(format string, args ...any) { g.logf(Debug, format, args...) }

// Tracef logs at Trace.
func (g Log) Tracef(format string, args ...any) { g.logf(Trace, format, args...) }

// Logf logs at the given level.
func (g Log) Logf(v Level, format string, args ...any) { g.logf(v, format, args...) }

func (g Log) logf(v Level, format string, args ...any) {
	if g.l == nil || !g.l.Enabled(v) {
		return
	}
	g.l.write(g.thread, v, 3, fmt.Sprintf(format, args...))
}

func (l *Logger) write(thread string, v Level, skip int, msg string) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var file, module string
	line := 0
	if l.showOrigin || l.module != "" {
		if pc, f, ln, ok := runtime.Caller(skip); ok {
			file, line = trimSource(f), ln
			if fn := runtime.FuncForPC(pc); fn != nil {
				module = packageOf(fn.Name())
			}
		}
	}
	if l.module != "" && !strings.HasPrefix(module, l.module) {
		return
	}
	var b strings.Builder
	b.Grow(64 + len(msg))
	t := l.now()
	fmt.Fprintf(&b, "%d-%02d-%02dT%02d:%02d:%02d.%09d [%s:%s", t.Year(), int(t.Month()), t.Day(),
		t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), l.id, thread)
	if l.showLevel {
		b.WriteByte(':')
		b.WriteString(v.String())
	}
	if l.showOrigin {
		if file == "" {
			b.WriteString(":?:?")
		} else {
			fmt.Fprintf(&b, ":%s:%d", file, line)
		}
	}
	b.WriteString("] ")
	b.WriteString(msg)
	b.WriteByte('\n')
	if _, err := io.WriteString(l.out, b.String()); err != nil {
		l.missed.Add(1)
	}
}

// trimSource shortens a source path to its module-relative form
// (internal/vmm/controller.go), like the crate-relative paths Firecracker shows.
func trimSource(f string) string {
	if i := strings.LastIndex(f, "/internal/"); i >= 0 {
		return f[i+1:]
	}
	if i := strings.LastIndex(f, "/cmd/"); i >= 0 {
		return f[i+1:]
	}
	return path.Base(f)
}

// packageOf returns the import path of a function's package, shortened to the
// module-relative form used by the module filter (internal/vmm).
func packageOf(fn string) string {
	slash := strings.LastIndex(fn, "/")
	if dot := strings.Index(fn[slash+1:], "."); dot >= 0 {
		fn = fn[:slash+1+dot]
	}
	if i := strings.Index(fn, "/internal/"); i >= 0 {
		return fn[i+1:]
	}
	if i := strings.Index(fn, "/cmd/"); i >= 0 {
		return fn[i+1:]
	}
	return fn
}
