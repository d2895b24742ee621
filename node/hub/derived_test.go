package hub

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/node/rtpformat"
)

func TestDerivedOpusTrack(t *testing.T) {
	var demands atomic.Int32
	var got atomic.Pointer[Track]
	h := New(Config{Grace: time.Minute, OnDerivedDemand: func(tr *Track) { demands.Add(1); got.Store(tr) }}, slog.New(slog.DiscardHandler))
	t.Cleanup(h.Close)
	aac := webrtc.RTPCodecCapability{MimeType: rtpformat.MimeAAC, ClockRate: 44100, Channels: 2, SDPFmtpLine: "config=1210;mode=AAC-hbr"}
	p, err := h.Publish("live/aac", specsOf(codecH264, aac))
	if err != nil {
		t.Fatal(err)
	}
	tracks := p.Stream().Tracks()
	if len(tracks) != 3 {
		t.Fatalf("%d tracks, want video, AAC and derived Opus", len(tracks))
	}
	opus := tracks[2]
	if opus.Source() != tracks[1] || opus.Codec().MimeType != rtpformat.MimeOpus || tracks[0].Source() != nil || tracks[1].Source() != nil {
		t.Fatalf("derived track %+v from %v", opus.Codec(), opus.Source())
	}
	// Readers of published tracks cause no demand; the first reader of the derived one does, once.
	tracks[1].NewReader(0)
	if demands.Load() != 0 {
		t.Fatal("a reader of the AAC track asked for the transcoder")
	}
	r1 := opus.NewReader(0)
	opus.NewReader(0)
	if demands.Load() != 1 || got.Load() != opus {
		t.Fatalf("%d demands, want 1 for the derived track", demands.Load())
	}
	r1.Close()

	// A returning publisher with the same published tracks takes the stream over.
	p.Close()
	p2, err := h.Publish("live/aac", specsOf(codecH264, aac))
	if err != nil {
		t.Fatal(err)
	}
	if p2.Stream() != p.Stream() {
		t.Fatal("the returning publisher started a new stream")
	}
}
