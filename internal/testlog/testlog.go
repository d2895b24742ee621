// Package testlog routes a component's log lines to the log of the test that runs it, and keeps
// them for the test to search. Lines written after the test ends (a goroutine still closing) are
// kept but not passed to testing.T, which would panic.
package testlog

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Writer is an io.Writer for slog handlers.
type Writer struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
	buf  strings.Builder
}

// New returns a Writer for t that stops passing lines to t when t's cleanups run (after every
// cleanup registered later, such as closing the component).
func New(t testing.TB) *Writer {
	w := &Writer{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

// Logger is a text slog.Logger writing to w.
func (w *Writer) Logger() *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// String is everything written so far.
func (w *Writer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
