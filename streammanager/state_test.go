package streammanager

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/contract"
)

// fleet builds a state with nodes that heartbeat "now".
type fleet struct {
	t   testing.TB
	s   *State
	now time.Time
}

func newFleet(t testing.TB) *fleet {
	f := &fleet{t: t, s: NewState(contract.HeartbeatTTL), now: time.Now()}
	f.s.now = func() time.Time { return f.now }
	return f
}

func (f *fleet) add(id, role, region string, capSessions int, streams ...string) {
	f.s.SetNode(contract.NodeRecord{V: 1, ID: id, Role: role, Region: region,
		URLs:     contract.NodeURLs{HTTP: "http://" + id, SRT: id + ":9000", RTSP: id + ":8554"},
		Capacity: contract.Capacity{Sessions: capSessions}})
	f.beat(id, 0, streams...)
}

func (f *fleet) beat(id string, sessions int, streams ...string) {
	hb := contract.Heartbeat{V: 1, Node: id, Time: f.now, Sessions: map[string]int{contract.SessionsWHEP: sessions}}
	for _, s := range streams {
		hb.Streams = append(hb.Streams, contract.StreamLoad{Name: s, Live: true})
		f.s.SetRoute(contract.Route{V: 1, Stream: s, Node: id, Role: "edge"})
	}
	f.s.SetHeartbeat(hb, f.now)
}

func (f *fleet) subscribe(stream, region string) string {
	f.t.Helper()
	c, err := f.s.Subscribe(Request{Stream: stream, Region: region, Protocol: "webrtc"})
	if err != nil {
		f.t.Fatalf("Subscribe(%s, %s): %v", stream, region, err)
	}
	return c.Node.ID
}

func TestSubscribeRegionFirst(t *testing.T) {
	f := newFleet(t)
	f.add("eu-1", "edge", "eu", 100)
	f.add("us-1", "edge", "us", 100)
	f.add("origin", "origin", "eu", 100)
	for range 20 {
		if got := f.subscribe("live/a", "us"); got != "us-1" {
			t.Fatalf("region us: got %s", got)
		}
	}
	// A region without nodes falls back to any edge.
	if got := f.subscribe("live/a", "ap"); got != "eu-1" && got != "us-1" {
		t.Fatalf("region ap: got %s", got)
	}
}

func TestSubscribePrefersCarryingThenSpreadsByLoad(t *testing.T) {
	f := newFleet(t)
	f.add("e1", "edge", "eu", 10)
	f.add("e2", "edge", "eu", 10, "live/a")
	f.add("e3", "edge", "eu", 10)
	for i := range 10 {
		if got := f.subscribe("live/a", "eu"); got != "e2" {
			t.Fatalf("viewer %d: got %s, want e2 (carries the stream)", i, got)
		}
	}
	// e2 is full (predicted load): the next viewers open one more edge and fill it.
	first := f.subscribe("live/a", "eu")
	if first == "e2" {
		t.Fatal("sent to a full edge")
	}
	for range 9 {
		if got := f.subscribe("live/a", "eu"); got != first {
			t.Fatalf("got %s, want %s (now carrying)", got, first)
		}
	}
	// A stream nobody carries spreads by load: e1/e3 are the emptier ones.
	counts := map[string]int{}
	for range 5 {
		counts[f.subscribe("live/b", "eu")]++
	}
	if counts["e2"] != 0 {
		t.Fatalf("full edge chosen: %v", counts)
	}
}

func TestSubscribeNoCapacity(t *testing.T) {
	f := newFleet(t)
	f.add("e1", "edge", "eu", 2)
	f.subscribe("s", "")
	f.subscribe("s", "")
	if _, err := f.s.Subscribe(Request{Stream: "s"}); !errors.Is(err, ErrNoCapacity) {
		t.Fatalf("third viewer: %v, want ErrNoCapacity", err)
	}
	// A heartbeat that confirms the two sessions keeps it full; one that shows them gone frees it.
	f.now = f.now.Add(time.Second)
	f.beat("e1", 2)
	if _, err := f.s.Subscribe(Request{Stream: "s"}); !errors.Is(err, ErrNoCapacity) {
		t.Fatalf("after confirming heartbeat: %v, want ErrNoCapacity", err)
	}
	f.now = f.now.Add(time.Second)
	f.beat("e1", 0)
	f.subscribe("s", "")
}

func TestFailedAndDrainingNodesLeaveLookups(t *testing.T) {
	f := newFleet(t)
	f.add("e1", "edge", "eu", 0)
	f.add("e2", "edge", "eu", 0)
	f.now = f.now.Add(2 * time.Second)
	f.beat("e2", 0)
	f.now = f.now.Add(1500 * time.Millisecond) // e1's last heartbeat is 3.5 s old
	for range 10 {
		if got := f.subscribe("s", ""); got != "e2" {
			t.Fatalf("failed node chosen: %s", got)
		}
	}
	if v, _ := f.s.Node("e1"); v.State != "failed" {
		t.Fatalf("e1 state %q", v.State)
	}
	f.s.SetDraining("e2", true)
	if _, err := f.s.Subscribe(Request{Stream: "s"}); !errors.Is(err, ErrNoNode) {
		t.Fatalf("all edges failed or draining: %v, want ErrNoNode", err)
	}
}

func TestPublishStaysOnTheStreamsOrigin(t *testing.T) {
	f := newFleet(t)
	f.add("o1", "origin", "eu", 0)
	f.add("o2", "origin", "eu", 0)
	f.s.SetRoute(contract.Route{V: 1, Stream: "live/x", Node: "o2", Role: "origin", Ingest: true})
	for range 10 {
		c, err := f.s.Publish(Request{Stream: "live/x", Protocol: "webrtc"})
		if err != nil || c.Node.ID != "o2" {
			t.Fatalf("Publish = %v, %v; want o2", c.Node.ID, err)
		}
	}
	// Edges never take publishers; with no origin, ErrNoNode.
	g := newFleet(t)
	g.add("e1", "edge", "eu", 0)
	if _, err := g.s.Publish(Request{Stream: "a"}); !errors.Is(err, ErrNoNode) {
		t.Fatalf("no origin: %v", err)
	}
}

// TestFlashCrowd is the NBA-finals profile: 100,000 viewers of one stream join within a minute
// across 50 edges of capacity 2,500 that heartbeat every second. No edge is sent more than its
// capacity, no lookup fails, and the stream is on no more edges than it needs (40) + 10 %.
func TestFlashCrowd(t *testing.T) {
	const viewers, edges, capacity = 100_000, 50, 2_500
	f := newFleet(t)
	sessions := map[string]int{}
	for i := range edges {
		f.add(fmt.Sprintf("edge-%02d", i), "edge", "us", capacity)
	}
	f.add("origin", "origin", "us", 0)
	step := time.Minute / viewers
	nextBeat := f.now.Add(time.Second)
	for i := range viewers {
		f.now = f.now.Add(step)
		if f.now.After(nextBeat) { // every edge reports what it has (the viewers connected at once)
			for i := range edges {
				id := fmt.Sprintf("edge-%02d", i)
				f.beat(id, sessions[id])
			}
			f.beat("origin", 0)
			nextBeat = nextBeat.Add(time.Second)
		}
		c, err := f.s.Subscribe(Request{Stream: "nba/finals", Region: "us", Protocol: "webrtc"})
		if err != nil {
			t.Fatalf("viewer %d: %v", i, err)
		}
		sessions[c.Node.ID]++
		if sessions[c.Node.ID] > capacity {
			t.Fatalf("edge %s sent %d viewers, capacity %d", c.Node.ID, sessions[c.Node.ID], capacity)
		}
	}
	need := viewers / capacity
	if len(sessions) > need+need/10 {
		t.Fatalf("stream on %d edges, needs %d (+10 %%)", len(sessions), need)
	}
	t.Logf("%d viewers on %d edges (need %d)", viewers, len(sessions), need)
}

// TestStallFreezesFailureDetection: while the heartbeats are stalled no node fails however long
// it lasts, and expiry markers are ignored; when the stall ends a node heard during it stays in
// service, one silent since before it is failed failAfter after its shifted heartbeat, not at once.
func TestStallFreezesFailureDetection(t *testing.T) {
	f := newFleet(t)
	f.add("e1", "edge", "eu", 0)
	f.add("e2", "edge", "eu", 0)
	start := f.now
	f.now = f.now.Add(time.Second)
	f.s.SetStalled(true, f.now)
	f.now = f.now.Add(10 * time.Second)
	f.s.RemoveHeartbeat("e1") // the bucket expiring entries while catching up
	for _, id := range []string{"e1", "e2"} {
		if v, _ := f.s.Node(id); v.State != "in_service" {
			t.Fatalf("%s is %q during a stall", id, v.State)
		}
	}
	f.beat("e2", 0) // heard during the stall
	f.s.SetStalled(false, time.Time{})
	if f.s.Stalled() {
		t.Fatal("still stalled")
	}
	// e1 keeps the age it had when the stall began (1 s): failed 2 s after the stall ends.
	f.now = f.now.Add(contract.HeartbeatTTL - 1500*time.Millisecond)
	if v, _ := f.s.Node("e1"); v.State != "in_service" {
		t.Fatalf("e1 failed %v after the stall ended, its heartbeat 1s old before it", contract.HeartbeatTTL-1500*time.Millisecond)
	}
	f.now = f.now.Add(time.Second)
	if v, _ := f.s.Node("e1"); v.State != "failed" {
		t.Fatalf("e1, silent since %v, is %q after the stall", f.now.Sub(start), v.State)
	}
	if v, _ := f.s.Node("e2"); v.State != "in_service" { // heard during the stall: counts as heard at its end
		t.Fatalf("e2 is %q", v.State)
	}
}

// TestHeartbeatRetiresArrivedAnswers: an answer's predicted session is dropped as soon as a
// heartbeat made after it shows the node's sessions grew (so a fast session is not counted twice
// for pendingGrace); one that has not arrived stays counted; a heartbeat made before the answer
// confirms nothing.
func TestHeartbeatRetiresArrivedAnswers(t *testing.T) {
	f := newFleet(t)
	f.add("edge-eu", "edge", "eu", 2)
	f.add("edge-us", "edge", "us", 10)
	beat := func(viewers int, made time.Time) {
		hb := contract.Heartbeat{V: 1, Node: "edge-eu", Time: made, Sessions: map[string]int{contract.SessionsWHEP: viewers},
			Streams: []contract.StreamLoad{{Name: "live/x", Viewers: viewers, Live: true}}}
		f.s.SetHeartbeat(hb, made)
	}
	pending := func() int {
		for _, v := range f.s.Nodes() {
			if v.ID == "edge-eu" {
				return v.Load.PendingSessions
			}
		}
		t.Fatal("edge-eu not in the state")
		return 0
	}
	if got := f.subscribe("live/x", "eu"); got != "edge-eu" {
		t.Fatalf("first viewer on %s", got)
	}
	before := f.now
	f.now = f.now.Add(100 * time.Millisecond)
	beat(0, before.Add(-time.Millisecond)) // made before the answer: shows nothing yet
	if got := pending(); got != 1 {
		t.Fatalf("pending %d after a heartbeat older than the answer, want 1", got)
	}
	beat(1, f.now) // the viewer arrived, 100 ms after its answer
	if got := pending(); got != 0 {
		t.Fatalf("pending %d after the heartbeat that shows the viewer, want 0 (not counted twice)", got)
	}
	if got := f.subscribe("live/x", "eu"); got != "edge-eu" {
		t.Errorf("second viewer on %s, want edge-eu (1 of 2 sessions used)", got)
	}
	f.now = f.now.Add(100 * time.Millisecond)
	beat(1, f.now) // the second has not arrived yet: still counted
	if got := pending(); got != 1 {
		t.Errorf("pending %d while the second viewer is on its way, want 1", got)
	}
	if got := f.subscribe("live/x", "eu"); got != "edge-us" {
		t.Errorf("third viewer on %s, want edge-us (edge-eu full: 1 connected + 1 on its way)", got)
	}
}
