package loadtest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// Run publishes the synthetic stream over WHIP (unless cfg.NoPublish), starts cfg.Subscribers WHEP
// subscribers at cfg.RampPerSecond, waits until every one has connected or failed, waits
// cfg.Warmup, and measures for cfg.Duration. Then it ends every session (DELETE), closes every
// PeerConnection, waits for every goroutine it started, and returns the report.
//
// Failed subscribers are counted in the report, not returned as an error. Run returns an error
// for an invalid config, when the publisher cannot connect, or when ctx ends before the
// measurement window; if ctx ends inside the window, the report covers the shortened window and
// is marked Interrupted. Progress and failures are logged to log; nil discards them.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("stream", cfg.Stream)

	se := newSettingEngine(cfg.Server)
	sent := new(arrivals)
	pubAPI, err := newPublisherAPI(se, sent)
	if err != nil {
		return nil, err
	}
	subAPIs, err := newSubscriberAPIs(se, cfg.ReceiverReports, cfg.PionReceive, cfg.GRO)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		Proxy:               nil, // talk to the server directly, whatever the environment says
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     30 * time.Second,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport: transport,
		// A stream manager redirects WHIP and WHEP to a node; the token is meant for that node.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("%w: more than 5 redirects", errHTTP)
			}
			if a := via[0].Header.Get("Authorization"); a != "" {
				req.Header.Set("Authorization", a) // the publisher's or the subscriber's token
			}
			return nil
		},
	}
	r := &run{
		cfg:     cfg,
		log:     log,
		sig:     &signaler{client: client, token: cfg.Token},
		subAPIs: subAPIs,
		sent:    sent,
		out:     new(outTimes),
	}
	return r.execute(ctx, pubAPI)
}

// mediaPublisher is the publisher of a run: WHIP (publisher) or SRT (srtPublisher).
type mediaPublisher interface {
	Close(ctx context.Context)
	snapshot() publisherSnapshot
	// pacerStats is the video pacer's settings and waits inside the window, once Close returned;
	// nil when the publisher has no pacer of its own.
	pacerStats() *PacerStats
	// writeDelays is the time from the stamp to the publisher's socket inside the window, once
	// Close returned; nil when the send times are not known (packets measured from the stamp).
	writeDelays() *Percentiles
	// Failed reports whether the publisher's connection failed after it was up.
	Failed() bool
}

// run is the state of one Run call. Only the goroutine of execute touches its fields, except
// measuring (read by every track reader and the publisher's video loop) and failures (counted by
// connect goroutines).
type run struct {
	cfg       Config
	log       *slog.Logger
	sig       *signaler
	subAPIs   *subscriberAPIs
	sent      *arrivals // when the WHIP publisher's sockets wrote its RTP datagrams
	out       *outTimes // when each stamped packet went out, for the subscribers (sendstamp.go)
	measuring atomic.Bool
	failures  atomic.Int64
	pub       mediaPublisher
	subs      []*subscriber
	stopped   bool
}

// window holds the readings taken around the measurement window.
type window struct {
	started, start, end     time.Time
	interrupted             bool
	baseline, first, last   []procSample
	selfFirst, selfLast     selfUsage
	pubFirst, pubLast       publisherSnapshot
	fanoutFirst, fanoutLast fanoutSample
	rampTime                time.Duration
}

func (r *run) execute(ctx context.Context, pubAPI *webrtc.API) (*Report, error) {
	w := window{started: time.Now()}
	if !r.cfg.NoPublish {
		var pub mediaPublisher
		var err error
		if r.cfg.ingest() == ProtoSRT {
			pub, err = startSRTPublisher(r.cfg, r.log)
		} else {
			pub, err = startPublisher(ctx, r.cfg, pubAPI, r.sent, r.out,
				&signaler{client: r.sig.client, token: r.cfg.publishToken()}, &r.measuring, r.log)
		}
		if err != nil {
			return nil, err
		}
		r.pub = pub
	}
	// However Run ends, sessions are ended and PeerConnections closed.
	defer r.stopAll(ctx)

	w.baseline = sampleProcs(r.cfg.PIDs)
	rampStart := time.Now()
	if err := r.ramp(ctx); err != nil {
		return nil, err
	}
	w.rampTime = time.Since(rampStart)
	if err := sleep(ctx, r.cfg.Warmup); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}

	// The node's metrics are scraped outside the CPU samples, so that serving them is not charged
	// to the window.
	w.fanoutFirst = r.scrapeNode(ctx)
	w.first, w.selfFirst = sampleProcs(r.cfg.PIDs), sampleSelf()
	if r.pub != nil {
		w.pubFirst = r.pub.snapshot()
	}
	w.start = time.Now()
	r.measuring.Store(true)
	r.log.Info("measuring", "duration", r.cfg.Duration)
	w.interrupted = sleep(ctx, r.cfg.Duration) != nil
	r.measuring.Store(false)
	w.end = time.Now()
	w.last, w.selfLast = sampleProcs(r.cfg.PIDs), sampleSelf()
	if r.pub != nil {
		w.pubLast = r.pub.snapshot()
	}
	w.fanoutLast = r.scrapeNode(ctx)
	if w.interrupted {
		r.log.Warn("interrupted; reporting the shortened window", "measured", w.end.Sub(w.start).Round(time.Millisecond))
	}

	// Join every track reader before their counters are read.
	r.stopAll(ctx)
	return r.report(&w), nil
}

// ramp starts the subscribers at the configured rate and waits until each has connected or failed.
func (r *run) ramp(ctx context.Context) error {
	endpoint := r.cfg.endpoint("whep")
	interval := time.Duration(float64(time.Second) / r.cfg.RampPerSecond)
	start := time.Now()
	var wg sync.WaitGroup
	var err error
	for i := range r.cfg.Subscribers {
		if err = sleep(ctx, time.Until(start.Add(time.Duration(i)*interval))); err != nil {
			break
		}
		s := newSubscriber(i, r.sig, r.out, &r.measuring)
		r.subs = append(r.subs, s)
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, r.cfg.ConnectTimeout)
			defer cancel()
			switch r.cfg.protocol() {
			case ProtoSRT:
				s.setupErr = s.connectSRT(r.cfg)
			case ProtoRTSP:
				s.setupErr = s.connectRTSP(r.cfg)
			default:
				s.setupErr = s.connect(cctx, r.subAPIs, endpoint)
			}
			if s.setupErr != nil && ctx.Err() == nil {
				level := slog.LevelDebug
				if r.failures.Add(1) <= 5 {
					level = slog.LevelWarn
				}
				r.log.Log(ctx, level, "subscriber failed", "session", i, "err", s.setupErr)
			}
		})
	}
	wg.Wait()
	if err != nil {
		return fmt.Errorf("ramp: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ramp: %w", err)
	}
	r.log.Info("subscribers started", "requested", r.cfg.Subscribers,
		"failed", r.failures.Load(), "ramp", time.Since(start).Round(time.Millisecond))
	return nil
}

// stopAll closes the subscribers (several at a time) and then the publisher. It is idempotent.
func (r *run) stopAll(ctx context.Context) {
	if r.stopped {
		return
	}
	r.stopped = true
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, s := range r.subs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.close(cctx); err != nil {
				r.log.Debug("close subscriber", "session", s.id, "err", err)
			}
		})
	}
	wg.Wait()
	if r.pub != nil {
		r.pub.Close(cctx)
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// scrapeNode reads the node's fan-out histogram, when cfg.NodeMetrics is set. It runs even when
// ctx has ended, for the report of an interrupted window.
func (r *run) scrapeNode(ctx context.Context) fanoutSample {
	if r.cfg.NodeMetrics == "" {
		return fanoutSample{}
	}
	h, err := scrapeFanout(context.WithoutCancel(ctx), r.sig.client, r.cfg.NodeMetrics)
	if err != nil {
		r.log.Warn("node metrics", "err", err)
	}
	return fanoutSample{hist: h, err: err}
}

// sampleProcs reads every pid's CPU time and memory.
func sampleProcs(pids []int) []procSample {
	out := make([]procSample, len(pids))
	for i, pid := range pids {
		out[i] = sampleProc(pid)
	}
	return out
}
