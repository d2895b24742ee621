package srtserver

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestDraining: while Config.Draining says so, a new publisher and a new reader are refused with
// SRT reject 1503 (REJX_DOWN) and counted as "draining", while the publisher that was already
// connected keeps flowing; once the drain ends a reader is accepted again.
func TestDraining(t *testing.T) {
	var draining atomic.Bool
	s, h, _ := startServer(t, func(c *Config) { c.Draining = draining.Load })
	ffmpegPublish(t, srtURL(s, "mode=caller&latency=120000&streamid=publish:live/drain"))
	st := waitStream(t, h, "live/drain", 100, 15*time.Second)
	draining.Store(true)
	for _, id := range []string{"publish:live/other", "read:live/drain"} {
		before := s.Stats().Rejected(RejectDraining)
		c, err := dial(s, id, "")
		if err == nil {
			c.Close()
			t.Fatalf("%s accepted while draining", id)
		}
		if got := s.Stats().Rejected(RejectDraining); got != before+1 {
			t.Errorf("%s: rejected[draining] = %d, want %d (%v)", id, got, before+1, err)
		}
	}
	before := streamPackets(st)
	time.Sleep(500 * time.Millisecond)
	if !st.Live() || streamPackets(st) <= before+10 {
		t.Fatalf("the publisher connected before the drain stopped flowing (%d → %d packets)", before, streamPackets(st))
	}
	draining.Store(false)
	c, err := dial(s, "read:live/drain", "")
	if err != nil {
		t.Fatalf("read after the drain ended: %v", err)
	}
	defer c.Close()
	if n := len(readTS(t, c, 700*time.Millisecond)); n < 188*10 {
		t.Errorf("the reader after the drain got %d bytes", n)
	}
}
