// Package contract is the node ⇄ stream manager contract over NATS: the JetStream KV buckets and
// their keys, the messages stored in them, and the timings both sides rely on. Nodes write their
// record, heartbeats and stream routes; managers write node administration (draining) and leases.
// Every message carries a version field (V); a reader ignores messages of a version it does not
// know. Both sides import this package; it imports nothing of streamfleet's, so neither side needs
// the other.
package contract

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Version is the version of the messages this package describes.
const Version = 1

// The KV buckets. Each is a JetStream stream named KV_<bucket>; a key's subject is $KV.<bucket>.<key>.
const (
	// BucketNodes holds one NodeRecord per node, key NodeKey(id). Written by the node at start.
	BucketNodes = "streamfleet_nodes"
	// BucketHeartbeats holds each node's latest Heartbeat, key NodeKey(id). Its entries expire
	// HeartbeatTTL after they were written (the bucket's TTL, with limit markers so watchers see
	// the expiry), so a node that stops reporting disappears from it by itself.
	BucketHeartbeats = "streamfleet_heartbeats"
	// BucketRoutes holds one Route per stream a node carries, key RouteKey(stream, node).
	// The node puts it when the stream starts there and deletes it when it stops.
	BucketRoutes = "streamfleet_routes"
	// BucketConfig holds cluster configuration written by managers: NodeAdmin under
	// NodeAdminKey(id) (draining).
	BucketConfig = "streamfleet_config"
	// BucketLeases holds leases: the leader lease under LeaderKey and one ManagerRecord per live
	// manager under ManagerKey(id). Entries expire LeaseTTL after they were written.
	BucketLeases = "streamfleet_leases"
)

// Timings.
const (
	// HeartbeatInterval is how often a node reports its load.
	HeartbeatInterval = time.Second
	// HeartbeatTTL is how long a heartbeat lives: a node whose last heartbeat is older than this
	// is failed and leaves every lookup.
	HeartbeatTTL = 3 * time.Second
	// LeaseTTL is how long a lease lives without renewal.
	LeaseTTL = 5 * time.Second
	// LeaseRenewInterval is how often a holder renews its lease.
	LeaseRenewInterval = time.Second
	// MarkerTTL is how long a bucket keeps the markers of expired keys (for watchers).
	MarkerTTL = time.Minute
)

// Bucket describes one KV bucket, for whoever creates it (the managers).
type Bucket struct {
	Name    string
	TTL     time.Duration // 0: entries never expire
	History uint8
}

// Buckets lists every bucket of the contract.
var Buckets = []Bucket{
	{Name: BucketNodes, History: 1},
	{Name: BucketHeartbeats, TTL: HeartbeatTTL, History: 1},
	{Name: BucketRoutes, History: 1},
	{Name: BucketConfig, History: 1},
	{Name: BucketLeases, TTL: LeaseTTL, History: 1},
}

// Roles, as in a node's --role.
const (
	RoleOrigin     = "origin"
	RoleRelay      = "relay"
	RoleEdge       = "edge"
	RoleTranscoder = "transcoder"
)

// Protocols, as counted in Heartbeat.Sessions and asked for in a subscribe lookup.
const (
	SessionsWHIP        = "whip"
	SessionsWHEP        = "whep"
	SessionsSRTPublish  = "srt_publish"
	SessionsSRTRead     = "srt_read"
	SessionsRTSPPublish = "rtsp_publish"
	SessionsRTSPRead    = "rtsp_read"
)

// NodeURLs are the addresses clients use to reach a node. Empty: the node does not serve it.
type NodeURLs struct {
	// HTTP is the base URL of the node's HTTP server: WHIP at HTTP+"/whip/{stream}", WHEP at
	// HTTP+"/whep/{stream}", LL-HLS at HTTP+"/hls/{stream}/index.m3u8".
	HTTP string `json:"http"`
	// SRT is the host:port of the node's SRT listener.
	SRT string `json:"srt,omitempty"`
	// RTSP is the host:port of the node's RTSP listener (also the node-to-node transport).
	RTSP string `json:"rtsp,omitempty"`
}

// Capacity is what a node declares it can carry. Zero fields mean "no limit".
type Capacity struct {
	// Sessions is the most viewer and publisher sessions, over every protocol.
	Sessions int `json:"sessions,omitempty"`
	// BitrateOut is the most outgoing bitrate, in bits per second.
	BitrateOut int64 `json:"bitrate_out,omitempty"`
}

// NodeRecord describes a node. Key NodeKey(ID) in BucketNodes.
type NodeRecord struct {
	V        int       `json:"v"`
	ID       string    `json:"id"`
	Role     string    `json:"role"`
	Region   string    `json:"region,omitempty"`
	Cloud    string    `json:"cloud,omitempty"`
	URLs     NodeURLs  `json:"urls"`
	Capacity Capacity  `json:"capacity"`
	Started  time.Time `json:"started"`
	// Software is the node's build, for operators.
	Software string `json:"software,omitempty"`
}

// StreamLoad is one stream a node carries, as reported in its heartbeat.
type StreamLoad struct {
	Name string `json:"name"`
	// Viewers is the number of sessions reading the stream on the node (other nodes pulling it
	// included).
	Viewers int `json:"viewers"`
	// Live is true while a publisher (or an upstream pull) feeds the stream.
	Live bool `json:"live"`
	// BitrateIn is the stream's incoming bitrate, in bits per second.
	BitrateIn int64 `json:"bitrate_in,omitempty"`
}

// Heartbeat is a node's load, written every HeartbeatInterval. Key NodeKey(Node) in
// BucketHeartbeats.
type Heartbeat struct {
	V    int       `json:"v"`
	Node string    `json:"node"`
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Sessions counts open sessions per protocol (the Sessions* names).
	Sessions map[string]int `json:"sessions"`
	// BitrateIn and BitrateOut are the node's media bitrates, in bits per second.
	BitrateIn  int64 `json:"bitrate_in"`
	BitrateOut int64 `json:"bitrate_out"`
	// CPU is the node process's CPU use as a fraction of the whole machine (0–1).
	CPU float64 `json:"cpu"`
	// Draining is true once the node has learned it is draining: it refuses new sessions.
	Draining bool         `json:"draining,omitempty"`
	Streams  []StreamLoad `json:"streams"`
}

// TotalSessions is the sum of Sessions.
func (h *Heartbeat) TotalSessions() int {
	n := 0
	for _, c := range h.Sessions {
		n += c
	}
	return n
}

// Route says that a node carries a stream. Key RouteKey(Stream, Node) in BucketRoutes.
type Route struct {
	V      int    `json:"v"`
	Stream string `json:"stream"`
	Node   string `json:"node"`
	Role   string `json:"role"`
	// Ingest is true where the stream is published (an origin), false where it is pulled.
	Ingest bool `json:"ingest"`
	// Upstream is the node it is pulled from, if known.
	Upstream string    `json:"upstream,omitempty"`
	Started  time.Time `json:"started"`
}

// NodeAdmin is what managers decide about a node. Key NodeAdminKey(Node) in BucketConfig.
type NodeAdmin struct {
	V        int       `json:"v"`
	Node     string    `json:"node"`
	Draining bool      `json:"draining"`
	Changed  time.Time `json:"changed"`
	// By is the manager that made the change.
	By string `json:"by,omitempty"`
}

// Lease is the leader lease. Key LeaderKey in BucketLeases, created with compare-and-set
// (create only if absent) and renewed by updates at the last revision.
type Lease struct {
	V        int       `json:"v"`
	Holder   string    `json:"holder"`
	Acquired time.Time `json:"acquired"`
	Renewed  time.Time `json:"renewed"`
}

// ManagerRecord announces a live manager. Key ManagerKey(ID) in BucketLeases.
type ManagerRecord struct {
	V       int       `json:"v"`
	ID      string    `json:"id"`
	API     string    `json:"api,omitempty"`
	Started time.Time `json:"started"`
}

// LeaderKey is the leader lease's key in BucketLeases.
const LeaderKey = "leader"

// ProbePrefix starts the keys managers write to the heartbeats bucket to watch their own writes
// come back (ProbeKey): while a manager's probe does not, the bucket's stream is stalled (a NATS
// server died and its leader is being re-elected) and no node is failed for a missing heartbeat.
// Node ids cannot start with it ("_" is allowed in ids, so "_probe." with its dot is not).
const ProbePrefix = "_probe."

// ProbeKey is the heartbeats-bucket key of a manager's probe.
func ProbeKey(managerID string) string { return ProbePrefix + managerID }

// ErrInvalidKey is wrapped by errors about ids and keys that cannot be KV keys.
var ErrInvalidKey = errors.New("invalid key")

// MaxIDLength bounds node and manager ids.
const MaxIDLength = 64

// CheckID checks that id can name a node or a manager: 1–64 characters of [A-Za-z0-9_-], so it
// is a single KV key token.
func CheckID(id string) error {
	if id == "" || len(id) > MaxIDLength {
		return fmt.Errorf("%w: id must have 1 to %d characters", ErrInvalidKey, MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: character %q in id %q (use A-Z a-z 0-9 _ -)", ErrInvalidKey, c, id)
		}
	}
	return nil
}

// NodeKey is a node's key in BucketNodes and BucketHeartbeats.
func NodeKey(id string) string { return id }

// NodeAdminKey is a node's key in BucketConfig.
func NodeAdminKey(id string) string { return "node." + id }

// ManagerKey is a manager's key in BucketLeases.
func ManagerKey(id string) string { return "manager." + id }

// StreamKey encodes a stream name as one KV key token (base64url without padding: stream names
// hold '/' and '.', which KV keys treat as separators).
func StreamKey(stream string) string { return base64.RawURLEncoding.EncodeToString([]byte(stream)) }

// RouteKey is the key of a node's route for a stream in BucketRoutes: StreamKey(stream)+"."+node.
func RouteKey(stream, node string) string { return StreamKey(stream) + "." + node }

// ParseRouteKey splits a RouteKey into the stream name and the node id.
func ParseRouteKey(key string) (stream, node string, err error) {
	enc, node, ok := strings.Cut(key, ".")
	if !ok {
		return "", "", fmt.Errorf("%w: route key %q has no node", ErrInvalidKey, key)
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(b) == 0 {
		return "", "", fmt.Errorf("%w: route key %q: stream is not base64url", ErrInvalidKey, key)
	}
	if err := CheckID(node); err != nil {
		return "", "", err
	}
	return string(b), node, nil
}
