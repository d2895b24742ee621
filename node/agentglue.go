package node

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/streamfleet/streamfleet/internal/contract"
	"github.com/streamfleet/streamfleet/node/agent"
)

// startAgent registers the node with the stream managers over NATS, if configured.
func (n *Node) startAgent(ctx context.Context) error {
	if !n.cfg.NATS.Enabled() {
		return nil
	}
	id := agent.Identity{
		ID:   n.cfg.ID,
		Role: string(n.cfg.Role),
		URLs: agent.URLs(n.cfg.NATS.AdvertiseHost, n.cfg.NATS.PublicHTTPURL, n.listener.Addr(), n.srt.Addr(), n.rtsp.Addr()),
	}
	ws, ss, rs := n.webrtc.Stats(), n.srt.Stats(), n.rtsp.Stats()
	probe := agent.Probe{
		Sessions: func() map[string]int {
			return map[string]int{
				contract.SessionsWHIP: int(ws.WHIPSessions.Load()), contract.SessionsWHEP: int(ws.WHEPSessions.Load()),
				contract.SessionsSRTPublish: int(ss.PublishSessions.Load()), contract.SessionsSRTRead: int(ss.ReadSessions.Load()),
				contract.SessionsRTSPPublish: int(rs.PublishSessions.Load()), contract.SessionsRTSPRead: int(rs.ReadSessions.Load()),
			}
		},
		BytesIn:  n.hub.Stats().BytesIn.Load,
		BytesOut: func() uint64 { return ws.BytesOut.Load() + ss.BytesOut.Load() },
		Streams:  n.streamLoads,
	}
	a, err := agent.New(n.cfg.NATS, id, probe, nil, n.log)
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	n.agent = a
	n.drain.a.Store(a)
	return nil
}

// streamLoads lists the hub's streams for heartbeats: viewers are the readers of the most read
// track, the bitrate is the sum of each original track's best layer.
func (n *Node) streamLoads() []contract.StreamLoad {
	streams := n.hub.Streams()
	out := make([]contract.StreamLoad, 0, len(streams))
	for _, s := range streams {
		l := contract.StreamLoad{Name: s.Name().String(), Live: s.Live()}
		for _, t := range s.Tracks() {
			l.Viewers = max(l.Viewers, t.ReaderCount())
			if t.Source() == nil {
				if b := t.BestLayer(); b != nil {
					l.BitrateIn += int64(b.Bitrate())
				}
			}
		}
		out = append(out, l)
	}
	return out
}

// Agent is the node's NATS agent, or nil without --nats.
func (n *Node) Agent() *agent.Agent { return n.agent }

// drainGate refuses new WHIP and WHEP sessions while the managers drain the node; sessions
// already open continue.
func (n *Node) drainGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := n.agent; a != nil && r.Method == http.MethodPost && a.Draining() &&
			(strings.HasPrefix(r.URL.Path, "/whip/") || strings.HasPrefix(r.URL.Path, "/whep/")) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Access-Control-Allow-Origin", "*")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"code":"draining","message":"this node is draining: ask the stream manager for another"}` + "\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// drainFlag tells the SRT and RTSP servers whether the managers drain the node: they start
// before the agent, so it is read atomically.
type drainFlag struct{ a atomic.Pointer[agent.Agent] }

// Draining reports whether new sessions are refused.
func (d *drainFlag) Draining() bool {
	a := d.a.Load()
	return a != nil && a.Draining()
}
