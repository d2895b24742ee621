package rtspserver

import (
	"encoding/hex"
	"strings"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/node/hub"
)

// H264 NAL unit types (ITU-T H.264 table 7-1, RFC 6184).
const (
	nalIDR   = 5
	nalSPS   = 7
	nalPPS   = 8
	nalSTAPA = 24
	nalFUA   = 28
)

// maxParamPacket is the largest parameter-set packet inserted; bigger sets go as two packets.
const maxParamPacket = 1200

// h264Capability fills in the fmtp WebRTC viewers need: packetization-mode 1 and the
// profile-level-id of the SPS (from the SDP), or constrained baseline 3.1 without one.
func h264Capability(c webrtc.RTPCodecCapability, f *format.H264) webrtc.RTPCodecCapability {
	plid := "42e01f"
	if len(f.SPS) >= 4 {
		plid = hex.EncodeToString(f.SPS[1:4])
	}
	c.SDPFmtpLine = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + strings.ToLower(plid)
	return c
}

// h264Params makes sure every IDR access unit of an H264 layer is preceded by SPS and PPS, as
// WebRTC viewers need: RTSP publishers (ffmpeg with global headers) send them only in the SDP. It
// keeps the last parameter sets seen, in the SDP or in band, and when an access unit's first IDR
// slice arrives without them in the same access unit, writes a STAP-A with both first. Later packets
// are renumbered so the sequence has no gap or duplicate. One ingest goroutine owns it.
type h264Params struct {
	sps, pps []byte

	started  bool
	auTS     uint32 // timestamp of the current access unit
	auSPS    bool   // an SPS came in the current access unit
	auPPS    bool
	auIDR    bool // the current access unit's IDR was handled
	seqShift uint16

	inserted uint64 // parameter-set packets written, read by the owner for stats
}

func newH264Params(f *format.H264) *h264Params {
	h := &h264Params{}
	if len(f.SPS) > 0 {
		h.sps = append([]byte(nil), f.SPS...)
	}
	if len(f.PPS) > 0 {
		h.pps = append([]byte(nil), f.PPS...)
	}
	return h
}

// process renumbers p and writes it, preceded by the parameter sets if its access unit needs them.
func (h *h264Params) process(p *hub.Packet, write func(*hub.Packet)) {
	p.Header.SequenceNumber += h.seqShift
	if !h.started || p.Header.Timestamp != h.auTS {
		h.started, h.auTS = true, p.Header.Timestamp
		h.auSPS, h.auPPS, h.auIDR = false, false, false
	}
	idr := h.scan(p.Payload)
	if idr && !h.auIDR {
		h.auIDR = true
		if !(h.auSPS && h.auPPS) && h.sps != nil && h.pps != nil {
			h.insert(p, write)
		}
	}
	write(p)
}

// scan records the parameter sets in payload and reports whether it starts an IDR slice.
func (h *h264Params) scan(payload []byte) (idr bool) {
	if len(payload) == 0 {
		return false
	}
	switch typ := payload[0] & 0x1f; typ {
	case nalSTAPA:
		for b := payload[1:]; len(b) >= 2; {
			n := int(b[0])<<8 | int(b[1])
			b = b[2:]
			if n == 0 || n > len(b) {
				break
			}
			if h.nal(b[:n]) {
				idr = true
			}
			b = b[n:]
		}
		return idr
	case nalFUA:
		return len(payload) >= 2 && payload[1]&0x80 != 0 && payload[1]&0x1f == nalIDR
	default:
		return h.nal(payload)
	}
}

// nal records one whole NAL unit and reports whether it is an IDR slice.
func (h *h264Params) nal(n []byte) bool {
	switch n[0] & 0x1f {
	case nalSPS:
		h.sps = append(h.sps[:0], n...)
		h.auSPS = true
	case nalPPS:
		h.pps = append(h.pps[:0], n...)
		h.auPPS = true
	case nalIDR:
		return true
	}
	return false
}

// insert writes the parameter sets ahead of p with p's timestamp and sequence number, and moves p
// and every later packet one (or two) numbers on.
func (h *h264Params) insert(p *hub.Packet, write func(*hub.Packet)) {
	hdr := p.Header
	hdr.Marker = false
	hdr.CSRC = nil
	if size := 1 + 2 + len(h.sps) + 2 + len(h.pps); size <= maxParamPacket {
		b := make([]byte, 0, size)
		b = append(b, nalSTAPA|(h.sps[0]&0x60)) // NRI of the SPS
		b = append(b, byte(len(h.sps)>>8), byte(len(h.sps)))
		b = append(b, h.sps...)
		b = append(b, byte(len(h.pps)>>8), byte(len(h.pps)))
		b = append(b, h.pps...)
		write(&hub.Packet{Header: hdr, Payload: b})
		h.seqShift++
		h.inserted++
	} else {
		for _, n := range [][]byte{h.sps, h.pps} {
			hdr.SequenceNumber = p.Header.SequenceNumber
			write(&hub.Packet{Header: hdr, Payload: append([]byte(nil), n...)})
			p.Header.SequenceNumber++
			h.seqShift++
		}
		h.inserted++
		return
	}
	p.Header.SequenceNumber++
}
