// Package cascade pulls streams a node does not carry from upstream nodes: the relay and edge side
// of the origin → relay → edge cascade.
//
// A Puller is the hub's Source (hub.SetSource): the first reader of a stream the node lacks (a
// WHEP viewer, an RTSP or SRT reader, a downstream node) makes the hub call Pull, which starts one
// pull per stream, however many readers wait for it. A pull is an RTSP/TCP session (gortsplib) to
// the upstream's RTSP port asking for every layer (?layers=all, authenticated with the cluster
// secret); it publishes the upstream's tracks into the local hub and writes each media's RTP, payload
// unchanged, to its layer. Viewers' keyframe requests go up the same session as RTCP PLI, coalesced
// by the hub per layer. When the stream has had no reader for the linger time the pull ends it. When
// the upstream dies or stalls, the pull detaches its publication (the hub's grace period keeps the
// readers attached), pulls from the next upstream and publishes the same tracks again, which the hub
// takes as the returning publisher: readers carry on, resynchronised on the next keyframe.
package cascade

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/rtspserver"
)

// Stats are a puller's counters.
type Stats struct {
	PullsStarted    atomic.Uint64 // pulls started: a stream's first reader on this node
	PullsLingered   atomic.Uint64 // pulls stopped after the linger without readers
	SessionsOpened  atomic.Uint64 // upstream sessions that published (one per pull, one more per failover)
	Failovers       atomic.Uint64 // upstream sessions lost mid-stream (died or stalled), then replaced
	AttemptFailures atomic.Uint64 // upstream attempts that failed: refused, down, stream missing, stalled before data
	Resolved        atomic.Uint64 // attempts for which the resolver gave candidates
	PacketsIn       atomic.Uint64 // RTP packets received from upstreams
	// LastFailoverGapNanos is the last failover's gap: from the last packet of the lost upstream
	// to the first packet of the next.
	LastFailoverGapNanos atomic.Int64
}

// PullInfo describes one pull.
type PullInfo struct {
	Stream   streamname.Name
	Upstream string // the upstream tried or pulled from now (host:port)
	Sessions int    // upstream sessions open now: 0 (between upstreams) or 1
}

// Puller pulls streams from upstream nodes into a hub. It implements hub.Source.
type Puller struct {
	cfg       Config
	upstreams []string // host:port
	hub       *hub.Hub
	log       *slog.Logger

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	mu     sync.Mutex // guards pulls and closed; never held while calling out
	pulls  map[streamname.Name]*pull
	closed bool
	wg     sync.WaitGroup // one per pull goroutine

	stats Stats
}

// New validates cfg and returns a puller for h. It does nothing until the hub asks it to Pull.
func New(cfg Config, h *hub.Hub, log *slog.Logger) (*Puller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cascade config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ups := make([]string, len(cfg.Upstreams))
	for i, u := range cfg.Upstreams {
		ups[i], _ = ParseUpstream(u)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Puller{cfg: cfg, upstreams: ups, hub: h, log: log, ctx: ctx, cancel: cancel, pulls: map[streamname.Name]*pull{}}, nil
}

// Stats returns the puller's counters.
func (p *Puller) Stats() *Stats { return &p.stats }

// Upstreams are the upstreams, as host:port, in order.
func (p *Puller) Upstreams() []string { return slices.Clone(p.upstreams) }

// Pulls lists the pulls under way, sorted by stream.
func (p *Puller) Pulls() []PullInfo {
	p.mu.Lock()
	out := make([]PullInfo, 0, len(p.pulls))
	for _, pl := range p.pulls {
		info := PullInfo{Stream: pl.name, Sessions: int(pl.sessions.Load())}
		if u := pl.upstream.Load(); u != nil {
			info.Upstream = *u
		}
		out = append(out, info)
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Stream < out[j].Stream })
	return out
}

// Pull implements hub.Source: it starts the pull of name or joins the one under way, and waits
// until the stream is published in the hub or the pull fails.
func (p *Puller) Pull(ctx context.Context, name streamname.Name) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	pl := p.pulls[name]
	if pl == nil {
		pl = &pull{p: p, name: name, log: p.log.With("stream", name), ready: make(chan struct{})}
		p.pulls[name] = pl
		p.wg.Add(1)
		p.stats.PullsStarted.Add(1)
		go pl.run()
	}
	p.mu.Unlock()
	select {
	case <-pl.ready:
		return pl.err
	case <-ctx.Done():
		return fmt.Errorf("wait for %s from upstream: %w", name, ctx.Err())
	}
}

// Close stops every pull (ending its stream) and waits for them.
func (p *Puller) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

// pull is the pull of one stream: one goroutine (run) and at most one upstream session at a time.
type pull struct {
	p    *Puller
	name streamname.Name
	log  *slog.Logger

	ready     chan struct{} // closed once the stream is published, or with err once the pull failed
	err       error
	readyOnce sync.Once

	sessions atomic.Int32 // upstream sessions open now
	upstream atomic.Pointer[string]

	specs []hub.TrackSpec // the tracks last published; owned by run
}

// Reasons a session ends other than an upstream failure.
var (
	errLinger = errors.New("no reader for the linger time")
	errEnded  = errors.New("the local stream ended")
)

func (pl *pull) finish(err error) {
	pl.readyOnce.Do(func() {
		pl.err = err
		close(pl.ready)
	})
}

// remove takes the pull out of the puller's map, so the next reader starts a new one. It comes
// before the stream ends, so no reader joins a pull that is going away.
func (pl *pull) remove() {
	p := pl.p
	p.mu.Lock()
	if p.pulls[pl.name] == pl {
		delete(p.pulls, pl.name)
	}
	p.mu.Unlock()
}

// run pulls from one upstream after the other until the stream is no longer wanted.
//
// Attempts go in rounds: each attempt takes the first candidate (resolver's, then static) not
// tried yet in the round, the upstream just lost last; a round fails when every candidate has been
// tried. An upstream that flowed and was lost starts a fresh round.
func (pl *pull) run() {
	p := pl.p
	defer p.wg.Done()
	defer pl.remove()
	var pub *hub.Publication // the last publication, detached (Close) between sessions
	var lastLost int64       // UnixNano of the last packet of the last upstream lost, 0 if none
	tried := map[string]bool{}
	lost := "" // the upstream lost last: tried last in every round until another one flows
	next := 0  // where the static list's rotation starts
	failed, missing := 0, 0
	backoff := p.cfg.RetryBackoff
	var lastErr error
	for {
		up, why := pl.next(tried, lost, next)
		if up == "" && failed == 0 {
			// nothing to try at all: the resolver knows no upstream and there is no static list
			p.stats.AttemptFailures.Add(1)
			failed, lastErr = 1, why
			if errors.Is(why, hub.ErrStreamNotFound) {
				missing = 1
			}
			pl.log.Info("no upstream to pull from", "error", why)
		}
		if up == "" {
			// A whole round failed.
			if pub == nil {
				if missing == failed {
					pl.finish(fmt.Errorf("%s: no upstream has it: %w", pl.name, hub.ErrStreamNotFound))
				} else {
					pl.finish(fmt.Errorf("%w: %w", ErrUpstreamUnavailable, lastErr))
				}
				return
			}
			if missing == failed {
				// The stream ended upstream. The detached publication cannot end it; taking it over
				// again with the same tracks can, so its readers learn now rather than after the grace.
				if again, err := p.hub.Publish(pl.name, pl.specs); err == nil {
					again.End()
				}
				pl.log.Info("pull stopped: no upstream has the stream any more")
				return
			}
			failed, missing = 0, 0
			clear(tried)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
			case <-pub.Stream().Done():
				t.Stop()
			}
			backoff = min(backoff*2, p.cfg.MaxBackoff)
			if p.ctx.Err() != nil {
				pl.remove()
				pub.End()
				pl.finish(ErrClosed)
				return
			}
			if pub.Stream().Ended() {
				pl.log.Info("pull stopped: the stream ended while no upstream had it")
				return
			}
			continue
		}
		tried[up] = true
		if i := slices.Index(p.upstreams, up); i >= 0 {
			next = (i + 1) % len(p.upstreams)
		}
		res := pl.session(up, &pub, lastLost)
		switch {
		case errors.Is(res.err, errLinger):
			pl.remove()
			pub.End()
			p.stats.PullsLingered.Add(1)
			pl.log.Info("pull stopped: no reader", "linger", p.cfg.Linger)
			return
		case errors.Is(res.err, errEnded):
			pl.log.Info("pull stopped: stream ended")
			return
		case p.ctx.Err() != nil:
			pl.remove()
			if pub != nil {
				pub.End()
			}
			pl.finish(ErrClosed)
			return
		}
		if res.flowed {
			p.stats.Failovers.Add(1)
			lastLost = res.lastPacket
			failed, missing, backoff, lost = 0, 0, p.cfg.RetryBackoff, up
			clear(tried)
			pl.log.Warn("upstream lost: failing over", "upstream", up, "error", res.err)
		} else {
			p.stats.AttemptFailures.Add(1)
			failed++
			if errors.Is(res.err, hub.ErrStreamNotFound) {
				missing++
			}
			lastErr = res.err
			pl.log.Info("upstream attempt failed", "upstream", up, "error", res.err)
		}
		if pub != nil && pub.Stream().Ended() {
			pl.log.Info("pull stopped: the stream ended while no upstream had it")
			return
		}
	}
}

// next picks the upstream of the next attempt: the first candidate not tried in this round, lost
// only when nothing else is left. The candidates are the resolver's, asked now, then the static
// list rotated to start at next. None left: "" and, when there were no candidates at all, why.
func (pl *pull) next(tried map[string]bool, lost string, next int) (string, error) {
	p := pl.p
	var cands []string
	var why error
	if r := p.cfg.Resolver; r != nil {
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.RTSPTimeout)
		ups, err := r.Upstreams(ctx, pl.name)
		cancel()
		why = err
		for _, u := range ups {
			hp, err := ParseUpstream(u)
			if err != nil {
				pl.log.Debug("resolver gave a bad upstream", "upstream", u, "error", err)
				continue
			}
			if !slices.Contains(cands, hp) {
				cands = append(cands, hp)
			}
		}
		if len(cands) > 0 {
			p.stats.Resolved.Add(1)
		}
	}
	for i := range p.upstreams {
		if u := p.upstreams[(next+i)%len(p.upstreams)]; !slices.Contains(cands, u) {
			cands = append(cands, u)
		}
	}
	if lost != "" && !slices.Contains(cands, lost) {
		// The resolver no longer lists it (it ended the stream, or died): ask it once more, so
		// an upstream that ended the stream says so (404) and the stream ends here at once.
		cands = append(cands, lost)
	}
	fallback := ""
	for _, c := range cands {
		switch {
		case tried[c]:
		case c == lost:
			fallback = c
		default:
			return c, nil
		}
	}
	if fallback != "" {
		return fallback, nil
	}
	if len(cands) == 0 {
		if why == nil {
			why = errors.New("the upstream resolver knows no upstream")
		}
		return "", fmt.Errorf("resolve upstream of %s: %w", pl.name, why)
	}
	return "", nil
}

// sessionResult is how an upstream session ended.
type sessionResult struct {
	flowed     bool  // packets came: the session worked before it ended
	lastPacket int64 // UnixNano of its last packet
	err        error
}

// session runs one upstream session: DESCRIBE every layer, publish (or publish again) into the
// hub, SETUP, PLAY, and forward packets until the upstream fails, the stream has had no reader for
// the linger time, or the puller closes. *pub is the current publication; lastLost, when not zero,
// is when the previous upstream's last packet came, for the failover gap.
func (pl *pull) session(up string, pub **hub.Publication, lastLost int64) (res sessionResult) {
	p := pl.p
	pl.upstream.Store(&up)
	tcp := gortsplib.TransportTCP
	c := &gortsplib.Client{
		Scheme: "rtsp", Host: up, Transport: &tcp,
		ReadTimeout: p.cfg.RTSPTimeout, WriteTimeout: p.cfg.RTSPTimeout,
		UserAgent: "streamfleet-node",
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(p.ctx, p.cfg.RTSPTimeout)
			defer cancel()
			return (&net.Dialer{}).DialContext(ctx, network, address)
		},
		OnDecodeError: func(error) {},
		OnPacketsLost: func(uint64) {},
	}
	if err := c.Start2(); err != nil {
		res.err = fmt.Errorf("connect %s: %w", up, err)
		return res
	}
	stop := context.AfterFunc(p.ctx, c.Close) // Close interrupts a request under way
	defer func() {
		stop()
		c.Close()
	}()

	u := &base.URL{Scheme: "rtsp", Host: up, Path: "/" + string(pl.name), RawQuery: rtspserver.LayersQuery + "=" + rtspserver.LayersAll}
	if p.cfg.ClusterSecret != "" {
		u.User = url.UserPassword(rtspserver.ClusterUser, p.cfg.ClusterSecret)
	}
	desc, answer, err := c.Describe(u)
	if err != nil {
		var bad liberrors.ErrClientBadStatusCode
		switch {
		case errors.As(err, &bad) && bad.Code == base.StatusNotFound:
			res.err = fmt.Errorf("%s on %s: %w", pl.name, up, hub.ErrStreamNotFound)
		case errors.As(err, &bad) && bad.Code == base.StatusUnauthorized:
			res.err = fmt.Errorf("%s: %w", up, ErrUnauthorized)
		default:
			res.err = fmt.Errorf("describe %s on %s: %w", pl.name, up, err)
		}
		return res
	}
	plan, err := planPull(answer.Body)
	if err == nil && len(plan.layers) != len(desc.Medias) {
		err = fmt.Errorf("%w: %d medias, %d described", ErrBadSession, len(desc.Medias), len(plan.layers))
	}
	if err != nil {
		res.err = fmt.Errorf("%s on %s: %w", pl.name, up, err)
		return res
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		res.err = fmt.Errorf("setup %s on %s: %w", pl.name, up, err)
		return res
	}

	pb, err := p.hub.Publish(pl.name, plan.specs)
	if err != nil {
		res.err = fmt.Errorf("publish %s: %w", pl.name, err)
		return res
	}
	returning := *pub != nil && (*pub).Stream() == pb.Stream()
	*pub = pb
	pl.specs = plan.specs
	st := pb.Stream()
	tracks := st.Tracks()
	layers := make([]*hub.Layer, len(plan.layers))
	// fail gives up before the session played: a stream that was just made ends (nobody reads it
	// yet); one taken over again is detached as after a failed session.
	fail := func(err error) sessionResult {
		for _, l := range layers {
			if l != nil {
				l.SetKeyframeRequester(nil)
			}
		}
		if returning {
			pb.Close()
		} else {
			pb.End()
			*pub = nil
		}
		res.err = err
		return res
	}
	var lastPacket atomic.Int64
	var flowed atomic.Bool
	for i, lp := range plan.layers {
		l := tracks[lp.track].Layer(lp.rid)
		if l == nil {
			return fail(fmt.Errorf("%s on %s: %w: too many layers", pl.name, up, ErrBadSession))
		}
		layers[i] = l
		if returning {
			l.ResyncReaders() // the new upstream's packets decode from its next keyframe
		}
		m := desc.Medias[i]
		var ssrc atomic.Uint32
		l.SetKeyframeRequester(func() {
			// gortsplib drops it once the session is gone
			_ = c.WritePacketRTCP(m, &rtcp.PictureLossIndication{MediaSSRC: ssrc.Load()})
		})
		c.OnPacketRTP(m, m.Formats[0], func(pkt *rtp.Packet) {
			now := time.Now().UnixNano()
			lastPacket.Store(now)
			if !flowed.Load() {
				flowed.Store(true)
				if lastLost != 0 {
					gap := time.Duration(now - lastLost)
					p.stats.LastFailoverGapNanos.Store(int64(gap))
					pl.log.Info("failover: first packet from the new upstream", "upstream", up, "gap", gap)
				}
			}
			ssrc.Store(pkt.SSRC)
			p.stats.PacketsIn.Add(1)
			// gortsplib reuses its buffers; the hub owns what it is given.
			hp := &hub.Packet{Header: pkt.Header, Payload: append(make([]byte, 0, len(pkt.Payload)), pkt.Payload...)}
			hp.Header.CSRC = slices.Clone(pkt.CSRC)
			l.WritePacket(hp)
		})
	}
	// Any RTCP from the upstream (its sender reports, its heartbeats while it has nothing to send)
	// shows it is alive: only silence is a stall.
	var lastHeard atomic.Int64
	c.OnPacketRTCPAny(func(*description.Media, rtcp.Packet) { lastHeard.Store(time.Now().UnixNano()) })
	detach := func() {
		for _, l := range layers {
			l.SetKeyframeRequester(nil)
		}
	}
	if _, err := c.Play(nil); err != nil {
		return fail(fmt.Errorf("play %s on %s: %w", pl.name, up, err))
	}
	p.stats.SessionsOpened.Add(1)
	pl.sessions.Add(1)
	defer pl.sessions.Add(-1)
	pl.finish(nil)
	pl.log.Info("pulling from upstream", "upstream", up, "tracks", len(plan.specs), "layers", len(plan.layers), "returning", returning)

	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }() // returns once c closes
	defer func() {
		c.Close()
		<-waited
	}()

	// The first packet may take longer than a stall: an upstream that just started its own pull
	// waits for a keyframe of each video layer.
	lastPacket.Store(time.Now().Add(p.cfg.RTSPTimeout - p.cfg.StallTimeout).UnixNano())
	tick := time.NewTicker(min(p.cfg.StallTimeout/4, 100*time.Millisecond))
	defer tick.Stop()
	var idleSince time.Time
	end := func(err error) sessionResult {
		res := sessionResult{flowed: flowed.Load(), lastPacket: lastPacket.Load(), err: err}
		if !errors.Is(err, errLinger) && !errors.Is(err, ErrClosed) {
			detach()
			pb.Close() // the hub keeps the readers for its grace period
		}
		return res
	}
	for {
		select {
		case err := <-waited:
			waited <- err // for the deferred wait
			return end(fmt.Errorf("upstream %s: %w", up, err))
		case <-p.ctx.Done():
			return end(ErrClosed)
		case <-st.Done():
			return end(errEnded)
		case now := <-tick.C:
			if time.Duration(now.UnixNano()-max(lastPacket.Load(), lastHeard.Load())) > p.cfg.StallTimeout {
				return end(fmt.Errorf("%s: %w: no packet for %v", up, ErrStalled, p.cfg.StallTimeout))
			}
			if st.ReaderCount() > 0 {
				idleSince = time.Time{}
			} else if idleSince.IsZero() {
				idleSince = now
			} else if now.Sub(idleSince) >= p.cfg.Linger {
				return end(errLinger)
			}
		}
	}
}
