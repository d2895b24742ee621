package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamfleet/streamfleet/node/auth"
)

// authConfig is the configuration of the node's one authorizer, which every protocol server asks:
// Config.Auth, with the older WebRTC.PublishToken and PlayToken as the static tokens when Auth
// sets none.
func (c Config) authConfig() auth.Config {
	a := c.Auth
	if a.PublishToken == "" {
		a.PublishToken = c.WebRTC.PublishToken
	}
	if a.PlayToken == "" {
		a.PlayToken = c.WebRTC.PlayToken
	}
	if a.NodeID == "" {
		a.NodeID = c.ID
	}
	return a
}

// Auth is the node's authorizer.
func (n *Node) Auth() *auth.Authorizer { return n.auth }

// registerAuthMetrics exports the authorizer's counters.
func registerAuthMetrics(reg *prometheus.Registry, id string, role Role, a *auth.Authorizer) {
	labels := prometheus.Labels{"node": id, "role": string(role)}
	st := a.Stats()
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "auth_allowed_total",
			Help: "Publish and play requests allowed, on every protocol.", ConstLabels: labels},
			func() float64 { return float64(st.Allowed.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "auth_webhook_calls_total",
			Help: "Events sent to the auth webhook (validate and invalidate).", ConstLabels: labels},
			func() float64 { return float64(st.WebhookCalls.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "auth_webhook_errors_total",
			Help: "Auth webhook calls that timed out or failed.", ConstLabels: labels},
			func() float64 { return float64(st.WebhookErrors.Load()) }),
	)
	for _, code := range auth.Codes {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "streamfleet", Name: "auth_refused_total",
			Help: "Publish and play requests refused, by code.", ConstLabels: mergeLabels(labels, "code", code)},
			func() float64 { return float64(st.Refused(code)) }))
	}
}
