package rtspserver

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	tokenpkg "github.com/streamfleet/streamfleet/internal/token"
	"github.com/streamfleet/streamfleet/node/auth"
	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/rtpformat"
)

// mediaPlan is one media of the RTSP session of a stream: a track and the layer to send.
type mediaPlan struct {
	track *hub.Track
	// layer pins one layer (an all-layers session, see LayersQuery); nil sends the track's best
	// layer, switching as the hub's best layer changes.
	layer *hub.Layer
}

// planMedias lists what an RTSP reader gets: each published track (derived tracks such as the
// Opus made from AAC are for WebRTC viewers; RTSP sends the original codec), at its best layer;
// or, for a node pulling every layer (all), one media per layer of each published track.
func planMedias(st *hub.Stream, all bool) []mediaPlan {
	var plans []mediaPlan
	for _, t := range st.Tracks() {
		if t.Source() != nil {
			continue
		}
		if !all {
			plans = append(plans, mediaPlan{track: t})
			continue
		}
		for _, l := range t.Layers() {
			plans = append(plans, mediaPlan{track: t, layer: l})
		}
	}
	return plans
}

// layerCount is the number of layers of each published track of st, to notice new ones.
func layerCount(st *hub.Stream) int {
	n := 0
	for _, t := range st.Tracks() {
		if t.Source() == nil {
			n += len(t.Layers())
		}
	}
	return n
}

// Waiting for layers before an all-layers session is described: a WHIP stream is published before
// its media flows, and each simulcast layer appears with its first packet.
const (
	layerWaitTimeout  = 2 * time.Second
	layerWaitSettle   = 150 * time.Millisecond // no new layer for this long: the set is complete
	layerPollInterval = 20 * time.Millisecond
	layerWatchEvery   = 100 * time.Millisecond // an all-layers session checks for new layers
	// heartbeatAfter: an all-layers session that has had no packet to send for this long sends a
	// heartbeat (see Heartbeat) every layerWatchEvery.
	heartbeatAfter = 250 * time.Millisecond
)

// waitLayers waits (bounded) until every published track of st has a layer and no new layer has
// appeared for layerWaitSettle.
func waitLayers(st *hub.Stream, stop <-chan struct{}) {
	deadline := time.Now().Add(layerWaitTimeout)
	last, since := -1, time.Now()
	for time.Now().Before(deadline) {
		ready := true
		for _, t := range st.Tracks() {
			if t.Source() == nil && len(t.Layers()) == 0 {
				ready = false
			}
		}
		n := layerCount(st)
		if n != last {
			last, since = n, time.Now()
		}
		// A stream published a while ago has all the layers it will get.
		if ready && (time.Since(since) >= layerWaitSettle || time.Since(st.Started()) >= layerWaitTimeout) {
			return
		}
		select {
		case <-time.After(layerPollInterval):
		case <-stop:
			return
		case <-st.Done():
			return
		}
	}
}

// outKey names an outStream: a hub stream, read at its best layers or with every layer.
type outKey struct {
	stream *hub.Stream
	all    bool
}

// outStream is the one gortsplib ServerStream of a hub stream, fed by one hub reader per media.
type outStream struct {
	srv    *Server
	stream *hub.Stream
	all    bool // every layer, for a node's pull
	layers int  // layerCount when made, for an all-layers stream
	log    *slog.Logger
	ss     *gortsplib.ServerStream
	medias []*outMedia
	stop   chan struct{}
	// lastWrite is the arrival time (UnixNano) of the last packet written, for heartbeats
	lastWrite atomic.Int64

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
func (s *Server) newOutStream(st *hub.Stream, all bool) (*outStream, error) {
	o := &outStream{srv: s, stream: st, all: all, log: s.log.With("stream", st.Name()), stop: make(chan struct{}),
		conns: map[*gortsplib.ServerConn]struct{}{}, sessions: map[*gortsplib.ServerSession]struct{}{}}
	if all {
		waitLayers(st, s.done)
		o.layers = layerCount(st)
	}
	desc := &description.Session{Title: string(st.Name())}
	for _, plan := range planMedias(st, all) {
		pt := uint8(96 + len(o.medias))
		f, err := mediaFormat(plan, pt)
		if err != nil {
			o.log.Info("rtsp: track left out of the session", "track", plan.track.Index(), "error", err)
			continue
		}
		m := &description.Media{Type: description.MediaType(plan.track.Kind()), Formats: []format.Format{f}}
		if plan.layer != nil {
			m.ID = LayerMID(plan.track.Index(), plan.layer.RID())
		}
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
		if m.plan.layer != nil {
			m.reader = m.plan.track.NewLayerReader(m.plan.layer, s.cfg.ReaderQueue)
		} else {
			m.reader = m.plan.track.NewReader(s.cfg.ReaderQueue)
		}
	}
	return o, nil
}

// mediaFormat is the gortsplib format of a media. A pinned layer (a node's pull) gets the track's
// codec exactly as the hub has it, rtpmap and fmtp, so the puller rebuilds the same track: the
// typed formats would drop fmtp parameters WebRTC viewers need (H264's profile-level-id).
func mediaFormat(plan mediaPlan, pt uint8) (format.Format, error) {
	if plan.layer == nil {
		return rtpformat.ToFormat(plan.track.Codec(), pt)
	}
	typed, err := rtpformat.ToFormat(plan.track.Codec(), pt) // checks the codec
	if err != nil {
		return nil, err
	}
	g := &format.Generic{PayloadTyp: pt, RTPMa: typed.RTPMap(), FMT: splitFMTP(plan.track.Codec().SDPFmtpLine)}
	if err := g.Init(); err != nil {
		return nil, err
	}
	return g, nil
}

// splitFMTP parses an fmtp line ("a=1;b=2") into its parameters.
func splitFMTP(line string) map[string]string {
	if line == "" {
		return nil
	}
	m := map[string]string{}
	for _, kv := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k != "" {
			m[k] = v
		}
	}
	return m
}

// discard closes an outStream that was never fed.
func (o *outStream) discard() {
	for _, m := range o.medias {
		m.reader.Close()
	}
	o.ss.Close()
}

// acquire returns the outStream of st, making it if needed, held by conn or session.
func (s *Server) acquire(st *hub.Stream, all bool, c *gortsplib.ServerConn, ss *gortsplib.ServerSession) (*outStream, error) {
	key := outKey{st, all}
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
	if o := s.outs[key]; o != nil {
		hold(o)
		s.mu.Unlock()
		return o, nil
	}
	s.mu.Unlock()

	o, err := s.newOutStream(st, all)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	switch x := s.outs[key]; {
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
	s.outs[key] = o
	hold(o)
	s.wg.Add(len(o.medias))
	if all {
		s.wg.Add(1)
	}
	s.mu.Unlock()

	s.stats.ServerStreams.Add(1)
	s.stats.StreamsCreated.Add(1)
	for _, m := range o.medias {
		go o.feed(m)
	}
	if all {
		go o.watchLayers()
	}
	o.log.Info("rtsp stream opened", "medias", len(o.medias), "all_layers", all)
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
	if key := (outKey{o.stream, o.all}); s.outs[key] == o {
		delete(s.outs, key)
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

// watchLayers closes an all-layers stream when its hub stream gets a new layer (a simulcast RID
// that started late): the pulling node's session ends, and it pulls again at once, getting the new
// layer too, while its viewers carry on. While the stream has nothing to send (its publisher or
// upstream is away), it sends heartbeats, so the pulling nodes know this node is alive and wait
// rather than fail over.
func (o *outStream) watchLayers() {
	defer o.srv.wg.Done()
	t := time.NewTicker(layerWatchEvery)
	defer t.Stop()
	o.lastWrite.Store(time.Now().UnixNano())
	for {
		select {
		case now := <-t.C:
			if layerCount(o.stream) != o.layers {
				o.srv.stats.LayerRestarts.Add(1)
				o.srv.teardown(o, "new layer")
				return
			}
			if time.Duration(now.UnixNano()-o.lastWrite.Load()) >= heartbeatAfter {
				_ = o.ss.WritePacketRTCP(o.medias[0].media, &rtcp.ApplicationDefined{Name: Heartbeat})
				o.srv.stats.Heartbeats.Add(1)
			}
		case <-o.stop:
			return
		case <-o.stream.Done():
			return
		}
	}
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
			if o.all {
				o.lastWrite.Store(e.Packet.ArrivalNanos)
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

// lookupStream finds the hub stream a read request names, checking the play token, or for an
// all-layers pull the cluster secret. A stream the node does not carry is opened through the hub,
// which pulls it from upstream on a relay or an edge.
//
// The grant that allowed a DESCRIBE waits on its connection (c) for the SETUP that follows; a
// SETUP (sess set) takes it over, or asks anew, and its session holds the grant until it closes.
func (s *Server) lookupStream(log *slog.Logger, c *gortsplib.ServerConn, sess *session, req *base.Request, path, query string) (*hub.Stream, bool, *slog.Logger, *base.Response, error) {
	name, token, err := parseTarget(path, query)
	if err != nil {
		res, err := s.refuse(log.With("path", path), base.StatusBadRequest, "Bad Request: "+reasonOf(err), fmt.Errorf("rtsp read: %w", err))
		return nil, false, log, res, err
	}
	log = log.With("stream", name)
	all := allLayers(query)
	node := clusterAuthorized(req, s.cfg.ClusterSecret)
	if all && s.cfg.ClusterSecret != "" && !node {
		_, offered := authorized(req, token, "")
		res, err := s.unauthorized(log, offered)
		return nil, false, log, res, err
	}
	if !node && s.draining() { // after the challenge above: a node's pull proves the secret first
		res, err := s.refuse(log, base.StatusServiceUnavailable, "Service Unavailable (draining)", fmt.Errorf("rtsp read %s: %w", name, ErrDraining))
		return nil, false, log, res, err
	}
	var grant *auth.Grant
	if !node {
		if sess != nil {
			grant = s.takeGrant(c, name)
		}
		if grant == nil {
			var res *base.Response
			if grant, res, err = s.authorize(log, c.NetConn(), req, tokenpkg.ActionPlay, name, token); res != nil {
				return nil, false, log, res, err
			}
		}
	}
	st, err := s.hub.Open(s.ctx, name)
	switch {
	case errors.Is(err, hub.ErrStreamNotFound):
		grant.End()
		res, err := s.refuse(log, base.StatusNotFound, "Stream Not Found", fmt.Errorf("rtsp read: %w", err))
		return nil, false, log, res, err
	case err != nil:
		grant.End()
		res, err := s.refuse(log, base.StatusServiceUnavailable, "Upstream Unavailable", fmt.Errorf("rtsp read: %w", err))
		return nil, false, log, res, err
	}
	if sess != nil {
		sess.grant.End()
		sess.grant = grant
	} else {
		s.keepGrant(c, name, grant)
	}
	return st, all, log, nil, nil
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (s *Server) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	log := s.log.With("remote", ctx.Conn.NetConn().RemoteAddr().String())
	st, all, log, res, err := s.lookupStream(log, ctx.Conn, nil, ctx.Request, ctx.Path, ctx.Query)
	if res != nil {
		return res, nil, err
	}
	o, err := s.acquire(st, all, ctx.Conn, nil)
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
	st, all, log, res, err := s.lookupStream(sess.log, ctx.Conn, sess, ctx.Request, ctx.Path, ctx.Query)
	if res != nil {
		return res, nil, err
	}
	o, err := s.acquire(st, all, nil, ctx.Session)
	if err != nil {
		res, err := s.refuse(log, base.StatusNotFound, "Stream Not Found", fmt.Errorf("rtsp setup: %w", err))
		return res, nil, err
	}
	sess.out = o
	sess.log = log
	return &base.Response{StatusCode: base.StatusOK}, o.ss, nil
}

// keyframeLayer is the layer a reader's keyframe request for media m goes to: the pinned layer of
// an all-layers session, else the layer the media's reader reads now.
func (om *outMedia) keyframeLayer() *hub.Layer {
	if om.plan.layer != nil {
		return om.plan.layer
	}
	return om.reader.Layer()
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
				if l := om.keyframeLayer(); l != nil {
					l.RequestKeyframe()
				}
			}
		}
	})
	for _, m := range ctx.Session.SetuppedMedias() {
		if om := o.mediaOf(m); om != nil {
			if l := om.keyframeLayer(); l != nil {
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
