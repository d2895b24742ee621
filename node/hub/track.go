package hub

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
)

// Kind is a track's media kind.
type Kind string

// Track kinds.
const (
	KindVideo Kind = "video"
	KindAudio Kind = "audio"
)

// KindOf returns the kind of a codec from its MIME type.
func KindOf(c webrtc.RTPCodecCapability) Kind {
	if strings.HasPrefix(strings.ToLower(c.MimeType), "audio/") {
		return KindAudio
	}
	return KindVideo
}

// TrackSpec declares a track when a stream is published.
type TrackSpec struct {
	Codec webrtc.RTPCodecCapability
}

func (s TrackSpec) compatible(t *Track) bool {
	a, b := s.Codec, t.codec
	return strings.EqualFold(a.MimeType, b.MimeType) && a.ClockRate == b.ClockRate &&
		a.Channels == b.Channels && a.SDPFmtpLine == b.SDPFmtpLine
}

// Track is one media track of a stream with one or more layers.
type Track struct {
	stream *Stream
	index  int
	kind   Kind
	codec  webrtc.RTPCodecCapability
	mime   string // codec.MimeType in lower case, for per-packet checks

	source *Track // the track this one is made from, for a derived track

	layers  atomic.Pointer[[]*Layer] // copy-on-write
	mu      sync.Mutex               // guards layers writes and readers
	readers map[*Reader]struct{}

	ring ring // the latest packets of every layer, for notified readers
}

func newTrack(s *Stream, index int, spec TrackSpec) *Track {
	t := &Track{stream: s, index: index, kind: KindOf(spec.Codec), codec: spec.Codec, mime: strings.ToLower(spec.Codec.MimeType), readers: map[*Reader]struct{}{}}
	t.layers.Store(&[]*Layer{})
	return t
}

// Kind is the track's media kind.
func (t *Track) Kind() Kind { return t.kind }

// Codec is the track's codec.
func (t *Track) Codec() webrtc.RTPCodecCapability { return t.codec }

// Index is the track's position in its stream.
func (t *Track) Index() int { return t.index }

// Source is, for a derived track, the published track it is made from (an Opus track transcoded
// from an AAC one, for WebRTC viewers); nil for a track the publisher sends.
func (t *Track) Source() *Track { return t.source }

// Stream is the stream the track belongs to.
func (t *Track) Stream() *Stream { return t.stream }

// Layers returns the track's layers in the order they appeared.
func (t *Track) Layers() []*Layer { return *t.layers.Load() }

// MaxLayers caps the layers of one track, so a publisher cannot make the node track an unbounded
// number of RTP streams.
const MaxLayers = 8

// Layer returns the layer with the given RID, creating it if needed, or nil when the track
// already has MaxLayers layers. Publishers call it.
func (t *Track) Layer(rid string) *Layer {
	for _, l := range *t.layers.Load() {
		if l.rid == rid {
			return l
		}
	}
	t.mu.Lock()
	for _, l := range *t.layers.Load() {
		if l.rid == rid {
			t.mu.Unlock()
			return l
		}
	}
	old := *t.layers.Load()
	if len(old) >= MaxLayers {
		t.mu.Unlock()
		return nil
	}
	l := newLayer(t, rid)
	next := append(append(make([]*Layer, 0, len(old)+1), old...), l)
	t.layers.Store(&next)
	var waiting []*Reader
	for r := range t.readers {
		if r.current.Load() == nil && r.pending.Load() == nil {
			waiting = append(waiting, r)
		}
	}
	t.mu.Unlock()
	for _, r := range waiting {
		r.SwitchLayer(l)
	}
	return l
}

// BestLayer is the layer a viewer gets when nothing limits it: the one with the highest bitrate,
// or, before bitrates are known, the one whose RID names the highest quality.
func (t *Track) BestLayer() *Layer {
	var best *Layer
	var bestRate uint64
	for _, l := range *t.layers.Load() {
		if r := l.Bitrate(); best == nil || r > bestRate || (r == bestRate && ridRank(l.rid) > ridRank(best.rid)) {
			best, bestRate = l, r
		}
	}
	return best
}

// ridRank orders the RIDs publishers commonly use, higher meaning higher quality.
func ridRank(rid string) int {
	switch strings.ToLower(rid) {
	case "h", "f", "hi", "high", "full", "2":
		return 3
	case "m", "mid", "medium", "1":
		return 2
	case "l", "q", "lo", "low", "quarter", "0":
		return 1
	}
	return 0
}

// NewReader attaches a reader to the track, reading its best layer from the next keyframe.
// queue bounds the reader's queue in packets (DefaultReaderQueue if ≤ 0).
func (t *Track) NewReader(queue int) *Reader { return t.newReader(queue, nil) }

func (t *Track) newReader(queue int, n *Notifier) *Reader {
	if queue <= 0 {
		queue = DefaultReaderQueue
	}
	r := &Reader{track: t, done: make(chan struct{}), notify: n}
	if n == nil {
		r.queue = make(chan Entry, queue)
	} else {
		r.next, r.bound = t.ring.head.Load(), uint64(min(queue, ringSize))
	}
	if t.kind == KindVideo {
		r.needKeyframe.Store(true)
	}
	t.mu.Lock()
	ended := t.stream.isEnded()
	if !ended {
		t.readers[r] = struct{}{}
	}
	first := len(t.readers) == 1
	t.mu.Unlock()
	if ended {
		r.Close()
		return r
	}
	if first && t.source != nil {
		if fn := t.stream.hub.cfg.OnDerivedDemand; fn != nil {
			fn(t)
		}
	}
	if l := t.BestLayer(); l != nil {
		r.SwitchLayer(l)
	}
	return r
}

func (t *Track) removeReader(r *Reader) {
	t.mu.Lock()
	delete(t.readers, r)
	t.mu.Unlock()
}

func (t *Track) closeReaders() {
	t.mu.Lock()
	readers := make([]*Reader, 0, len(t.readers))
	for r := range t.readers {
		readers = append(readers, r)
	}
	t.mu.Unlock()
	for _, r := range readers {
		r.Close()
	}
}

// ReaderCount is the number of readers of the track.
func (t *Track) ReaderCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.readers)
}
