package streammanager

import "github.com/prometheus/client_golang/prometheus"

func (m *Manager) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"manager": m.cfg.ID}
	counter := func(name, help string, f func() uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "streamfleet_manager", Name: name, Help: help, ConstLabels: labels,
		}, func() float64 { return float64(f()) }))
	}
	counter("lookups_total", "Publish and subscribe lookups, redirects included.", m.stats.Lookups.Load)
	counter("lookup_failures_total", "Lookups answered with an error (no capacity, no node).", m.stats.LookupFailures.Load)
	counter("redirects_total", "WHIP and WHEP requests redirected to a node.", m.stats.Redirects.Load)
	counter("kv_watch_errors_total", "KV watches that failed or ended and were restarted.", m.stats.WatchErrors.Load)
	counter("kv_bad_entries_total", "KV entries ignored: undecodable or of an unknown version.", m.stats.BadEntries.Load)
	counter("nodes_failed_total", "Nodes seen failing (heartbeats stopped).", m.stats.NodesFailed.Load)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "streamfleet_manager", Name: "leader", Help: "1 while this manager holds the leader lease.", ConstLabels: labels,
	}, func() float64 {
		if m.Leading() {
			return 1
		}
		return 0
	}))
	return reg
}
