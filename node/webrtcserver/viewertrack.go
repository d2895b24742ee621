package webrtcserver

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/node/hub"
)

// viewerTrack sends one hub track to one viewer. It implements webrtc.TrackLocal; the codec match
// of Bind is delegated to pion's TrackLocalStaticRTP, but packets are written straight to the
// binding with a reused header, so forwarding allocates nothing per packet.
type viewerTrack struct {
	*webrtc.TrackLocalStaticRTP // Bind's codec search only; its WriteRTP is never used

	s      *Server
	track  *hub.Track
	sender *webrtc.RTPSender
	reader *hub.Reader

	bound  atomic.Bool
	ssrc   uint32
	pt     uint8
	writer webrtc.TrackLocalWriter

	rewriter *hub.Rewriter
	hdr      rtp.Header // scratch header of the forwarding goroutine
	rtxMu    sync.Mutex
	rtxHdr   rtp.Header // scratch header for retransmissions
}

func newViewerTrack(s *Server, t *hub.Track) (*viewerTrack, error) {
	id := string(t.Kind())
	inner, err := webrtc.NewTrackLocalStaticRTP(t.Codec(), id, "streamfleet")
	if err != nil {
		return nil, err
	}
	return &viewerTrack{TrackLocalStaticRTP: inner, s: s, track: t, rewriter: hub.NewRewriter(t.Codec().ClockRate)}, nil
}

// Bind is called by pion when the track is negotiated.
func (vt *viewerTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, err := vt.TrackLocalStaticRTP.Bind(ctx)
	if err != nil {
		return codec, err
	}
	vt.ssrc = uint32(ctx.SSRC())
	vt.pt = uint8(codec.PayloadType)
	vt.writer = ctx.WriteStream()
	vt.bound.Store(true)
	return codec, nil
}

// statsFlushEvery is how many packets a forwarding goroutine counts locally before adding them to
// the server's shared counters, so viewers do not all write the same cache line per packet.
const statsFlushEvery = 64

// forward copies packets from the reader to the viewer until the reader ends.
func (vt *viewerTrack) forward() {
	r := vt.reader
	var last *hub.Layer
	var packets, bytes uint64
	defer func() { vt.flushStats(&packets, &bytes) }()
	for {
		select {
		case e := <-r.C():
			if e.Packet.Layer != last {
				if last != nil {
					r.Unsubscribe() // switched layers: leave the old one
				}
				last = e.Packet.Layer
			}
			if !vt.rewriter.Rewrite(e, vt.ssrc, vt.pt, &vt.hdr) {
				continue
			}
			n, err := vt.writer.WriteRTP(&vt.hdr, e.Packet.Payload)
			if err != nil {
				if errors.Is(err, io.ErrClosedPipe) || errors.Is(err, io.EOF) {
					return
				}
				continue
			}
			packets++
			bytes += uint64(n)
			if packets == statsFlushEvery {
				vt.flushStats(&packets, &bytes)
			}
		case <-r.Done():
			return
		}
	}
}

func (vt *viewerTrack) flushStats(packets, bytes *uint64) {
	if *packets > 0 {
		vt.s.stats.PacketsOut.Add(*packets)
		vt.s.stats.BytesOut.Add(*bytes)
		*packets, *bytes = 0, 0
	}
}

// readRTCP answers the viewer's feedback: keyframe requests go to the hub (coalesced there),
// NACKs are answered from the layer's shared history. (REMB, for ABR, is not used yet.)
func (vt *viewerTrack) readRTCP() {
	for {
		pkts, _, err := vt.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				vt.s.stats.KeyframeRequestsIn.Add(1)
				if l := vt.reader.Layer(); l != nil {
					l.RequestKeyframe()
				}
			case *rtcp.TransportLayerNack:
				for _, pair := range p.Nacks {
					pair.Range(func(seq uint16) bool {
						vt.retransmit(seq)
						return true
					})
				}
			}
		}
	}
}

func (vt *viewerTrack) retransmit(outSeq uint16) {
	layer, ssrc, seq, ok := vt.rewriter.SourceSequence(outSeq)
	if !ok {
		return
	}
	p := layer.Retransmission(ssrc, seq)
	if p == nil {
		return
	}
	vt.rtxMu.Lock()
	defer vt.rtxMu.Unlock()
	if !vt.rewriter.RewriteRetransmission(p, outSeq, vt.ssrc, vt.pt, &vt.rtxHdr) {
		return
	}
	if _, err := vt.writer.WriteRTP(&vt.rtxHdr, p.Payload); err == nil {
		vt.s.stats.Retransmissions.Add(1)
	}
}
