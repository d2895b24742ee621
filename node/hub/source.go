package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/streamfleet/streamfleet/internal/streamname"
)

// DefaultOpenTimeout bounds how long Open waits for a stream to be pulled from upstream.
const DefaultOpenTimeout = 5 * time.Second

// Source brings streams a node does not carry from elsewhere: the cascade puller of a relay or an
// edge, which pulls them from an upstream node.
type Source interface {
	// Pull starts pulling name, or joins the pull already under way, and returns once the pulled
	// stream is published in the hub, or with an error: ErrStreamNotFound (wrapped) when no
	// upstream has it, or ctx's error. Any number of callers may wait for one stream at once;
	// they share one pull.
	Pull(ctx context.Context, name streamname.Name) error
}

// SetSource sets where Open pulls the streams the hub does not carry. Call it before the node
// serves; nil means none (an origin).
func (h *Hub) SetSource(src Source) {
	h.mu.Lock()
	h.source = src
	h.mu.Unlock()
}

// Open returns the stream called name, like Stream; when the hub does not carry it and has a
// Source, it asks the source to pull it and waits until it is published (at most the hub's
// OpenTimeout, or until ctx ends). Every reader path (WHEP, RTSP, SRT) opens streams through it,
// so the first viewer of a stream on an edge starts its pull and the others join it.
func (h *Hub) Open(ctx context.Context, name streamname.Name) (*Stream, error) {
	if s, err := h.Stream(name); err == nil {
		return s, nil
	}
	h.mu.Lock()
	src := h.source
	h.mu.Unlock()
	if src == nil {
		return nil, fmt.Errorf("%s: %w", name, ErrStreamNotFound)
	}
	timeout := h.cfg.OpenTimeout
	if timeout <= 0 {
		timeout = DefaultOpenTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := src.Pull(ctx, name); err != nil {
		if errors.Is(err, ErrStreamNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("pull %s: %w", name, err)
	}
	return h.Stream(name)
}

// NewLayerReader attaches a reader that reads layer l of the track only, from l's next keyframe,
// and never switches: what a cascade pull of every layer needs, one reader per layer. queue is as
// for NewReader.
func (t *Track) NewLayerReader(l *Layer, queue int) *Reader {
	if queue <= 0 {
		queue = DefaultReaderQueue
	}
	r := &Reader{track: t, queue: make(chan Entry, queue), done: make(chan struct{})}
	if t.kind == KindVideo {
		r.needKeyframe.Store(true)
	}
	t.mu.Lock()
	ended := t.stream.isEnded()
	if !ended {
		t.readers[r] = struct{}{}
	}
	t.mu.Unlock()
	if ended || l == nil || l.track != t {
		r.Close()
		return r
	}
	r.SwitchLayer(l)
	return r
}

// ResyncReaders makes every reader of the layer wait for its next keyframe before it gets more
// packets, as if it had just joined. A cascade pull calls it when it switches to another upstream:
// the new upstream's packets only decode from a keyframe on.
func (l *Layer) ResyncReaders() {
	if l.track.kind != KindVideo {
		return
	}
	for _, list := range []*[]*Reader{l.readers.Load(), l.notified.Load()} {
		for _, r := range *list {
			r.needKeyframe.Store(true)
		}
	}
}
