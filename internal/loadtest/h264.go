package loadtest

import (
	"math/rand/v2"
)

// H264 NAL unit types used by the synthetic stream (RFC 6184, ITU-T H.264 table 7-1).
const (
	nalSlice = 1  // coded slice of a non-IDR picture
	nalIDR   = 5  // coded slice of an IDR picture
	nalSPS   = 7  // sequence parameter set
	nalPPS   = 8  // picture parameter set
	nalSTAPA = 24 // single-time aggregation packet
	nalFUA   = 28 // fragmentation unit A
)

// maxRTPPayload is the largest RTP payload the publisher sends, leaving room for the RTP header,
// header extensions and SRTP within a 1280-byte path MTU.
const maxRTPPayload = 1200

// h264Fmtp is the format of the synthetic video: constrained baseline, level 3.1, FU-A allowed.
const h264Fmtp = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"

// Parameter sets of a valid 1280x720 constrained-baseline (42e01f) stream. SPS: sps_id 0,
// log2_max_frame_num 4, pic_order_cnt_type 2, 1 reference frame, 80x45 macroblocks, frame_mbs_only,
// direct_8x8_inference, no cropping, no VUI. PPS: CAVLC, one slice group, deblocking control.
var (
	h264SPS = []byte{0x67, 0x42, 0xe0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe4}
	h264PPS = []byte{0x68, 0xce, 0x3c, 0x80}
)

// Slice NAL units start with a plausible slice header (first_mb_in_slice 0, slice_type I or P,
// pps_id 0) so that parsers which peek at it are content; the rest is non-zero filler, so no
// start-code pattern appears if a server converts to Annex B.
var (
	idrPrefix   = []byte{0x65, 0x88, 0x84}
	slicePrefix = []byte{0x41, 0x9a}
)

// keyframeWeight is how many delta frames' worth of bytes a keyframe carries.
const keyframeWeight = 8

// minNALSize keeps every slice large enough to carry a send-time stamp.
const minNALSize = 64

// h264Generator produces the RTP payloads of a synthetic H264 stream sized to hit a bitrate:
// a GOP of gopFrames frames costs bitrate*gop/8 bytes, of which a keyframe takes keyframeWeight
// times a delta frame, and each frame varies by ±10 %. A keyframe is a STAP-A holding SPS and
// PPS, then the IDR slice (as FU-A when larger than maxRTPPayload); a delta frame is one non-IDR
// slice, fragmented the same way. Not safe for concurrent use.
type h264Generator struct {
	deltaBytes int
	keyBytes   int
	gopFrames  int
	frame      int // index of the next frame within the GOP
	rng        *rand.Rand
	filler     []byte
	nal        []byte   // scratch for the NAL unit being built
	buf        []byte   // backing store of packets
	packets    [][]byte // payloads of the last frame, slices of buf
}

// newH264Generator returns a generator for bitrate bits/s at fps frames/s with a keyframe every
// gopFrames frames. seed makes the sizes and filler reproducible.
func newH264Generator(bitrate Bitrate, fps, gopFrames int, seed uint64) *h264Generator {
	gopBytes := float64(bitrate) / 8 * float64(gopFrames) / float64(fps)
	delta := int(gopBytes / float64(keyframeWeight+gopFrames-1))
	g := &h264Generator{
		deltaBytes: max(delta, minNALSize),
		keyBytes:   max(delta*keyframeWeight, minNALSize+len(h264SPS)+len(h264PPS)),
		gopFrames:  gopFrames,
		rng:        rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		filler:     make([]byte, 1<<16),
	}
	for i := range g.filler {
		g.filler[i] = byte(1 + g.rng.IntN(255))
	}
	return g
}

// nextFrame returns the RTP payloads of the next frame, in order; the caller sets the marker bit
// on the last one. A keyframe starts every GOP, or now when forceKeyframe is set (which restarts
// the GOP, as encoders do on a keyframe request). The payloads are valid until the next call.
func (g *h264Generator) nextFrame(forceKeyframe bool) (payloads [][]byte, keyframe bool) {
	nals, keyframe := g.nextAccessUnit(forceKeyframe)
	g.buf = g.buf[:0]
	g.packets = g.packets[:0]
	if keyframe {
		g.appendSTAPA(nals[0], nals[1])
	}
	g.appendNAL(nals[len(nals)-1])
	return g.packets, keyframe
}

// nextAccessUnit returns the NAL units of the next frame, for a publisher that sends access units
// rather than RTP (MPEG-TS over SRT): SPS, PPS and the IDR slice for a keyframe, one slice
// otherwise. The slice is valid until the next call; its last bytes are free for a stamp.
func (g *h264Generator) nextAccessUnit(forceKeyframe bool) (nals [][]byte, keyframe bool) {
	if forceKeyframe {
		g.frame = 0
	}
	keyframe = g.frame == 0
	g.frame = (g.frame + 1) % g.gopFrames
	if keyframe {
		size := g.jitter(g.keyBytes) - len(h264SPS) - len(h264PPS) - 5
		return [][]byte{h264SPS, h264PPS, g.buildNAL(idrPrefix, max(size, minNALSize))}, true
	}
	return [][]byte{g.buildNAL(slicePrefix, max(g.jitter(g.deltaBytes), minNALSize))}, false
}

// jitter returns n varied uniformly by ±10 %.
func (g *h264Generator) jitter(n int) int {
	return int(float64(n) * (0.9 + 0.2*g.rng.Float64()))
}

// buildNAL returns a NAL unit of size bytes starting with prefix, filled with non-zero bytes.
func (g *h264Generator) buildNAL(prefix []byte, size int) []byte {
	g.nal = append(g.nal[:0], prefix...)
	off := g.rng.IntN(len(g.filler))
	for len(g.nal) < size {
		chunk := g.filler[off:min(len(g.filler), off+size-len(g.nal))]
		g.nal = append(g.nal, chunk...)
		off = 0
	}
	return g.nal
}

// appendSTAPA adds one STAP-A payload aggregating the given NAL units.
func (g *h264Generator) appendSTAPA(nals ...[]byte) {
	start := len(g.buf)
	nri := byte(0)
	for _, n := range nals {
		nri = max(nri, n[0]&0x60)
	}
	g.buf = append(g.buf, nri|nalSTAPA)
	for _, n := range nals {
		g.buf = append(g.buf, byte(len(n)>>8), byte(len(n)))
		g.buf = append(g.buf, n...)
	}
	g.packets = append(g.packets, g.buf[start:len(g.buf):len(g.buf)])
}

// appendNAL adds nal as one single-NAL payload, or as FU-A fragments of near-equal size when it
// exceeds maxRTPPayload (so that no fragment is too small to carry a stamp).
func (g *h264Generator) appendNAL(nal []byte) {
	if len(nal) <= maxRTPPayload {
		start := len(g.buf)
		g.buf = append(g.buf, nal...)
		g.packets = append(g.packets, g.buf[start:len(g.buf):len(g.buf)])
		return
	}
	indicator := nal[0]&0xe0 | nalFUA
	typ := nal[0] & 0x1f
	data := nal[1:]
	const room = maxRTPPayload - 2
	n := (len(data) + room - 1) / room
	for i := range n {
		lo, hi := i*len(data)/n, (i+1)*len(data)/n
		header := typ
		if i == 0 {
			header |= 0x80 // S
		}
		if i == n-1 {
			header |= 0x40 // E
		}
		start := len(g.buf)
		g.buf = append(g.buf, indicator, header)
		g.buf = append(g.buf, data[lo:hi]...)
		g.packets = append(g.packets, g.buf[start:len(g.buf):len(g.buf)])
	}
}

// h264Stampable reports whether a payload of the synthetic stream carries a send-time stamp:
// FU-A fragments and single slice NAL units do; the STAP-A with the parameter sets does not.
func h264Stampable(payload []byte) bool {
	if len(payload) < minStampedPayload {
		return false
	}
	switch payload[0] & 0x1f {
	case nalFUA, nalSlice, nalIDR:
		return true
	}
	return false
}
