package rtspserver

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/rtpformat"
)

// mediaPlan is one media of the RTSP session of a stream: a track and the layer to send.
type mediaPlan struct {
	track *hub.Track
	// rid pins a simulcast layer and names the media (a=mid) after it; "" sends the track's best
	// layer. Today every plan is "": exposing every layer as its own media (for node-to-node
	// cascade pulls) is a change to planMedias only.
	rid string
}

// planMedias lists what an RTSP reader gets: each published track (derived tracks such as the
// Opus made from AAC are for WebRTC viewers; RTSP sends the original codec), at its best layer.
func planMedias(st *hub.Stream) []mediaPlan {
	var plans []mediaPlan
	for _, t := range st.Tracks() {
		if t.Source() != nil {
			continue
		}
		plans = append(plans, mediaPlan{track: t})
	}
	return plans
}

// outStream is the one gortsplib ServerStream of a hub stream, fed by one hub reader per media.
type outStream struct {
	srv    *Server
	stream *hub.Stream
	log    *slog.Logger
	ss     *gortsplib.ServerStream
	medias []*outMedia
	stop   chan struct{}

	// guarded by Server.mu
	conns    map[*gortsplib.ServerConn]struct{}
	sessions map[*gortsplib.ServerSession]struct{}
	closed   bool
}

// outMedia feeds one media of an outStream from a hub reader.
type outMedia struct {
	plan     mediaPlan
	media    *description.Media
	pt       uint8
	reader   *hub.Reader
	rewriter *hub.Rewriter
	pkt      rtp.Packet // scratch of the feeding goroutine
}

// idle reports whether nobody holds the stream any more. The caller holds Server.mu.
func (o *outStream) idle() bool { return !o.closed && len(o.conns) == 0 && len(o.sessions) == 0 }

// mediaOf returns the outMedia of a gortsplib media.
func (o *outStream) mediaOf(m *description.Media) *outMedia {
	for _, om := range o.medias {
		if om.media == m {
			return om
		}
	}
	return nil
}

// newOutStream builds the ServerStream of st, not yet fed.
func (s *Server) newOutStream(st *hub.Stream) (*outStream, error) {
	o := &outStream{srv: s, stream: st, log: s.log.With("stream", st.Name()), stop: make(chan struct{}),
		conns: map[*gortsplib.ServerConn]struct{}{}, sessions: map[*gortsplib.ServerSession]struct{}{}}
	desc := &description.Session{Title: string(st.Name())}
	for _, plan := range planMedias(st) {
		pt := uint8(96 + len(o.medias))
		f, err := rtpformat.ToFormat(plan.track.Codec(), pt)
		if err != nil {
			o.log.Info("rtsp: track left out of the session", "track", plan.track.Index(), "error", err)
			continue
		}
		m := &description.Media{Type: description.MediaType(plan.track.Kind()), ID: plan.rid, Formats: []format.Format{f}}
		desc.Medias = append(desc.Medias, m)
		o.medias = append(o.medias, &outMedia{plan: plan, media: m, pt: pt, rewriter: hub.NewRewriter(plan.track.Codec().ClockRate)})
	}
	if len(o.medias) == 0 {
		return nil, fmt.Errorf("%s: %w", st.Name(), ErrNothingToPlay)
	}
	o.ss = &gortsplib.ServerStream{Server: s.rtsp, Desc: desc}
	if err := o.ss.Initialize(); err != nil {
		return nil, fmt.Errorf("rtsp stream %s: %w", st.Name(), err)
	}
	for _, m := range o.medias {
		m.reader = m.plan.track.NewReader(s.cfg.ReaderQueue)
		if m.plan.rid != "" {
			for _, l := range m.plan.track.Layers() {
				if l.RID() == m.plan.rid {
					m.reader.SwitchLayer(l)
				}
			}
		}
	}
	return o, nil
}

// discard closes an outStream that was never fed.
func (o *outStream) discard() {
	for _, m := range o.medias {
		m.reader.Close()
	}
	o.ss.Close()
}

// acquire returns the outStream of st, making it if needed, held by conn or session.
func (s *Server) acquire(st *hub.Stream, c *gortsplib.ServerConn, ss *gortsplib.ServerSession) (*outStream, error) {
	hold := func(o *outStream) {
		if c != nil {
			o.conns[c] = struct{}{}
			if ci, _ := c.UserData().(*conn); ci != nil {
				ci.outs[o] = struct{}{}
			}
		}
		if ss != nil {
			o.sessions[ss] = struct{}{}
		}
	}
	s.mu.Lock()
	if o := s.outs[st]; o != nil {
		hold(o)
		s.mu.Unlock()
		return o, nil
	}
	s.mu.Unlock()

	o, err := s.newOutStream(st)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	switch x := s.outs[st]; {
	case s.closed:
		s.mu.Unlock()
		o.discard()
		return nil, ErrClosed
	case x != nil: // made meanwhile by another client
		hold(x)
		s.mu.Unlock()
		o.discard()
		return x, nil
	}
	s.outs[st] = o
	hold(o)
	s.wg.Add(len(o.medias))
	s.mu.Unlock()

	s.stats.ServerStreams.Add(1)
	s.stats.StreamsCreated.Add(1)
	for _, m := range o.medias {
		go o.feed(m)
	}
	o.log.Info("rtsp stream opened", "medias", len(o.medias))
	return o, nil
}

// teardown closes o: its hub readers, then the ServerStream, which closes its readers' sessions.
func (s *Server) teardown(o *outStream, why string) {
	s.mu.Lock()
	if o.closed {
		s.mu.Unlock()
		return
	}
	o.closed = true
	if s.outs[o.stream] == o {
		delete(s.outs, o.stream)
	}
	for c := range o.conns {
		if ci, _ := c.UserData().(*conn); ci != nil {
			delete(ci.outs, o)
		}
	}
	s.mu.Unlock()
	close(o.stop)
	o.ss.Close()
	s.stats.ServerStreams.Add(-1)
	o.log.Info("rtsp stream closed", "reason", why)
}

// statsFlushEvery is how many packets a feeder counts locally before adding them to the shared
// counter.
const statsFlushEvery = 64

// feed writes one media's packets to the ServerStream until the stream ends or o closes.
func (o *outStream) feed(m *outMedia) {
	s := o.srv
	defer s.wg.Done()
	r := m.reader
	defer r.Close()
	var last *hub.Layer
	var packets uint64
	defer func() { s.stats.PacketsOut.Add(packets) }()
	for {
		select {
		case e := <-r.C():
			if e.Packet.Layer != last {
				if last != nil {
					r.Unsubscribe() // switched layers: leave the old one
				}
				last = e.Packet.Layer
			}
			if !m.rewriter.Rewrite(e, 0, m.pt, &m.pkt.Header) { // gortsplib sets the SSRC
				continue
			}
			m.pkt.Payload = e.Packet.Payload
			err := o.ss.WritePacketRTPWithNTP(m.media, &m.pkt, time.Unix(0, e.Packet.ArrivalNanos))
			m.pkt.Payload = nil
			if err != nil {
				var closed liberrors.ErrServerStreamClosed
				if errors.As(err, &closed) {
					return
				}
				continue
			}
			if packets++; packets == statsFlushEvery {
				s.stats.PacketsOut.Add(packets)
				packets = 0
			}
		case <-r.Done():
			s.teardown(o, "stream ended")
			return
		case <-o.stop:
			return
		}
	}
}

// lookupStream finds the hub stream a read request names, checking the play token.
func (s *Server) lookupStream(log *slog.Logger, req *base.Request, path, query string) (*hub.Stream, *slog.Logger, *base.Response, error) {
	name, token, err := parseTarget(path, query)
	if err != nil {
		res, err := s.refuse(log.With("path", path), base.StatusBadRequest, "Bad Request: "+reasonOf(err), fmt.Errorf("rtsp read: %w", err))
		return nil, log, res, err
	}
	log = log.With("stream", name)
	if ok, offered := authorized(req, token, s.cfg.PlayToken); !ok {
		res, err := s.unauthorized(log, offered)
		return nil, log, res, err
	}
	st, err := s.hub.Stream(name)
	if err != nil {
		res, err := s.refuse(log, base.StatusNotFound, "Stream Not Found", fmt.Errorf("rtsp read: %w", err))
		return nil, log, res, err
	}
	return st, log, nil, nil
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (s *Server) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	log := s.log.With("remote", ctx.Conn.NetConn().RemoteAddr().String())
	st, log, res, err := s.lookupStream(log, ctx.Request, ctx.Path, ctx.Query)
	if res != nil {
		return res, nil, err
	}
	o, err := s.acquire(st, ctx.Conn, nil)
	if err != nil {
		res, err := s.refuse(log, base.StatusNotFound, "Stream Not Found", fmt.Errorf("rtsp describe: %w", err))
		return res, nil, err
	}
	return &base.Response{StatusCode: base.StatusOK}, o.ss, nil
}

// OnSetup implements gortsplib.ServerHandlerOnSetup, for publishers (nothing to do) and readers.
func (s *Server) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	sess := sessionOf(ctx.Session)
	if sess.out != nil {
		// a further media of the same stream (gortsplib checks the path)
		return &base.Response{StatusCode: base.StatusOK}, sess.out.ss, nil
	}
	st, log, res, err := s.lookupStream(sess.log, ctx.Request, ctx.Path, ctx.Query)
	if res != nil {
		return res, nil, err
	}
	o, err := s.acquire(st, nil, ctx.Session)
	if err != nil {
		res, err := s.refuse(log, base.StatusNotFound, "Stream Not Found", fmt.Errorf("rtsp setup: %w", err))
		return res, nil, err
	}
	sess.out = o
	sess.log = log
	return &base.Response{StatusCode: base.StatusOK}, o.ss, nil
}

// OnPlay implements gortsplib.ServerHandlerOnPlay: the reader starts. Keyframes are asked for so
// it does not wait a whole GOP, and its PLI/FIR are forwarded to the layer it reads.
func (s *Server) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	sess := sessionOf(ctx.Session)
	o := sess.out
	if o == nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, errors.New("rtsp play without setup")
	}
	ctx.Session.OnPacketRTCPAny(func(m *description.Media, pkt rtcp.Packet) {
		switch pkt.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			if om := o.mediaOf(m); om != nil {
				if l := om.reader.Layer(); l != nil {
					l.RequestKeyframe()
				}
			}
		}
	})
	for _, m := range ctx.Session.SetuppedMedias() {
		if om := o.mediaOf(m); om != nil {
			if l := om.reader.Layer(); l != nil {
				l.RequestKeyframe()
			}
		}
	}
	if !sess.counted {
		sess.counted = true
		s.stats.ReadSessions.Add(1)
		sess.log.Info("rtsp reader playing", "transport", ctx.Session.SetuppedTransport().String(), "medias", len(ctx.Session.SetuppedMedias()))
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}
