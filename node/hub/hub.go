package hub

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamfleet/streamfleet/internal/streamname"
)

// DefaultGrace is how long a stream waits for its publisher to come back.
const DefaultGrace = 10 * time.Second

// MaxTracks caps the tracks of one stream.
const MaxTracks = 8

// Config configures a Hub.
type Config struct {
	// Grace is how long a stream outlives its publisher, waiting for it to reconnect. Zero ends
	// a stream as soon as its publisher leaves.
	Grace time.Duration
	// OnDerivedDemand, if set, is called when a derived track (Track.Source is not nil) gets its
	// first reader, so whoever makes it (the transcoder) can start. It is called without any hub
	// lock held and must not block.
	OnDerivedDemand func(*Track)
	// OpenTimeout bounds how long Open waits for a stream its Source pulls (DefaultOpenTimeout if
	// zero).
	OpenTimeout time.Duration
}

// Hub holds a node's streams. It starts no goroutines of its own (only grace timers, stopped by
// Close).
type Hub struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	streams map[streamname.Name]*Stream
	closed  bool
	source  Source // set by SetSource; nil on an origin

	stats Stats
}

// Stats are a hub's counters over its whole life.
type Stats struct {
	PacketsIn            atomic.Uint64
	BytesIn              atomic.Uint64
	ReaderDrops          atomic.Uint64 // packets readers lost by falling behind
	KeyframeRequests     atomic.Uint64 // asked for by readers
	KeyframeRequestsSent atomic.Uint64 // forwarded to publishers after coalescing
}

// Stats returns the hub's counters.
func (h *Hub) Stats() *Stats { return &h.stats }

// New returns an empty hub.
func New(cfg Config, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{cfg: cfg, log: log, streams: map[streamname.Name]*Stream{}}
}

// Publish attaches a publisher with the given tracks to stream name. If the stream is live it
// fails with ErrStreamBusy. If the stream is waiting for its publisher to return and the tracks
// match, the new publisher takes it over and its readers carry on; otherwise the old stream ends
// and a new one starts.
func (h *Hub) Publish(name streamname.Name, specs []TrackSpec) (*Publication, error) {
	if len(specs) == 0 {
		return nil, ErrNoTracks
	}
	if len(specs) > MaxTracks {
		return nil, fmt.Errorf("%w: %d tracks, at most %d", ErrTooManyTracks, len(specs), MaxTracks)
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrHubClosed
	}
	if s := h.streams[name]; s != nil {
		s.mu.Lock()
		switch {
		case s.publisher != nil:
			s.mu.Unlock()
			h.mu.Unlock()
			return nil, fmt.Errorf("publish %s: %w", name, ErrStreamBusy)
		case !s.ended && compatible(specs, s.tracks):
			if s.grace != nil {
				s.grace.Stop()
				s.grace = nil
			}
			p := &Publication{stream: s}
			s.publisher = p
			s.mu.Unlock()
			h.mu.Unlock()
			h.log.Info("publisher returned", "stream", name)
			return p, nil
		}
		s.mu.Unlock()
		h.mu.Unlock()
		h.log.Info("publisher returned with other tracks: ending the old stream", "stream", name)
		s.end()
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil, ErrHubClosed
		}
		if o := h.streams[name]; o != nil && o != s {
			h.mu.Unlock()
			return nil, fmt.Errorf("publish %s: %w", name, ErrStreamBusy)
		}
	}
	s := &Stream{hub: h, name: name, started: time.Now(), done: make(chan struct{})}
	for i, spec := range specs {
		s.tracks = append(s.tracks, newTrack(s, i, spec))
	}
	s.addDerivedTracks()
	p := &Publication{stream: s}
	s.publisher = p
	h.streams[name] = s
	h.mu.Unlock()
	h.log.Info("stream started", "stream", name, "tracks", len(specs))
	return p, nil
}

func compatible(specs []TrackSpec, tracks []*Track) bool {
	n := 0
	for _, t := range tracks {
		if t.source == nil {
			n++
		}
	}
	if len(specs) != n {
		return false
	}
	for i := range specs {
		if !specs[i].compatible(tracks[i]) {
			return false
		}
	}
	return true
}

// Stream returns the stream called name, live or waiting for its publisher.
func (h *Hub) Stream(name streamname.Name) (*Stream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.streams[name]
	if s == nil {
		return nil, fmt.Errorf("%s: %w", name, ErrStreamNotFound)
	}
	return s, nil
}

// Streams returns every stream, sorted by name.
func (h *Hub) Streams() []*Stream {
	h.mu.Lock()
	out := make([]*Stream, 0, len(h.streams))
	for _, s := range h.streams {
		out = append(out, s)
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (h *Hub) remove(s *Stream) {
	h.mu.Lock()
	if h.streams[s.name] == s {
		delete(h.streams, s.name)
	}
	h.mu.Unlock()
	h.log.Info("stream ended", "stream", s.name)
}

// Close ends every stream. Publish fails afterwards.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	streams := make([]*Stream, 0, len(h.streams))
	for _, s := range h.streams {
		streams = append(streams, s)
	}
	h.mu.Unlock()
	for _, s := range streams {
		s.end()
	}
}
