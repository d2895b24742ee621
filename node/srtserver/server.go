// Package srtserver is a node's SRT front end on datarhei/gosrt: callers publish MPEG-TS to a
// stream or read a stream as MPEG-TS, chosen by the streamid (see ParseStreamID). The conversion
// to and from the hub is node/mpegts: one ingest per publisher, one muxer per stream read,
// whatever the number of readers.
package srtserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	srt "github.com/datarhei/gosrt"

	"github.com/streamfleet/streamfleet/internal/token"
	"github.com/streamfleet/streamfleet/node/auth"
	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/mpegts"
)

// Reasons a connection request is refused, as counted in Stats.
const (
	RejectStreamID    = "streamid"    // missing or unparseable streamid, or an invalid stream name
	RejectEncryption  = "encryption"  // passphrase missing, wrong, or not expected
	RejectToken       = "token"       // refused by the authorizer: t= missing or wrong, or the webhook said no
	RejectBusy        = "busy"        // publish to a live stream
	RejectNotFound    = "not_found"   // read of an unknown stream
	RejectUnsupported = "unsupported" // read of a stream with no track MPEG-TS can carry
	RejectOverload    = "overload"    // too many connection requests being decided at once
	RejectUpstream    = "upstream"    // read of a stream the node could not pull from its upstream
	RejectDraining    = "draining"    // a new session while the stream managers drain the node
)

// RejectReasons lists every reason, for metrics.
var RejectReasons = []string{RejectStreamID, RejectEncryption, RejectToken, RejectBusy, RejectNotFound, RejectUnsupported, RejectOverload, RejectUpstream, RejectDraining}

// Stats are the server's counters.
type Stats struct {
	PublishSessions atomic.Int64 // open
	ReadSessions    atomic.Int64 // open
	rejected        sync.Map     // reason -> *atomic.Uint64
	BytesOut        atomic.Uint64
	WriteErrors     atomic.Uint64 // chunks the SRT send queue refused
	// TS holds the MPEG-TS conversion's counters (errors, B-frame refusals, muxers, drops).
	TS mpegts.Stats
}

// Rejected is the number of connection requests refused for reason.
func (s *Stats) Rejected(reason string) uint64 {
	if v, ok := s.rejected.Load(reason); ok {
		return v.(*atomic.Uint64).Load()
	}
	return 0
}

func (s *Stats) reject(reason string) {
	v, _ := s.rejected.LoadOrStore(reason, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
}

// Server is the SRT listener and its sessions.
type Server struct {
	cfg  Config
	hub  *hub.Hub
	log  *slog.Logger
	auth *auth.Authorizer
	// pending bounds the connection requests being decided at once (an auth webhook call can
	// take its timeout); past it, callers are refused with REJ_BACKLOG.
	pending chan struct{}
	muxers  *mpegts.Muxers
	stats   Stats

	ctx    context.Context
	cancel context.CancelFunc

	ln      srt.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex // guards closed and wg.Add
	closed  bool
	session atomic.Uint64
}

// New validates cfg and returns a server; nothing listens until Start.
func New(cfg Config, h *hub.Hub, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("srt config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, hub: h, log: log, auth: cfg.Auth, pending: make(chan struct{}, maxPending)}
	if s.auth == nil {
		s.auth = auth.Static(cfg.PublishToken, cfg.PlayToken)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.muxers = mpegts.NewMuxers(mpegts.MuxerConfig{Log: log, Stats: &s.stats.TS})
	return s, nil
}

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Muxers is the server's set of MPEG-TS muxers (one per stream being read).
func (s *Server) Muxers() *mpegts.Muxers { return s.muxers }

// Start listens on cfg.Addr (nothing when it is empty) and accepts callers in the background.
func (s *Server) Start() error {
	if s.cfg.Addr == "" {
		return nil
	}
	conf := srt.DefaultConfig()
	conf.ReceiverLatency = s.cfg.Latency
	conf.PeerLatency = s.cfg.Latency
	ln, err := srt.Listen("srt", s.cfg.Addr, conf)
	if err != nil {
		return fmt.Errorf("start srt listener %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.accept()
	}()
	s.log.Info("srt listening", "addr", ln.Addr().String(), "encrypted", s.cfg.Passphrase != "", "latency", s.cfg.Latency)
	return nil
}

// Addr is the bound UDP address, or nil when SRT is disabled or not started.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

func (s *Server) accept() {
	for {
		req, err := s.ln.Accept2()
		if err != nil {
			if !errors.Is(err, srt.ErrListenerClosed) {
				s.log.Warn("srt accept stopped", "error", err)
			}
			return
		}
		// Each request is decided on its own goroutine: asking the auth webhook must not hold up
		// the handshakes of other callers.
		select {
		case s.pending <- struct{}{}:
		default:
			s.stats.reject(RejectOverload)
			req.Reject(srt.REJ_BACKLOG)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			req.Reject(srt.REJ_CLOSE)
			return
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() { <-s.pending }()
			s.handle(req)
		}()
	}
}

// maxPending is how many connection requests may be decided at once.
const maxPending = 256

// handle decides on one connection request at handshake time: refuse it with an SRT reject
// reason, or accept it and start its session.
func (s *Server) handle(req srt.ConnRequest) {
	remote := req.RemoteAddr().String()
	refuse := func(reason string, code srt.RejectionReason, err error) {
		s.stats.reject(reason)
		s.log.Warn("srt connection refused", "remote", remote, "reason", reason, "srt_reject", uint32(code), "error", err)
		req.Reject(code)
	}
	id, err := ParseStreamID(req.StreamId())
	if err != nil {
		code := srt.REJX_BAD_REQUEST
		if errors.Is(err, ErrBadMode) {
			code = srt.REJX_BAD_MODE
		}
		refuse(RejectStreamID, code, err)
		return
	}
	if s.cfg.Draining != nil && s.cfg.Draining() {
		refuse(RejectDraining, srt.REJX_DOWN, fmt.Errorf("%s %s: the node is draining", id.Mode, id.Name))
		return
	}
	switch {
	case s.cfg.Passphrase != "" && !req.IsEncrypted():
		refuse(RejectEncryption, srt.REJ_UNSECURE, errors.New("a passphrase is required"))
		return
	case s.cfg.Passphrase != "":
		if err := req.SetPassphrase(s.cfg.Passphrase); err != nil {
			refuse(RejectEncryption, srt.REJ_BADSECRET, errors.New("wrong passphrase"))
			return
		}
	case req.IsEncrypted():
		refuse(RejectEncryption, srt.REJ_UNSECURE, errors.New("encryption is not configured on this node"))
		return
	}
	action := token.ActionPlay
	if id.Mode == ModePublish {
		action = token.ActionPublish
	}
	clientIP := remote
	if host, _, err := net.SplitHostPort(remote); err == nil {
		clientIP = host
	}
	grant, err := s.auth.Authorize(s.ctx, auth.Request{Action: action, Stream: id.Name.String(), Protocol: "srt",
		Token: id.Token, User: id.User, ClientIP: clientIP})
	if err != nil {
		refuse(RejectToken, srt.REJX_UNAUTHORIZED, fmt.Errorf("%s %s: %w", id.Mode, id.Name, err))
		return
	}
	accepted := false
	defer func() {
		if !accepted {
			grant.End()
		}
	}()
	var stream *hub.Stream
	if id.Mode == ModePublish {
		if st, err := s.hub.Stream(id.Name); err == nil && st.Live() {
			refuse(RejectBusy, srt.REJX_CONFLICT, fmt.Errorf("publish %s: %w", id.Name, hub.ErrStreamBusy))
			return
		}
	} else {
		// Open pulls the stream from upstream on a relay or an edge that does not carry it yet.
		st, err := s.hub.Open(s.ctx, id.Name)
		switch {
		case errors.Is(err, hub.ErrStreamNotFound):
			refuse(RejectNotFound, srt.REJX_NOTFOUND, err)
			return
		case err != nil:
			refuse(RejectUpstream, srt.REJX_GW, err)
			return
		}
		if tracks, skipped := mpegts.SupportedTracks(st); len(tracks) == 0 {
			refuse(RejectUnsupported, srt.REJX_UNACCEPTABLE, fmt.Errorf("%s: no track MPEG-TS can carry (%v)", id.Name, skipped))
			return
		}
		stream = st
	}

	conn, err := req.Accept()
	if err != nil {
		s.log.Warn("srt accept failed", "remote", remote, "stream", id.Name, "error", err)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = conn.Close()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	log := s.log.With("stream", id.Name, "session", fmt.Sprintf("srt-%d", s.session.Add(1)), "remote", remote)
	accepted = true
	go func() {
		defer s.wg.Done()
		defer grant.End()
		defer conn.Close()
		if id.Mode == ModePublish {
			s.publish(conn, id, log)
		} else {
			s.read(conn, stream, log)
		}
	}()
}

func (s *Server) publish(conn srt.Conn, id StreamID, log *slog.Logger) {
	s.stats.PublishSessions.Add(1)
	defer s.stats.PublishSessions.Add(-1)
	log.Info("srt publisher connected")
	err := mpegts.Ingest(s.ctx, s.hub, conn, mpegts.IngestConfig{
		Name:         id.Name,
		Log:          log,
		Stats:        &s.stats.TS,
		ProbeTimeout: s.cfg.ProbeTimeout,
		InputTimeout: s.cfg.InputTimeout,
	})
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		log.Info("srt publisher left")
	case errors.Is(err, mpegts.ErrBFrames):
		log.Warn("srt publish refused: the video has B-frames, which WebRTC viewers cannot play; encode without them (x264: -tune zerolatency or -bf 0)", "error", err)
	default:
		log.Warn("srt publish ended", "error", err)
	}
}

func (s *Server) read(conn srt.Conn, stream *hub.Stream, log *slog.Logger) {
	sub, err := s.muxers.Subscribe(stream, s.cfg.ReaderQueue)
	if err != nil {
		log.Warn("srt read refused", "error", err)
		return
	}
	defer sub.Close()
	s.stats.ReadSessions.Add(1)
	defer s.stats.ReadSessions.Add(-1)
	log.Info("srt reader connected")

	// A reader sends nothing; Read returns when the connection closes.
	gone := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(gone)
		buf := make([]byte, 1500)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	defer func() {
		_ = conn.Close()
		<-gone
	}()
	for {
		select {
		case c := <-sub.C():
			if _, err := conn.Write(c.Data); err != nil {
				s.stats.WriteErrors.Add(1) // the send queue is full (or the connection closed)
				continue
			}
			s.stats.BytesOut.Add(uint64(len(c.Data)))
		case <-gone:
			log.Info("srt reader left", "dropped_chunks", sub.Dropped())
			return
		case <-sub.Done():
			log.Info("srt reader: stream ended")
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// Close stops accepting, ends every session and muxer, and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	if s.ln != nil {
		s.ln.Close()
	}
	s.wg.Wait()
	s.muxers.Close()
	return nil
}
