// Package agent is a node's side of the node ⇄ manager contract (internal/contract): over NATS
// JetStream KV it registers the node, reports its load every second or two, announces the streams
// it carries as routes, and learns from the managers whether it is draining. It imports the
// contract, never the manager.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamfleet/streamfleet/internal/contract"
)

// Identity is who the node is.
type Identity struct {
	ID   string
	Role string
	URLs contract.NodeURLs
}

// Probe is how the agent reads the node's load. Every function must be safe to call from the
// agent's goroutine at any time.
type Probe struct {
	// Sessions counts open sessions per protocol (contract.Sessions* names).
	Sessions func() map[string]int
	// BytesIn and BytesOut are cumulative media byte counters.
	BytesIn, BytesOut func() uint64
	// Streams lists the streams the node carries.
	Streams func() []contract.StreamLoad
}

// Agent runs a node's NATS side. New validates, Start connects and runs in the background, Close
// announces the node's departure and waits for its goroutine.
type Agent struct {
	cfg   Config
	id    Identity
	probe Probe
	log   *slog.Logger

	draining atomic.Bool
	onDrain  func(bool)

	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}

	stats Stats

	closeOnce sync.Once
}

// Stats counts the agent's work, for metrics.
type Stats struct {
	Heartbeats     atomic.Uint64
	WriteErrors    atomic.Uint64
	RoutesAnnounce atomic.Uint64
}

// New validates the configuration and builds an agent. onDrain, if not nil, is called from the
// agent's goroutine whenever the managers' draining decision for this node changes.
func New(cfg Config, id Identity, probe Probe, onDrain func(draining bool), log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, fmt.Errorf("%w: no NATS URL", ErrInvalidConfig)
	}
	if err := contract.CheckID(id.ID); err != nil {
		return nil, fmt.Errorf("%w: node id: %w", ErrInvalidConfig, err)
	}
	if id.URLs.HTTP == "" {
		return nil, fmt.Errorf("%w: node has no HTTP URL", ErrInvalidConfig)
	}
	if probe.Sessions == nil || probe.BytesIn == nil || probe.BytesOut == nil || probe.Streams == nil {
		return nil, fmt.Errorf("%w: incomplete probe", ErrInvalidConfig)
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = contract.HeartbeatInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agent{cfg: cfg, id: id, probe: probe, onDrain: onDrain, log: log.With("component", "agent")}, nil
}

// Conn is the agent's NATS connection once started (nil before), for the node's other readers
// of the managers' buckets (the upstream resolver). The agent owns and closes it.
func (a *Agent) Conn() *nats.Conn { return a.nc }

// Stats returns the agent's counters.
func (a *Agent) Stats() *Stats { return &a.stats }

// Draining reports whether the managers have put this node in draining: it must refuse new
// sessions; existing ones continue.
func (a *Agent) Draining() bool { return a.draining.Load() }

// Start connects to NATS (retrying in the background if the servers are not reachable yet) and
// starts reporting.
func (a *Agent) Start(ctx context.Context) error {
	opts := []nats.Option{
		nats.Name("streamfleet-node-" + a.id.ID),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.Timeout(2 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				a.log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { a.log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted()) }),
	}
	if a.cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(a.cfg.CredsFile))
	}
	if a.cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(a.cfg.TLSCA))
	}
	if a.cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(a.cfg.TLSCert, a.cfg.TLSKey))
	}
	nc, err := nats.Connect(a.cfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	a.nc = nc
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	a.done = make(chan struct{})
	go func() {
		defer close(a.done)
		a.run(runCtx, js)
	}()
	return nil
}

// Close stops reporting, removes the node's heartbeat and routes (so managers stop sending
// clients at once rather than after the heartbeat TTL), and closes the connection.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		if a.cancel == nil {
			return
		}
		a.cancel()
		<-a.done
		a.nc.Close()
	})
	return nil
}

// buckets are the KV buckets the agent writes or watches.
type buckets struct {
	nodes, heartbeats, routes, config jetstream.KeyValue
}

// bind waits until the managers have created the buckets.
func bind(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (*buckets, error) {
	var b buckets
	targets := []struct {
		name string
		kv   *jetstream.KeyValue
	}{
		{contract.BucketNodes, &b.nodes}, {contract.BucketHeartbeats, &b.heartbeats},
		{contract.BucketRoutes, &b.routes}, {contract.BucketConfig, &b.config},
	}
	warned := false
	for _, t := range targets {
		for {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			kv, err := js.KeyValue(actx, t.name)
			cancel()
			if err == nil {
				*t.kv = kv
				break
			}
			if !warned {
				log.Info("waiting for the managers' KV buckets", "bucket", t.name, "err", err)
				warned = true
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return &b, nil
}

func (a *Agent) run(ctx context.Context, js jetstream.JetStream) {
	b, err := bind(ctx, js, a.log)
	if err != nil {
		return
	}
	r := &reporter{a: a, b: b, routes: map[string]contract.Route{}, started: time.Now().UTC()}
	r.putRecord(ctx)
	watch := a.watchAdmin(ctx, b.config)
	heartbeat := time.NewTicker(a.cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	streams := time.NewTicker(250 * time.Millisecond)
	defer streams.Stop()
	r.syncRoutes(ctx, false)
	r.heartbeat(ctx)
	a.log.Info("registered with the managers", "region", a.cfg.Region, "http", a.id.URLs.HTTP)
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			r.leave()
			return
		case <-heartbeat.C:
			r.heartbeat(ctx)
			if n%10 == 0 { // re-assert what housekeeping may have removed during a partition
				r.putRecord(ctx)
				r.syncRoutes(ctx, true)
			}
		case <-streams.C:
			r.syncRoutes(ctx, false)
		case e, ok := <-watch:
			if !ok {
				watch = a.watchAdmin(ctx, b.config)
				continue
			}
			a.applyAdmin(e)
		}
	}
}

// watchAdmin watches this node's administration key; on failure it returns a channel that
// closes after a pause, so the caller retries.
func (a *Agent) watchAdmin(ctx context.Context, kv jetstream.KeyValue) <-chan jetstream.KeyValueEntry {
	w, err := kv.Watch(ctx, contract.NodeAdminKey(a.id.ID))
	if err != nil {
		a.log.Warn("watch node administration", "err", err)
		ch := make(chan jetstream.KeyValueEntry)
		go func() {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			close(ch)
		}()
		return ch
	}
	// The watcher stops with ctx (its updates channel then closes).
	return w.Updates()
}

func (a *Agent) applyAdmin(e jetstream.KeyValueEntry) {
	if e == nil { // end of the initial values
		return
	}
	draining := false
	if e.Operation() == jetstream.KeyValuePut {
		var adm contract.NodeAdmin
		if err := json.Unmarshal(e.Value(), &adm); err != nil {
			a.log.Warn("bad node administration record", "err", err)
			return
		}
		if adm.V != contract.Version {
			return
		}
		draining = adm.Draining
	}
	if a.draining.Swap(draining) != draining {
		a.log.Info("draining changed by the managers", "draining", draining)
		if a.onDrain != nil {
			a.onDrain(draining)
		}
	}
}

// reporter is the state of the agent's goroutine.
type reporter struct {
	a       *Agent
	b       *buckets
	started time.Time
	seq     uint64
	routes  map[string]contract.Route // by stream name, as announced

	lastAt             time.Time
	lastIn, lastOut    uint64
	lastCPU            time.Duration
	bitrateIn, bitrate int64
}

func (r *reporter) put(ctx context.Context, kv jetstream.KeyValue, key string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		panic("agent: marshal " + key + ": " + err.Error()) // our own types: cannot happen
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := kv.Put(pctx, key, data); err != nil {
		r.a.stats.WriteErrors.Add(1)
		r.a.log.Debug("kv put", "bucket", kv.Bucket(), "key", key, "err", err)
	}
}

func (r *reporter) putRecord(ctx context.Context) {
	a := r.a
	r.put(ctx, r.b.nodes, contract.NodeKey(a.id.ID), contract.NodeRecord{
		V: contract.Version, ID: a.id.ID, Role: a.id.Role, Region: a.cfg.Region, Cloud: a.cfg.Cloud,
		URLs: a.id.URLs, Capacity: a.cfg.Capacity, Started: r.started, Software: runtime.Version(),
	})
}

func (r *reporter) heartbeat(ctx context.Context) {
	a := r.a
	now := time.Now()
	in, out, cpu := a.probe.BytesIn(), a.probe.BytesOut(), processCPU()
	var cpuFrac float64
	if !r.lastAt.IsZero() {
		dt := now.Sub(r.lastAt)
		if dt > 0 {
			r.bitrateIn = int64(float64(in-r.lastIn) * 8 / dt.Seconds())
			r.bitrate = int64(float64(out-r.lastOut) * 8 / dt.Seconds())
			cpuFrac = float64(cpu-r.lastCPU) / float64(dt) / float64(runtime.NumCPU())
		}
	}
	r.lastAt, r.lastIn, r.lastOut, r.lastCPU = now, in, out, cpu
	r.seq++
	hb := contract.Heartbeat{
		V: contract.Version, Node: a.id.ID, Seq: r.seq, Time: now.UTC(),
		Sessions: a.probe.Sessions(), BitrateIn: r.bitrateIn, BitrateOut: r.bitrate, CPU: cpuFrac,
		Draining: a.Draining(), Streams: a.probe.Streams(),
	}
	if hb.Streams == nil {
		hb.Streams = []contract.StreamLoad{}
	}
	r.put(ctx, r.b.heartbeats, contract.NodeKey(a.id.ID), hb)
	a.stats.Heartbeats.Add(1)
}

// syncRoutes announces streams that started and withdraws those that stopped; with all, it
// re-puts every route.
func (r *reporter) syncRoutes(ctx context.Context, all bool) {
	a := r.a
	current := map[string]bool{}
	for _, s := range a.probe.Streams() {
		current[s.Name] = true
		if _, ok := r.routes[s.Name]; ok && !all {
			continue
		}
		rt, ok := r.routes[s.Name]
		if !ok {
			rt = contract.Route{V: contract.Version, Stream: s.Name, Node: a.id.ID, Role: a.id.Role,
				Ingest: a.id.Role == contract.RoleOrigin, Started: time.Now().UTC()}
			r.routes[s.Name] = rt
			a.stats.RoutesAnnounce.Add(1)
			a.log.Debug("stream started", "stream", s.Name)
		}
		r.put(ctx, r.b.routes, contract.RouteKey(s.Name, a.id.ID), rt)
	}
	for name := range r.routes {
		if !current[name] {
			delete(r.routes, name)
			r.delete(ctx, r.b.routes, contract.RouteKey(name, a.id.ID))
			a.log.Debug("stream stopped", "stream", name)
		}
	}
}

func (r *reporter) delete(ctx context.Context, kv jetstream.KeyValue, key string) {
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := kv.Delete(dctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		r.a.stats.WriteErrors.Add(1)
		r.a.log.Debug("kv delete", "bucket", kv.Bucket(), "key", key, "err", err)
	}
}

// leave withdraws the node's routes and heartbeat, within a second.
func (r *reporter) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for name := range r.routes {
		r.delete(ctx, r.b.routes, contract.RouteKey(name, r.a.id.ID))
	}
	r.delete(ctx, r.b.heartbeats, contract.NodeKey(r.a.id.ID))
}

// processCPU is the CPU time the process has used (user + system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// URLs builds the URLs a node announces from its listeners: host replaces the IP of each
// listener (empty: the listener's own IP, 127.0.0.1 for a wildcard); publicHTTP, if set,
// replaces the HTTP URL. A nil address leaves its URL empty.
func URLs(host, publicHTTP string, httpAddr, srtAddr, rtspAddr net.Addr) contract.NodeURLs {
	hostPort := func(a net.Addr) string {
		if a == nil {
			return ""
		}
		h, port, err := net.SplitHostPort(a.String())
		if err != nil {
			return ""
		}
		if host != "" {
			h = host
		} else if ip := net.ParseIP(h); ip == nil || ip.IsUnspecified() {
			h = "127.0.0.1"
		}
		return net.JoinHostPort(h, port)
	}
	u := contract.NodeURLs{SRT: hostPort(srtAddr), RTSP: hostPort(rtspAddr)}
	if publicHTTP != "" {
		u.HTTP = publicHTTP
	} else if hp := hostPort(httpAddr); hp != "" {
		u.HTTP = "http://" + hp
	}
	return u
}
