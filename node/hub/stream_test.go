package hub

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/internal/streamname"
)

func TestPublishErrors(t *testing.T) {
	h := newTestHub(t, time.Minute)
	mustPublish(t, h, "live/a", codecH264, codecOpus)
	for _, tc := range []struct {
		name  string
		specs []TrackSpec
		want  error
	}{
		{"no tracks", nil, ErrNoTracks},
		{"live stream, same tracks", specsOf(codecH264, codecOpus), ErrStreamBusy},
		{"live stream, other tracks", specsOf(codecVP8), ErrStreamBusy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := h.Publish("live/a", tc.specs)
			if !errors.Is(err, tc.want) || p != nil {
				t.Errorf("Publish = %v, %v; want nil, %v", p, err, tc.want)
			}
		})
	}
	if _, err := h.Stream("live/b"); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("Stream(unpublished) error %v, want ErrStreamNotFound", err)
	}
}

// TestPublisherReturns covers a publisher leaving and a publisher coming back within the grace
// period, with the same tracks or others.
func TestPublisherReturns(t *testing.T) {
	for _, tc := range []struct {
		name     string
		again    []webrtc.RTPCodecCapability // the returning publisher's tracks
		takeover bool
	}{
		{"same tracks", []webrtc.RTPCodecCapability{codecH264, codecOpus}, true},
		{"same tracks, MIME type case differs", []webrtc.RTPCodecCapability{
			{MimeType: "video/h264", ClockRate: 90000, SDPFmtpLine: codecH264.SDPFmtpLine}, codecOpus}, true},
		{"other video codec", []webrtc.RTPCodecCapability{codecVP8, codecOpus}, false},
		{"other fmtp", []webrtc.RTPCodecCapability{{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, codecOpus}, false},
		{"fewer tracks", []webrtc.RTPCodecCapability{codecH264}, false},
		{"more tracks", []webrtc.RTPCodecCapability{codecH264, codecOpus, codecOpus}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHub(t, time.Minute)
			first := mustPublish(t, h, "live/back", codecH264, codecOpus)
			s := first.Stream()
			video := s.Tracks()[0]
			layer := video.Layer("")
			layer.SetKeyframeRequester(func() {})
			r := video.NewReader(0)
			layer.WritePacket(newPacket(0x1111, 1, 0, h264IDR))

			first.Close()
			if s.Live() || isClosed(s.Done()) || isClosed(r.Done()) {
				t.Fatalf("after Close: live %v, stream done %v, reader done %v; want the stream waiting", s.Live(), isClosed(s.Done()), isClosed(r.Done()))
			}
			if got, err := h.Stream("live/back"); err != nil || got != s {
				t.Fatalf("Stream during the grace period = %p, %v; want the stream", got, err)
			}

			second, err := h.Publish("live/back", specsOf(tc.again...))
			if err != nil {
				t.Fatalf("publish again: %v", err)
			}
			if !second.Stream().Live() {
				t.Errorf("returned publisher's stream is not live")
			}
			if got, _ := h.Stream("live/back"); got != second.Stream() {
				t.Errorf("hub serves %p, want the returned publisher's stream %p", got, second.Stream())
			}
			if !tc.takeover {
				if second.Stream() == s {
					t.Fatal("publisher with other tracks took the old stream over")
				}
				if !isClosed(s.Done()) || !isClosed(r.Done()) {
					t.Errorf("old stream done %v, its reader done %v; want both ended", isClosed(s.Done()), isClosed(r.Done()))
				}
				if layer.requester.Load() != nil {
					t.Errorf("ended stream's layer keeps its keyframe requester")
				}
				return
			}
			if second.Stream() != s {
				t.Fatal("publisher with the same tracks got a new stream")
			}
			if isClosed(s.Done()) || isClosed(r.Done()) {
				t.Fatal("takeover ended the stream or its reader")
			}
			queued(r)
			// The new publisher writes to the same layer; the attached reader carries on.
			p := newPacket(0x2222, 5000, 0, h264IDR)
			s.Tracks()[0].Layer("").WritePacket(p)
			if got := queued(r); len(got) != 1 || got[0].Packet != p {
				t.Fatalf("reader after takeover got %v, want the new publisher's packet", describe(got))
			}
			// The old publication has no hold on the stream any more.
			first.End()
			if !s.Live() || isClosed(s.Done()) {
				t.Fatal("the old publication ended the stream it lost")
			}
			if _, err := h.Publish("live/back", specsOf(tc.again...)); !errors.Is(err, ErrStreamBusy) {
				t.Errorf("third publisher: %v, want ErrStreamBusy", err)
			}
		})
	}
}

func TestStreamEnds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		leave func(*Hub, *Publication)
	}{
		{"End", time.Minute, func(_ *Hub, p *Publication) { p.End() }},
		{"Close without grace", 0, func(_ *Hub, p *Publication) { p.Close() }},
		{"grace period expires", 30 * time.Millisecond, func(_ *Hub, p *Publication) { p.Close() }},
		{"Hub.Close", time.Minute, func(h *Hub, _ *Publication) { h.Close() }},
		{"Hub.Close during the grace period", time.Minute, func(h *Hub, p *Publication) { p.Close(); h.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHub(t, tc.grace)
			pub := mustPublish(t, h, "live/end", codecH264, codecOpus)
			s := pub.Stream()
			var readers []*Reader
			for _, track := range s.Tracks() {
				track.Layer("")
				readers = append(readers, track.NewReader(0), track.NewReader(0))
			}
			left := time.Now()
			tc.leave(h, pub)
			if tc.grace == 30*time.Millisecond {
				waitClosed(t, s.Done(), "stream after the grace period")
				if d := time.Since(left); d < tc.grace {
					t.Errorf("stream ended after %v, before its grace period of %v", d, tc.grace)
				}
			} else if !isClosed(s.Done()) {
				t.Fatal("stream did not end at once")
			}
			for i, r := range readers {
				if tc.grace == 30*time.Millisecond {
					// The grace timer's goroutine closes the readers after the stream's Done.
					waitClosed(t, r.Done(), fmt.Sprintf("reader %d", i))
				} else if !isClosed(r.Done()) {
					t.Errorf("reader %d not done", i)
				}
			}
			if _, err := h.Stream("live/end"); !errors.Is(err, ErrStreamNotFound) {
				t.Errorf("Stream after the end: %v, want ErrStreamNotFound", err)
			}
			if n := len(h.Streams()); n != 0 {
				t.Errorf("hub lists %d streams", n)
			}
			if s.Live() || s.ReaderCount() != 0 {
				t.Errorf("ended stream: live %v, %d readers", s.Live(), s.ReaderCount())
			}
			// A reader joining an ended stream is done at once.
			if r := s.Tracks()[0].NewReader(0); !isClosed(r.Done()) {
				t.Error("reader of an ended stream is not done")
			}
			pub.End()
			pub.Close()

			// The name is free again, unless the hub is closed.
			_, err := h.Publish("live/end", specsOf(codecH264))
			hubClosed := tc.name == "Hub.Close" || tc.name == "Hub.Close during the grace period"
			switch {
			case hubClosed && !errors.Is(err, ErrHubClosed):
				t.Errorf("Publish after Hub.Close: %v, want ErrHubClosed", err)
			case !hubClosed && err != nil:
				t.Errorf("Publish after the end: %v", err)
			}
		})
	}
}

func TestHubCloseEndsEverything(t *testing.T) {
	h := newTestHub(t, time.Minute)
	var streams []*Stream
	var readers []*Reader
	for _, name := range []string{"a", "b/c", "d"} {
		p := mustPublish(t, h, streamname.Name(name), codecH264)
		if name == "d" {
			p.Close() // waiting for its publisher
		}
		streams = append(streams, p.Stream())
		readers = append(readers, p.Stream().Tracks()[0].NewReader(0))
	}
	if got := h.Streams(); len(got) != 3 || got[0].Name() != "a" || got[1].Name() != "b/c" || got[2].Name() != "d" {
		t.Fatalf("Streams() = %v, want a, b/c, d", got)
	}
	h.Close()
	for i, s := range streams {
		if !isClosed(s.Done()) || !isClosed(readers[i].Done()) {
			t.Errorf("stream %s: done %v, reader done %v after Hub.Close", s.Name(), isClosed(s.Done()), isClosed(readers[i].Done()))
		}
	}
	if _, err := h.Publish("a", specsOf(codecH264)); !errors.Is(err, ErrHubClosed) {
		t.Errorf("Publish after Close: %v, want ErrHubClosed", err)
	}
	h.Close() // idempotent
}

// TestPublishWhileStreamEnds publishes in the moment a stream has ended (its grace period ran
// out) but is not yet removed from the hub: the new publisher must get a new stream, not the
// dead one.
func TestPublishWhileStreamEnds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		specs []TrackSpec
	}{
		{"same tracks", specsOf(codecH264)},
		{"other tracks", specsOf(codecVP8)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHub(t, time.Minute)
			old := mustPublish(t, h, "live/ending", codecH264)
			s := old.Stream()
			old.Close()
			// The first half of Stream.end, as the grace timer runs it: ended, not yet removed.
			s.mu.Lock()
			s.ended = true
			s.mu.Unlock()

			p, err := h.Publish("live/ending", tc.specs)
			if err != nil {
				t.Fatalf("Publish while the old stream ends: %v", err)
			}
			if p.Stream() == s {
				t.Fatal("Publish took over a stream that has ended")
			}
			s.end() // the second half
			got, err := h.Stream("live/ending")
			if err != nil || got != p.Stream() {
				t.Fatalf("Stream = %p, %v; want the new stream %p", got, err, p.Stream())
			}
		})
	}
}

func TestStreamAccessors(t *testing.T) {
	h := newTestHub(t, 0)
	before := time.Now()
	p := mustPublish(t, h, "live/acc", codecH264, codecOpus)
	s := p.Stream()
	if s.Name() != "live/acc" || s.Started().Before(before) || len(s.Tracks()) != 2 {
		t.Errorf("stream %q started %v with %d tracks", s.Name(), s.Started(), len(s.Tracks()))
	}
	for i, want := range []struct {
		kind  Kind
		codec webrtc.RTPCodecCapability
	}{{KindVideo, codecH264}, {KindAudio, codecOpus}} {
		tr := s.Tracks()[i]
		if tr.Index() != i || tr.Kind() != want.kind || tr.Codec().MimeType != want.codec.MimeType || tr.Stream() != s {
			t.Errorf("track %d: index %d kind %s codec %s", i, tr.Index(), tr.Kind(), tr.Codec().MimeType)
		}
	}
	if KindOf(webrtc.RTPCodecCapability{MimeType: "AUDIO/OPUS"}) != KindAudio {
		t.Error("KindOf is case-sensitive")
	}
}

func TestTrackAndLayerLimits(t *testing.T) {
	h := New(Config{}, nil)
	defer h.Close()
	specs := make([]TrackSpec, MaxTracks+1)
	for i := range specs {
		specs[i] = TrackSpec{Codec: webrtc.RTPCodecCapability{MimeType: "video/VP8", ClockRate: 90000}}
	}
	if _, err := h.Publish("live/many", specs); !errors.Is(err, ErrTooManyTracks) {
		t.Fatalf("publish %d tracks: %v, want ErrTooManyTracks", len(specs), err)
	}
	pub, err := h.Publish("live/many", specs[:1])
	if err != nil {
		t.Fatal(err)
	}
	tr := pub.Stream().Tracks()[0]
	for i := range MaxLayers {
		if tr.Layer(fmt.Sprint("r", i)) == nil {
			t.Fatalf("layer %d refused", i)
		}
	}
	if l := tr.Layer("one-too-many"); l != nil {
		t.Fatal("layer beyond MaxLayers accepted")
	}
	if tr.Layer("r0") == nil {
		t.Fatal("existing layer no longer found")
	}
}
