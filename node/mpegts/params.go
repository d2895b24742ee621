package mpegts

import (
	"bytes"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/streamfleet/streamfleet/node/rtpformat"
)

// paramSets keeps the last parameter sets of an H264 or H265 track and puts them in front of
// every random-access picture that arrives without them: WebRTC viewers (and MPEG-TS readers
// joining late) can only start decoding at a keyframe that carries them in-band.
type paramSets struct {
	h265          bool
	vps, sps, pps []byte
}

// ready reports whether every parameter set the codec needs has been seen.
func (p *paramSets) ready() bool {
	return p.sps != nil && p.pps != nil && (!p.h265 || p.vps != nil)
}

// apply records the parameter sets of au and returns au with the missing ones prepended when it
// is a random-access picture. The returned slice may share au's NAL units.
func (p *paramSets) apply(au [][]byte) [][]byte {
	var hasVPS, hasSPS, hasPPS, random bool
	for _, nalu := range au {
		if len(nalu) == 0 {
			continue
		}
		if p.h265 {
			switch h265.NALUType((nalu[0] >> 1) & 0x3f) {
			case h265.NALUType_VPS_NUT:
				p.vps, hasVPS = clone(p.vps, nalu), true
			case h265.NALUType_SPS_NUT:
				p.sps, hasSPS = clone(p.sps, nalu), true
			case h265.NALUType_PPS_NUT:
				p.pps, hasPPS = clone(p.pps, nalu), true
			case h265.NALUType_IDR_W_RADL, h265.NALUType_IDR_N_LP, h265.NALUType_CRA_NUT:
				random = true
			}
			continue
		}
		switch h264.NALUType(nalu[0] & 0x1f) {
		case h264.NALUTypeSPS:
			p.sps, hasSPS = clone(p.sps, nalu), true
		case h264.NALUTypePPS:
			p.pps, hasPPS = clone(p.pps, nalu), true
		case h264.NALUTypeIDR:
			random = true
		}
	}
	if !random {
		return au
	}
	var prefix [][]byte
	if p.h265 && !hasVPS && p.vps != nil {
		prefix = append(prefix, p.vps)
	}
	if !hasSPS && p.sps != nil {
		prefix = append(prefix, p.sps)
	}
	if !hasPPS && p.pps != nil {
		prefix = append(prefix, p.pps)
	}
	if prefix == nil {
		return au
	}
	return append(prefix, au...)
}

// clone returns nalu, reusing old when it holds the same bytes.
func clone(old, nalu []byte) []byte {
	if bytes.Equal(old, nalu) {
		return old
	}
	return append([]byte(nil), nalu...)
}

// h264Fmtp is the fmtp line of an H264 track with the given SPS: packetization mode 1 (FU-A,
// STAP-A) and the SPS's profile and level, without which pion binds no WebRTC viewer.
func h264Fmtp(sps []byte) string {
	return fmt.Sprintf("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=%02x%02x%02x", sps[1], sps[2], sps[3])
}

// videoMime returns the hub MIME type of an H264 or H265 paramSets.
func (p *paramSets) mime() string {
	if p.h265 {
		return rtpformat.MimeH265
	}
	return rtpformat.MimeH264
}
