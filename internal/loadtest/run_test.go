package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func TestRunEndToEnd(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, "s3cret")

	cfg := DefaultConfig()
	cfg.Server = srv.http.URL
	cfg.Stream = "live/e2e"
	cfg.Token = "s3cret"
	cfg.VideoBitrate = 600_000
	cfg.Subscribers = 4
	cfg.RampPerSecond = 20
	cfg.Warmup = 500 * time.Millisecond
	cfg.Duration = 2500 * time.Millisecond
	cfg.PIDs = []int{os.Getpid()} // the server runs in this process
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Run(ctx, cfg, testLogger(t))
	srv.Close()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", text.String())

	s := rep.Subscribers
	if s.Requested != 4 || s.Connected != 4 || s.Failed != 0 || s.Dropped != 0 || s.NoVideo != 0 {
		t.Errorf("subscribers %+v, want all 4 connected with video", s)
	}
	if rep.TimeToFirstFrame.Count != 4 || rep.TimeToFirstFrame.P50Ms <= 0 {
		t.Errorf("time to first frame %+v", rep.TimeToFirstFrame)
	}
	if rep.TimeToKeyframe.Count != 4 {
		t.Errorf("time to keyframe %+v", rep.TimeToKeyframe)
	}
	if rep.Delay.Count == 0 || rep.Video.Delay.Count == 0 || rep.Audio.Delay.Count == 0 {
		t.Errorf("delay samples: all %d video %d audio %d", rep.Delay.Count, rep.Video.Delay.Count, rep.Audio.Delay.Count)
	}
	if rep.Delay.P50Ms <= 0 || rep.Delay.P50Ms > 500 {
		t.Errorf("delay p50 %.3f ms on loopback", rep.Delay.P50Ms)
	}
	// Every stamped packet reached a socket that timestamps, before the track reader saw it.
	if rep.SocketDelay.Count == 0 || rep.SocketDelay.Count > rep.Delay.Count ||
		rep.Video.SocketDelay.Count == 0 || rep.Audio.SocketDelay.Count == 0 {
		t.Errorf("socket delay samples: all %d (of %d) video %d audio %d", rep.SocketDelay.Count, rep.Delay.Count,
			rep.Video.SocketDelay.Count, rep.Audio.SocketDelay.Count)
	}
	if rep.SocketDelay.P50Ms <= 0 || rep.SocketDelay.P50Ms > rep.Delay.P50Ms || rep.SocketDelay.MaxMs > rep.Delay.MaxMs {
		t.Errorf("socket delay %+v not within delay %+v", rep.SocketDelay, rep.Delay)
	}
	// Every stamped packet of the WHIP publisher had its socket's send time noted, at or after its
	// stamp; the delays start there.
	if w := rep.Publisher; w == nil || w.WriteDelay == nil || w.WriteDelay.Count < w.VideoPackets/2 || w.WriteDelay.P50Ms < 0 {
		t.Errorf("publisher write delay %+v", w)
	}
	// 4 subscribers × 2.5 s × 50 audio packets/s, allowing for a slow machine under -race.
	if rep.Audio.Packets < 4*50 || rep.Video.Packets < 4*30 {
		t.Errorf("packets: video %d audio %d", rep.Video.Packets, rep.Audio.Packets)
	}
	if rep.LossPercent >= 1 {
		t.Errorf("loss %.2f %%", rep.LossPercent)
	}
	p := rep.Publisher
	if p == nil || p.VideoPackets == 0 || p.AudioPackets == 0 || p.Keyframes == 0 || p.KeyframeRequestsTotal == 0 {
		t.Errorf("publisher %+v", p)
	} else if p.VideoBitrate < 0.5*600_000 || p.VideoBitrate > 2*600_000 {
		t.Errorf("publisher video bitrate %.0f", p.VideoBitrate)
	}
	// Paced at 2.5 × 600k, the last packets of a keyframe (~18 KB, ~96 ms at 1.5 Mbit/s) wait at
	// least ~80 ms, however fast the machine.
	if p == nil || p.Pacer == nil || p.Pacer.Factor != DefaultPacing || p.Pacer.RateBps != DefaultPacing*600_000 ||
		p.Pacer.Wait.Count == 0 || p.Pacer.Wait.MaxMs < 50 {
		t.Errorf("pacer %+v", p.Pacer)
	}
	if got := srv.keyframeRequests.Load(); got < 4 {
		t.Errorf("server sent %d keyframe requests, want one per viewer at least", got)
	}
	if got := srv.deletes.Load(); got != 5 {
		t.Errorf("server saw %d DELETEs, want 5 (publisher and 4 subscribers)", got)
	}
	if len(rep.ServerProcesses) != 1 || rep.ServerProcesses[0].Error != "" || rep.ServerProcesses[0].CPUSeconds <= 0 ||
		rep.ServerProcesses[0].RSSEndBytes <= 0 || rep.ServerProcesses[0].CPUMicrosPerPacket <= 0 {
		t.Errorf("server processes %+v", rep.ServerProcesses)
	}
	if rep.LoadTool.CPUSeconds <= 0 {
		t.Errorf("load tool usage %+v", rep.LoadTool)
	}
	for _, want := range []string{"4 connected, 0 failed", "delay", "delay to socket", "p99", "server pid", "pacer", "2.5 × bitrate"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q", want)
		}
	}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil || back.Subscribers.Connected != 4 || back.Delay != rep.Delay {
		t.Errorf("JSON round trip: %v %+v", err, back.Subscribers)
	}
}

func TestRunCountsSubscriberFailures(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()

	cfg := DefaultConfig()
	cfg.Server = srv.URL
	cfg.NoPublish = true
	cfg.Subscribers = 3
	cfg.RampPerSecond = 100
	cfg.Warmup = 0
	cfg.Duration = 100 * time.Millisecond
	rep, err := Run(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	s := rep.Subscribers
	if s.Connected != 0 || s.Failed != 3 || s.FailureCauses[causeHTTPStatus] != 3 {
		t.Errorf("subscribers %+v, want 3 failed with %s", s, causeHTTPStatus)
	}
	if rep.Publisher != nil || rep.Delay.Count != 0 {
		t.Errorf("unexpected publisher or delay: %+v %+v", rep.Publisher, rep.Delay)
	}
}

func TestRunFailsWithoutPublisher(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, "right")
	defer srv.Close()

	cfg := DefaultConfig()
	cfg.Server = srv.http.URL
	cfg.Token = "wrong"
	cfg.Subscribers = 1
	_, err := Run(context.Background(), cfg, testLogger(t))
	if !errors.Is(err, ErrUnexpectedStatus) || !strings.Contains(err.Error(), "401") {
		t.Errorf("Run with a bad token = %v, want a 401 %v", err, ErrUnexpectedStatus)
	}

	if _, err := Run(context.Background(), Config{}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Run with a zero config = %v", err)
	}
}

func TestRunCancelledDuringRamp(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, "")
	defer srv.Close()

	cfg := DefaultConfig()
	cfg.Server = srv.http.URL
	cfg.Subscribers = 50
	cfg.RampPerSecond = 5
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, cfg, testLogger(t))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run = %v, want the context's error", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run took %v to stop after cancellation", d)
	}
}

// TestRunReceivePaths runs two subscribers against pion servers that differ in what the key log
// leaves out (the DTLS role, the SRTP profile, the PRF's hash): each time the sockets' read loops
// must find the keys and measure all but each track's first packets themselves, losing nothing;
// with PionReceive, pion must read everything.
func TestRunReceivePaths(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	cases := []struct {
		name     string
		pion     bool
		settings func(*webrtc.SettingEngine)
	}{
		{name: "node-dtls-client-gcm"},
		{name: "node-dtls-server-cm-sha384", settings: func(se *webrtc.SettingEngine) {
			if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
				t.Fatal(err)
			}
			se.SetSRTPProtectionProfiles(dtls.SRTP_AES128_CM_HMAC_SHA1_80)
			se.SetDTLSCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
		}},
		{name: "pion-receive", pion: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var settings []func(*webrtc.SettingEngine)
			if tc.settings != nil {
				settings = append(settings, tc.settings)
			}
			srv := newTestServer(t, "", settings...)
			cfg := DefaultConfig()
			cfg.Server = srv.http.URL
			cfg.Subscribers = 2
			cfg.RampPerSecond = 20
			cfg.Warmup = 500 * time.Millisecond
			cfg.Duration = 2 * time.Second
			cfg.PionReceive = tc.pion
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rep, err := Run(ctx, cfg, testLogger(t))
			srv.Close()
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			rc := rep.Receive
			if rep.Subscribers.Connected != 2 || rc == nil {
				t.Fatalf("subscribers %+v, receive %+v", rep.Subscribers, rc)
			}
			got := rc.PionPackets + rc.DirectPackets
			if rep.Video.Packets < 2*30 || rep.Audio.Packets < 2*50 || rep.LossPercent != 0 || got < rep.Video.Packets+rep.Audio.Packets {
				t.Errorf("video %d audio %d packets, %.2f %% lost; %d read in all", rep.Video.Packets, rep.Audio.Packets,
					rep.LossPercent, got)
			}
			if tc.pion {
				if rc.Direct || rc.DirectPackets != 0 || rc.DirectSubscribers != 0 {
					t.Errorf("receive %+v, want all through pion", rc)
				}
				return
			}
			// Pion delivers each track's first packet or so (OnTrack), the read loops the rest.
			if !rc.Direct || rc.DirectSubscribers != 2 || rc.DirectErrors != 0 || rc.PionPackets > 20 || rc.DirectPackets < 10*rc.PionPackets {
				t.Errorf("receive %+v, want nearly all direct for both subscribers", rc)
			}
			if rep.SocketDelay.Count == 0 || rep.Video.SocketDelay.Count == 0 || rep.Audio.SocketDelay.Count == 0 {
				t.Errorf("socket delay samples: all %d video %d audio %d", rep.SocketDelay.Count, rep.Video.SocketDelay.Count,
					rep.Audio.SocketDelay.Count)
			}
		})
	}
}
