package hub

import "sync/atomic"

// historySize is how many packets of a layer are kept to answer retransmission requests (NACK).
// One history per layer serves every reader; at 2 Mbps 1,024 packets are about five seconds.
const historySize = 1024

// history is a ring of the latest packets of a layer indexed by sequence number. One goroutine
// writes; any goroutine reads.
type history struct {
	slots [historySize]atomic.Pointer[Packet]
}

func (h *history) put(p *Packet) {
	h.slots[p.Header.SequenceNumber%historySize].Store(p)
}

// get returns the packet of the source ssrc with sequence number seq, or nil if it has left the
// ring.
func (h *history) get(ssrc uint32, seq uint16) *Packet {
	p := h.slots[seq%historySize].Load()
	if p == nil || p.Header.SequenceNumber != seq || p.Header.SSRC != ssrc {
		return nil
	}
	return p
}
