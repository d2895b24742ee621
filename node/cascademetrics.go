package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamfleet/streamfleet/node/cascade"
	"github.com/streamfleet/streamfleet/node/upstream"
)

// registerCascadeMetrics adds the puller's figures to reg: on every node the counters (zero
// without upstreams), and, while streams are pulled, streamfleet_upstream_pulls{stream}.
func registerCascadeMetrics(reg *prometheus.Registry, id string, role Role, p *cascade.Puller) {
	labels := prometheus.Labels{"node": id, "role": string(role)}
	stat := func(f func(*cascade.Stats) float64) func() float64 {
		return func() float64 {
			if p == nil {
				return 0
			}
			return f(p.Stats())
		}
	}
	counter := func(name, help string, f func(*cascade.Stats) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: name, Help: help, ConstLabels: labels}, stat(f)))
	}
	counter("upstream_pulls_started_total", "Pulls started: a stream's first reader on this node.",
		func(s *cascade.Stats) float64 { return float64(s.PullsStarted.Load()) })
	counter("upstream_pulls_lingered_total", "Pulls stopped after the linger time without readers.",
		func(s *cascade.Stats) float64 { return float64(s.PullsLingered.Load()) })
	counter("upstream_sessions_total", "Upstream sessions that published: one per pull, one more per failover.",
		func(s *cascade.Stats) float64 { return float64(s.SessionsOpened.Load()) })
	counter("upstream_failovers_total", "Upstream sessions lost mid-stream (died or stalled) and replaced by the next upstream.",
		func(s *cascade.Stats) float64 { return float64(s.Failovers.Load()) })
	counter("upstream_attempt_failures_total", "Upstream attempts that failed: refused, down, stream missing, or stalled before data.",
		func(s *cascade.Stats) float64 { return float64(s.AttemptFailures.Load()) })
	counter("upstream_resolved_total", "Pull attempts whose upstreams came from the routing table (--nats).",
		func(s *cascade.Stats) float64 { return float64(s.Resolved.Load()) })
	counter("upstream_packets_total", "RTP packets received from upstreams.",
		func(s *cascade.Stats) float64 { return float64(s.PacketsIn.Load()) })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "streamfleet", Name: "upstream_failover_gap_seconds",
		Help: "The last failover's gap: from the lost upstream's last packet to the next upstream's first.", ConstLabels: labels},
		stat(func(s *cascade.Stats) float64 { return float64(s.LastFailoverGapNanos.Load()) / 1e9 })))
	reg.MustRegister(&pullCollector{p: p, desc: prometheus.NewDesc("streamfleet_upstream_pulls",
		"Upstream sessions open now per pulled stream: 1 while pulling, however many readers; 0 between upstreams.",
		[]string{"stream", "upstream"}, labels)})
}

// registerResolverMetrics adds the routing-table resolver's counters (zero on a node without
// --nats, which has none).
func registerResolverMetrics(reg *prometheus.Registry, id string, role Role, r *upstream.Resolver) {
	labels := prometheus.Labels{"node": id, "role": string(role)}
	counter := func(name, help string, f func(*upstream.Resolver) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: name, Help: help, ConstLabels: labels},
			func() float64 {
				if r == nil {
					return 0
				}
				return float64(f(r))
			}))
	}
	counter("upstream_lookups_total", "Upstream lookups in the node's copy of the routing table.",
		func(r *upstream.Resolver) uint64 { return r.Stats().Lookups.Load() })
	counter("upstream_lookups_empty_total", "Upstream lookups that found no upstream.",
		func(r *upstream.Resolver) uint64 { return r.Stats().Empty.Load() })
	counter("upstream_lookups_frozen_total", "Upstream lookups answered while the heartbeats watch was stalled (liveness judged at the stall's start).",
		func(r *upstream.Resolver) uint64 { return r.Table().FrozenLookups() })
	counter("routing_bad_entries_total", "Routing-table KV entries ignored (undecodable, unknown version).",
		func(r *upstream.Resolver) uint64 { return r.Stats().BadEntries.Load() })
	counter("routing_watch_errors_total", "Routing-table watches that failed or ended and were started again.",
		func(r *upstream.Resolver) uint64 { return r.Stats().WatchErrors.Load() })
}

// pullCollector reports streamfleet_upstream_pulls{stream,upstream} for every pull under way.
type pullCollector struct {
	p    *cascade.Puller
	desc *prometheus.Desc
}

func (c *pullCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *pullCollector) Collect(ch chan<- prometheus.Metric) {
	if c.p == nil {
		return
	}
	for _, pl := range c.p.Pulls() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(pl.Sessions), string(pl.Stream), pl.Upstream)
	}
}
