package node

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/streamfleet/streamfleet/node/agent"
	"github.com/streamfleet/streamfleet/node/auth"
	"github.com/streamfleet/streamfleet/node/cascade"
	"github.com/streamfleet/streamfleet/node/rtspserver"
	"github.com/streamfleet/streamfleet/node/srtserver"
	"github.com/streamfleet/streamfleet/node/webrtcserver"
	"github.com/streamfleet/streamfleet/transcode"
)

// Role is what a node does in the cluster.
type Role string

// Roles. Every role serves viewers too; a one-machine deployment is a single origin.
const (
	RoleOrigin     Role = "origin"
	RoleRelay      Role = "relay"
	RoleEdge       Role = "edge"
	RoleTranscoder Role = "transcoder"
)

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleOrigin, RoleRelay, RoleEdge, RoleTranscoder:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (want origin, relay, edge or transcoder)", s)
}

// Config is a node's configuration.
type Config struct {
	// ID names the node in logs and metrics.
	ID string
	// Role is the node's role.
	Role Role
	// HTTPAddr serves pages, WHIP, WHEP, /healthz and /metrics. Port 0 picks a free port.
	HTTPAddr string
	// WebRTC configures WHIP/WHEP, including the ICE UDP port.
	WebRTC webrtcserver.Config
	// RTSP configures RTSP publish and read (TCP, and UDP unicast); an empty Addr disables it.
	RTSP rtspserver.Config
	// SRT configures SRT publish and read (MPEG-TS); an empty Addr disables it.
	SRT srtserver.Config
	// Auth decides who may publish and play, on every protocol alike: static tokens, signed
	// tokens (JWT) verified with its keys, and/or the auth webhook. The static tokens default to
	// WebRTC.PublishToken and PlayToken.
	Auth auth.Config
	// Transcode configures the ffmpeg transcoders (AAC to Opus for WebRTC viewers).
	Transcode transcode.Config
	// Grace is how long a stream waits for its publisher to come back before it ends.
	Grace time.Duration
	// Upstreams, on a relay or an edge, are the nodes it pulls the streams it does not carry from
	// (rtsp://host:port or host:port), tried in order, the next on failure. An origin never pulls.
	Upstreams []string
	// ClusterSecret authenticates nodes to each other: pulls present it, and, when set, this node
	// serves all-layers pulls only to clients that present it. Never logged.
	ClusterSecret string
	// PullLinger is how long a pulled stream without readers is kept before the pull stops.
	PullLinger time.Duration
	// NATS connects the node to the stream managers (register, heartbeats, routes, draining); an
	// empty URL runs the node alone.
	NATS agent.Config
	// Pprof serves Go's profiler under /debug/pprof/ on the HTTP address. Keep it off on a node
	// reachable from outside.
	Pprof bool
	// ShutdownTimeout bounds Close.
	ShutdownTimeout time.Duration
}

// DefaultConfig returns an origin on :8080 with ICE on UDP :8189.
func DefaultConfig() Config {
	return Config{
		ID:              "node-1",
		Role:            RoleOrigin,
		HTTPAddr:        ":8080",
		WebRTC:          webrtcserver.DefaultConfig(),
		Transcode:       transcode.DefaultConfig(),
		RTSP:            rtspserver.DefaultConfig(),
		SRT:             srtserver.DefaultConfig(),
		Grace:           10 * time.Second,
		PullLinger:      cascade.DefaultLinger,
		ShutdownTimeout: 5 * time.Second,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("node id is empty"))
	}
	if _, err := ParseRole(string(c.Role)); err != nil {
		errs = append(errs, err)
	}
	if err := c.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := net.ResolveTCPAddr("tcp", c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http address %q: %w", c.HTTPAddr, err))
	}
	if c.Grace < 0 {
		errs = append(errs, errors.New("grace must not be negative"))
	}
	if len(c.Upstreams) > 0 {
		if c.Role == RoleOrigin {
			errs = append(errs, errors.New("an origin never pulls: --upstream is for relays and edges"))
		}
		if err := c.cascadeConfig().Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown timeout must be positive"))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.WebRTC.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Transcode.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.SRT.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.RTSP.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// cascadeConfig is the configuration of the node's puller.
func (c Config) cascadeConfig() cascade.Config {
	cc := cascade.DefaultConfig()
	cc.Upstreams = c.Upstreams
	cc.ClusterSecret = c.ClusterSecret
	cc.Linger = c.PullLinger
	return cc
}
