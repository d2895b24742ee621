package webrtcserver

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/node/auth"
	"github.com/streamfleet/streamfleet/node/hub"
)

// whipSession is one publisher.
type whipSession struct {
	peer
	media []offeredMedia // the offer's m-lines, in hub track order

	ready chan struct{} // closed once pub is set
	pub   *hub.Publication
	grant *auth.Grant // ended with the session
}

func (s *Server) startWHIP(r *http.Request, w http.ResponseWriter, grant *auth.Grant) (*whipSession, string, *apiError) {
	o, aerr := s.readOffer(w, r)
	if aerr != nil {
		return nil, "", aerr
	}
	media := chooseCodecs(o.parsed)
	if len(media) > hub.MaxTracks {
		return nil, "", errorf(http.StatusBadRequest, "too_many_tracks", fmt.Sprintf("the offer has %d audio and video sections, at most %d are accepted", len(media), hub.MaxTracks))
	}
	specs := make([]hub.TrackSpec, 0, len(media))
	for i, m := range media {
		if !m.ok {
			return nil, "", errorf(http.StatusNotAcceptable, "unsupported_codec",
				fmt.Sprintf("m-line %d (%s) offers no codec the node passes through (video: H264, VP8, VP9, AV1; audio: Opus)", i, m.kind))
		}
		specs = append(specs, hub.TrackSpec{Codec: m.codec.RTPCodecCapability})
	}
	if st, err := s.hub.Stream(o.name); err == nil && st.Live() {
		return nil, "", errorf(http.StatusConflict, "stream_busy", fmt.Sprintf("stream %s is already being published", o.name))
	}

	pc, aerr := s.newPeerConnection(s.ingest)
	if aerr != nil {
		return nil, "", aerr
	}
	ss := &whipSession{peer: newPeer(s, pc, "whip", o.name.String()), media: media, ready: make(chan struct{}), grant: grant}
	pc.OnTrack(ss.onTrack)
	ss.watchState(ss.close)

	answer, aerr := negotiate(r.Context(), pc, o, ss.preferCodecs)
	if aerr != nil {
		_ = pc.Close()
		return nil, "", aerr
	}
	pub, err := s.hub.Publish(o.name, specs)
	if err != nil {
		_ = pc.Close()
		if errors.Is(err, hub.ErrStreamBusy) {
			return nil, "", errorf(http.StatusConflict, "stream_busy", err.Error())
		}
		return nil, "", errorf(http.StatusServiceUnavailable, "unavailable", err.Error())
	}
	ss.pub = pub
	close(ss.ready)
	if !s.add(ss) {
		pub.End()
		_ = pc.Close()
		return nil, "", errorf(http.StatusServiceUnavailable, "shutting_down", "the node is shutting down")
	}
	s.stats.WHIPSessions.Add(1)
	ss.added.Store(true)
	// The timer is not stopped on close: firing on a closed session does nothing.
	time.AfterFunc(s.cfg.ConnectTimeout, func() {
		select {
		case <-ss.connected:
		default:
			s.stats.SessionsTimedOut.Add(1)
			ss.log.Info("publisher never connected: closing", "timeout", s.cfg.ConnectTimeout)
			ss.close(true) // nothing was ever published: no grace to wait for
		}
	})
	ss.log.Info("publisher joined", "tracks", len(specs))
	return ss, answer, nil
}

// preferCodecs narrows every m-line of the answer to the one codec the node chose, so the track's
// codec is known before the first packet.
func (ss *whipSession) preferCodecs() error {
	for _, tr := range ss.pc.GetTransceivers() {
		m := ss.mediaFor(tr.Mid())
		if m == nil {
			continue
		}
		c := m.codec
		for _, sc := range supportedCodecs(true) {
			if strings.EqualFold(sc.MimeType, c.MimeType) {
				c.RTCPFeedback = sc.RTCPFeedback
				break
			}
		}
		if err := tr.SetCodecPreferences([]webrtc.RTPCodecParameters{c}); err != nil {
			return fmt.Errorf("codec %s: %w", c.MimeType, err)
		}
	}
	return nil
}

func (ss *whipSession) mediaFor(mid string) *offeredMedia {
	for i := range ss.media {
		if ss.media[i].mid == mid {
			return &ss.media[i]
		}
	}
	return nil
}

func (ss *whipSession) trackFor(recv *webrtc.RTPReceiver) *hub.Track {
	for _, tr := range ss.pc.GetTransceivers() {
		if tr.Receiver() != recv {
			continue
		}
		for i := range ss.media {
			if ss.media[i].mid == tr.Mid() {
				return ss.pub.Stream().Tracks()[i]
			}
		}
	}
	return nil
}

// onTrack runs on pion's goroutine for each incoming RTP stream (one per simulcast RID) and feeds
// the hub until the session ends.
func (ss *whipSession) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	<-ss.ready
	if !ss.s.enter() {
		return
	}
	defer ss.s.wg.Done()
	track := ss.trackFor(recv)
	if track == nil {
		ss.log.Warn("media for an unknown m-line: ignored", "ssrc", remote.SSRC())
		return
	}
	if !strings.EqualFold(remote.Codec().MimeType, track.Codec().MimeType) {
		ss.log.Warn("publisher sent another codec than negotiated: ignored", "got", remote.Codec().MimeType, "want", track.Codec().MimeType)
		return
	}
	layer := track.Layer(remote.RID())
	if layer == nil {
		ss.log.Warn("too many simulcast layers: RTP stream ignored", "rid", remote.RID(), "max", hub.MaxLayers)
		return
	}
	ssrc := uint32(remote.SSRC())
	layer.SetKeyframeRequester(func() {
		_ = ss.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	})
	ss.log.Info("track started", "kind", track.Kind(), "codec", track.Codec().MimeType, "rid", remote.RID(), "ssrc", ssrc)
	var pkt rtp.Packet
	for {
		buf := make([]byte, 1500) // shared with every reader: one allocation per ingested packet
		n, _, err := remote.Read(buf)
		if err != nil {
			return
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		layer.WritePacket(&hub.Packet{Header: pkt.Header, Payload: pkt.Payload})
	}
}

// close ends the session. A publisher that asked to stop (DELETE) ends its stream at once; one
// that vanished leaves it waiting for the grace period.
func (ss *whipSession) close(stop bool) {
	ss.once.Do(func() {
		ss.s.remove(ss)
		ss.s.stats.WHIPSessions.Add(-1)
		if stop {
			ss.pub.End()
		} else {
			ss.pub.Close()
		}
		_ = ss.pc.Close()
		ss.grant.End()
		ss.log.Info("publisher left", "stopped", stop)
	})
}
