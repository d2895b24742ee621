package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/streamname"
)

// fakeSource publishes a stream when asked, after a delay, unless it is told the stream is missing.
type fakeSource struct {
	h       *Hub
	delay   time.Duration
	missing bool
	calls   atomic.Int32
	mu      sync.Mutex
	pubs    []*Publication
}

func (f *fakeSource) Pull(ctx context.Context, name streamname.Name) error {
	f.calls.Add(1)
	if f.missing {
		return fmt.Errorf("%s: %w", name, ErrStreamNotFound)
	}
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	p, err := f.h.Publish(name, specsOf(codecH264))
	if errors.Is(err, ErrStreamBusy) {
		return nil // another caller's pull made it
	}
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.pubs = append(f.pubs, p)
	f.mu.Unlock()
	return nil
}

func TestOpenWithoutSourceIsStream(t *testing.T) {
	h := newTestHub(t, 0)
	if _, err := h.Open(t.Context(), "live/x"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("open of a missing stream on an origin: %v", err)
	}
	p := mustPublish(t, h, "live/x", codecH264)
	if st, err := h.Open(t.Context(), "live/x"); err != nil || st != p.Stream() {
		t.Fatalf("open of a published stream: %v", err)
	}
}

func TestOpenPullsFromSource(t *testing.T) {
	h := newTestHub(t, 0)
	src := &fakeSource{h: h, delay: 20 * time.Millisecond}
	h.SetSource(src)
	st, err := h.Open(t.Context(), "live/x")
	if err != nil || st == nil || st.Name() != "live/x" {
		t.Fatalf("open: %v", err)
	}
	// A carried stream does not ask the source again.
	if _, err := h.Open(t.Context(), "live/x"); err != nil || src.calls.Load() != 1 {
		t.Fatalf("second open: %v, %d pulls", err, src.calls.Load())
	}
	src.missing = true
	if _, err := h.Open(t.Context(), "live/y"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("open of a stream the source lacks: %v", err)
	}
}

func TestOpenIsBounded(t *testing.T) {
	h := New(Config{OpenTimeout: 50 * time.Millisecond}, nil)
	defer h.Close()
	h.SetSource(&fakeSource{h: h, delay: time.Hour})
	start := time.Now()
	_, err := h.Open(context.Background(), "live/x")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("open of a pull that never ends: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("open took %v, bound 50ms", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Open(ctx, "live/x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("open with a cancelled context: %v", err)
	}
}

func TestNewLayerReaderReadsOneLayer(t *testing.T) {
	h := newTestHub(t, 0)
	p := mustPublish(t, h, "live/x", codecVP8)
	tr := p.Stream().Tracks()[0]
	hi, lo := tr.Layer("h"), tr.Layer("l")
	r := tr.NewLayerReader(lo, 16)
	defer r.Close()
	if hi.ReaderCount() != 0 || lo.ReaderCount() != 1 {
		t.Fatalf("layer readers h=%d l=%d, want 0 and 1", hi.ReaderCount(), lo.ReaderCount())
	}
	hi.WritePacket(newPacket(1, 1, 0, vp8Key))
	lo.WritePacket(newPacket(2, 1, 0, vp8Delta)) // not a keyframe: the reader waits
	lo.WritePacket(newPacket(2, 2, 0, vp8Key))
	got := queued(r)
	if len(got) != 1 || got[0].Packet.Layer != lo || !got[0].Packet.Keyframe {
		t.Fatalf("got %d entries, want the low layer's keyframe", len(got))
	}
	if other := tr.NewLayerReader(&Layer{track: &Track{}}, 0); !isClosed(other.Done()) {
		t.Fatal("a reader of another track's layer is not closed")
	}
}

func TestResyncReadersWaitsForKeyframe(t *testing.T) {
	for _, kind := range readerKinds {
		t.Run(kind.name, func(t *testing.T) {
			h := newTestHub(t, 0)
			p := mustPublish(t, h, "live/x", codecH264)
			l := p.Stream().Tracks()[0].Layer("")
			r := kind.newReader(p.Stream().Tracks()[0], 16)
			defer r.Close()
			l.WritePacket(newPacket(1, 1, 0, h264IDR))
			l.WritePacket(newPacket(1, 2, 0, h264Slice))
			if n := len(queued(r)); n != 2 {
				t.Fatalf("%d entries before the resync", n)
			}
			l.ResyncReaders() // a new upstream: its deltas do not decode
			l.WritePacket(newPacket(9, 50, 0, h264Slice))
			l.WritePacket(newPacket(9, 51, 0, h264IDR))
			got := queued(r)
			if len(got) != 1 || got[0].Packet.Header.SequenceNumber != 51 || !got[0].Resync {
				t.Fatalf("after a resync got %v, want the keyframe only, marked Resync", seqs(got))
			}
		})
	}
}
