package webrtcserver

import (
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// srtpOut encrypts a viewer's RTP with the node's own SRTP keys (see srtpkeys.go, srtpseal.go) and
// queues it in the group's sendmmsg batch, skipping pion's write path. It serves every track of one
// viewer and is used only on the viewer's group goroutine.
type srtpOut struct {
	sealer rtpSealer
	conn   *muxConn
	batch  *sendBatch
	state  srtpState
	proven bool // a packet matched pion's once
	stats  *Stats
	log    *slog.Logger
	// reverify asks that the next packet go through pion again: the viewer's selected ICE pair
	// changed, and pion's write teaches the conn the new address (set from pion's goroutine).
	reverify atomic.Bool

	plain  []byte // the packet in the clear, for the first packet's comparison
	expect []byte // the same packet as the node would encrypt it
	big    []byte // a packet too large for a batch slot
}

type srtpState uint8

const (
	srtpVerify srtpState = iota // the next packet goes both ways, and is compared
	srtpOn                      // the node encrypts
	srtpOff                     // pion encrypts
)

// srtpOverhead bounds what SRTP adds to a packet: the longest tag (16 bytes) and a ROC (4).
const srtpOverhead = 20

func newSRTPOut(sealer rtpSealer, conn *muxConn, batch *sendBatch, stats *Stats, log *slog.Logger) *srtpOut {
	return &srtpOut{sealer: sealer, conn: conn, batch: batch, stats: stats, log: log}
}

// write sends one RTP packet to the viewer: through pion until the node's own encryption proved
// identical to pion's, then by the node alone.
func (o *srtpOut) write(w webrtc.TrackLocalWriter, h *rtp.Header, payload []byte) (int, error) {
	if o.state == srtpOn && o.reverify.Load() {
		o.reverify.Store(false)
		o.state = srtpVerify
	}
	switch o.state {
	case srtpOn:
		return o.send(h, payload)
	case srtpVerify:
		return o.verify(w, h, payload)
	}
	return w.WriteRTP(h, payload)
}

// verify encrypts the packet with the node's sealer and lets pion send it, comparing the two
// ciphertexts on the way out (muxConn.WriteToAddrPort). A packet pion did not send through the
// viewer's conn proves nothing, and the next one is tried.
func (o *srtpOut) verify(w webrtc.TrackLocalWriter, h *rtp.Header, payload []byte) (int, error) {
	if o.plain == nil {
		o.plain, o.expect = make([]byte, 0, sendBufSize), make([]byte, 0, sendBufSize+srtpOverhead)
	}
	n, err := h.MarshalTo(o.plain[:cap(o.plain)])
	if err != nil || n+len(payload) > cap(o.plain) {
		return w.WriteRTP(h, payload)
	}
	plain := append(o.plain[:n], payload...)
	want, err := o.sealer.seal(o.expect[:0], plain, n, h.SSRC, h.SequenceNumber)
	if err != nil {
		o.off("encrypt failed")
		return w.WriteRTP(h, payload)
	}
	o.conn.expect, o.conn.compared, o.conn.matched = want, false, false
	written, err := w.WriteRTP(h, payload)
	o.conn.expect = nil
	switch {
	case !o.conn.compared:
		return written, err
	case o.conn.matched && o.conn.dest() != (netip.AddrPort{}):
		o.state = srtpOn
		o.stats.OwnSRTPVerifications.Add(1)
		if !o.proven {
			o.proven = true
			o.stats.OwnSRTPViewers.Add(1)
		}
	default:
		o.off("ciphertexts differ")
	}
	o.plain, o.expect = nil, nil
	return written, err
}

func (o *srtpOut) off(reason string) {
	o.state = srtpOff
	o.stats.OwnSRTPFallbacks.Add(1)
	o.log.Warn("viewer's SRTP left to pion", "reason", reason)
}

// send encrypts the packet in place in the next batch slot and queues it.
func (o *srtpOut) send(h *rtp.Header, payload []byte) (int, error) {
	c := o.conn
	if c.closed.Load() {
		return 0, io.ErrClosedPipe
	}
	dest := c.dest()
	size := h.MarshalSize() + len(payload)
	if size+srtpOverhead > sendBufSize || !o.batch.fits(nil, dest) {
		return o.sendLarge(h, payload, dest)
	}
	buf := o.batch.slot()
	n, err := h.MarshalTo(buf)
	if err != nil {
		return 0, err
	}
	size = n + copy(buf[n:], payload)
	out, err := o.sealer.seal(buf[:0], buf[:size], n, h.SSRC, h.SequenceNumber)
	if err != nil {
		return 0, err
	}
	o.batch.commit(len(out), dest)
	return len(out), nil
}

// sendLarge encrypts a packet that does not fit a batch slot and writes it at once.
func (o *srtpOut) sendLarge(h *rtp.Header, payload []byte, dest netip.AddrPort) (int, error) {
	plain, err := h.Marshal()
	if err != nil {
		return 0, err
	}
	out, err := o.sealer.seal(o.big[:0], append(plain, payload...), len(plain), h.SSRC, h.SequenceNumber)
	if err != nil {
		return 0, err
	}
	o.big = out
	return o.conn.ap.WriteToAddrPort(out, dest)
}
