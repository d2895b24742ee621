package hub

import (
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Rewriter turns the packets a reader gets — from several layers, publishers or upstreams over
// time — into one continuous RTP stream for one output: sequence numbers without jumps, timestamps
// that keep advancing with wall time across a switch, and the output's own SSRC and payload type.
// One goroutine calls Rewrite; SourceSequence may be called from another.
type Rewriter struct {
	clockRate uint32

	started   bool
	sourceID  uint32 // SSRC of the current source
	layer     *Layer
	seqOffset uint16
	tsOffset  uint32
	lastSeq   uint16 // last sequence number written
	lastTS    uint32
	lastWall  int64

	// segment describes the current source for SourceSequence: first output seq (bits 0–15),
	// last output seq (16–31), seq offset (32–47), valid flag (48).
	segment atomic.Uint64
	source  atomic.Pointer[segmentSource]
}

type segmentSource struct {
	layer    *Layer
	ssrc     uint32
	tsOffset uint32
}

// NewRewriter returns a rewriter for a codec clock rate in Hz.
func NewRewriter(clockRate uint32) *Rewriter {
	if clockRate == 0 {
		clockRate = 90000
	}
	return &Rewriter{clockRate: clockRate}
}

// Rewrite fills out with e's header mapped onto the output stream. ssrc and payloadType are the
// output's. It returns false for a packet that must not be sent (older than the current source's
// start).
func (w *Rewriter) Rewrite(e Entry, ssrc uint32, payloadType uint8, out *rtp.Header) bool {
	p := e.Packet
	h := &p.Header
	now := p.ArrivalNanos
	switch {
	case !w.started:
		w.started = true
		w.seqOffset, w.tsOffset = 0, 0
		w.newSegment(p, h.SequenceNumber)
	case p.Layer != w.layer || h.SSRC != w.sourceID:
		// A new source (layer switch, returning publisher, new upstream): continue the sequence
		// and advance the timestamp by the wall time since the last packet written.
		nextSeq := w.lastSeq + 1
		w.seqOffset = nextSeq - h.SequenceNumber
		elapsed := max(now-w.lastWall, int64(time.Millisecond))
		ticks := uint32(uint64(elapsed) * uint64(w.clockRate) / uint64(time.Second))
		w.tsOffset = w.lastTS + ticks - h.Timestamp
		w.newSegment(p, nextSeq)
	case e.Resync:
		// Resuming after this reader lost packets: close the sequence gap so the viewer does not
		// ask for packets it was never going to get. Timestamps run on unchanged.
		nextSeq := w.lastSeq + 1
		w.seqOffset = nextSeq - h.SequenceNumber
		w.newSegment(p, nextSeq)
	default:
		if int16(h.SequenceNumber+w.seqOffset-w.firstSeq()) < 0 {
			return false // from before this segment
		}
	}
	*out = *h
	out.SSRC = ssrc
	out.PayloadType = payloadType
	out.SequenceNumber = h.SequenceNumber + w.seqOffset
	out.Timestamp = h.Timestamp + w.tsOffset
	if int16(out.SequenceNumber-w.lastSeq) > 0 || w.lastWall == 0 {
		w.lastSeq = out.SequenceNumber
		w.lastTS = out.Timestamp
		w.lastWall = now
	}
	seg := w.segment.Load()
	w.segment.Store(seg&^(0xffff<<16) | uint64(w.lastSeq)<<16)
	return true
}

func (w *Rewriter) firstSeq() uint16 { return uint16(w.segment.Load()) }

func (w *Rewriter) newSegment(p *Packet, firstOut uint16) {
	w.layer = p.Layer
	w.sourceID = p.Header.SSRC
	w.source.Store(&segmentSource{layer: p.Layer, ssrc: p.Header.SSRC, tsOffset: w.tsOffset})
	w.segment.Store(uint64(firstOut) | uint64(firstOut)<<16 | uint64(w.seqOffset)<<32 | 1<<48)
}

// SourceSequence maps an output sequence number (from a viewer's NACK) back to the layer, source
// SSRC and sequence number it was sent from. ok is false when the number is not in the current
// source's range.
func (w *Rewriter) SourceSequence(outSeq uint16) (layer *Layer, ssrc uint32, seq uint16, ok bool) {
	seg := w.segment.Load()
	src := w.source.Load()
	if seg>>48 == 0 || src == nil {
		return nil, 0, 0, false
	}
	first, last, offset := uint16(seg), uint16(seg>>16), uint16(seg>>32)
	if int16(outSeq-first) < 0 || int16(last-outSeq) < 0 {
		return nil, 0, 0, false
	}
	return src.layer, src.ssrc, outSeq - offset, true
}

// RewriteRetransmission fills out with the header of p resent as output sequence number outSeq,
// using the offsets of the segment p belongs to. It is safe to call while another goroutine calls
// Rewrite.
func (w *Rewriter) RewriteRetransmission(p *Packet, outSeq uint16, ssrc uint32, payloadType uint8, out *rtp.Header) bool {
	src := w.source.Load()
	if src == nil || src.layer != p.Layer || src.ssrc != p.Header.SSRC {
		return false
	}
	*out = p.Header
	out.SSRC = ssrc
	out.PayloadType = payloadType
	out.SequenceNumber = outSeq
	out.Timestamp = p.Header.Timestamp + src.tsOffset
	return true
}
