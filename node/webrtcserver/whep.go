package webrtcserver

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/node/auth"
	"github.com/streamfleet/streamfleet/node/hub"
)

// whepSession is one viewer.
type whepSession struct {
	peer
	stream *hub.Stream
	tracks []*viewerTrack // the bound ones
	// lastReport is the arrival time, UnixNano, of the media at the last sender reports (owned by
	// the group's goroutine; next to tracks, on a line each round fetches).
	lastReport int64
	done       chan struct{}
	grant      *auth.Grant // ended with the session
	keys       *keyCapture // the DTLS secrets, for the node's own SRTP

	byeOnce sync.Once

	mu     sync.Mutex // guards closed, group and the tracks' readers
	closed bool
	group  *group   // the fan-out group serving the viewer, once connected
	conn   *muxConn // the viewer's conn of the UDP mux, if batching

	hot hotLines // what a fan-out round touches of the viewer, for prefetching (prefetch.go)
}

func (s *Server) startWHEP(r *http.Request, w http.ResponseWriter, grant *auth.Grant) (*whepSession, string, *apiError) {
	o, aerr := s.readOffer(w, r)
	if aerr != nil {
		return nil, "", aerr
	}
	stream, err := s.hub.Open(r.Context(), o.name) // on a relay or an edge, pulled from upstream
	switch {
	case errors.Is(err, hub.ErrStreamNotFound):
		return nil, "", errorf(http.StatusNotFound, "stream_not_found", fmt.Sprintf("stream %s is not being published", o.name))
	case err != nil:
		s.log.Warn("whep: stream could not be pulled from upstream", "stream", o.name, "error", err)
		return nil, "", errorf(http.StatusServiceUnavailable, "upstream_unavailable", fmt.Sprintf("stream %s could not be pulled from upstream", o.name))
	}
	api, keys := s.viewerAPI(o)
	pc, aerr := s.newPeerConnection(api)
	if aerr != nil {
		return nil, "", aerr
	}
	vs := &whepSession{peer: newPeer(s, pc, "whep", o.name.String()), stream: stream, done: make(chan struct{}), grant: grant, keys: keys}
	var all []*viewerTrack
	for _, t := range stream.Tracks() {
		if !sendable(t.Codec()) {
			continue // AAC (its derived Opus track is sent instead), H265: not for browsers
		}
		vt, err := newViewerTrack(s, t)
		if err == nil {
			vt.sender, err = pc.AddTrack(vt)
		}
		if err != nil {
			_ = pc.Close()
			return nil, "", errorf(http.StatusInternalServerError, "internal", "could not add a track: "+err.Error())
		}
		all = append(all, vt)
	}
	vs.watchState(vs.close)
	answer, aerr := negotiate(r.Context(), pc, o, nil)
	if aerr != nil {
		_ = pc.Close()
		return nil, "", aerr
	}
	for _, vt := range all {
		if vt.bound.Load() {
			vs.tracks = append(vs.tracks, vt)
		}
	}
	if len(vs.tracks) == 0 {
		_ = pc.Close()
		return nil, "", errorf(http.StatusNotAcceptable, "no_common_codec",
			fmt.Sprintf("the offer accepts none of the stream's codecs (%s)", codecList(stream)))
	}
	if !s.add(vs) {
		_ = pc.Close()
		return nil, "", errorf(http.StatusServiceUnavailable, "shutting_down", "the node is shutting down")
	}
	s.stats.WHEPSessions.Add(1)
	vs.added.Store(true)
	s.goSession(vs.run)
	return vs, answer, nil
}

func codecList(st *hub.Stream) string {
	out := ""
	for i, t := range st.Tracks() {
		if i > 0 {
			out += ", "
		}
		out += t.Codec().MimeType
	}
	return out
}

// run starts forwarding once the viewer is connected (packets written earlier would be lost with
// the keyframe they start on); from then on the viewer's fan-out group follows its layer and the
// stream's end, so no goroutine of the session's own outlives the connection's setup.
func (vs *whepSession) run() {
	timeout := time.NewTimer(vs.s.cfg.ConnectTimeout)
	defer timeout.Stop()
	select {
	case <-vs.connected:
	case <-timeout.C:
		vs.s.stats.SessionsTimedOut.Add(1)
		vs.log.Info("viewer never connected: closing", "timeout", vs.s.cfg.ConnectTimeout)
		vs.close(false)
		return
	case <-vs.done:
		return
	case <-vs.stream.Done():
		vs.close(false)
		return
	}
	vs.mu.Lock()
	if vs.closed {
		vs.mu.Unlock()
		return
	}
	if !vs.s.fanout.join(vs) {
		vs.mu.Unlock()
		return // shutting down
	}
	for _, vt := range vs.tracks {
		vs.s.goSession(vt.readRTCP)
	}
	vs.mu.Unlock()
	vs.log.Debug("viewer connected")
	select {
	case <-vs.stream.Done(): // it may have ended before the group could see this viewer
		vs.endOfStream()
	default:
	}
}

// endOfStream tells the viewer the stream ended and closes the session.
func (vs *whepSession) endOfStream() {
	vs.byeOnce.Do(func() {
		vs.sayGoodbye()
		// The BYE first, then the close a moment later: a viewer's stack may tear its SRTCP
		// session down on the DTLS close_notify before reading a BYE that arrived just before it
		// (pion does: in a test, 1 of 3 viewers got the BYE without the wait).
		select {
		case <-time.After(byeLinger):
		case <-vs.done:
		}
		vs.log.Info("stream ended: closing viewer")
		vs.close(false)
	})
}

// muxConn is the viewer's conn of the server's UDP mux (nil if it has none to batch).
func (vs *whepSession) muxConn() *muxConn {
	if len(vs.tracks) == 0 || vs.s.batchMux == nil {
		return nil
	}
	params, err := vs.tracks[0].sender.Transport().ICETransport().GetLocalParameters()
	if err != nil {
		return nil
	}
	return vs.s.batchMux.conn(params.UsernameFragment)
}

// selectLayers moves each video track to the best layer the stream has (ABR by viewer bandwidth
// comes on top of this).
func (vs *whepSession) selectLayers() {
	for _, vt := range vs.tracks {
		if vt.track.Kind() != hub.KindVideo || len(vt.track.Layers()) < 2 {
			continue
		}
		best, cur := vt.track.BestLayer(), vt.reader.Layer()
		if best != nil && best != cur && (cur == nil || best.Bitrate() > cur.Bitrate()+cur.Bitrate()/5) {
			vt.reader.SwitchLayer(best)
		}
	}
}

// byeLinger is how long a viewer's session stays open after its BYE.
const byeLinger = 200 * time.Millisecond

// sayGoodbye tells the viewer the stream ended (RTCP BYE) before the connection closes.
func (vs *whepSession) sayGoodbye() {
	bye := &rtcp.Goodbye{Reason: "stream ended"}
	for _, vt := range vs.tracks {
		bye.Sources = append(bye.Sources, vt.ssrc)
	}
	_ = vs.pc.WriteRTCP([]rtcp.Packet{bye})
}

func (vs *whepSession) close(bool) {
	vs.once.Do(func() {
		vs.s.remove(vs)
		vs.s.stats.WHEPSessions.Add(-1)
		close(vs.done)
		vs.mu.Lock()
		vs.closed = true
		for _, vt := range vs.tracks {
			if vt.reader != nil {
				vt.reader.Close()
			}
		}
		if vs.group != nil {
			vs.s.fanout.leave(vs)
		}
		vs.mu.Unlock()
		if err := vs.pc.Close(); err != nil && !errors.Is(err, webrtc.ErrConnectionClosed) {
			vs.log.Debug("close peer connection", "err", err)
		}
		vs.grant.End()
	})
}
