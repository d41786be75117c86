package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// ErrOutputEnded means a process's output ended before an awaited line.
var ErrOutputEnded = errors.New("output ended")

// line is one output line and the moment the benchmark read it.
type line struct {
	at   time.Time
	text string
}

// lineLog reads a process's output and timestamps each line as it
// arrives; every time the benchmark measures to a console or log line is
// taken from here, on the host's monotonic clock.
type lineLog struct {
	mu      sync.Mutex
	lines   []line
	changed chan struct{} // closed and replaced when lines grow; nil once ended
	done    chan struct{}
	// keep bounds what is stored; beyond it only the newest lines stay
	// (a chatty guest must not grow the benchmark without limit).
	keep    int
	dropped int
}

func newLineLog(r io.Reader) *lineLog {
	l := &lineLog{changed: make(chan struct{}), done: make(chan struct{}), keep: 20000}
	go l.read(r)
	return l
}

func (l *lineLog) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		s, err := br.ReadString('\n')
		if s != "" {
			now := time.Now()
			l.mu.Lock()
			l.lines = append(l.lines, line{at: now, text: strings.TrimRight(s, "\r\n")})
			if len(l.lines) > l.keep {
				n := len(l.lines) - l.keep/2
				l.lines = append(l.lines[:0], l.lines[n:]...)
				l.dropped += n
			}
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
		}
		if err != nil {
			l.mu.Lock()
			close(l.changed)
			l.changed = nil
			close(l.done)
			l.mu.Unlock()
			return
		}
	}
}

// mark is a position in the log: waits from a mark see only later lines.
func (l *lineLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped + len(l.lines)
}

// wait returns the first line at or after mark containing substr.
func (l *lineLog) wait(ctx context.Context, from int, substr string) (line, error) {
	for {
		l.mu.Lock()
		start := from - l.dropped
		if start < 0 {
			start = 0
		}
		for i := start; i < len(l.lines); i++ {
			if strings.Contains(l.lines[i].text, substr) {
				ln := l.lines[i]
				l.mu.Unlock()
				return ln, nil
			}
		}
		from = l.dropped + len(l.lines)
		ch := l.changed
		l.mu.Unlock()
		if ch == nil {
			return line{}, fmt.Errorf("%w before %q; last lines:\n%s", ErrOutputEnded, substr, l.tail(15))
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return line{}, fmt.Errorf("waiting for %q: %w; last lines:\n%s", substr, ctx.Err(), l.tail(15))
		}
	}
}

// find returns the first line so far containing substr.
func (l *lineLog) find(substr string) (line, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ln := range l.lines {
		if strings.Contains(ln.text, substr) {
			return ln, true
		}
	}
	return line{}, false
}

func (l *lineLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, ln := range lines {
		b.WriteString("    ")
		b.WriteString(ln.text)
		b.WriteByte('\n')
	}
	return b.String()
}
