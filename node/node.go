// Package node is one streamfleet media node: the stream hub and the protocol front ends around
// it, served over HTTP (pages, WHIP, WHEP, health, metrics) and UDP (ICE).
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/streamfleet/streamfleet/node/agent"
	"github.com/streamfleet/streamfleet/node/auth"
	"github.com/streamfleet/streamfleet/node/cascade"
	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/rtspserver"
	"github.com/streamfleet/streamfleet/node/srtserver"
	"github.com/streamfleet/streamfleet/node/upstream"
	"github.com/streamfleet/streamfleet/node/webrtcserver"
	"github.com/streamfleet/streamfleet/transcode"
	"github.com/streamfleet/streamfleet/web"
)

// Node is a running media node.
type Node struct {
	cfg Config
	log *slog.Logger

	hub        *hub.Hub
	webrtc     *webrtcserver.Server
	transcoder *transcode.Supervisor
	auth       *auth.Authorizer // asked by every protocol server
	rtsp       *rtspserver.Server
	srt        *srtserver.Server
	puller     *cascade.Puller    // nil on an origin, or without upstreams
	resolver   *upstream.Resolver // a relay's or edge's upstreams from the routing table; nil without NATS
	agent      *agent.Agent       // nil without NATS
	drain      *drainFlag         // tells SRT and RTSP whether the agent drains the node
	mux        *http.ServeMux

	listener net.Listener
	server   *http.Server
	serveErr chan error
	started  time.Time

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and builds the node; nothing listens until Start, except the ICE UDP port.
func New(cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.ID)
	tc, err := transcode.New(cfg.Transcode, log)
	if err != nil {
		return nil, err
	}
	authz, err := auth.New(cfg.authConfig(), log)
	if err != nil {
		return nil, err
	}
	h := hub.New(hub.Config{Grace: cfg.Grace, OnDerivedDemand: tc.Demand}, log)
	webrtcCfg := cfg.WebRTC
	webrtcCfg.Auth = authz
	w, err := webrtcserver.New(webrtcCfg, h, log)
	if err != nil {
		return nil, err
	}
	drain := &drainFlag{}
	rtspCfg := cfg.RTSP
	rtspCfg.Auth = authz
	rtspCfg.Draining = drain.Draining
	rtspCfg.ClusterSecret = cfg.ClusterSecret
	rs, err := rtspserver.New(rtspCfg, h, log)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, hub: h, webrtc: w, transcoder: tc, rtsp: rs, auth: authz, mux: http.NewServeMux(), serveErr: make(chan error, 1)}
	srtCfg := cfg.SRT
	srtCfg.Auth = authz
	srtCfg.Draining = drain.Draining
	n.drain = drain
	ss, err := srtserver.New(srtCfg, h, log)
	if err != nil {
		return nil, err
	}
	n.srt = ss
	if cfg.NATS.Enabled() && (cfg.Role == RoleRelay || cfg.Role == RoleEdge) {
		// upstreams from the managers' routing table; --upstream, if any, is the fallback
		if n.resolver, err = upstream.New(upstream.Config{Self: cfg.ID, Role: string(cfg.Role), Region: cfg.NATS.Region}, log); err != nil {
			return nil, err
		}
	}
	if len(cfg.Upstreams) > 0 || n.resolver != nil {
		cc := cfg.cascadeConfig()
		if n.resolver != nil {
			cc.Resolver = n.resolver
		}
		if n.puller, err = cascade.New(cc, h, log); err != nil {
			return nil, err
		}
		h.SetSource(n.puller)
	}
	w.Register(n.mux)
	reg := newRegistry(cfg.ID, cfg.Role, h, w)
	registerTranscodeMetrics(reg, cfg.ID, cfg.Role, tc)
	registerRTSPMetrics(reg, cfg.ID, cfg.Role, rs)
	registerSRTMetrics(reg, cfg.ID, cfg.Role, ss)
	registerAuthMetrics(reg, cfg.ID, cfg.Role, authz)
	registerCascadeMetrics(reg, cfg.ID, cfg.Role, n.puller)
	registerResolverMetrics(reg, cfg.ID, cfg.Role, n.resolver)
	n.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	n.mux.HandleFunc("GET /healthz", n.handleHealth)
	if cfg.Pprof {
		n.mux.HandleFunc("/debug/pprof/", pprof.Index)
		n.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		n.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		n.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	n.mux.Handle("/", web.Handler())
	return n, nil
}

// Start listens on the HTTP address and serves in the background.
func (n *Node) Start(ctx context.Context) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", n.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen http %s: %w", n.cfg.HTTPAddr, err)
	}
	if err := n.rtsp.Start(ctx); err != nil {
		ln.Close()
		return err
	}
	if err := n.srt.Start(); err != nil {
		ln.Close()
		return err
	}
	n.listener = ln
	n.started = time.Now()
	n.server = &http.Server{
		Handler:           n.drainGate(n.mux),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second, // offers are small: a slow body is an attack
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	if err := n.startAgent(ctx); err != nil { // before serving: the drain gate reads n.agent
		return fmt.Errorf("start nats agent: %w", err)
	}
	if n.resolver != nil {
		if err := n.resolver.Start(n.agent.Conn()); err != nil {
			return err
		}
	}
	go func() {
		if err := n.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.serveErr <- err
		}
		close(n.serveErr)
	}()
	n.log.Info("node serving", "role", n.cfg.Role, "http", n.HTTPURL(), "ice_udp", n.webrtc.ICEUDPAddr().String())
	return nil
}

// HTTPURL is the base URL of the node's HTTP server, such as http://127.0.0.1:8080.
func (n *Node) HTTPURL() string {
	if n.listener == nil {
		return ""
	}
	return "http://" + n.listener.Addr().String()
}

// RTSPAddr is the TCP address RTSP listens on, or nil when RTSP is disabled or not started.
func (n *Node) RTSPAddr() net.Addr { return n.rtsp.Addr() }

// SRTAddr is the UDP address SRT listens on, or nil when SRT is disabled or not started.
func (n *Node) SRTAddr() net.Addr { return n.srt.Addr() }

// SRT is the node's SRT server.
func (n *Node) SRT() *srtserver.Server { return n.srt }

// RTSP is the node's RTSP server.
func (n *Node) RTSP() *rtspserver.Server { return n.rtsp }

// ICEUDPAddr is the UDP address every WebRTC session uses.
func (n *Node) ICEUDPAddr() net.Addr { return n.webrtc.ICEUDPAddr() }

// Handler is the node's HTTP handler, for serving it in-process.
func (n *Node) Handler() http.Handler { return n.mux }

// Resolver is the node's upstream resolver (relays and edges with NATS), or nil.
func (n *Node) Resolver() *upstream.Resolver { return n.resolver }

// Puller is the node's cascade puller, or nil on a node without upstreams.
func (n *Node) Puller() *cascade.Puller { return n.puller }

// Hub is the node's stream hub.
func (n *Node) Hub() *hub.Hub { return n.hub }

// WebRTC is the node's WHIP/WHEP server.
func (n *Node) WebRTC() *webrtcserver.Server { return n.webrtc }

// Err delivers an error if the HTTP server stops on its own.
func (n *Node) Err() <-chan error { return n.serveErr }

func (n *Node) handleHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"status":"ok","node":%q,"role":%q,"streams":%d,"uptime_seconds":%d}`+"\n",
		n.cfg.ID, n.cfg.Role, len(n.hub.Streams()), int(time.Since(n.started).Seconds()))
}

// Close stops accepting requests, ends every session and stream, and waits for the node's
// goroutines, within the configured shutdown timeout.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
		defer cancel()
		var errs []error
		if n.resolver != nil {
			n.resolver.Close() // its watches use the agent's connection
		}
		if n.agent != nil {
			_ = n.agent.Close() // leave the managers' lookups first
		}
		if n.server != nil {
			if err := n.server.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("shutdown http: %w", err))
			}
		}
		if err := n.srt.Close(); err != nil {
			errs = append(errs, err)
		}
		if n.puller != nil {
			n.puller.Close() // ends the pulled streams
		}
		n.hub.Close()
		if err := n.rtsp.Close(ctx); err != nil {
			errs = append(errs, err)
		}
		if err := n.webrtc.Close(ctx); err != nil {
			errs = append(errs, err)
		}
		n.transcoder.Close()
		n.auth.Close() // the sessions' invalidate events, sent as they closed
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}
