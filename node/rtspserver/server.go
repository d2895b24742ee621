// Package rtspserver serves RTSP on a node with gortsplib: publishers ANNOUNCE and RECORD a stream
// into the hub, readers DESCRIBE and PLAY it, over TCP (interleaved) or UDP unicast.
//
// A hub stream read over RTSP has one gortsplib ServerStream, fed by one hub reader per track,
// shared by every RTSP reader: RTP is rewritten once per stream, and each reader only gets its own
// copy queued by gortsplib. The ServerStream is made on the first DESCRIBE (or SETUP) and torn down
// when its last reader leaves or the stream ends.
package rtspserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/auth"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"

	"github.com/streamfleet/streamfleet/internal/streamname"
	nodeauth "github.com/streamfleet/streamfleet/node/auth"
	"github.com/streamfleet/streamfleet/node/hub"
)

// Stats are the server's counters.
type Stats struct {
	PublishSessions  atomic.Int64  // sessions recording now
	ReadSessions     atomic.Int64  // sessions playing now
	SessionsRejected atomic.Uint64 // requests refused: bad name, token, SDP, codec, busy, unknown stream
	ServerStreams    atomic.Int64  // gortsplib streams open now: one per hub stream being read
	StreamsCreated   atomic.Uint64 // gortsplib streams made so far

	PacketsIn       atomic.Uint64 // RTP packets received from publishers
	PacketsOut      atomic.Uint64 // RTP packets written to ServerStreams (once per stream, not per reader)
	ParamSetsAdded  atomic.Uint64 // H264 SPS/PPS packets inserted before IDRs
	PacketsLost     atomic.Uint64 // packets publishers sent that never arrived
	DecodeErrors    atomic.Uint64 // undecodable packets from clients
	ReaderQueueFull atomic.Uint64 // packets a slow reader's write queue dropped
	LayerRestarts   atomic.Uint64 // all-layers streams closed because a layer appeared
	Heartbeats      atomic.Uint64 // heartbeats sent on idle all-layers streams
}

// Server is the RTSP front end of a node.
type Server struct {
	cfg  Config
	hub  *hub.Hub
	log  *slog.Logger
	auth *nodeauth.Authorizer

	rtsp    *gortsplib.Server
	tcpAddr net.Addr
	udpRTP  *net.UDPConn
	udpRTCP *net.UDPConn

	// mu guards outs, closed and the holders of every outStream and connection. It is never held
	// while calling gortsplib or the hub.
	mu     sync.Mutex
	outs   map[outKey]*outStream
	closed bool

	// ctx ends at Close: it bounds the pulls that reads of streams the node does not carry start.
	ctx    context.Context
	cancel context.CancelFunc
	done   <-chan struct{}

	wg     sync.WaitGroup // feeders of outStreams
	nextID atomic.Uint64
	stats  Stats
}

// New validates cfg and returns a server for h; nothing listens until Start.
func New(cfg Config, h *hub.Hub, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rtsp config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := cfg.Auth
	if a == nil {
		a = nodeauth.Static(cfg.PublishToken, cfg.PlayToken)
	}
	return &Server{cfg: cfg, hub: h, log: log, auth: a, outs: map[outKey]*outStream{}, ctx: ctx, cancel: cancel, done: ctx.Done()}, nil
}

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Addr is the bound TCP address, or nil before Start or when disabled.
func (s *Server) Addr() net.Addr { return s.tcpAddr }

// UDPAddrs are the bound RTP and RTCP addresses, or nils without UDP.
func (s *Server) UDPAddrs() (rtp, rtcp net.Addr) {
	if s.udpRTP == nil {
		return nil, nil
	}
	return s.udpRTP.LocalAddr(), s.udpRTCP.LocalAddr()
}

// StreamCount is the number of gortsplib ServerStreams open: one per hub stream with RTSP readers,
// however many readers it has.
func (s *Server) StreamCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.outs)
}

// Start listens. It does nothing for a disabled server.
func (s *Server) Start(ctx context.Context) error {
	if !s.cfg.Enabled() {
		return nil
	}
	srv := &gortsplib.Server{
		Handler:      s,
		RTSPAddress:  s.cfg.Addr,
		ReadTimeout:  s.cfg.ReadTimeout,
		WriteTimeout: s.cfg.WriteTimeout,
		// The token is the password; Basic is what every client speaks, and digest would need
		// the user name we do not ask for.
		AuthMethods:    []auth.VerifyMethod{auth.VerifyMethodBasic},
		WriteQueueSize: s.cfg.WriteQueue,
		Listen: func(network, address string) (net.Listener, error) {
			ln, err := (&net.ListenConfig{}).Listen(ctx, network, address)
			if err == nil {
				s.tcpAddr = ln.Addr()
			}
			return ln, err
		},
	}
	if s.cfg.UDP() {
		rtp, rtcp, err := bindUDPPair(ctx, s.cfg.UDPRTPAddr, s.cfg.UDPRTCPAddr)
		if err != nil {
			return fmt.Errorf("listen rtsp udp: %w", err)
		}
		s.udpRTP, s.udpRTCP = rtp, rtcp
		srv.UDPRTPAddress, srv.UDPRTCPAddress = rtp.LocalAddr().String(), rtcp.LocalAddr().String()
		srv.ListenPacket = func(network, address string) (net.PacketConn, error) {
			switch address {
			case srv.UDPRTPAddress:
				return rtp, nil
			case srv.UDPRTCPAddress:
				return rtcp, nil
			}
			return (&net.ListenConfig{}).ListenPacket(ctx, network, address)
		}
	}
	if err := srv.Start(); err != nil {
		if s.udpRTP != nil {
			s.udpRTP.Close()
			s.udpRTCP.Close()
		}
		return fmt.Errorf("start rtsp server on %s: %w", s.cfg.Addr, err)
	}
	s.rtsp = srv
	attrs := []any{"rtsp", s.tcpAddr.String()}
	if s.udpRTP != nil {
		attrs = append(attrs, "rtsp_udp_rtp", s.udpRTP.LocalAddr().String(), "rtsp_udp_rtcp", s.udpRTCP.LocalAddr().String())
	}
	s.log.Info("rtsp serving", attrs...)
	return nil
}

// bindUDPPair listens on the RTP and RTCP addresses; with port 0 on both, on a free even port and
// the one after it.
func bindUDPPair(ctx context.Context, rtpAddr, rtcpAddr string) (*net.UDPConn, *net.UDPConn, error) {
	lc := &net.ListenConfig{}
	listen := func(addr string) (*net.UDPConn, error) {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, err
		}
		return pc.(*net.UDPConn), nil
	}
	rtpPort, _ := udpPort(rtpAddr)
	if rtpPort != 0 {
		rtp, err := listen(rtpAddr)
		if err != nil {
			return nil, nil, err
		}
		rtcp, err := listen(rtcpAddr)
		if err != nil {
			rtp.Close()
			return nil, nil, err
		}
		return rtp, rtcp, nil
	}
	rtpHost, _, _ := net.SplitHostPort(rtpAddr)
	rtcpHost, _, _ := net.SplitHostPort(rtcpAddr)
	for range 100 {
		rtp, err := listen(net.JoinHostPort(rtpHost, "0"))
		if err != nil {
			return nil, nil, err
		}
		port := rtp.LocalAddr().(*net.UDPAddr).Port
		if port%2 != 0 || port == 65535 {
			rtp.Close()
			continue
		}
		rtcp, err := listen(net.JoinHostPort(rtcpHost, strconv.Itoa(port+1)))
		if err != nil {
			rtp.Close()
			continue
		}
		return rtp, rtcp, nil
	}
	return nil, nil, errors.New("no free even/odd UDP port pair")
}

// Close stops listening, closes every session and stream, and waits for the server's goroutines.
func (s *Server) Close(ctx context.Context) error {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	outs := make([]*outStream, 0, len(s.outs))
	for _, o := range s.outs {
		outs = append(outs, o)
	}
	s.mu.Unlock()
	for _, o := range outs {
		s.teardown(o, "node closing")
	}
	done := make(chan struct{})
	go func() {
		if s.rtsp != nil {
			s.rtsp.Close() // closes every connection and session, and waits for them
		}
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close rtsp server: %w", ctx.Err())
	}
}

// session is what the server keeps about one gortsplib session (its user data).
type session struct {
	id  string
	log *slog.Logger

	// publisher side
	pub     *publication
	counted bool // counted in PublishSessions or ReadSessions

	// reader side
	out *outStream

	grant *nodeauth.Grant // what allowed the session; ended when it closes
}

// conn is what the server keeps about one connection (its user data): the streams it DESCRIBEd,
// which it keeps alive until it closes. Guarded by Server.mu.
type conn struct {
	outs   map[*outStream]struct{}
	grants map[streamname.Name]*nodeauth.Grant // of DESCRIBEs not yet taken over by a SETUP
}

func sessionOf(ss *gortsplib.ServerSession) *session {
	if v, ok := ss.UserData().(*session); ok {
		return v
	}
	return nil
}

// OnConnOpen implements gortsplib.ServerHandlerOnConnOpen.
func (s *Server) OnConnOpen(ctx *gortsplib.ServerHandlerOnConnOpenCtx) {
	ctx.Conn.SetUserData(&conn{outs: map[*outStream]struct{}{}})
}

// OnConnClose implements gortsplib.ServerHandlerOnConnClose.
func (s *Server) OnConnClose(ctx *gortsplib.ServerHandlerOnConnCloseCtx) {
	var badSDP liberrors.ErrServerSDPInvalid
	if errors.As(ctx.Error, &badSDP) {
		// gortsplib answered 400 before any handler saw the request
		s.stats.SessionsRejected.Add(1)
		s.log.Info("rtsp ANNOUNCE refused: broken SDP", "status", 400, "remote", ctx.Conn.NetConn().RemoteAddr().String(), "error", ctx.Error)
	}
	c, _ := ctx.Conn.UserData().(*conn)
	if c == nil {
		return
	}
	s.endGrants(c)
	s.mu.Lock()
	var idle []*outStream
	for o := range c.outs {
		delete(o.conns, ctx.Conn)
		if o.idle() {
			idle = append(idle, o)
		}
	}
	c.outs = map[*outStream]struct{}{}
	s.mu.Unlock()
	for _, o := range idle {
		s.teardown(o, "last reader left")
	}
}

// OnSessionOpen implements gortsplib.ServerHandlerOnSessionOpen.
func (s *Server) OnSessionOpen(ctx *gortsplib.ServerHandlerOnSessionOpenCtx) {
	id := "rtsp-" + strconv.FormatUint(s.nextID.Add(1), 10)
	ctx.Session.SetUserData(&session{id: id, log: s.log.With("session", id, "remote", ctx.Conn.NetConn().RemoteAddr().String())})
}

// OnSessionClose implements gortsplib.ServerHandlerOnSessionClose.
func (s *Server) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	sess := sessionOf(ctx.Session)
	if sess == nil {
		return
	}
	defer sess.grant.End()
	if p := sess.pub; p != nil {
		if sess.counted {
			s.stats.PublishSessions.Add(-1)
		}
		var torn liberrors.ErrServerSessionTornDown
		if errors.As(ctx.Error, &torn) {
			p.pub.End()
			p.log.Info("rtsp publisher sent TEARDOWN: stream ended")
		} else {
			p.pub.Close()
			p.log.Info("rtsp publisher left", "reason", errString(ctx.Error))
		}
		p.stop()
		return
	}
	if o := sess.out; o != nil {
		if sess.counted {
			s.stats.ReadSessions.Add(-1)
			sess.log.Info("rtsp reader left", "stream", o.stream.Name(), "reason", errString(ctx.Error))
		}
		s.mu.Lock()
		delete(o.sessions, ctx.Session)
		idle := o.idle()
		s.mu.Unlock()
		if idle {
			s.teardown(o, "last reader left")
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// OnPacketsLost implements gortsplib.ServerHandlerOnPacketsLost.
func (s *Server) OnPacketsLost(ctx *gortsplib.ServerHandlerOnPacketsLostCtx) {
	s.stats.PacketsLost.Add(ctx.Lost)
}

// OnDecodeError implements gortsplib.ServerHandlerOnDecodeError.
func (s *Server) OnDecodeError(*gortsplib.ServerHandlerOnDecodeErrorCtx) {
	s.stats.DecodeErrors.Add(1)
}

// OnStreamWriteError implements gortsplib.ServerHandlerOnStreamWriteError: a reader too slow for
// its write queue loses the packet.
func (s *Server) OnStreamWriteError(*gortsplib.ServerHandlerOnStreamWriteErrorCtx) {
	s.stats.ReaderQueueFull.Add(1)
}

// refuse answers a request with an error for that client only: the status, a reason phrase that
// says why, and err, which makes gortsplib close the connection after the answer.
func (s *Server) refuse(log *slog.Logger, status base.StatusCode, reason string, err error) (*base.Response, error) {
	s.stats.SessionsRejected.Add(1)
	log.Info("rtsp request refused", "status", int(status), "error", err)
	return &base.Response{StatusCode: status, StatusMessage: reason}, err
}

// draining reports whether new sessions are refused (Config.Draining).
func (s *Server) draining() bool { return s.cfg.Draining != nil && s.cfg.Draining() }

// unauthorized answers 401. Without credentials gortsplib adds the Basic challenge and keeps the
// connection for the retry; with wrong ones it closes it.
func (s *Server) unauthorized(log *slog.Logger, offered bool) (*base.Response, error) {
	if offered {
		s.stats.SessionsRejected.Add(1)
		log.Info("rtsp request refused: wrong token", "status", 401)
	}
	return &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
}
