// Package devcluster runs the nodes of `streamfleet dev` in one process: an origin, a relay that
// pulls from it and an edge that pulls from the relay (and from the origin if the relay is gone),
// all on 127.0.0.1 with one cluster secret.
package devcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/streamfleet/streamfleet/node"
)

// Cluster is the running dev cluster.
type Cluster struct {
	Origin, Relay, Edge *node.Node
}

// Secret returns a fresh random cluster secret.
func Secret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// tier is a relay or edge configuration made from the origin's: the same settings, every
// listener on a free port of 127.0.0.1, pulling from upstreams.
func tier(origin node.Config, id string, role node.Role, upstreams ...string) node.Config {
	c := origin
	c.ID, c.Role, c.Upstreams = id, role, upstreams
	c.HTTPAddr = "127.0.0.1:0"
	c.WebRTC.ICEUDPAddr = "127.0.0.1:0"
	if c.RTSP.Addr != "" {
		c.RTSP.Addr = "127.0.0.1:0"
	}
	if c.RTSP.UDP() {
		c.RTSP.UDPRTPAddr, c.RTSP.UDPRTCPAddr = "127.0.0.1:0", "127.0.0.1:0"
	}
	if c.SRT.Addr != "" {
		c.SRT.Addr = "127.0.0.1:0"
	}
	return c
}

// Start runs the origin from cfg (its RTSP must be enabled: the relay pulls over it), then the relay
// and the edge. cfg.ClusterSecret must be set.
func Start(ctx context.Context, cfg node.Config, log *slog.Logger) (*Cluster, error) {
	if cfg.RTSP.Addr == "" {
		return nil, errors.New("dev: the origin needs RTSP (--rtsp): the relay and the edge pull over it")
	}
	if cfg.ClusterSecret == "" {
		return nil, errors.New("dev: no cluster secret")
	}
	cfg.Role, cfg.Upstreams = node.RoleOrigin, nil
	c := &Cluster{}
	start := func(cfg node.Config) (*node.Node, error) {
		n, err := node.New(cfg, log)
		if err != nil {
			return nil, err
		}
		if err := n.Start(ctx); err != nil {
			_ = n.Close()
			return nil, fmt.Errorf("start %s: %w", cfg.ID, err)
		}
		return n, nil
	}
	var err error
	if c.Origin, err = start(cfg); err != nil {
		return nil, err
	}
	originRTSP := c.Origin.RTSPAddr().String()
	if c.Relay, err = start(tier(cfg, "dev-relay", node.RoleRelay, originRTSP)); err != nil {
		_ = c.Close()
		return nil, err
	}
	if c.Edge, err = start(tier(cfg, "dev-edge", node.RoleEdge, c.Relay.RTSPAddr().String(), originRTSP)); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// Err delivers an error if one of the nodes' HTTP servers stops on its own.
func (c *Cluster) Err() <-chan error {
	out := make(chan error, 3)
	for _, n := range []*node.Node{c.Origin, c.Relay, c.Edge} {
		go func() {
			if err, ok := <-n.Err(); ok && err != nil {
				out <- err
			}
		}()
	}
	return out
}

// Close closes the edge, the relay and the origin, in that order.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range []*node.Node{c.Edge, c.Relay, c.Origin} {
		if n != nil {
			errs = append(errs, n.Close())
		}
	}
	return errors.Join(errs...)
}
