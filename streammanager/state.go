package streammanager

import (
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/streamfleet/streamfleet/internal/contract"
)

// defaultStreamBitrate is the predicted bitrate of one viewer of a stream whose bitrate no node
// has reported yet.
const defaultStreamBitrate = 2_500_000

// pendingCarryTTL is how long a node counts as carrying a stream after a viewer was sent there,
// before its heartbeat or routes confirm it (the viewer connects, the node pulls).
const pendingCarryTTL = 15 * time.Second

// pendingGrace is how long after an answer a heartbeat must have been made to be trusted to
// show its session: the client still has to reach the node, which may first pull the stream.
// Until then the answer's predicted cost stays on the node, unless a heartbeat made after the
// answer shows sessions arrived: the node's sessions grew since its previous heartbeat (one
// answer retired per session, oldest first). The predicted load is added to those sessions, so
// this is what keeps a fast session from being counted twice, while a slow one is still counted
// once. (Another manager's joins retire this one's answers as well: for at most a heartbeat, the
// node looks as loaded as its sessions say.)
const pendingGrace = time.Second

// nearEqual is the utilization difference below which nodes are a random choice, so that
// several managers answering at once do not herd onto one node.
const nearEqual = 0.02

// State is a manager's in-memory copy of the KV buckets, with the predicted load of the answers
// it gave since each node's last heartbeat. It answers lookups without a round trip.
//
// One mutex guards everything; it is never held while calling out.
type State struct {
	failAfter time.Duration
	now       func() time.Time

	mu sync.Mutex
	// stalledAt, when set, is since when the heartbeats are not seen to flow (the manager's own
	// probe did not come back): failure detection runs on a clock frozen there. resumedAt is when
	// the last stall ended: for failAfter after it, expiry markers of heartbeats are not trusted.
	stalledAt, resumedAt time.Time

	nodes   map[string]*nodeEntry
	streams map[string]*streamEntry
	rng     *rand.Rand
}

// nodeEntry is what the state knows about one node.
type nodeEntry struct {
	id       string
	rec      contract.NodeRecord
	hasRec   bool
	hb       contract.Heartbeat
	hbAt     time.Time // when the heartbeat was written; zero: none
	sessions int       // hb.TotalSessions()
	streams  map[string]contract.StreamLoad
	draining bool // the managers' decision (BucketConfig)
	// pending are the answers sent to this node since its last heartbeat.
	pending        []assignment
	pendingBitrate int64                // sum of pending bitrates
	pendingCarry   map[string]time.Time // stream → last answer
	failedReported bool
}

// assignment is one answer's predicted cost.
type assignment struct {
	at      time.Time
	bitrate int64
}

// streamEntry is one stream of the routing table.
type streamEntry struct {
	routes map[string]contract.Route // by node id
}

// NewState returns an empty state; a node whose last heartbeat is older than failAfter is failed.
func NewState(failAfter time.Duration) *State {
	return &State{
		failAfter: failAfter,
		now:       time.Now,
		nodes:     map[string]*nodeEntry{},
		streams:   map[string]*streamEntry{},
		rng:       rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
}

func (s *State) node(id string) *nodeEntry {
	n := s.nodes[id]
	if n == nil {
		n = &nodeEntry{id: id, pendingCarry: map[string]time.Time{}}
		s.nodes[id] = n
	}
	return n
}

// SetNode stores a node record.
func (s *State) SetNode(rec contract.NodeRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.node(rec.ID)
	n.rec, n.hasRec = rec, true
}

// RemoveNode forgets a node record.
func (s *State) RemoveNode(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[id]; n != nil {
		n.hasRec = false
		s.gc(n)
	}
}

// SetHeartbeat stores a node's heartbeat, written at at. It replaces the predicted load of
// every answer given at least pendingGrace before the heartbeat was made, and of as many later
// answers (given before it was made) as sessions arrived since the previous one.
func (s *State) SetHeartbeat(hb contract.Heartbeat, at time.Time) {
	streams := make(map[string]contract.StreamLoad, len(hb.Streams))
	for _, st := range hb.Streams {
		streams[st.Name] = st
	}
	total := hb.TotalSessions()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.node(hb.Node)
	// The sessions that arrived since the previous heartbeat (more joined than left).
	arrived := total - n.sessions
	kept := n.pending[:0]
	for _, a := range n.pending {
		confirmed := !a.at.Add(pendingGrace).After(hb.Time)
		if !confirmed && a.at.Before(hb.Time) && arrived > 0 {
			arrived--
			confirmed = true
		}
		if confirmed {
			n.pendingBitrate -= a.bitrate
			continue
		}
		kept = append(kept, a)
	}
	n.pending = kept
	n.hb, n.hbAt, n.streams, n.sessions, n.failedReported = hb, at, streams, total, false
}

// SetStalled records whether the heartbeats flow: stalled since since, or not (resumed at now).
// A stall freezes failure detection at its start; when it ends, every heartbeat's age is shifted
// by the stall's length, so a node that died meanwhile is failed failAfter later, and a live one
// has failAfter to be heard again (at most: one heard during the stall counts as heard now).
func (s *State) SetStalled(stalled bool, since time.Time) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case stalled && s.stalledAt.IsZero():
		s.stalledAt = since
	case !stalled && !s.stalledAt.IsZero():
		d := now.Sub(s.stalledAt)
		for _, n := range s.nodes {
			if !n.hbAt.IsZero() {
				// never in the future: one heard during the stall counts as heard now
				if n.hbAt = n.hbAt.Add(d); n.hbAt.After(now) {
					n.hbAt = now
				}
			}
		}
		s.stalledAt, s.resumedAt = time.Time{}, now
	}
}

// Stalled reports whether failure detection is frozen by a stall.
func (s *State) Stalled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.stalledAt.IsZero()
}

// RemoveHeartbeat forgets a node's heartbeat (it expired, or the node left). During a stall and
// for failAfter after one, expiries are the bucket catching up, not news: they are ignored, and
// a dead node is failed by the age of its last heartbeat.
func (s *State) RemoveHeartbeat(id string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stalledAt.IsZero() || (!s.resumedAt.IsZero() && now.Sub(s.resumedAt) < s.failAfter) {
		return
	}
	if n := s.nodes[id]; n != nil {
		n.hbAt = time.Time{}
		n.streams = nil
		n.pending, n.pendingBitrate = nil, 0
		s.gc(n)
	}
}

// SetDraining stores the managers' draining decision for a node.
func (s *State) SetDraining(id string, draining bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.node(id).draining = draining
}

// SetRoute stores that a node carries a stream.
func (s *State) SetRoute(rt contract.Route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.streams[rt.Stream]
	if e == nil {
		e = &streamEntry{routes: map[string]contract.Route{}}
		s.streams[rt.Stream] = e
	}
	e.routes[rt.Node] = rt
}

// RemoveRoute forgets a node's route for a stream.
func (s *State) RemoveRoute(stream, node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.streams[stream]; e != nil {
		delete(e.routes, node)
		if len(e.routes) == 0 {
			delete(s.streams, stream)
		}
	}
}

// gc drops an entry that has nothing left. The caller holds s.mu.
func (s *State) gc(n *nodeEntry) {
	if !n.hasRec && n.hbAt.IsZero() && !n.draining {
		delete(s.nodes, n.id)
	}
}

// alive reports whether n is in service or draining: registered and heartbeating. The caller
// holds s.mu.
func (s *State) alive(n *nodeEntry, now time.Time) bool {
	if !s.stalledAt.IsZero() && now.After(s.stalledAt) {
		now = s.stalledAt
	}
	return n.hasRec && !n.hbAt.IsZero() && now.Sub(n.hbAt) < s.failAfter
}

// nodeState names a node's lifecycle state.
func (s *State) nodeState(n *nodeEntry, now time.Time) string {
	switch {
	case !s.alive(n, now):
		return "failed"
	case n.draining || n.hb.Draining:
		return "draining"
	}
	return "in_service"
}

// load is a node's sessions and outgoing bitrate, with the predicted cost of answers not yet
// confirmed by a heartbeat.
func (n *nodeEntry) load() (sessions int, bitrate int64) {
	return n.sessions + len(n.pending), n.hb.BitrateOut + n.pendingBitrate
}

// room reports whether n can take one more session costing bitrate, and its utilization after.
func (n *nodeEntry) room(bitrate int64) (ok bool, util float64) {
	sessions, out := n.load()
	c := n.rec.Capacity
	sessions++
	out += bitrate
	if c.Sessions > 0 {
		if sessions > c.Sessions {
			return false, 1
		}
		util = float64(sessions) / float64(c.Sessions)
	} else {
		util = float64(sessions) / 1e6
	}
	if c.BitrateOut > 0 {
		if out > c.BitrateOut {
			return false, 1
		}
		util = max(util, float64(out)/float64(c.BitrateOut))
	}
	return true, util
}

// carries reports whether n carries stream, or was sent a viewer of it recently.
func (s *State) carries(n *nodeEntry, stream string, now time.Time) bool {
	if _, ok := n.streams[stream]; ok {
		return true
	}
	if e := s.streams[stream]; e != nil {
		if _, ok := e.routes[n.id]; ok {
			return true
		}
	}
	t, ok := n.pendingCarry[stream]
	return ok && now.Sub(t) < pendingCarryTTL
}

// streamBitrate is the predicted bitrate of one viewer of stream. The caller holds s.mu.
func (s *State) streamBitrate(stream string) int64 {
	var best int64
	if e := s.streams[stream]; e != nil {
		for id := range e.routes {
			if n := s.nodes[id]; n != nil {
				best = max(best, n.streams[stream].BitrateIn)
			}
		}
	}
	if best == 0 {
		return defaultStreamBitrate
	}
	return best
}

// Request is a lookup: which node should a publisher or viewer of Stream use.
type Request struct {
	Stream string
	// Region is the client's region; empty: any.
	Region string
	// Protocol is what the client speaks (subscribe: webrtc, srt, rtsp or hls; publish: webrtc,
	// srt or rtsp). Empty: webrtc.
	Protocol string
}

// Choice is a lookup's answer.
type Choice struct {
	Node        contract.NodeRecord
	RegionMatch bool
}

// serves reports whether a node has the URL a protocol needs.
func serves(rec *contract.NodeRecord, protocol string) bool {
	switch protocol {
	case "srt":
		return rec.URLs.SRT != ""
	case "rtsp":
		return rec.URLs.RTSP != ""
	}
	return rec.URLs.HTTP != ""
}

type candidate struct {
	n    *nodeEntry
	util float64
}

// Subscribe chooses the node a viewer of req.Stream should play from: edges (or, in a cluster
// without edges, origins), region first, then nodes that already carry the stream, then spare
// capacity. The chosen node's load rises at once by one viewer of the stream.
func (s *State) Subscribe(req Request) (Choice, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	bitrate := s.streamBitrate(req.Stream)
	role := contract.RoleEdge
	if !s.anyAlive(contract.RoleEdge, now) {
		role = contract.RoleOrigin
	}
	c, err := s.choose(req, role, bitrate, true, now)
	if err != nil {
		return Choice{}, err
	}
	c.n.pending = append(c.n.pending, assignment{at: now, bitrate: bitrate})
	c.n.pendingBitrate += bitrate
	c.n.pendingCarry[req.Stream] = now
	return Choice{Node: c.n.rec, RegionMatch: req.Region == "" || c.n.rec.Region == req.Region}, nil
}

// Publish chooses the origin a publisher of req.Stream should send to: the origin already
// carrying the stream if there is one (a returning publisher finds its stream), else region
// first, then spare capacity.
func (s *State) Publish(req Request) (Choice, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.streams[req.Stream]; e != nil {
		for id, rt := range e.routes {
			n := s.nodes[id]
			if rt.Ingest && n != nil && s.alive(n, now) && !n.draining && !n.hb.Draining && serves(&n.rec, req.Protocol) {
				return Choice{Node: n.rec, RegionMatch: req.Region == "" || n.rec.Region == req.Region}, nil
			}
		}
	}
	c, err := s.choose(req, contract.RoleOrigin, 0, false, now)
	if err != nil {
		return Choice{}, err
	}
	c.n.pending = append(c.n.pending, assignment{at: now})
	c.n.pendingCarry[req.Stream] = now
	return Choice{Node: c.n.rec, RegionMatch: req.Region == "" || c.n.rec.Region == req.Region}, nil
}

func (s *State) anyAlive(role string, now time.Time) bool {
	for _, n := range s.nodes {
		if n.rec.Role == role && s.alive(n, now) && !n.draining && !n.hb.Draining {
			return true
		}
	}
	return false
}

// choose runs the balancing rules over the in-service nodes of role. The caller holds s.mu.
func (s *State) choose(req Request, role string, bitrate int64, preferCarrying bool, now time.Time) (candidate, error) {
	var eligible, inRegion []candidate
	anyNode := false
	for _, n := range s.nodes {
		if n.rec.Role != role || !s.alive(n, now) || n.draining || n.hb.Draining || !serves(&n.rec, req.Protocol) {
			continue
		}
		anyNode = true
		ok, util := n.room(bitrate)
		if !ok {
			continue
		}
		c := candidate{n: n, util: util}
		eligible = append(eligible, c)
		if req.Region != "" && n.rec.Region == req.Region {
			inRegion = append(inRegion, c)
		}
	}
	if !anyNode {
		return candidate{}, ErrNoNode
	}
	if len(eligible) == 0 {
		return candidate{}, ErrNoCapacity
	}
	pool := eligible
	if len(inRegion) > 0 {
		pool = inRegion
	}
	if preferCarrying {
		var carrying []candidate
		for _, c := range pool {
			if s.carries(c.n, req.Stream, now) {
				carrying = append(carrying, c)
			}
		}
		if len(carrying) > 0 {
			pool = carrying
		}
	}
	least := pool[0].util
	for _, c := range pool[1:] {
		least = min(least, c.util)
	}
	near := pool[:0:0]
	for _, c := range pool {
		if c.util <= least+nearEqual {
			near = append(near, c)
		}
	}
	return near[s.rng.IntN(len(near))], nil
}

// NodeView is a node as the API shows it.
type NodeView struct {
	ID       string            `json:"id"`
	Role     string            `json:"role"`
	Region   string            `json:"region,omitempty"`
	Cloud    string            `json:"cloud,omitempty"`
	State    string            `json:"state"`
	URLs     contract.NodeURLs `json:"urls"`
	Capacity contract.Capacity `json:"capacity"`
	Load     LoadView          `json:"load"`
	Started  time.Time         `json:"started"`
	// LastHeartbeat is when the node last reported (zero: never, or expired).
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
}

// LoadView is a node's load.
type LoadView struct {
	Sessions           int            `json:"sessions"`
	SessionsByProtocol map[string]int `json:"sessions_by_protocol"`
	// PendingSessions are answers sent to the node that its heartbeats do not show yet.
	PendingSessions int     `json:"pending_sessions"`
	BitrateIn       int64   `json:"bitrate_in"`
	BitrateOut      int64   `json:"bitrate_out"`
	CPU             float64 `json:"cpu"`
	Streams         int     `json:"streams"`
}

func (s *State) view(n *nodeEntry, now time.Time) NodeView {
	v := NodeView{ID: n.id, Role: n.rec.Role, Region: n.rec.Region, Cloud: n.rec.Cloud, State: s.nodeState(n, now),
		URLs: n.rec.URLs, Capacity: n.rec.Capacity, Started: n.rec.Started}
	if s.alive(n, now) {
		t := n.hb.Time
		v.LastHeartbeat = &t
		v.Load = LoadView{Sessions: n.sessions, SessionsByProtocol: n.hb.Sessions, PendingSessions: len(n.pending),
			BitrateIn: n.hb.BitrateIn, BitrateOut: n.hb.BitrateOut, CPU: n.hb.CPU, Streams: len(n.streams)}
	}
	if v.Load.SessionsByProtocol == nil {
		v.Load.SessionsByProtocol = map[string]int{}
	}
	return v
}

// Nodes lists the registered nodes, by id.
func (s *State) Nodes() []NodeView {
	now := s.now()
	s.mu.Lock()
	out := make([]NodeView, 0, len(s.nodes))
	for _, n := range s.nodes {
		if n.hasRec {
			out = append(out, s.view(n, now))
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Node returns one node.
func (s *State) Node(id string) (NodeView, bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[id]
	if n == nil || !n.hasRec {
		return NodeView{}, false
	}
	return s.view(n, now), true
}

// StreamView is a stream as the API shows it: where it is published and which nodes carry it.
type StreamView struct {
	Name    string `json:"name"`
	Origin  string `json:"origin,omitempty"`
	Live    bool   `json:"live"`
	Viewers int    `json:"viewers"`
	// BitrateIn is the stream's bitrate at its origin, in bits per second.
	BitrateIn int64            `json:"bitrate_in"`
	Relays    []string         `json:"relays"`
	Edges     []string         `json:"edges"`
	Nodes     []StreamNodeView `json:"nodes"`
	Started   time.Time        `json:"started"`
}

// StreamNodeView is one node carrying a stream.
type StreamNodeView struct {
	Node    string `json:"node"`
	Role    string `json:"role"`
	Viewers int    `json:"viewers"`
	Ingest  bool   `json:"ingest"`
}

func (s *State) streamView(name string, e *streamEntry, now time.Time) (StreamView, bool) {
	v := StreamView{Name: name, Relays: []string{}, Edges: []string{}, Nodes: []StreamNodeView{}}
	for id, rt := range e.routes {
		n := s.nodes[id]
		if n == nil || !s.alive(n, now) {
			continue
		}
		load := n.streams[name]
		if v.Started.IsZero() || rt.Started.Before(v.Started) {
			v.Started = rt.Started
		}
		v.Nodes = append(v.Nodes, StreamNodeView{Node: id, Role: rt.Role, Viewers: load.Viewers, Ingest: rt.Ingest})
		switch {
		case rt.Ingest:
			v.Origin, v.Live, v.BitrateIn = id, v.Live || load.Live, load.BitrateIn
		case rt.Role == contract.RoleRelay:
			v.Relays = append(v.Relays, id)
		default:
			v.Edges = append(v.Edges, id)
		}
		if rt.Role != contract.RoleRelay {
			v.Viewers += load.Viewers
		}
	}
	if len(v.Nodes) == 0 {
		return v, false
	}
	sort.Strings(v.Relays)
	sort.Strings(v.Edges)
	sort.Slice(v.Nodes, func(i, j int) bool { return v.Nodes[i].Node < v.Nodes[j].Node })
	return v, true
}

// Streams lists the streams carried by live nodes, by name.
func (s *State) Streams() []StreamView {
	now := s.now()
	s.mu.Lock()
	out := make([]StreamView, 0, len(s.streams))
	for name, e := range s.streams {
		if v, ok := s.streamView(name, e, now); ok {
			out = append(out, v)
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Stream returns one stream.
func (s *State) Stream(name string) (StreamView, bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.streams[name]
	if e == nil {
		return StreamView{}, false
	}
	return s.streamView(name, e, now)
}

// failedNodes returns, once per failure, the nodes that just became failed, and the routes
// still held by every failed node (for the leader to withdraw).
func (s *State) failedNodes() (newlyFailed []string, staleRoutes [][2]string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.nodes {
		if !n.hasRec || s.alive(n, now) {
			continue
		}
		if !n.failedReported {
			n.failedReported = true
			newlyFailed = append(newlyFailed, n.id)
		}
		for name, e := range s.streams {
			if _, ok := e.routes[n.id]; ok {
				staleRoutes = append(staleRoutes, [2]string{name, n.id})
			}
		}
	}
	// forget stale predictions
	for _, n := range s.nodes {
		for name, t := range n.pendingCarry {
			if now.Sub(t) >= pendingCarryTTL {
				delete(n.pendingCarry, name)
			}
		}
	}
	return newlyFailed, staleRoutes
}

// allRoutes lists every (stream, node) route.
func (s *State) allRoutes() [][2]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][2]string
	for name, e := range s.streams {
		for id := range e.routes {
			out = append(out, [2]string{name, id})
		}
	}
	return out
}
