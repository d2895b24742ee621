package transcode

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"go.uber.org/goleak"

	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/rtpformat"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// aacSource is real AAC from ffmpeg, as access units.
type aacSource struct {
	config mpeg4audio.AudioSpecificConfig
	aus    [][]byte
}

func makeAAC(t *testing.T, seconds int) aacSource {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", strconv.Itoa(seconds),
		"-ac", "2", "-c:a", "aac", "-f", "adts", "pipe:1").Output()
	if err != nil {
		t.Fatalf("ffmpeg (is it installed? scripts/install-test-deps.sh): %v", err)
	}
	var pkts mpeg4audio.ADTSPackets
	if err := pkts.Unmarshal(out); err != nil {
		t.Fatalf("adts: %v", err)
	}
	src := aacSource{config: mpeg4audio.AudioSpecificConfig{Type: pkts[0].Type, SampleRate: pkts[0].SampleRate, ChannelCount: pkts[0].ChannelCount}} //nolint:staticcheck
	for _, p := range pkts {
		src.aus = append(src.aus, p.AU)
	}
	return src
}

// publishAAC publishes an AAC track and feeds it at real time, looping, until the test ends.
func publishAAC(t *testing.T, h *hub.Hub, src aacSource) *hub.Stream {
	t.Helper()
	f := &format.MPEG4Audio{PayloadTyp: 97, ProfileLevelID: 1, Config: &src.config, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}
	c, err := rtpformat.FromFormat(f)
	if err != nil {
		t.Fatal(err)
	}
	p, err := h.Publish("live/aac", []hub.TrackSpec{{Codec: c}})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := f.CreateEncoder()
	if err != nil {
		t.Fatal(err)
	}
	layer := p.Stream().Tracks()[0].Layer("")
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		frame := time.Duration(1024) * time.Second / time.Duration(src.config.SampleRate)
		tick := time.NewTicker(frame)
		defer tick.Stop()
		var ts uint32
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			pkts, err := enc.Encode([][]byte{src.aus[i%len(src.aus)]})
			if err != nil {
				t.Errorf("encode: %v", err)
				return
			}
			for _, pkt := range pkts {
				pkt.Timestamp = ts
				layer.WritePacket(&hub.Packet{Header: pkt.Header, Payload: pkt.Payload})
			}
			ts += 1024
		}
	}()
	t.Cleanup(func() { close(done); <-stopped; p.End() })
	return p.Stream()
}

type opusPacket struct {
	seq uint16
	ts  uint32
	toc byte
	at  time.Time
}

// collect reads n packets from r, within timeout.
func collect(t *testing.T, r *hub.Reader, n int, timeout time.Duration) []opusPacket {
	t.Helper()
	var out []opusPacket
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case e := <-r.C():
			out = append(out, opusPacket{seq: e.Packet.Header.SequenceNumber, ts: e.Packet.Header.Timestamp, toc: e.Packet.Payload[0], at: time.Now()})
		case <-deadline:
			t.Fatalf("got %d Opus packets in %v, want %d", len(out), timeout, n)
		}
	}
	return out
}

func TestAACToOpus(t *testing.T) {
	src := makeAAC(t, 3)
	cfg := DefaultConfig()
	cfg.Linger = 300 * time.Millisecond
	cfg.RestartDelay = 200 * time.Millisecond
	sup, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	h := hub.New(hub.Config{OnDerivedDemand: sup.Demand}, nil)
	defer h.Close()
	stream := publishAAC(t, h, src)
	tracks := stream.Tracks()
	if len(tracks) != 2 || tracks[1].Source() != tracks[0] {
		t.Fatalf("want the AAC track and a derived Opus track, got %d tracks", len(tracks))
	}

	r := tracks[1].NewReader(0)
	start := time.Now()
	pkts := collect(t, r, 50, 15*time.Second)
	t.Logf("first Opus packet %v after the reader joined", pkts[0].at.Sub(start))
	for i := 1; i < len(pkts); i++ {
		if d := pkts[i].ts - pkts[i-1].ts; d != 960 {
			t.Fatalf("packet %d: timestamp step %d, want 960 (20 ms)", i, d)
		}
		if pkts[i].seq != pkts[i-1].seq+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, pkts[i].seq, pkts[i-1].seq)
		}
	}
	if cfg := pkts[0].toc >> 3; cfg < 16 {
		t.Errorf("TOC config %d: want CELT (low-delay application)", cfg)
	}
	if sup.Stats().Running.Load() != 1 || sup.Stats().Started.Load() != 1 {
		t.Fatalf("running %d, started %d; want one transcoder", sup.Stats().Running.Load(), sup.Stats().Started.Load())
	}

	// A reader arriving while one runs starts nothing more.
	r2 := tracks[1].NewReader(0)
	if sup.Stats().Started.Load() != 1 {
		t.Fatal("a second reader started a second ffmpeg")
	}
	r2.Close()

	// ffmpeg dies: it is restarted and the timestamps carry on from the source's clock.
	sup.mu.Lock()
	j := sup.jobs[tracks[1]]
	sup.mu.Unlock()
	if err := j.process().Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	last := pkts[len(pkts)-1]
	for {
		after := collect(t, r, 1, 15*time.Second)[0]
		if sup.Stats().Started.Load() < 2 {
			last = after // still draining the old process
			continue
		}
		wall := after.at.Sub(last.at)
		media := time.Duration(after.ts-last.ts) * time.Second / opusClock
		t.Logf("resumed %v after the kill; media gap %v, wall gap %v", after.at.Sub(killed), media, wall)
		if media < wall-time.Second || media > wall+time.Second {
			t.Fatalf("timestamps jumped by %v over %v of wall time", media, wall)
		}
		break
	}
	if sup.Stats().Failures.Load() < 1 {
		t.Error("the dead ffmpeg was not counted")
	}

	// The last reader leaves: the transcoder stops after its linger.
	r.Close()
	deadline := time.Now().Add(5 * time.Second)
	for sup.Stats().Running.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("transcoder still running 5 s after its last reader left")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{FFmpeg: "", Linger: time.Second, RestartDelay: time.Second, OpusBitrate: 64000},
		{FFmpeg: "ffmpeg", Linger: -1, RestartDelay: time.Second, OpusBitrate: 64000},
		{FFmpeg: "ffmpeg", Linger: time.Second, RestartDelay: 0, OpusBitrate: 64000},
		{FFmpeg: "ffmpeg", Linger: time.Second, RestartDelay: time.Second, OpusBitrate: 1000},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: want an error", c)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestMissingFFmpeg(t *testing.T) {
	cfg := DefaultConfig()
	cfg.FFmpeg = "/nonexistent/ffmpeg"
	cfg.RestartDelay = 100 * time.Millisecond
	sup, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(hub.Config{OnDerivedDemand: sup.Demand}, nil)
	stream := publishAAC(t, h, makeAAC(t, 1))
	r := stream.Tracks()[1].NewReader(0)
	deadline := time.Now().Add(5 * time.Second)
	for sup.Stats().Failures.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("a missing ffmpeg was not retried and counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Close()
	h.Close()
	sup.Close()
}
