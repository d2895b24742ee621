package rtspserver

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	tokenpkg "github.com/streamfleet/streamfleet/internal/token"
	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/rtpformat"
)

// publication is an RTSP publisher's hold on a hub stream.
type publication struct {
	srv     *Server
	log     *slog.Logger
	pub     *hub.Publication
	ingests []*ingest
}

// ingest turns the RTP packets of one announced media into packets of one hub track. Its
// onRTP runs on one gortsplib goroutine at a time (the connection's reader for TCP, the UDP
// listener for UDP).
type ingest struct {
	srv    *Server
	media  *description.Media
	format format.Format
	track  *hub.Track
	layer  *hub.Layer
	h264   *h264Params // H264 only
	ssrc   atomic.Uint32
}

// planIngest maps an announced session to hub tracks: per media, the first format a stream may
// carry. It returns the ingests (without tracks yet) and what was left out.
func planIngest(desc *description.Session) (ins []*ingest, specs []hub.TrackSpec, skipped []string) {
	for _, m := range desc.Medias {
		found := false
		for _, f := range m.Formats {
			c, err := rtpformat.FromFormat(f)
			if err != nil {
				skipped = append(skipped, f.Codec())
				continue
			}
			in := &ingest{media: m, format: f}
			if h, ok := f.(*format.H264); ok {
				c = h264Capability(c, h)
				in.h264 = newH264Params(h)
			}
			ins = append(ins, in)
			specs = append(specs, hub.TrackSpec{Codec: c})
			found = true
			break
		}
		if !found && len(m.Formats) == 0 {
			skipped = append(skipped, string(m.Type))
		}
	}
	return ins, specs, skipped
}

// OnAnnounce implements gortsplib.ServerHandlerOnAnnounce: a publisher declares its stream.
func (s *Server) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	sess := sessionOf(ctx.Session)
	log := sess.log.With("path", ctx.Path)
	name, token, err := parseTarget(ctx.Path, ctx.Query)
	if err != nil {
		return s.refuse(log, base.StatusBadRequest, "Bad Request: "+reasonOf(err), fmt.Errorf("rtsp publish: %w", err))
	}
	log = sess.log.With("stream", name)
	if s.draining() {
		return s.refuse(log, base.StatusServiceUnavailable, "Service Unavailable (draining)", fmt.Errorf("rtsp publish %s: %w", name, ErrDraining))
	}
	grant, res, err := s.authorize(log, ctx.Conn.NetConn(), ctx.Request, tokenpkg.ActionPublish, name, token)
	if res != nil {
		return res, err
	}
	sess.grant.End()   // a second ANNOUNCE in the session replaces the first's grant
	sess.grant = grant // ended when the session closes, whatever happens next
	ins, specs, skipped := planIngest(ctx.Description)
	if len(ins) == 0 {
		err := fmt.Errorf("rtsp publish %s: %w (offered: %s)", name, ErrNoSupportedMedia, strings.Join(skipped, ", "))
		return s.refuse(log, base.StatusUnsupportedMediaType,
			"Unsupported Media Type: none of "+strings.Join(skipped, ", ")+" is supported (H264, H265, VP8, VP9, AV1, Opus, AAC)", err)
	}
	if len(skipped) > 0 {
		log.Info("rtsp publish: media left out, unsupported codec", "codecs", strings.Join(skipped, ", "))
	}
	pub, err := s.hub.Publish(name, specs)
	switch {
	case errors.Is(err, hub.ErrStreamBusy):
		return s.refuse(log, base.StatusBadRequest, "Stream Is Already Being Published", err)
	case errors.Is(err, hub.ErrTooManyTracks):
		return s.refuse(log, base.StatusBadRequest, "Bad Request: too many tracks", err)
	case err != nil:
		return s.refuse(log, base.StatusServiceUnavailable, "Service Unavailable", err)
	}
	p := &publication{srv: s, log: log, pub: pub, ingests: ins}
	tracks := pub.Stream().Tracks()
	codecs := make([]string, 0, len(ins))
	for i, in := range ins {
		in.srv = s
		in.track = tracks[i]
		codecs = append(codecs, in.format.Codec())
	}
	sess.pub = p
	log.Info("rtsp publisher announced", "codecs", strings.Join(codecs, ", "))
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// reasonOf renders an error for an RTSP reason phrase: one line, bounded.
func reasonOf(err error) string {
	r := strings.Map(func(c rune) rune {
		if c < 0x20 || c > 0x7e {
			return '?'
		}
		return c
	}, err.Error())
	if len(r) > 120 {
		r = r[:120]
	}
	return r
}

// OnRecord implements gortsplib.ServerHandlerOnRecord: media starts to flow.
func (s *Server) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	sess := sessionOf(ctx.Session)
	p := sess.pub
	if p == nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, errors.New("rtsp record without announce")
	}
	setup := ctx.Session.SetuppedMedias()
	n := 0
	for _, in := range p.ingests {
		if !slices.Contains(setup, in.media) {
			continue // the publisher did not SETUP this media
		}
		in.layer = in.track.Layer("")
		medi, ss := in.media, ctx.Session
		in.layer.SetKeyframeRequester(func() {
			// Cameras honour a PLI; ffmpeg ignores it. gortsplib drops it once the session is gone.
			_ = ss.WritePacketRTCP(medi, &rtcp.PictureLossIndication{MediaSSRC: in.ssrc.Load()})
		})
		ctx.Session.OnPacketRTP(in.media, in.format, in.onRTP)
		n++
	}
	if n == 0 {
		return s.refuse(p.log, base.StatusBadRequest, "Bad Request: no supported media set up", ErrNoSupportedMedia)
	}
	sess.counted = true
	s.stats.PublishSessions.Add(1)
	tr := ctx.Session.SetuppedTransport()
	p.log.Info("rtsp publisher recording", "transport", tr.String(), "tracks", n)
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// stop detaches the publication's keyframe requesters from its layers.
func (p *publication) stop() {
	for _, in := range p.ingests {
		if in.layer != nil {
			in.layer.SetKeyframeRequester(nil)
		}
	}
}

// onRTP hands one packet to the hub. gortsplib reuses its read buffers, so the payload is copied
// into the packet the hub will own.
func (in *ingest) onRTP(pkt *rtp.Packet) {
	in.srv.stats.PacketsIn.Add(1)
	in.ssrc.Store(pkt.SSRC)
	p := &hub.Packet{Header: pkt.Header, Payload: append(make([]byte, 0, len(pkt.Payload)), pkt.Payload...)}
	p.Header.CSRC = slices.Clone(pkt.CSRC)
	if in.h264 == nil {
		in.layer.WritePacket(p)
		return
	}
	before := in.h264.inserted
	in.h264.process(p, in.layer.WritePacket)
	if d := in.h264.inserted - before; d > 0 {
		in.srv.stats.ParamSetsAdded.Add(d)
	}
}
