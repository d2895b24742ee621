// Package upstream finds where a relay or an edge pulls a stream from: a watched, in-memory copy
// of the stream managers' node records, heartbeats and routes (internal/contract), read by the
// node's cascade puller before every pull attempt (cascade.UpstreamResolver). No manager is on
// this path: the node reads the same KV buckets the managers watch.
//
// An edge pulls from a relay of its region (one carrying the stream first, then the one with
// the most spare capacity), then from any relay, then from the origin holding the stream; a relay
// pulls from the origin holding the stream. Failed (no fresh heartbeat) and draining nodes, nodes
// without an RTSP address, and the node itself are left out (a draining origin that holds the
// stream stays, last: it is where the stream is, and draining nodes keep serving node pulls).
//
// A stalled watch (a NATS server dying, JetStream electing a new leader) must not look like every
// node failing at once: the asking node's own heartbeat, written every second, is the probe. While
// it has not come back for stallAfter, liveness is judged at the moment it last did (for at most
// maxFreeze), as the stream managers do with their own probe.
package upstream

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamfleet/streamfleet/internal/contract"
	"github.com/streamfleet/streamfleet/node/hub"
)

// Query asks for the upstreams of one stream, for one node.
type Query struct {
	Stream string
	// Self is the asking node's id (never its own upstream).
	Self string
	// Role is the asking node's role: contract.RoleEdge or contract.RoleRelay.
	Role string
	// Region is the asking node's region; empty: no region preference.
	Region string
}

// Table is the copy of the routing table. It is safe for concurrent use; one mutex guards it and
// is never held while calling out.
type Table struct {
	failAfter time.Duration
	now       func() time.Time
	frozen    atomic.Uint64

	mu     sync.Mutex
	nodes  map[string]*nodeEntry
	routes map[string]map[string]contract.Route // stream → node id → route
}

type nodeEntry struct {
	rec     contract.NodeRecord
	hasRec  bool
	hb      contract.Heartbeat
	hbAt    time.Time // when the heartbeat was written; zero: none
	streams map[string]bool
}

// NewTable returns an empty table; a node whose last heartbeat is older than failAfter is failed.
func NewTable(failAfter time.Duration) *Table {
	return &Table{failAfter: failAfter, now: time.Now, nodes: map[string]*nodeEntry{}, routes: map[string]map[string]contract.Route{}}
}

func (t *Table) node(id string) *nodeEntry {
	n := t.nodes[id]
	if n == nil {
		n = &nodeEntry{}
		t.nodes[id] = n
	}
	return n
}

func (t *Table) gc(id string) {
	if n := t.nodes[id]; n != nil && !n.hasRec && n.hbAt.IsZero() {
		delete(t.nodes, id)
	}
}

// SetNode stores a node record.
func (t *Table) SetNode(rec contract.NodeRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.node(rec.ID)
	n.rec, n.hasRec = rec, true
}

// RemoveNode forgets a node record.
func (t *Table) RemoveNode(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nodes[id]; n != nil {
		n.hasRec = false
		t.gc(id)
	}
}

// SetHeartbeat stores a node's heartbeat, written at at.
func (t *Table) SetHeartbeat(hb contract.Heartbeat, at time.Time) {
	streams := make(map[string]bool, len(hb.Streams))
	for _, s := range hb.Streams {
		streams[s.Name] = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.node(hb.Node)
	n.hb, n.hbAt, n.streams = hb, at, streams
}

// RemoveHeartbeat forgets a node's heartbeat (it expired, or the node left): the node is failed.
func (t *Table) RemoveHeartbeat(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nodes[id]; n != nil {
		n.hbAt, n.streams = time.Time{}, nil
		t.gc(id)
	}
}

// SetRoute stores that a node carries a stream.
func (t *Table) SetRoute(rt contract.Route) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.routes[rt.Stream]
	if m == nil {
		m = map[string]contract.Route{}
		t.routes[rt.Stream] = m
	}
	m[rt.Node] = rt
}

// RemoveRoute forgets a node's route for a stream.
func (t *Table) RemoveRoute(stream, node string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.routes[stream]; m != nil {
		delete(m, node)
		if len(m) == 0 {
			delete(t.routes, stream)
		}
	}
}

// NodeIDs lists the nodes with a record, and routeKeys every (stream, node) route: for a resync
// after a re-watch.
func (t *Table) NodeIDs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.nodes))
	for id, n := range t.nodes {
		if n.hasRec {
			out = append(out, id)
		}
	}
	return out
}

func (t *Table) routeKeys() [][2]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out [][2]string
	for stream, m := range t.routes {
		for id := range m {
			out = append(out, [2]string{stream, id})
		}
	}
	return out
}

// ErrNoLiveUpstream is wrapped when nodes hold the stream but none can be pulled from now
// (failed, draining or without RTSP).
var ErrNoLiveUpstream = errors.New("no live upstream")

// candidate is one upstream with its sort keys.
type candidate struct {
	id       string
	rtsp     string
	carrying bool
	draining bool
	util     float64
}

// alive reports whether a node is registered and heard from within failAfter. The caller holds t.mu.
func (t *Table) alive(n *nodeEntry, now time.Time) bool {
	return n.hasRec && !n.hbAt.IsZero() && now.Sub(n.hbAt) < t.failAfter
}

const (
	// stallAfter: the asking node's own heartbeat this much older than its interval means the
	// heartbeats watch is not flowing.
	stallAfter = 2 * contract.HeartbeatInterval
	// maxFreeze bounds how long liveness stays judged at the stall's start.
	maxFreeze = 30 * time.Second
)

// judgedAt is the time liveness is judged at for the node self: now, or while the heartbeats
// watch has stalled, the moment self's own heartbeat was last on time. The caller holds t.mu.
func (t *Table) judgedAt(self string, now time.Time) time.Time {
	n := t.nodes[self]
	if n == nil || n.hbAt.IsZero() {
		return now
	}
	if age := now.Sub(n.hbAt); age <= stallAfter || age > maxFreeze {
		return now
	}
	t.frozen.Add(1)
	return n.hbAt.Add(stallAfter)
}

// FrozenLookups counts lookups answered while the heartbeats watch was stalled.
func (t *Table) FrozenLookups() uint64 { return t.frozen.Load() }

// util is a node's utilization: the larger of sessions and outgoing bitrate over capacity (a
// node without a capacity counts its sessions against a million).
func util(n *nodeEntry) float64 {
	c := n.rec.Capacity
	u := float64(n.hb.TotalSessions()) / 1e6
	if c.Sessions > 0 {
		u = float64(n.hb.TotalSessions()) / float64(c.Sessions)
	}
	if c.BitrateOut > 0 {
		u = max(u, float64(n.hb.BitrateOut)/float64(c.BitrateOut))
	}
	return u
}

// Upstreams returns the RTSP addresses (host:port) to pull q.Stream from, best first (see the
// package comment). None, with an error wrapping hub.ErrStreamNotFound, when no node has the
// stream (for a relay: no origin holds it); with ErrNoLiveUpstream when the nodes that could
// serve it are failed or draining. Roles other than relay and edge never pull: nil, nil.
func (t *Table) Upstreams(q Query) ([]string, error) {
	if q.Role != contract.RoleEdge && q.Role != contract.RoleRelay {
		return nil, nil
	}
	t.mu.Lock()
	now := t.judgedAt(q.Self, t.now())
	routes := t.routes[q.Stream]
	held := false // an origin (ingest route) holds the stream, alive or not
	var origins, relays []candidate
	for id, rt := range routes {
		if !rt.Ingest {
			continue
		}
		held = true
		n := t.nodes[id]
		if id == q.Self || n == nil || !t.alive(n, now) || n.rec.URLs.RTSP == "" {
			continue
		}
		origins = append(origins, candidate{id: id, rtsp: n.rec.URLs.RTSP, carrying: true,
			draining: n.hb.Draining, util: util(n)})
	}
	if q.Role == contract.RoleEdge {
		for id, n := range t.nodes {
			if id == q.Self || n.rec.Role != contract.RoleRelay || !t.alive(n, now) || n.hb.Draining || n.rec.URLs.RTSP == "" {
				continue
			}
			_, routed := routes[id]
			relays = append(relays, candidate{id: id, rtsp: n.rec.URLs.RTSP, carrying: routed || n.streams[q.Stream], util: util(n)})
		}
	}
	var regionOf map[string]string
	if q.Region != "" {
		regionOf = make(map[string]string, len(relays))
		for _, c := range relays {
			regionOf[c.id] = t.nodes[c.id].rec.Region
		}
	}
	routed := len(routes) > 0 // read under the lock: the watch changes the map
	t.mu.Unlock()

	if !held && (q.Role == contract.RoleRelay || !routed) {
		return nil, fmt.Errorf("%s: no node has it: %w", q.Stream, hub.ErrStreamNotFound)
	}
	byPreference := func(cs []candidate, tier func(candidate) int) {
		sort.Slice(cs, func(i, j int) bool {
			a, b := cs[i], cs[j]
			if ta, tb := tier(a), tier(b); ta != tb {
				return ta < tb
			}
			if a.util != b.util {
				return a.util < b.util
			}
			return a.id < b.id
		})
	}
	byPreference(relays, func(c candidate) int {
		tier := 0
		if regionOf != nil && regionOf[c.id] != q.Region {
			tier = 2
		}
		if !c.carrying {
			tier++
		}
		return tier
	})
	byPreference(origins, func(c candidate) int {
		if c.draining {
			return 1
		}
		return 0
	})
	out := make([]string, 0, len(relays)+len(origins))
	for _, c := range relays {
		out = append(out, c.rtsp)
	}
	for _, c := range origins {
		out = append(out, c.rtsp)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w (the nodes holding it are failed or draining)", q.Stream, ErrNoLiveUpstream)
	}
	return out, nil
}
