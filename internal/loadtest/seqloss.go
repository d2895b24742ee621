package loadtest

// seqCounter counts received and lost RTP packets from the gaps in one stream's sequence numbers,
// extended across wrap-around as in RFC 3550 appendix A.1: expected is the span from the first to
// the highest sequence number seen, lost is expected minus received. Late (reordered) packets fill
// their gap; duplicates never make loss negative. A jump of more than maxDropout packets forward
// or backward is taken as a restart of the numbering, not as loss, and counted in resets.
type seqCounter struct {
	started  bool
	base     uint64 // extended sequence number of the first packet of the current run
	highest  uint64 // highest extended sequence number of the current run
	received uint64 // packets received in the current run
	// Totals of earlier runs, folded in at each reset.
	prevExpected uint64
	prevReceived uint64
	resets       uint64
}

const maxDropout = 3000

// add counts one packet.
func (c *seqCounter) add(seq uint16) {
	if !c.started {
		c.started = true
		c.base, c.highest, c.received = uint64(seq), uint64(seq), 1
		return
	}
	last := uint16(c.highest)
	delta := seq - last // modulo 2^16
	switch {
	case delta == 0: // duplicate of the highest
	case delta < 0x8000: // ahead, possibly across a wrap
		if delta > maxDropout {
			c.restart(seq)
			return
		}
		c.highest += uint64(delta)
	default: // behind: late or duplicate
		if -delta > maxDropout {
			c.restart(seq)
			return
		}
	}
	c.received++
}

// restart folds the current run into the totals and starts a new run at seq.
func (c *seqCounter) restart(seq uint16) {
	c.prevExpected += c.highest - c.base + 1
	c.prevReceived += c.received
	c.resets++
	c.base, c.highest, c.received = uint64(seq), uint64(seq), 1
}

// expected returns how many packets the sequence numbers account for.
func (c *seqCounter) expected() uint64 {
	e := c.prevExpected
	if c.started {
		e += c.highest - c.base + 1
	}
	return e
}

// receivedTotal returns how many packets were counted (duplicates included).
func (c *seqCounter) receivedTotal() uint64 {
	return c.prevReceived + c.received
}

// lost returns expected minus received, or zero when duplicates outnumber losses.
func (c *seqCounter) lost() uint64 {
	exp, got := c.expected(), c.receivedTotal()
	if got >= exp {
		return 0
	}
	return exp - got
}
