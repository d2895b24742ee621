package e2e

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/loadtest"
	"github.com/streamfleet/streamfleet/internal/nodetest"
)

// TestLoadToolReadsNodeGSORuns: against a real node, whose fan-out sends a viewer's run of equal
// datagrams as one UDP GSO message, the load tool's subscribers (sockets with UDP GRO) read those
// runs as one buffer each and measure every datagram of them: all subscribers connected, media
// decrypted in the read loops with nothing undecryptable, no loss, and the node's GSO messages
// show up as the load tool's coalesced reads. Without --gro the same run has no coalesced read.
func TestLoadToolReadsNodeGSORuns(t *testing.T) {
	n := nodetest.Start(t, nil)
	run := func(stream string, gro bool) *loadtest.Report {
		t.Helper()
		cfg := loadtest.DefaultConfig()
		cfg.Server, cfg.Stream = n.HTTPURL(), stream
		cfg.VideoBitrate, cfg.Subscribers, cfg.RampPerSecond = 2_000_000, 3, 20
		cfg.Pacing = 0 // a frame's packets back to back: the node forwards them as runs
		cfg.Warmup, cfg.Duration = time.Second, 2*time.Second
		cfg.GRO = gro
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		rep, err := loadtest.Run(ctx, cfg, slog.New(slog.NewTextHandler(&nodetest.Log{T: t}, nil)))
		if err != nil {
			t.Fatalf("load tool: %v", err)
		}
		s := rep.Subscribers
		if s.Connected != 3 || s.Failed != 0 || s.NoVideo != 0 {
			t.Errorf("subscribers %+v, want 3 connected with video", s)
		}
		if rep.LossPercent > 0.5 || rep.Video.Packets == 0 || rep.SocketDelay.Count == 0 {
			t.Errorf("loss %.3f %%, video %+v, socket delay samples %d", rep.LossPercent, rep.Video, rep.SocketDelay.Count)
		}
		r := rep.Receive
		if r == nil || !r.Direct || r.DirectSubscribers != 3 || r.DirectErrors != 0 || r.GRO != gro {
			t.Fatalf("receive %+v, want every subscriber direct, GRO %t", r, gro)
		}
		return rep
	}
	gso0 := n.WebRTC().Stats().GSOMessages.Load()
	r := run("live/gro", true).Receive
	gso := n.WebRTC().Stats().GSOMessages.Load() - gso0
	if gso == 0 {
		t.Fatal("the node sent no GSO message: nothing for GRO to show")
	}
	// Each coalesced read is one of the node's GSO messages (loopback merges nothing else), and
	// carries at least two of the datagrams the subscribers measured; both counts cover the run.
	if r.GROReads == 0 || r.GROReads > gso || r.GRODatagrams < 2*r.GROReads || r.GRODatagrams > r.DirectPackets+r.PionPackets {
		t.Errorf("GRO reads %d carrying %d datagrams (%d direct, %d via pion); the node sent %d GSO messages",
			r.GROReads, r.GRODatagrams, r.DirectPackets, r.PionPackets, gso)
	}
	if r := run("live/nogro", false).Receive; r.GROReads != 0 || r.GRODatagrams != 0 {
		t.Errorf("without GRO: %d coalesced reads", r.GROReads)
	}
}
