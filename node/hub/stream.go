package hub

import (
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/node/rtpformat"
)

// Stream is a named set of tracks with at most one publisher at a time. It outlives its publisher
// by the hub's grace period, so a publisher that reconnects finds its viewers still attached.
type Stream struct {
	hub     *Hub
	name    streamname.Name
	tracks  []*Track
	started time.Time
	done    chan struct{}

	mu        sync.Mutex
	publisher *Publication
	grace     *time.Timer
	ended     bool
}

// Name is the stream's name.
func (s *Stream) Name() streamname.Name { return s.name }

// Tracks returns the stream's tracks; the set never changes during the stream's life.
func (s *Stream) Tracks() []*Track { return s.tracks }

// Started is when the stream was first published.
func (s *Stream) Started() time.Time { return s.started }

// Done is closed when the stream ends: its publisher left and did not come back within the grace
// period, or it was ended on purpose.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Live reports whether a publisher is attached now (false during the grace period).
func (s *Stream) Live() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.publisher != nil
}

// Ended reports whether the stream has ended.
func (s *Stream) Ended() bool { return s.isEnded() }

func (s *Stream) isEnded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// ReaderCount is the number of readers over all tracks.
func (s *Stream) ReaderCount() int {
	n := 0
	for _, t := range s.tracks {
		n += t.ReaderCount()
	}
	return n
}

// end closes the stream and every reader. The caller must not hold s.mu.
func (s *Stream) end() {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.publisher = nil
	if s.grace != nil {
		s.grace.Stop()
	}
	s.mu.Unlock()
	s.hub.remove(s)
	close(s.done)
	for _, t := range s.tracks {
		t.closeReaders()
		for _, l := range t.Layers() {
			l.SetKeyframeRequester(nil)
		}
	}
}

// Publication is a publisher's hold on a stream.
type Publication struct {
	stream *Stream
	once   sync.Once
}

// Stream is the published stream.
func (p *Publication) Stream() *Stream { return p.stream }

// Close detaches the publisher. The stream stays for the hub's grace period so the publisher can
// come back; if it does not, the stream ends.
func (p *Publication) Close() { p.detach(false) }

// End detaches the publisher and ends the stream now, for a publisher that stopped on purpose.
func (p *Publication) End() { p.detach(true) }

func (p *Publication) detach(now bool) {
	p.once.Do(func() {
		s := p.stream
		s.mu.Lock()
		if s.publisher != p || s.ended {
			s.mu.Unlock()
			return
		}
		s.publisher = nil
		grace := s.hub.cfg.Grace
		if !now && grace > 0 {
			s.grace = time.AfterFunc(grace, func() {
				s.mu.Lock()
				orphan := s.publisher == nil
				s.mu.Unlock()
				if orphan {
					s.hub.log.Info("stream ended: publisher did not return", "stream", s.name, "grace", grace)
					s.end()
				}
			})
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		s.end()
	})
}

// DerivedOpus is the codec of the Opus track the hub adds beside every AAC track, since WebRTC
// viewers cannot play AAC.
var DerivedOpus = webrtc.RTPCodecCapability{MimeType: rtpformat.MimeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}

// addDerivedTracks appends a derived Opus track for each AAC track, within MaxTracks. The
// transcoder fills it once it has a reader (Config.OnDerivedDemand).
func (s *Stream) addDerivedTracks() {
	for _, src := range s.tracks {
		if len(s.tracks) >= MaxTracks {
			return
		}
		if strings.EqualFold(src.codec.MimeType, rtpformat.MimeAAC) {
			t := newTrack(s, len(s.tracks), TrackSpec{Codec: DerivedOpus})
			t.source = src
			s.tracks = append(s.tracks, t)
		}
	}
}
