package loadtest

import (
	"context"
	"time"
)

// DefaultPacing is the default pacing factor of the video: libwebrtc (Chromium and everything
// built on it) drains its send queue at 2.5 × the target bitrate.
const DefaultPacing = 2.5

// pacerBurst is how much the pacer lets out at once: packets that fit in pacerBurst of the pacing
// rate leave together, later ones wait their turn. A browser's pacer wakes every few milliseconds
// (libwebrtc's loop runs at most 5 ms apart) and sends what its budget allows at each wake-up, so
// its packets leave in clumps of up to about 5 ms worth and never faster; anything larger would
// let a keyframe out as the very burst pacing is meant to prevent. At 600k × 2.5 this is less than
// one packet (the first of a frame still goes at once, then one packet per packet-time); at
// 2M × 2.5 about three.
const pacerBurst = 5 * time.Millisecond

// pacer is the publisher's video pacer, a leaky bucket: a packet of n bytes may leave at
// max(now, next), after which next moves on by n·8/rate. next trails now by at most pacerBurst
// (unused time is not saved up beyond that), so an idle pacer lets pacerBurst worth out at once
// and a keyframe of N bytes takes about N·8/rate. Packets are never dropped: frames produced
// while a keyframe drains queue behind it, as in a browser's pacer queue. A pacer with a zero rate
// does not pace. Not safe for concurrent use.
type pacer struct {
	nsPerByte float64   // 8e9 / the pacing rate in bit/s; 0: no pacing
	next      time.Time // the earliest the next packet may leave

	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// newPacer returns the pacer for video at bitrate paced at factor × bitrate (0: not paced), on
// the real clock.
func newPacer(bitrate Bitrate, factor float64) *pacer {
	p := &pacer{now: time.Now, sleep: sleep}
	if factor > 0 {
		p.nsPerByte = 8e9 / (factor * float64(bitrate))
	}
	return p
}

// reserve books a packet of size bytes that is ready at now and returns when it may leave.
func (p *pacer) reserve(now time.Time, size int) time.Time {
	if p.nsPerByte == 0 {
		return now
	}
	if floor := now.Add(-pacerBurst); p.next.Before(floor) {
		p.next = floor
	}
	at := now
	if p.next.After(now) {
		at = p.next
	}
	p.next = p.next.Add(time.Duration(float64(size) * p.nsPerByte))
	return at
}

// wait blocks until a packet of size bytes may leave. It fails only when ctx ends first.
func (p *pacer) wait(ctx context.Context, size int) error {
	if p.nsPerByte == 0 {
		return nil
	}
	now := p.now()
	if d := p.reserve(now, size).Sub(now); d > 0 {
		return p.sleep(ctx, d)
	}
	return nil
}
