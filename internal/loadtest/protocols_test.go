package loadtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/node"
)

// TestProtocols runs the load tool against a real node over each ingest and read protocol: the
// stamps must survive the node's conversions (WebRTC ↔ MPEG-TS, RTSP) for delay to be measured.
func TestProtocols(t *testing.T) {
	cases := []struct {
		ingest, protocol string
	}{
		{ProtoSRT, ProtoWHEP},
		{ProtoSRT, ProtoSRT},
		{ProtoWHIP, ProtoSRT},
		{ProtoWHIP, ProtoRTSP},
		{ProtoSRT, ProtoRTSP},
	}
	n := nodetest.Start(t, func(c *node.Config) { c.WebRTC.PlayToken, c.WebRTC.PublishToken = "tok3n", "tok3n" })
	for i, tc := range cases {
		t.Run(tc.ingest+"-to-"+tc.protocol, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Server = n.HTTPURL()
			cfg.SRT = n.SRTAddr().String()
			cfg.RTSP = n.RTSPAddr().String()
			cfg.Stream = "live/proto" + string(rune('a'+i))
			cfg.Token = "tok3n"
			cfg.Ingest, cfg.Protocol = tc.ingest, tc.protocol
			cfg.SRTLatency = 40 * time.Millisecond
			cfg.VideoBitrate = 600_000
			cfg.Subscribers = 3
			cfg.RampPerSecond = 20
			cfg.Warmup = time.Second
			cfg.Duration = 3 * time.Second
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			rep, err := Run(ctx, cfg, testLogger(t))
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			var text strings.Builder
			_ = rep.WriteText(&text)
			t.Logf("report:\n%s", text.String())
			s := rep.Subscribers
			if s.Connected != 3 || s.Failed != 0 || s.NoVideo != 0 {
				t.Errorf("subscribers %+v, want 3 connected with video", s)
			}
			if rep.Video.Delay.Count == 0 || rep.Audio.Delay.Count == 0 {
				t.Errorf("delay samples: video %d, audio %d; the stamps did not survive", rep.Video.Delay.Count, rep.Audio.Delay.Count)
			}
			if rep.LossPercent > 1 {
				t.Errorf("loss %.2f %%", rep.LossPercent)
			}
			if rep.TimeToKeyframe.Count != 3 {
				t.Errorf("time to keyframe %+v", rep.TimeToKeyframe)
			}
		})
	}
}
