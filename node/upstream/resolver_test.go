package upstream

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamfleet/streamfleet/internal/contract"
	"github.com/streamfleet/streamfleet/internal/natstest"
	"github.com/streamfleet/streamfleet/node/hub"
)

// TestResolverWatchesTheBuckets: a resolver started before the buckets exist waits for them,
// copies node records, heartbeats and routes as they are written and withdrawn, answers a
// lookup made before its first copy once that copy is in, and Close stops every goroutine.
func TestResolverWatchesTheBuckets(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ns := natstest.Start(t)
	nc, js := natstest.Connect(t, ns.ClientURL())
	r, err := New(Config{Self: "relay-1", Role: contract.RoleRelay, LoadWait: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(nc); err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	kv := map[string]jetstream.KeyValue{}
	for _, b := range contract.Buckets { // as the managers create them
		cfg := jetstream.KeyValueConfig{Bucket: b.Name, History: b.History, TTL: b.TTL}
		if b.TTL > 0 {
			cfg.LimitMarkerTTL = contract.MarkerTTL
		}
		if kv[b.Name], err = js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	put := func(bucket, key string, v any) { natstest.PutJSON(ctx, t, kv[bucket], key, v) }
	put(contract.BucketNodes, "origin-1", contract.NodeRecord{V: contract.Version, ID: "origin-1", Role: contract.RoleOrigin,
		URLs: contract.NodeURLs{HTTP: "http://o", RTSP: "10.0.0.1:8554"}})
	put(contract.BucketNodes, "future", contract.NodeRecord{V: contract.Version + 1, ID: "future", Role: contract.RoleOrigin})
	put(contract.BucketHeartbeats, "origin-1", contract.Heartbeat{V: contract.Version, Node: "origin-1"})
	put(contract.BucketRoutes, contract.RouteKey("live/a", "origin-1"), contract.Route{V: contract.Version, Stream: "live/a", Node: "origin-1", Ingest: true})

	// a lookup before the first copy waits for it
	ups, err := r.Upstreams(ctx, "live/a")
	for !slices.Equal(ups, []string{"10.0.0.1:8554"}) { // the copy may lag the puts a moment
		if ctx.Err() != nil {
			t.Fatalf("upstreams: %v %v", ups, err)
		}
		time.Sleep(20 * time.Millisecond)
		ups, err = r.Upstreams(ctx, "live/a")
	}
	if r.Stats().BadEntries.Load() != 1 {
		t.Fatalf("%d bad entries, want 1 (the record of an unknown version)", r.Stats().BadEntries.Load())
	}
	if err := kv[contract.BucketRoutes].Delete(ctx, contract.RouteKey("live/a", "origin-1")); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := r.Upstreams(ctx, "live/a"); errors.Is(err, hub.ErrStreamNotFound) {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the withdrawn route is still in the copy")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Close() // goleak (TestMain) checks the watches are gone
}

// TestResolverNotLoaded: a lookup gives up after LoadWait when the table never loads.
func TestResolverNotLoaded(t *testing.T) {
	r, err := New(Config{Self: "edge-1", Role: contract.RoleEdge, LoadWait: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if ups, err := r.Upstreams(t.Context(), "live/a"); ups != nil || err == nil {
		t.Fatalf("%v %v", ups, err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > time.Second {
		t.Fatalf("waited %v", d)
	}
	r.Close()
}
