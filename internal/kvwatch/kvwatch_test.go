package kvwatch_test

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/streamfleet/streamfleet/internal/kvwatch"
	"github.com/streamfleet/streamfleet/internal/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a bucket's copy as a Config's callbacks keep it.
type recorder struct {
	mu      sync.Mutex
	copy    map[string]string
	resyncs [][]string
	loaded  int
}

func (r *recorder) config(bucket string, rewatch <-chan struct{}, errs *atomic.Uint64) kvwatch.Config {
	return kvwatch.Config{
		Bucket: bucket,
		Apply: func(e jetstream.KeyValueEntry) {
			r.mu.Lock()
			defer r.mu.Unlock()
			if e.Operation() == jetstream.KeyValuePut {
				r.copy[e.Key()] = string(e.Value())
			} else {
				delete(r.copy, e.Key())
			}
		},
		Resync: func(seen map[string]bool) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.resyncs = append(r.resyncs, slices.Sorted(maps.Keys(seen)))
			for k := range r.copy {
				if !seen[k] {
					delete(r.copy, k)
				}
			}
		},
		Loaded:  func() { r.mu.Lock(); r.loaded++; r.mu.Unlock() },
		Rewatch: rewatch,
		Errors:  errs,
	}
}

// state returns the copy's keys=values, the resyncs so far and the Loaded calls.
func (r *recorder) state() (map[string]string, [][]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.copy), slices.Clone(r.resyncs), r.loaded
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatch: a watch started before its bucket exists waits for it and loads it once (Loaded
// after Resync with the initial keys); puts and deletes reach Apply; a rewatch request starts
// over, Resync gets the keys the bucket holds then and Loaded is not called again, no error is
// counted; a rewatch of a deleted bucket counts errors and, the bucket made again, resyncs the copy to empty; the watch
// returns when its context ends.
func TestWatch(t *testing.T) {
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	ctx, cancel := context.WithCancel(t.Context())
	rec := &recorder{copy: map[string]string{}}
	rewatch := make(chan struct{}, 1)
	var errs atomic.Uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		kvwatch.Watch(ctx, js, rec.config("things", rewatch, &errs))
	}()
	defer func() { cancel(); <-done }()

	time.Sleep(700 * time.Millisecond) // at least one look for the bucket fails
	if _, _, loaded := rec.state(); loaded != 0 {
		t.Fatalf("loaded %d times before the bucket exists", loaded)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "things", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	natstest.PutJSON(ctx, t, kv, "a", 1)
	natstest.PutJSON(ctx, t, kv, "b", 2)
	waitFor(t, "the bucket loaded with a and b", func() bool {
		c, _, loaded := rec.state()
		return loaded == 1 && len(c) == 2
	})
	if _, resyncs, _ := rec.state(); len(resyncs) != 1 || len(resyncs[0]) > 2 {
		t.Fatalf("resyncs %v, want one of the initial keys", resyncs)
	}

	natstest.PutJSON(ctx, t, kv, "c", 3)
	if err := kv.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the put of c and the delete of a", func() bool {
		c, _, _ := rec.state()
		return len(c) == 2 && c["b"] == "2" && c["c"] == "3"
	})

	rewatch <- struct{}{}
	waitFor(t, "a second resync", func() bool {
		_, resyncs, _ := rec.state()
		return len(resyncs) == 2
	})
	c, resyncs, loaded := rec.state()
	// The initial values hold a's delete marker too (Apply deletes it again).
	if !slices.Contains(resyncs[1], "b") || !slices.Contains(resyncs[1], "c") || loaded != 1 ||
		!maps.Equal(c, map[string]string{"b": "2", "c": "3"}) {
		t.Fatalf("after the rewatch: copy %v, resyncs %v, loaded %d; want b and c, loaded once", c, resyncs, loaded)
	}
	if n := errs.Load(); n != 0 {
		t.Fatalf("%d watch errors counted, want 0", n)
	}

	// The bucket deleted and a rewatch asked: watching fails, counted; the bucket made again
	// (empty): the next watch resyncs to nothing.
	if err := js.DeleteKeyValue(ctx, "things"); err != nil {
		t.Fatal(err)
	}
	rewatch <- struct{}{}
	waitFor(t, "a watch error", func() bool { return errs.Load() > 0 })
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "things", History: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the copy emptied by a resync", func() bool {
		c, _, _ := rec.state()
		return len(c) == 0
	})
	if _, _, loaded := rec.state(); loaded != 1 {
		t.Fatalf("loaded %d times, want once", loaded)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}

// TestWatchReturnsWhileWaiting: a watch whose bucket never comes returns when its context ends.
func TestWatchReturnsWhileWaiting(t *testing.T) {
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		kvwatch.Watch(ctx, js, (&recorder{}).config("never", nil, nil))
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}
