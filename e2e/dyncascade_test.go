package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/contract"
	"github.com/streamfleet/streamfleet/internal/natstest"
	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/internal/rtctest"
	"github.com/streamfleet/streamfleet/node"
	"github.com/streamfleet/streamfleet/node/upstream"
)

// TestDynamicCascade: relays and edges with --nats and no --upstream find their upstreams in the
// routing table. The eu edge pulls through the eu relay (not the us one, which is idle too), the
// relay from the origin holding the stream, and a WHEP viewer on the edge receives the
// publisher's payloads; the eu relay is closed → the edge's next attempt asks the table again and
// pulls through the us relay, which pulls from the origin, while the viewer keeps its session and
// its packets keep coming.
func TestDynamicCascade(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	m, ns := startManager(ctx, t, nil)
	withNATS := func(id string, role node.Role, region string) func(*node.Config) {
		return func(c *node.Config) {
			c.ID, c.Role, c.ClusterSecret = id, role, "e2e-cluster-secret"
			c.NATS.URL, c.NATS.Region, c.NATS.Capacity.Sessions = ns.ClientURL(), region, 100
			c.NATS.HeartbeatInterval = 200 * time.Millisecond
		}
	}
	origin := nodetest.Start(t, withNATS("origin", node.RoleOrigin, "us"))
	relayEU := nodetest.Start(t, withNATS("relay-eu", node.RoleRelay, "eu"))
	relayUS := nodetest.Start(t, withNATS("relay-us", node.RoleRelay, "us"))
	edge := nodetest.Start(t, withNATS("edge-eu", node.RoleEdge, "eu"))
	waitInService(t, m, 4)
	for _, n := range []*node.Node{relayEU, relayUS, edge} {
		if n.Puller() == nil || len(n.Puller().Upstreams()) != 0 || n.Resolver() == nil {
			t.Fatalf("a node with --nats and no --upstream: puller %v, resolver %v", n.Puller(), n.Resolver())
		}
	}
	if origin.Resolver() != nil {
		t.Fatal("an origin has an upstream resolver")
	}

	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rtctest.PublishStream(ctx, api, origin.HTTPURL()+"/whip/live/dyn", rtctest.H264)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer pub.Close()
	// The origin's route reaches the relays' and the edge's copies of the table.
	for _, n := range []*node.Node{relayEU, edge} {
		waitUntil(t, ctx, "the origin's route in a node's table", func() bool {
			ups, _ := n.Resolver().Table().Upstreams(upstream.Query{Stream: "live/dyn", Self: "x", Role: contract.RoleRelay})
			return len(ups) == 1
		})
	}

	// A relay of eu that died a moment ago (SIGKILL: its record, heartbeat and route still in the
	// table, nothing listening) and claims the stream: the edge tries it first, is refused, and
	// goes on to the next candidate.
	dead := deadRelay(t, ctx, ns.ClientURL(), "relay-eu-dead", "eu", "live/dyn")
	waitUntil(t, ctx, "the dead relay in the edge's table", func() bool {
		ups, _ := edge.Resolver().Table().Upstreams(upstream.Query{Stream: "live/dyn", Self: "edge-eu", Role: contract.RoleEdge, Region: "eu"})
		return len(ups) == 4 && ups[0] == dead
	})

	v, err := rtctest.View(ctx, api, edge.HTTPURL()+"/whep/live/dyn", "")
	if err != nil {
		t.Fatalf("view on the edge: %v", err)
	}
	defer v.Close()
	waitUntil(t, ctx, "video at the edge's viewer", func() bool { return len(v.Payloads("video")) >= 10 })
	upstreamOf := func(n *node.Node) string {
		if pl := n.Puller().Pulls(); len(pl) == 1 && pl[0].Sessions == 1 {
			return pl[0].Upstream
		}
		return ""
	}
	if got, want := upstreamOf(edge), relayEU.RTSPAddr().String(); got != want {
		t.Fatalf("the eu edge pulls from %q, want the eu relay %s (us relay %s)", got, want, relayUS.RTSPAddr())
	}
	if n := edge.Puller().Stats().AttemptFailures.Load(); n != 1 {
		t.Fatalf("%d failed attempts at the edge, want 1 (the dead relay)", n)
	}
	if got, want := upstreamOf(relayEU), origin.RTSPAddr().String(); got != want {
		t.Fatalf("the relay pulls from %q, want the origin %s", got, want)
	}
	for i, p := range v.Payloads("video") {
		if _, _, ok := rtctest.PayloadIndex(p); !ok {
			t.Fatalf("video payload %d is not the publisher's", i)
		}
	}
	if relayUS.Puller().Stats().PullsStarted.Load() != 0 {
		t.Fatal("the us relay pulled before it was needed")
	}

	// The eu relay goes away: the edge fails over to the relay the table gives next.
	if err := relayEU.Close(); err != nil {
		t.Fatal(err)
	}
	before := len(v.Payloads("video"))
	waitUntil(t, ctx, "the edge pulling through the us relay", func() bool { return upstreamOf(edge) == relayUS.RTSPAddr().String() })
	if got := upstreamOf(relayUS); got != origin.RTSPAddr().String() {
		t.Fatalf("the us relay pulls from %q, want the origin", got)
	}
	waitUntil(t, ctx, "video after the failover", func() bool { return len(v.Payloads("video")) >= before+30 })
	if n := edge.WebRTC().Stats().WHEPSessions.Load(); n != 1 {
		t.Fatalf("%d WHEP sessions on the edge, want the viewer's one", n)
	}
	if edge.Puller().Stats().Failovers.Load() != 1 || edge.Puller().Stats().Resolved.Load() < 2 {
		t.Fatalf("edge: %d failovers, %d resolved attempts", edge.Puller().Stats().Failovers.Load(), edge.Puller().Stats().Resolved.Load())
	}
	checkSameSession(t, v, "video")

	// The edge's /metrics shows its lookups in the routing table, none of them frozen.
	resp, err := http.Get(edge.HTTPURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(body)
	lookups := regexp.MustCompile(`(?m)^streamfleet_upstream_lookups_total\{[^}]*role="edge"\} ([0-9.e+]+)$`).FindStringSubmatch(metrics)
	if lookups == nil || lookups[1] == "0" {
		t.Errorf("edge /metrics: upstream lookups %v, want some", lookups)
	}
	if !regexp.MustCompile(`(?m)^streamfleet_upstream_lookups_frozen_total\{[^}]*\} 0$`).MatchString(metrics) {
		t.Error("edge /metrics: frozen lookups missing or not 0 while NATS was healthy")
	}
}

// deadRelay writes the record, a fresh heartbeat and a route of stream for a relay whose RTSP
// address nothing listens on, and returns that address.
func deadRelay(t *testing.T, ctx context.Context, natsURL, id, region, stream string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, js := natstest.Connect(t, natsURL)
	put := func(bucket, key string, v any) {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		natstest.PutJSON(ctx, t, kv, key, v)
	}
	now := time.Now().UTC()
	put(contract.BucketNodes, contract.NodeKey(id), contract.NodeRecord{V: contract.Version, ID: id, Role: contract.RoleRelay, Region: region,
		URLs: contract.NodeURLs{HTTP: "http://" + addr, RTSP: addr}, Started: now})
	put(contract.BucketHeartbeats, contract.NodeKey(id), contract.Heartbeat{V: contract.Version, Node: id, Time: now, Sessions: map[string]int{}})
	put(contract.BucketRoutes, contract.RouteKey(stream, id), contract.Route{V: contract.Version, Stream: stream, Node: id, Role: contract.RoleRelay, Started: now})
	return addr
}

// checkSameSession asserts a viewer's packets kept one SSRC and rising sequence numbers across an
// upstream change: the same WHEP session, resynchronised, not a new one.
func checkSameSession(t *testing.T, v *rtctest.Viewer, kind string) {
	t.Helper()
	hs := v.Headers(kind)
	for i := 1; i < len(hs); i++ {
		if hs[i].SSRC != hs[0].SSRC {
			t.Fatalf("%s: SSRC changed at packet %d", kind, i)
		}
		if d := hs[i].SequenceNumber - hs[i-1].SequenceNumber; d == 0 || d > 0x8000 {
			t.Fatalf("%s: sequence number %d after %d", kind, hs[i].SequenceNumber, hs[i-1].SequenceNumber)
		}
	}
}

// waitUntil polls cond every 20 ms until it holds, failing the test when ctx ends first.
func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
