package testlog

import (
	"strings"
	"testing"
)

func TestWriterKeepsAndStops(t *testing.T) {
	var w *Writer
	t.Run("inner", func(t *testing.T) {
		w = New(t)
		w.Logger().Info("hello", "k", "v")
	})
	// The inner test has ended: a late line is kept, not passed to its testing.T (which panics).
	w.Logger().Info("late")
	if s := w.String(); !strings.Contains(s, "msg=hello k=v") || !strings.Contains(s, "msg=late") {
		t.Fatalf("kept %q", s)
	}
}
