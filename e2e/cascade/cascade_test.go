package cascade_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/internal/browser"
	"github.com/streamfleet/streamfleet/internal/proctest"
	"github.com/streamfleet/streamfleet/internal/rtctest"
)

// TestWHIPThroughRelayToWHEP: pion publishes H264 + Opus over WHIP on the origin process, pion
// viewers play over WHEP on the edge process through the relay process, and every payload arrives
// unchanged; each node holds one upstream session for the stream.
func TestWHIPThroughRelayToWHEP(t *testing.T) {
	origin, relay, edge := cascade(t, false)
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	src, err := rtctest.PublishStream(ctx, api, origin.URL()+"/whip/live/e2e", rtctest.H264)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer src.Close()
	var vs []*rtctest.Viewer
	for range 3 {
		v, err := rtctest.View(ctx, api, edge.URL()+"/whep/live/e2e", "")
		if err != nil {
			t.Fatalf("view: %v", err)
		}
		defer v.Close()
		vs = append(vs, v)
	}
	for _, v := range vs {
		rtctest.CheckPayloads(t, v, "video", webrtc.MimeTypeH264, 30, "")
		rtctest.CheckPayloads(t, v, "audio", webrtc.MimeTypeOpus, 30, "")
		rtctest.CheckSequence(t, v, "video", 0)
	}
	if !edge.pulling("live/e2e", relay.RTSP) || !relay.pulling("live/e2e", origin.RTSP) {
		t.Fatal("streamfleet_upstream_pulls: want one session on the edge (from the relay) and one on the relay (from the origin)")
	}
	for _, p := range []*proc{relay, edge} {
		if v, _ := p.metric("streamfleet_upstream_sessions_total"); v != 1 {
			t.Fatalf("%s opened %v upstream sessions, want 1", p.Name, v)
		}
	}
}

// TestSRTInputAtTheEdge: ffmpeg publishes H264 + AAC over SRT on the origin; an SRT reader at the
// edge (ffprobe, reading H264 and AAC) makes the edge pull it, and the edge serves it over WHEP too
// (pion gets the video).
func TestSRTInputAtTheEdge(t *testing.T) {
	origin, _, edge := cascade(t, false)
	runTool(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-f", "mpegts", "srt://"+origin.SRT+"?mode=caller&latency=120000&streamid=publish:live/srt")
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	proctest.WaitFor(t, 15*time.Second, "the SRT stream on the origin", func() bool {
		v, _ := origin.metric("streamfleet_streams")
		return v == 1
	})

	// The first reader at the edge is an SRT reader: its handshake makes the edge pull the stream
	// through the relay.
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height",
		"-of", "json", "-analyzeduration", "2000000",
		"srt://"+edge.SRT+"?streamid=read:live/srt&latency=120000&connect_timeout=8000").Output()
	if err != nil {
		t.Fatalf("ffprobe over SRT at the edge: %v", err)
	}
	var probe struct {
		Streams []struct {
			Codec         string `json:"codec_name"`
			Width, Height int
		}
	}
	if err := json.Unmarshal(out, &probe); err != nil {
		t.Fatalf("ffprobe output %q: %v", out, err)
	}
	var codecs []string
	for _, s := range probe.Streams {
		codecs = append(codecs, s.Codec)
		if s.Codec == "h264" && (s.Width != 640 || s.Height != 360) {
			t.Errorf("h264 %dx%d, want 640x360", s.Width, s.Height)
		}
	}
	slices.Sort(codecs)
	if strings.Join(codecs, ",") != "aac,h264" {
		t.Fatalf("SRT at the edge carries %v, want aac and h264", codecs)
	}

	// WHEP at the edge plays the same stream.
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	var v *rtctest.Viewer
	proctest.WaitFor(t, 15*time.Second, "a WHEP session at the edge", func() bool {
		v, err = rtctest.View(ctx, api, edge.URL()+"/whep/live/srt", "")
		return err == nil
	})
	defer v.Close()
	proctest.WaitFor(t, 15*time.Second, "H264 at the edge's WHEP viewer", func() bool { return len(v.Payloads("video")) > 60 })
}

// TestSimulcastAndRelayKill: Chromium publishes VP8 simulcast (h/m/l, 1280x720 capture) on the
// origin's publish page; the relay and the edge carry all three layers; Chromium plays the edge's
// watch page (the highest layer) next to a pion WHEP viewer. Then the relay is SIGKILLed: the edge
// pulls from the origin within 2 s, and both viewers, on their original peer connections, get
// frames again; the pion viewer's sequence numbers continue without a jump.
func TestSimulcastAndRelayKill(t *testing.T) {
	origin, relay, edge := cascade(t, true)
	b := browser.New(t.Context(), t)
	stream := "live/sim"
	pub, err := b.Open(origin.URL() + "/publish?stream=" + stream + "&codec=VP8&simulcast=1&auto=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.WaitFor(`sf.state === 'connected' && sf.stats.layers && sf.stats.layers.length === 3 && sf.stats.layers.every(l => l.framesSent > 0)`, 20*time.Second); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	watch, err := b.Open(edge.URL() + "/watch?stream=" + stream + "&auto=1")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	if err := watch.WaitFor(`sf.state === 'connected' && sf.stats.framesDecoded > 30 && sf.stats.frameWidth >= 1280`, 25*time.Second); err != nil {
		t.Fatalf("watch page on the edge: %v", err)
	}
	for _, p := range []*proc{relay, edge} {
		got := p.layers(t, stream)
		if rids := got["video0"]; len(rids) != 3 || !slices.Contains(rids, "h") || !slices.Contains(rids, "m") || !slices.Contains(rids, "l") {
			t.Fatalf("%s carries video layers %v, want h, m, l", p.Name, got)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	v, err := rtctest.View(ctx, api, edge.URL()+"/whep/"+stream, "")
	if err != nil {
		t.Fatalf("pion viewer: %v", err)
	}
	defer v.Close()
	proctest.WaitFor(t, 10*time.Second, "video at the pion viewer", func() bool { return len(v.Payloads("video")) > 50 })

	decoded := func() float64 {
		var n float64
		_ = watch.Eval(`sf.stats.framesDecoded`, &n)
		return n
	}
	before, pionBefore := decoded(), len(v.Payloads("video"))
	// Watch the pion viewer's video for the freeze: the longest time without a new packet.
	freeze := make(chan time.Duration, 1)
	stopSampling := make(chan struct{})
	go func() {
		last, lastAt, longest := len(v.Payloads("video")), time.Now(), time.Duration(0)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				freeze <- longest
				return
			case now := <-tick.C:
				if n := len(v.Payloads("video")); n != last {
					longest = max(longest, now.Sub(lastAt))
					last, lastAt = n, now
				}
			}
		}
	}()
	relay.Kill()
	killed := time.Now()
	took := proctest.WaitFor(t, 2*time.Second, "the edge to pull from the origin", func() bool { return edge.pulling(stream, origin.RTSP) })
	t.Logf("edge pulling from the origin %v after the SIGKILL", took)
	proctest.WaitFor(t, 10*time.Second, "Chromium to decode frames again", func() bool { return decoded() > before+40 })
	proctest.WaitFor(t, 5*time.Second, "pion to get video again", func() bool { return len(v.Payloads("video")) > pionBefore+100 })
	close(stopSampling)
	t.Logf("Chromium decoded 40 more frames %v after the SIGKILL; the pion viewer's video froze for %v; failover gap (edge metric: upstream lost → first packet from the next) %.0f ms",
		time.Since(killed), (<-freeze).Round(time.Millisecond),
		func() float64 { g, _ := edge.metric("streamfleet_upstream_failover_gap_seconds"); return g * 1000 }())
	var state string
	if err := watch.Eval(`sf.state`, &state); err != nil || state != "connected" {
		t.Fatalf("watch page state %q (%v), want still connected", state, err)
	}
	if v.PC.ConnectionState() != webrtc.PeerConnectionStateConnected {
		t.Fatalf("pion viewer %s", v.PC.ConnectionState())
	}
	rtctest.CheckSequence(t, v, "video", 0)
	rtctest.CheckSequence(t, v, "audio", 0)
	if f, _ := edge.metric("streamfleet_upstream_failovers_total"); f != 1 {
		t.Fatalf("edge counted %v failovers, want 1", f)
	}
}

// TestChromiumH264PublishPageToEdgeWatchPage: Chromium publishes H264 on the origin's publish page
// and plays it on the edge's watch page, two hops down: frames decode, as H264 (the codec's fmtp,
// profile-level-id included, survives every hop, or the edge could not offer it).
func TestChromiumH264PublishPageToEdgeWatchPage(t *testing.T) {
	origin, _, edge := cascade(t, false)
	b := browser.New(t.Context(), t)
	pub, err := b.Open(origin.URL() + "/publish?stream=live/h264&codec=H264&auto=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.WaitFor(`sf.state === 'connected' && sf.stats.framesSent > 10`, 20*time.Second); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	watch, err := b.Open(edge.URL() + "/watch?stream=live/h264&auto=1")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	if err := watch.WaitFor(`sf.state === 'connected' && sf.stats.framesDecoded > 30 && sf.stats.totalSamplesReceived > 0`, 25*time.Second); err != nil {
		t.Fatalf("watch page on the edge: %v", err)
	}
	var codec string
	if err := watch.Eval(`sf.stats.videoCodec`, &codec); err != nil || codec != "video/H264" {
		t.Fatalf("edge viewer decodes %q (%v), want video/H264", codec, err)
	}
}
