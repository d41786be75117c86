package testguest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// ErrConsoleClosed is returned (wrapped) by Console waits when the output
// ended before the awaited line appeared.
var ErrConsoleClosed = errors.New("testguest: console output ended")

// Console collects a guest's serial output line by line and lets a test wait
// for marker lines. It reads until EOF or a read error; it never blocks the
// writer on a slow test.
type Console struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced whenever lines grow or reading ends
	done    chan struct{}
	err     error
}

// NewConsole starts reading r (typically a VM's serial output pipe).
func NewConsole(r io.Reader) *Console {
	c := &Console{changed: make(chan struct{}), done: make(chan struct{})}
	go c.read(r)
	return c
}

func (c *Console) read(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			c.add(strings.TrimRight(line, "\r\n"))
		}
		if err != nil {
			c.mu.Lock()
			if !errors.Is(err, io.EOF) {
				c.err = err
			}
			close(c.done)
			close(c.changed)
			c.changed = nil
			c.mu.Unlock()
			return
		}
	}
}

func (c *Console) add(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, line)
	close(c.changed)
	c.changed = make(chan struct{})
}

// Done is closed when the output has ended.
func (c *Console) Done() <-chan struct{} { return c.done }

// Err is the read error that ended the output, nil for EOF or while reading.
func (c *Console) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Lines returns a copy of the lines read so far.
func (c *Console) Lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// Len is the number of lines read so far.
func (c *Console) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

// Tail returns the last n lines read so far, joined by newlines, for
// failure messages.
func (c *Console) Tail(n int) string {
	lines := c.Lines()
	if n >= 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Wait returns the first line containing substr, waiting for it if needed.
func (c *Console) Wait(ctx context.Context, substr string) (string, error) {
	_, line, err := c.WaitFrom(ctx, 0, substr)
	return line, err
}

// WaitFrom returns the first line at index from or later that contains
// substr, and its index. It fails when ctx ends or the output ends first.
func (c *Console) WaitFrom(ctx context.Context, from int, substr string) (int, string, error) {
	if from < 0 {
		from = 0
	}
	for {
		c.mu.Lock()
		for i := from; i < len(c.lines); i++ {
			if strings.Contains(c.lines[i], substr) {
				line := c.lines[i]
				c.mu.Unlock()
				return i, line, nil
			}
		}
		from = max(from, len(c.lines))
		changed := c.changed
		c.mu.Unlock()
		if changed == nil {
			return -1, "", fmt.Errorf("%w before %q; last lines:\n%s", ErrConsoleClosed, substr, c.Tail(20))
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return -1, "", fmt.Errorf("testguest: waiting for %q: %w; last lines:\n%s", substr, ctx.Err(), c.Tail(20))
		}
	}
}
