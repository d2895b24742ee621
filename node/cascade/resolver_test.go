package cascade_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/node/cascade"
	"github.com/streamfleet/streamfleet/node/hub"
)

// fakeResolver answers from a list the test changes, and records what it was asked.
type fakeResolver struct {
	mu    sync.Mutex
	ups   []string
	err   error
	asked []streamname.Name
}

func (f *fakeResolver) set(ups []string, err error) {
	f.mu.Lock()
	f.ups, f.err = ups, err
	f.mu.Unlock()
}

func (f *fakeResolver) Upstreams(_ context.Context, s streamname.Name) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, s)
	return slices.Clone(f.ups), f.err
}

func (f *fakeResolver) askedCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.asked)
}

// TestResolverIsAskedEachAttempt: with a resolver the pull takes its first candidate; when that
// upstream dies the next attempt asks again and gets another (here a list that changed
// meanwhile), the local stream carrying on; a bad address from the resolver is skipped.
func TestResolverIsAskedEachAttempt(t *testing.T) {
	a, b := origin(t), origin(t)
	feed(t, a, "live/x")
	feed(t, b, "live/x")
	pa := newFreezer(t, a.RTSPAddr().String())
	res := &fakeResolver{}
	res.set([]string{"http://not-rtsp", pa.Addr(), b.RTSPAddr().String()}, nil)
	p, h := newPuller(t, nil, func(c *cascade.Config) { c.Resolver = res })
	st, err := h.Open(t.Context(), "live/x")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	r := st.Tracks()[0].NewReader(0)
	defer r.Close()
	if pl := p.Pulls(); len(pl) != 1 || pl[0].Upstream != pa.Addr() {
		t.Fatalf("pulls %+v, want from %s (the resolver's first)", pl, pa.Addr())
	}
	select {
	case <-r.C():
	case <-time.After(2 * time.Second):
		t.Fatal("nothing pulled from the first upstream")
	}
	asked := res.askedCount()
	// The routing table now lists b first; the first upstream hangs.
	res.set([]string{b.RTSPAddr().String(), pa.Addr()}, nil)
	pa.frozen.Store(true)
	waitFor(t, 3*time.Second, "the pull on b", func() bool {
		pl := p.Pulls()
		return len(pl) == 1 && pl[0].Sessions == 1 && pl[0].Upstream == b.RTSPAddr().String()
	})
	if res.askedCount() <= asked {
		t.Fatal("the resolver was not asked again after the failure")
	}
	if cur, _ := h.Stream("live/x"); cur != st {
		t.Fatal("the local stream was replaced")
	}
	if p.Stats().Resolved.Load() < 2 || p.Stats().Failovers.Load() != 1 {
		t.Fatalf("resolved %d, failovers %d", p.Stats().Resolved.Load(), p.Stats().Failovers.Load())
	}
}

// TestResolverFallbacks: a resolver with no candidates falls back to the static list; a resolver
// that says no node has the stream (and no static list) fails the pull at once with
// hub.ErrStreamNotFound; one that knows no live upstream fails it as unavailable.
func TestResolverFallbacks(t *testing.T) {
	o := origin(t)
	feed(t, o, "live/x")
	t.Run("static fallback", func(t *testing.T) {
		res := &fakeResolver{}
		res.set(nil, errors.New("table not loaded"))
		p, h := newPuller(t, []string{o.RTSPAddr().String()}, func(c *cascade.Config) { c.Resolver = res })
		if _, err := h.Open(t.Context(), "live/x"); err != nil {
			t.Fatalf("open: %v", err)
		}
		if pl := p.Pulls(); len(pl) != 1 || pl[0].Upstream != o.RTSPAddr().String() || res.askedCount() == 0 {
			t.Fatalf("pulls %+v, asked %d", pl, res.askedCount())
		}
	})
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"not found", fmt.Errorf("live/x: no node has it: %w", hub.ErrStreamNotFound), hub.ErrStreamNotFound},
		{"no live upstream", errors.New("the nodes holding it are failed"), cascade.ErrUpstreamUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &fakeResolver{}
			res.set(nil, tc.err)
			_, h := newPuller(t, nil, func(c *cascade.Config) { c.Resolver = res })
			start := time.Now()
			_, err := h.Open(t.Context(), "live/x")
			if !errors.Is(err, tc.want) {
				t.Fatalf("open: %v, want %v", err, tc.want)
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Fatalf("took %v to fail", d)
			}
		})
	}
}

// TestResolvedStreamEndsWhenItsUpstreamEnds: when the upstream ends the stream and the resolver
// no longer lists anyone, the pull asks the upstream it lost once more, learns the stream is gone
// (404) and ends the local stream at once rather than after the grace.
func TestResolvedStreamEndsWhenItsUpstreamEnds(t *testing.T) {
	o := origin(t)
	f := feed(t, o, "live/x")
	res := &fakeResolver{}
	res.set([]string{o.RTSPAddr().String()}, nil)
	_, h := newPuller(t, nil, func(c *cascade.Config) { c.Resolver = res })
	st, err := h.Open(t.Context(), "live/x")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	r := st.Tracks()[0].NewReader(0)
	defer r.Close()
	res.set(nil, fmt.Errorf("gone: %w", hub.ErrStreamNotFound))
	f.pub.End()
	select {
	case <-st.Done():
	case <-time.After(2 * time.Second): // the grace is 5 s
		t.Fatal("the pulled stream outlived its upstream's")
	}
}
