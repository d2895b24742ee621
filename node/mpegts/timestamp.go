package mpegts

// MPEG-TS timestamps (PTS, DTS) count a 90 kHz clock in 33 bits; they wrap every 26.5 hours.
const (
	tsClock = 90000
	tsWrap  = int64(1) << 33
	tsMask  = tsWrap - 1
)

// diff33 is the signed difference a-b of two 33-bit timestamps, taking the shorter way round
// the wrap.
func diff33(a, b int64) int64 {
	d := (a - b) & tsMask
	if d >= tsWrap/2 {
		d -= tsWrap
	}
	return d
}

// floorDiv divides rounding toward negative infinity, so a timestamp before the origin maps
// consistently too.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// ptsToRTP maps the 33-bit PTS of one track onto its RTP clock. Every timestamp is converted
// from the absolute number of 90 kHz ticks elapsed since the stream's origin (64-bit, wraps
// unfolded), never by adding rounded deltas, so tracks of different clock rates cannot drift
// apart however long the stream runs.
type ptsToRTP struct {
	rate    int64 // RTP clock rate
	started bool
	prev    int64 // last 33-bit PTS seen
	elapsed int64 // ticks from the origin to prev
}

// convert returns the ticks elapsed since origin (a 33-bit PTS shared by the stream's tracks)
// and the RTP timestamp of pts.
func (c *ptsToRTP) convert(origin, pts int64) (elapsed int64, ts uint32) {
	pts &= tsMask
	if !c.started {
		c.started = true
		c.elapsed = diff33(pts, origin)
	} else {
		c.elapsed += diff33(pts, c.prev)
	}
	c.prev = pts
	return c.elapsed, uint32(floorDiv(c.elapsed*c.rate, tsClock))
}

// rtpToPTS maps one track's RTP timestamps (continuous, as a hub.Rewriter makes them) onto the
// 90 kHz MPEG-TS clock, from the absolute number of RTP ticks since the track's first packet.
type rtpToPTS struct {
	rate    int64
	started bool
	prev    uint32
	elapsed int64 // RTP ticks since the first packet
	base    int64 // PTS of the first packet
}

// convert returns the PTS (not yet wrapped to 33 bits) of RTP timestamp ts; base gives the PTS
// of the track's first packet.
func (c *rtpToPTS) convert(ts uint32, base func() int64) int64 {
	if !c.started {
		c.started = true
		c.base = base()
	} else {
		c.elapsed += int64(int32(ts - c.prev))
	}
	c.prev = ts
	return c.base + floorDiv(c.elapsed*tsClock, c.rate)
}
