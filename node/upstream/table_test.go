package upstream

import (
	"errors"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/streamfleet/streamfleet/internal/contract"
	"github.com/streamfleet/streamfleet/node/hub"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a table at a fixed time, with nodes added by add.
type fixture struct {
	t   *testing.T
	tab *Table
	now time.Time
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, tab: NewTable(3 * time.Second), now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	f.tab.now = func() time.Time { return f.now }
	return f
}

// node describes one node of a fixture.
type node struct {
	id, role, region string
	capacity         int
	sessions         int
	draining         bool
	hbAge            time.Duration // -1: no heartbeat
	noRTSP           bool
	carries          []string // streams routed to it (ingest on an origin)
}

func (f *fixture) add(n node) {
	rec := contract.NodeRecord{V: contract.Version, ID: n.id, Role: n.role, Region: n.region,
		URLs: contract.NodeURLs{HTTP: "http://" + n.id}, Capacity: contract.Capacity{Sessions: n.capacity}}
	if !n.noRTSP {
		rec.URLs.RTSP = n.id + ":8554"
	}
	f.tab.SetNode(rec)
	if n.hbAge >= 0 {
		f.tab.SetHeartbeat(contract.Heartbeat{V: contract.Version, Node: n.id, Sessions: map[string]int{contract.SessionsWHEP: n.sessions},
			Draining: n.draining}, f.now.Add(-n.hbAge))
	}
	for _, s := range n.carries {
		f.tab.SetRoute(contract.Route{V: contract.Version, Stream: s, Node: n.id, Role: n.role, Ingest: n.role == contract.RoleOrigin})
	}
}

func (f *fixture) upstreams(q Query) []string {
	f.t.Helper()
	got, err := f.tab.Upstreams(q)
	if err != nil {
		f.t.Fatalf("upstreams %+v: %v", q, err)
	}
	return got
}

// ids strips the ":8554" of the fixture's RTSP addresses.
func ids(ups []string) []string {
	out := make([]string, len(ups))
	for i, u := range ups {
		out[i] = u[:len(u)-len(":8554")]
	}
	return out
}

// TestEdgeOrder: an edge gets the relays of its region, carrying the stream first and then by
// spare capacity, then the other regions' relays the same way, then the origin holding the stream;
// failed, draining, RTSP-less relays, origins without the stream and the edge itself are left out.
func TestEdgeOrder(t *testing.T) {
	f := newFixture(t)
	for _, n := range []node{
		{id: "origin-1", role: contract.RoleOrigin, region: "us", carries: []string{"live/a"}},
		{id: "origin-2", role: contract.RoleOrigin, region: "eu"}, // does not hold the stream
		{id: "relay-eu-busy", role: contract.RoleRelay, region: "eu", capacity: 10, sessions: 8},
		{id: "relay-eu-idle", role: contract.RoleRelay, region: "eu", capacity: 10, sessions: 1},
		{id: "relay-eu-carrying", role: contract.RoleRelay, region: "eu", capacity: 10, sessions: 9, carries: []string{"live/a"}},
		{id: "relay-us", role: contract.RoleRelay, region: "us", capacity: 10, sessions: 0},
		{id: "relay-us-carrying", role: contract.RoleRelay, region: "us", capacity: 10, sessions: 5, carries: []string{"live/a"}},
		{id: "relay-eu-failed", role: contract.RoleRelay, region: "eu", hbAge: 4 * time.Second},
		{id: "relay-eu-silent", role: contract.RoleRelay, region: "eu", hbAge: -1},
		{id: "relay-eu-draining", role: contract.RoleRelay, region: "eu", draining: true},
		{id: "relay-eu-nortsp", role: contract.RoleRelay, region: "eu", noRTSP: true},
		{id: "edge-eu", role: contract.RoleEdge, region: "eu", carries: []string{"live/a"}},
	} {
		f.add(n)
	}
	got := ids(f.upstreams(Query{Stream: "live/a", Self: "edge-eu", Role: contract.RoleEdge, Region: "eu"}))
	want := []string{"relay-eu-carrying", "relay-eu-idle", "relay-eu-busy", "relay-us-carrying", "relay-us", "origin-1"}
	if !slices.Equal(got, want) {
		t.Fatalf("edge in eu: %v\nwant %v", got, want)
	}
	// Without a region: one tier of relays, carrying first.
	got = ids(f.upstreams(Query{Stream: "live/a", Self: "edge-x", Role: contract.RoleEdge}))
	want = []string{"relay-us-carrying", "relay-eu-carrying", "relay-us", "relay-eu-idle", "relay-eu-busy", "origin-1"}
	if !slices.Equal(got, want) {
		t.Fatalf("edge without a region: %v\nwant %v", got, want)
	}
	// A relay never asks itself.
	f.add(node{id: "relay-x", role: contract.RoleRelay, region: "eu"})
	got = ids(f.upstreams(Query{Stream: "live/a", Self: "relay-eu-idle", Role: contract.RoleEdge, Region: "eu"}))
	if slices.Contains(got, "relay-eu-idle") {
		t.Fatalf("self among the upstreams: %v", got)
	}
}

// TestRelayOrder: a relay gets the origins holding the stream (in service first, then draining),
// never a relay or an origin without the stream.
func TestRelayOrder(t *testing.T) {
	f := newFixture(t)
	for _, n := range []node{
		{id: "origin-draining", role: contract.RoleOrigin, draining: true, carries: []string{"live/a"}},
		{id: "origin-holds", role: contract.RoleOrigin, capacity: 10, sessions: 9, carries: []string{"live/a"}},
		{id: "origin-other", role: contract.RoleOrigin, carries: []string{"live/b"}},
		{id: "origin-dead", role: contract.RoleOrigin, hbAge: 5 * time.Second, carries: []string{"live/a"}},
		{id: "relay-carrying", role: contract.RoleRelay, carries: []string{"live/a"}},
	} {
		f.add(n)
	}
	got := ids(f.upstreams(Query{Stream: "live/a", Self: "relay-1", Role: contract.RoleRelay}))
	if want := []string{"origin-holds", "origin-draining"}; !slices.Equal(got, want) {
		t.Fatalf("relay: %v, want %v", got, want)
	}
}

// TestNotFoundAndUnavailable: no origin holds the stream → hub.ErrStreamNotFound (for an edge, no
// node routes it at all); holders all failed → ErrNoLiveUpstream; origins and transcoders never
// pull (nothing, no error); a failed node comes back with its next heartbeat.
func TestNotFoundAndUnavailable(t *testing.T) {
	f := newFixture(t)
	f.add(node{id: "relay-1", role: contract.RoleRelay})
	f.add(node{id: "origin-1", role: contract.RoleOrigin, hbAge: 10 * time.Second, carries: []string{"live/a"}})
	for _, tc := range []struct {
		q    Query
		want error
	}{
		{Query{Stream: "live/none", Self: "e", Role: contract.RoleEdge}, hub.ErrStreamNotFound},
		{Query{Stream: "live/none", Self: "r", Role: contract.RoleRelay}, hub.ErrStreamNotFound},
		{Query{Stream: "live/a", Self: "r", Role: contract.RoleRelay}, ErrNoLiveUpstream},
	} {
		if got, err := f.tab.Upstreams(tc.q); len(got) != 0 || !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v %v, want %v", tc.q, got, err, tc.want)
		}
	}
	// the edge still has the relay, which pulls from whichever origin comes back
	if got := ids(f.upstreams(Query{Stream: "live/a", Self: "e", Role: contract.RoleEdge})); !slices.Equal(got, []string{"relay-1"}) {
		t.Fatalf("edge: %v", got)
	}
	for _, role := range []string{contract.RoleOrigin, contract.RoleTranscoder} {
		if got, err := f.tab.Upstreams(Query{Stream: "live/a", Self: "x", Role: role}); got != nil || err != nil {
			t.Errorf("%s: %v %v", role, got, err)
		}
	}
	f.tab.SetHeartbeat(contract.Heartbeat{V: contract.Version, Node: "origin-1"}, f.now)
	if got := ids(f.upstreams(Query{Stream: "live/a", Self: "r", Role: contract.RoleRelay})); !slices.Equal(got, []string{"origin-1"}) {
		t.Fatalf("after a fresh heartbeat: %v", got)
	}
	// a withdrawn route, an expired heartbeat, a removed record
	f.tab.RemoveHeartbeat("origin-1")
	if _, err := f.tab.Upstreams(Query{Stream: "live/a", Self: "r", Role: contract.RoleRelay}); !errors.Is(err, ErrNoLiveUpstream) {
		t.Fatalf("after the heartbeat expired: %v", err)
	}
	f.tab.RemoveRoute("live/a", "origin-1")
	if _, err := f.tab.Upstreams(Query{Stream: "live/a", Self: "r", Role: contract.RoleRelay}); !errors.Is(err, hub.ErrStreamNotFound) {
		t.Fatalf("after the route was withdrawn: %v", err)
	}
	f.tab.RemoveNode("relay-1")
	f.tab.RemoveHeartbeat("relay-1")
	if len(f.tab.NodeIDs()) != 1 { // origin-1's record stays
		t.Fatalf("nodes %v", f.tab.NodeIDs())
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{Self: "edge-1", Role: contract.RoleEdge}).Validate(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]Config{
		"origin":    {Self: "o", Role: contract.RoleOrigin},
		"no id":     {Role: contract.RoleEdge},
		"bad id":    {Self: "a.b", Role: contract.RoleEdge},
		"negative":  {Self: "e", Role: contract.RoleEdge, FailAfter: -1},
		"no role":   {Self: "e"},
		"bad wait":  {Self: "e", Role: contract.RoleRelay, LoadWait: -time.Second},
		"bad fail2": {Self: "e", Role: contract.RoleRelay, FailAfter: -time.Second},
	} {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestStalledWatchFreezesLiveness: while the asking node's own heartbeat has not come back for
// more than stallAfter (the watch is stalled), nodes that were alive when it last came back stay
// alive, for at most maxFreeze; a node already failed before the stall stays failed; without its
// own heartbeat, or once it flows again, liveness is judged now.
func TestStalledWatchFreezesLiveness(t *testing.T) {
	f := newFixture(t)
	f.add(node{id: "origin-1", role: contract.RoleOrigin, carries: []string{"live/a"}})
	f.add(node{id: "relay-dead", role: contract.RoleRelay, hbAge: 5 * time.Second})
	f.add(node{id: "relay-1", role: contract.RoleRelay})
	f.add(node{id: "edge-1", role: contract.RoleEdge})
	q := Query{Stream: "live/a", Self: "edge-1", Role: contract.RoleEdge}
	start := f.now

	f.now = start.Add(10 * time.Second) // no heartbeat has arrived for 10 s
	if got, want := ids(f.upstreams(q)), []string{"relay-1", "origin-1"}; !slices.Equal(got, want) {
		t.Fatalf("stalled 10 s: %v, want %v (judged when the watch last flowed)", got, want)
	}
	if f.tab.FrozenLookups() != 1 {
		t.Errorf("%d frozen lookups, want 1", f.tab.FrozenLookups())
	}
	f.now = start.Add(maxFreeze + time.Second)
	if _, err := f.tab.Upstreams(q); !errors.Is(err, ErrNoLiveUpstream) {
		t.Fatalf("stalled past maxFreeze: %v, want ErrNoLiveUpstream (judged now)", err)
	}
	// The watch flows again: the edge's own heartbeat is fresh, the others' are not.
	f.tab.SetHeartbeat(contract.Heartbeat{V: contract.Version, Node: "edge-1"}, f.now)
	if _, err := f.tab.Upstreams(q); !errors.Is(err, ErrNoLiveUpstream) {
		t.Fatalf("flowing, the others silent: %v, want ErrNoLiveUpstream", err)
	}
	// A node with no heartbeat of its own in the table (not reporting yet) is judged now.
	f.now = start.Add(10 * time.Second)
	q.Self = "edge-unknown"
	if _, err := f.tab.Upstreams(q); !errors.Is(err, ErrNoLiveUpstream) {
		t.Fatalf("asking node unknown: %v, want ErrNoLiveUpstream", err)
	}
}
