package webrtcserver

import (
	"errors"
	"io"
	"sync/atomic"
	"time"

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

	// Owned by the group's goroutine once the viewer is in a group.
	group       *group
	out         *srtpOut // the node's own SRTP, shared by the viewer's tracks; nil: pion's
	rewriter    *hub.Rewriter
	hdr         rtp.Header // scratch header for forwarding
	rtxHdr      rtp.Header // scratch header for retransmissions
	last        *hub.Layer // layer of the last packet
	gone        bool       // a write found the viewer's connection closed
	sentPackets uint32
	sentOctets  uint32 // payload octets, as RTCP counts them
	lastArrival int64  // the last forwarded packet's arrival, UnixNano
	lastStamp   uint32 // and its RTP timestamp, as the viewer got it
	reported    bool   // a sender report of the track was sent
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

// senderReportInterval is how often a viewer gets an RTCP sender report per track.
const senderReportInterval = time.Second

// drain writes what the reader has queued to the viewer; it runs on the track's group goroutine.
// packets and bytes count what was sent.
func (vt *viewerTrack) drain(packets, bytes *uint64) {
	r := vt.reader
	if vt.gone {
		return
	}
	for {
		e, ok := r.Next()
		if !ok {
			return
		}
		if e.Packet.Layer != vt.last {
			if vt.last != nil {
				r.Unsubscribe() // switched layers: leave the old one
			}
			vt.last = e.Packet.Layer
		}
		if !vt.rewriter.Rewrite(e, vt.ssrc, vt.pt, &vt.hdr) {
			continue
		}
		if b := vt.group.batch; b != nil {
			b.at = e.Packet.ArrivalNanos
		}
		n, err := vt.write(&vt.hdr, e.Packet.Payload)
		if err != nil {
			if errors.Is(err, io.ErrClosedPipe) || errors.Is(err, io.EOF) {
				vt.gone = true // the viewer is closing; its session takes it out of the group
				return
			}
			continue
		}
		*packets++
		*bytes += uint64(n)
		vt.sentPackets++
		vt.sentOctets += uint32(len(e.Packet.Payload))
		vt.lastArrival, vt.lastStamp = e.Packet.ArrivalNanos, vt.hdr.Timestamp
	}
}

// write sends one RTP packet to the viewer, on the group's goroutine.
func (vt *viewerTrack) write(h *rtp.Header, payload []byte) (int, error) {
	if vt.out != nil {
		return vt.out.write(vt.writer, h, payload)
	}
	return vt.writer.WriteRTP(h, payload)
}

// reportIfDue sends the viewer's RTCP sender reports, on the group's goroutine: every
// senderReportInterval (by the media's arrival times) one compound packet with a report for each
// track that has sent, and a track's first report as soon as it has sent a packet. A report
// carries the RTP timestamp of the track's last packet at that packet's arrival, and its counts so
// far (RFC 3550 §6.4.1); receivers use them for lip sync and round-trip time. One write per
// viewer, not one per track: each is a system call of its own through pion.
func (vs *whepSession) reportIfDue() {
	var now int64
	first := false
	for _, vt := range vs.tracks {
		now = max(now, vt.lastArrival)
		first = first || (vt.sentPackets > 0 && !vt.reported)
	}
	due := now-vs.lastReport >= int64(senderReportInterval)
	if !due && !first {
		return
	}
	if due {
		vs.lastReport = now
	}
	reports := make([]rtcp.Packet, 0, len(vs.tracks))
	for _, vt := range vs.tracks {
		if vt.sentPackets == 0 || (!due && vt.reported) {
			continue
		}
		vt.reported = true
		reports = append(reports, &rtcp.SenderReport{
			SSRC:        vt.ssrc,
			NTPTime:     ntpTime(vt.lastArrival),
			RTPTime:     vt.lastStamp,
			PacketCount: vt.sentPackets,
			OctetCount:  vt.sentOctets,
		})
	}
	if _, err := vs.tracks[0].sender.Transport().WriteRTCP(reports); err == nil {
		vs.s.stats.SenderReports.Add(uint64(len(reports)))
	}
}

// ntpTime is a Unix time in nanoseconds as a 64-bit NTP timestamp.
func ntpTime(unixNanos int64) uint64 {
	const ntpEpochOffset = 2208988800 // seconds from 1900 to 1970
	secs := uint64(unixNanos/1e9) + ntpEpochOffset
	frac := uint64(unixNanos%1e9) << 32 / 1e9
	return secs<<32 | frac
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
						vt.group.requestRetransmission(vt, seq)
						return true
					})
				}
			}
		}
	}
}

// retransmit resends a NACKed packet from the layer's shared history, on the group's goroutine.
func (vt *viewerTrack) retransmit(outSeq uint16) {
	layer, ssrc, seq, ok := vt.rewriter.SourceSequence(outSeq)
	if !ok {
		return
	}
	p := layer.Retransmission(ssrc, seq)
	if p == nil {
		return
	}
	if !vt.rewriter.RewriteRetransmission(p, outSeq, vt.ssrc, vt.pt, &vt.rtxHdr) {
		return
	}
	if b := vt.group.batch; b != nil {
		b.at = 0 // a resend's delay is not the fan-out's
	}
	if _, err := vt.write(&vt.rtxHdr, p.Payload); err == nil {
		vt.s.stats.Retransmissions.Add(1)
	}
}
