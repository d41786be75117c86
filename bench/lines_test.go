package main

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func TestLineLog(t *testing.T) {
	r, w := io.Pipe()
	l := newLineLog(r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	io.WriteString(w, "one\r\nEMBER-GUEST: init\n")
	ln, err := l.wait(ctx, 0, "EMBER-GUEST: init")
	if err != nil || ln.text != "EMBER-GUEST: init" || ln.at.IsZero() {
		t.Fatalf("wait = %+v, %v", ln, err)
	}
	mark := l.mark()
	if mark != 2 {
		t.Fatalf("mark = %d, want 2", mark)
	}
	// A line before the mark does not satisfy a wait from the mark.
	go io.WriteString(w, "two\nEMBER-GUEST: init again\n")
	ln, err = l.wait(ctx, mark, "init")
	if err != nil || ln.text != "EMBER-GUEST: init again" {
		t.Fatalf("wait from mark = %+v, %v", ln, err)
	}
	if _, ok := l.find("two"); !ok {
		t.Error("find missed a line")
	}
	w.Close()
	if _, err := l.wait(ctx, 0, "never"); !errors.Is(err, ErrOutputEnded) {
		t.Fatalf("wait after EOF = %v, want ErrOutputEnded", err)
	}
}

func TestLineLogTimeoutAndBound(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	l := newLineLog(r)
	l.keep = 10
	for i := 0; i < 25; i++ {
		io.WriteString(w, "x\n")
	}
	io.WriteString(w, "last\n")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := l.wait(ctx, 0, "last"); err != nil {
		t.Fatal(err)
	}
	cancel()
	if m := l.mark(); m != 26 {
		t.Errorf("mark = %d after dropping old lines, want 26", m)
	}
	l.mu.Lock()
	n := len(l.lines)
	l.mu.Unlock()
	if n > 10 {
		t.Errorf("%d lines kept, bound 10", n)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.wait(ctx, 0, "never"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait = %v, want a deadline error", err)
	}
}
