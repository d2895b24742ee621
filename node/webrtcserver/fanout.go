package webrtcserver

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/node/hub"
)

// Fan-out groups. The viewers of a stream are served in groups of up to groupViewers, each by one
// goroutine: the hub wakes a group once per packet (hub.Notifier) rather than every viewer's
// goroutine, the group writes the packet to each of its viewers in turn — the datagrams collected
// in the group's sendBatch — and sends the round with sendmmsg. Retransmissions and RTCP sender
// reports are written by the group too, so RTP to a viewer only ever comes from its group.

// groupViewers is the most viewers one group goroutine serves: small enough that the last viewer
// of a group is not kept waiting long by the others (a few µs each), large enough that a round
// fills several sendmmsg batches and wakes few goroutines per packet.
const groupViewers = 64

// rtxQueue bounds a group's pending retransmission requests.
const rtxQueue = 256

type fanout struct {
	s      *Server
	mu     sync.Mutex
	groups map[*hub.Stream][]*group
}

type group struct {
	s      *Server
	stream *hub.Stream
	notify *hub.Notifier
	batch  *sendBatch
	rtx    chan rtxRequest
	quit   chan struct{}

	viewers atomic.Pointer[[]*whepSession] // copy-on-write under fanout.mu
	members int                            // joined or joining, under fanout.mu
}

type rtxRequest struct {
	vt  *viewerTrack
	seq uint16 // the viewer's sequence number
}

func newFanout(s *Server) *fanout { return &fanout{s: s, groups: map[*hub.Stream][]*group{}} }

// join puts a connected viewer into a group of its stream and attaches its tracks' readers. It
// returns false if the server is closing.
func (f *fanout) join(vs *whepSession) bool {
	g := f.reserve(vs.stream)
	if g == nil {
		return false
	}
	for _, vt := range vs.tracks {
		vt.group = g
		vt.reader = vt.track.NewNotifiedReader(f.s.cfg.ReaderQueue, g.notify)
	}
	vs.group = g
	if c := vs.muxConn(); c != nil && g.batch != nil {
		vs.conn = c
		c.batch.Store(g.batch)
		vs.ownSRTP(g)
	}
	vs.listHotLines()
	// Published to the group's goroutine last, with everything above.
	f.mu.Lock()
	next := append(append(make([]*whepSession, 0, len(*g.viewers.Load())+1), *g.viewers.Load()...), vs)
	g.viewers.Store(&next)
	f.mu.Unlock()
	return true
}

// ownSRTP gives the viewer's tracks the node's own SRTP sealer, if its DTLS secrets were
// captured (srtpkeys.go); the first packet decides whether it is used.
func (vs *whepSession) ownSRTP(g *group) {
	if vs.keys == nil {
		return
	}
	sealer, err := vs.keys.localSealer()
	if err != nil {
		vs.log.Debug("viewer's SRTP left to pion", "reason", err)
		return
	}
	out := newSRTPOut(sealer, vs.conn, g.batch, &g.s.stats, vs.log)
	for _, vt := range vs.tracks {
		vt.out = out
	}
	// A newly selected pair: pion's next write goes to its address (and is compared again).
	vs.tracks[0].sender.Transport().ICETransport().OnSelectedCandidatePairChange(func(*webrtc.ICECandidatePair) {
		out.reverify.Store(true)
	})
}

// reserve finds or starts a group of the stream with room for one more viewer.
func (f *fanout) reserve(st *hub.Stream) *group {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range f.groups[st] {
		if g.members < groupViewers {
			g.members++
			return g
		}
	}
	batch, err := newSendBatch(f.s.udpConn, &f.s.stats, f.s.pkt)
	if err != nil {
		f.s.log.Warn("fan-out without batched sends", "error", err)
		batch = nil
	}
	g := &group{
		s: f.s, stream: st, notify: hub.NewNotifier(), batch: batch,
		rtx: make(chan rtxRequest, rtxQueue), quit: make(chan struct{}), members: 1,
	}
	g.viewers.Store(&[]*whepSession{})
	if !f.s.enter() {
		batch.close()
		return nil
	}
	f.groups[st] = append(f.groups[st], g)
	go func() {
		defer f.s.wg.Done()
		g.run()
	}()
	return g
}

// leave takes a viewer out of its group; the group's goroutine ends with its last viewer.
func (f *fanout) leave(vs *whepSession) {
	g := vs.group
	if vs.conn != nil {
		vs.conn.batch.Store(nil)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old := *g.viewers.Load()
	next := make([]*whepSession, 0, len(old))
	for _, x := range old {
		if x != vs {
			next = append(next, x)
		}
	}
	g.viewers.Store(&next)
	g.members--
	if g.members > 0 {
		return
	}
	close(g.quit)
	list := f.groups[g.stream]
	for i, x := range list {
		if x == g {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(f.groups, g.stream)
	} else {
		f.groups[g.stream] = list
	}
}

// layerCheckInterval is how often the group reconsiders its viewers' layers.
const layerCheckInterval = time.Second

// run serves the group's viewers until the last one leaves: their packets, retransmissions and
// sender reports, a check of their layers every layerCheckInterval, and the stream's end.
func (g *group) run() {
	var packets, bytes uint64
	tick := time.NewTicker(layerCheckInterval)
	defer tick.Stop()
	ended := g.stream.Done()
	for {
		select {
		case <-g.notify.C():
		case req := <-g.rtx:
			req.vt.retransmit(req.seq)
		case <-g.batch.retryC():
			g.batch.retryRings()
			continue
		case <-tick.C:
			for _, vs := range *g.viewers.Load() {
				vs.selectLayers()
			}
			continue
		case <-ended:
			ended = nil // closed for good: once is enough
			for _, vs := range *g.viewers.Load() {
				g.s.goSession(vs.endOfStream) // closing leaves the group: not on its goroutine
			}
		case <-g.quit:
			g.batch.flush()
			g.batch.drainRings()
			g.batch.close()
			return
		}
		g.notify.Clear()
		g.batch.startRound()
		viewers := *g.viewers.Load()
		for i, vs := range viewers {
			// Each viewer's state is fetched ahead of its turn (prefetch.go).
			if i+3 < len(viewers) {
				viewers[i+3].hot.prefetchList()
			}
			if i+2 < len(viewers) {
				viewers[i+2].hot.prefetch()
			}
			if i+1 < len(viewers) {
				viewers[i+1].prefetchLate()
			}
			for _, vt := range vs.tracks {
				vt.drain(&packets, &bytes)
			}
			vs.reportIfDue()
		}
		for len(g.rtx) > 0 {
			req := <-g.rtx
			req.vt.retransmit(req.seq)
		}
		g.batch.endRound()
		if packets > 0 {
			g.s.stats.PacketsOut.Add(packets)
			g.s.stats.BytesOut.Add(bytes)
			packets, bytes = 0, 0
		}
	}
}

// requestRetransmission queues a NACKed packet for the group; a full queue drops it (counted).
func (g *group) requestRetransmission(vt *viewerTrack, seq uint16) {
	select {
	case g.rtx <- rtxRequest{vt: vt, seq: seq}:
	default:
		g.s.stats.RetransmissionsDropped.Add(1)
	}
}
