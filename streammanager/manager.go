// Package streammanager is the stream manager: the cluster's front door. It keeps a watched
// in-memory copy of the NATS JetStream KV state that nodes write (internal/contract), answers
// publish and subscribe lookups from it (region first, then nodes carrying the stream, then spare
// capacity), redirects WHIP and WHEP clients to the chosen node, drains nodes, and serves the REST
// API (openapi.yaml) and the dashboard. Managers hold no state of their own: any number run side
// by side and any of them can die; one is leader by a KV lease, for housekeeping.
//
// It imports the contract, never a node package.
package streammanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamfleet/streamfleet/internal/contract"
	"github.com/streamfleet/streamfleet/internal/kvwatch"
	"github.com/streamfleet/streamfleet/internal/token"
)

// Manager is a running stream manager.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	state *State
	mux   *http.ServeMux
	reg   *prometheus.Registry
	stats Stats

	apiKeys *token.APIKeys
	minter  *token.Minter // nil: no signing key, no minting

	nc *nats.Conn
	js jetstream.JetStream
	kv map[string]jetstream.KeyValue
	// rewatch, one per bucket, asks its watch to start over: after a reconnect, since the
	// ordered consumer behind a watch may have lived on the server that is gone, and would only
	// notice after missing its idle heartbeats (10 s or more).
	rewatch map[string]chan struct{}
	// probeSeen is when this manager's last probe came back through the heartbeats watch, and
	// probeWritten when it was written (unix nanoseconds).
	probeSeen, probeWritten atomic.Int64
	started                 time.Time

	leaderMu sync.Mutex
	leader   string // current lease holder, from the watch
	leading  atomic.Bool
	managers map[string]contract.ManagerRecord

	listener net.Listener
	server   *http.Server
	serveErr chan error

	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Stats counts the manager's work.
type Stats struct {
	Lookups        atomic.Uint64
	LookupFailures atomic.Uint64
	Redirects      atomic.Uint64
	WatchErrors    atomic.Uint64
	BadEntries     atomic.Uint64
	NodesFailed    atomic.Uint64
}

// New validates cfg and builds a manager; nothing connects or listens until Start.
func New(cfg Config, log *slog.Logger) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	minter, err := cfg.minter()
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg: cfg, log: log.With("manager", cfg.ID), state: NewState(cfg.FailAfter),
		apiKeys: token.NewAPIKeys(cfg.APIKeys...), minter: minter,
		kv: map[string]jetstream.KeyValue{}, rewatch: map[string]chan struct{}{}, managers: map[string]contract.ManagerRecord{}, serveErr: make(chan error, 1),
	}
	for _, b := range contract.Buckets {
		m.rewatch[b.Name] = make(chan struct{}, 1)
	}
	m.reg = m.newRegistry()
	m.mux = m.newMux()
	return m, nil
}

// State is the manager's in-memory view.
func (m *Manager) State() *State { return m.state }

// Handler is the manager's HTTP handler.
func (m *Manager) Handler() http.Handler { return m.mux }

// Stats returns the manager's counters.
func (m *Manager) Stats() *Stats { return &m.stats }

// Err delivers an error if the HTTP server stops on its own.
func (m *Manager) Err() <-chan error { return m.serveErr }

// URL is the base URL of the manager's HTTP server.
func (m *Manager) URL() string {
	if m.listener == nil {
		return ""
	}
	return "http://" + m.listener.Addr().String()
}

// Leading reports whether this manager holds the leader lease.
func (m *Manager) Leading() bool { return m.leading.Load() }

// Leader is the manager holding the leader lease, as last seen ("" if none).
func (m *Manager) Leader() string {
	m.leaderMu.Lock()
	defer m.leaderMu.Unlock()
	return m.leader
}

// Start connects to NATS, creates or binds the KV buckets, loads and watches them, takes part in
// the leader election, and serves HTTP.
func (m *Manager) Start(ctx context.Context) error {
	opts := []nats.Option{
		nats.Name("streamfleet-manager-" + m.cfg.ID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.Timeout(2 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				m.log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			m.log.Info("nats reconnected; watching the buckets again", "server", nc.ConnectedUrlRedacted())
			for _, ch := range m.rewatch {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}),
	}
	if m.cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(m.cfg.InProcess))
	}
	if m.cfg.NATSCredsFile != "" {
		opts = append(opts, nats.UserCredentials(m.cfg.NATSCredsFile))
	}
	if m.cfg.NATSTLSCA != "" {
		opts = append(opts, nats.RootCAs(m.cfg.NATSTLSCA))
	}
	if m.cfg.NATSTLSCert != "" {
		opts = append(opts, nats.ClientCert(m.cfg.NATSTLSCert, m.cfg.NATSTLSKey))
	}
	nc, err := nats.Connect(m.cfg.NATSURL, opts...)
	if err != nil {
		return fmt.Errorf("connect to nats %s: %w", m.cfg.NATSURL, err)
	}
	m.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	m.js = js
	sctx, cancel := context.WithTimeout(ctx, m.cfg.StartTimeout)
	defer cancel()
	if err := m.createBuckets(sctx); err != nil {
		nc.Close()
		return err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = stop
	// Load every bucket before answering: a lookup never sees a half-loaded state.
	for _, b := range contract.Buckets {
		loaded := make(chan struct{})
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			kvwatch.Watch(runCtx, m.js, kvwatch.Config{
				Bucket:  b.Name,
				Apply:   func(e jetstream.KeyValueEntry) { m.apply(b.Name, e) },
				Resync:  func(seen map[string]bool) { m.resync(b.Name, seen) },
				Loaded:  func() { close(loaded) },
				Rewatch: m.rewatch[b.Name],
				Errors:  &m.stats.WatchErrors,
				Log:     m.log,
			})
		}()
		select {
		case <-loaded:
		case <-sctx.Done():
			stop()
			m.wg.Wait()
			nc.Close()
			return fmt.Errorf("load bucket %s: %w", b.Name, sctx.Err())
		}
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", m.cfg.HTTPAddr)
	if err != nil {
		stop()
		m.wg.Wait()
		nc.Close()
		return fmt.Errorf("listen http %s: %w", m.cfg.HTTPAddr, err)
	}
	m.listener = ln
	m.started = time.Now().UTC()
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		m.runLease(runCtx)
	}()
	go func() {
		defer m.wg.Done()
		m.runProbe(runCtx)
	}()
	m.server = &http.Server{
		Handler:           m.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := m.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.serveErr <- err
		}
		close(m.serveErr)
	}()
	m.log.Info("manager serving", "http", m.URL(), "nats", nc.ConnectedUrlRedacted(), "replicas", m.cfg.Replicas)
	return nil
}

// createBuckets creates (or updates) every bucket of the contract, retrying each attempt with a
// short timeout: in a fresh NATS cluster the JetStream meta leader takes a moment to exist.
func (m *Manager) createBuckets(ctx context.Context) error {
	for _, b := range contract.Buckets {
		cfg := jetstream.KeyValueConfig{
			Bucket: b.Name, History: b.History, TTL: b.TTL, Replicas: m.cfg.Replicas,
			Storage: jetstream.FileStorage, Description: "streamfleet " + b.Name,
		}
		if b.TTL > 0 {
			cfg.LimitMarkerTTL = contract.MarkerTTL
		}
		for {
			actx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			kv, err := m.js.CreateOrUpdateKeyValue(actx, cfg)
			cancel()
			if err == nil {
				m.kv[b.Name] = kv
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("create kv bucket %s: %w", b.Name, err)
			}
			m.log.Debug("create kv bucket: retrying", "bucket", b.Name, "err", err)
			select {
			case <-ctx.Done():
				return fmt.Errorf("create kv bucket %s: %w", b.Name, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// resync forgets, after a (re)watch's initial values, whatever the bucket no longer holds.
func (m *Manager) resync(bucket string, seen map[string]bool) {
	switch bucket {
	case contract.BucketNodes:
		for _, v := range m.state.Nodes() {
			if !seen[contract.NodeKey(v.ID)] {
				m.state.RemoveNode(v.ID)
			}
		}
	case contract.BucketRoutes:
		for _, s := range m.state.allRoutes() {
			if !seen[contract.RouteKey(s[0], s[1])] {
				m.state.RemoveRoute(s[0], s[1])
			}
		}
	}
}

// apply feeds one KV entry into the state.
func (m *Manager) apply(bucket string, e jetstream.KeyValueEntry) {
	key, put := e.Key(), e.Operation() == jetstream.KeyValuePut
	bad := func(err error) {
		m.stats.BadEntries.Add(1)
		m.log.Debug("ignored kv entry", "bucket", bucket, "key", key, "err", err)
	}
	if bucket == contract.BucketHeartbeats && strings.HasPrefix(key, contract.ProbePrefix) {
		m.applyProbe(key, put, e)
		return
	}
	if ours, err := kvwatch.ApplyRouting(m.state, bucket, e); ours {
		if err != nil {
			bad(err)
		}
		return
	}
	switch bucket {
	case contract.BucketConfig:
		id, ok := cutPrefix(key, contract.NodeAdminKey(""))
		if !ok {
			return
		}
		if !put {
			m.state.SetDraining(id, false)
			return
		}
		var adm contract.NodeAdmin
		if err := kvwatch.Decode(e, &adm, &adm.V); err != nil {
			bad(err)
			return
		}
		m.state.SetDraining(id, adm.Draining)
	case contract.BucketLeases:
		m.applyLease(key, put, e)
	}
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return "", false
}

func (m *Manager) applyLease(key string, put bool, e jetstream.KeyValueEntry) {
	m.leaderMu.Lock()
	defer m.leaderMu.Unlock()
	if key == contract.LeaderKey {
		m.leader = ""
		var l contract.Lease
		if put && json.Unmarshal(e.Value(), &l) == nil && l.V == contract.Version {
			m.leader = l.Holder
		}
		return
	}
	if id, ok := cutPrefix(key, contract.ManagerKey("")); ok {
		var r contract.ManagerRecord
		if put && json.Unmarshal(e.Value(), &r) == nil && r.V == contract.Version {
			m.managers[id] = r
		} else {
			delete(m.managers, id)
		}
	}
}

// SetDraining records the managers' draining decision for a node in KV (every manager and the
// node learn it through their watches) and in this manager's state at once.
func (m *Manager) SetDraining(ctx context.Context, id string, draining bool) error {
	data, _ := json.Marshal(contract.NodeAdmin{V: contract.Version, Node: id, Draining: draining, Changed: time.Now().UTC(), By: m.cfg.ID})
	if _, err := m.kv[contract.BucketConfig].Put(ctx, contract.NodeAdminKey(id), data); err != nil {
		return fmt.Errorf("store draining of node %s: %w", id, err)
	}
	m.state.SetDraining(id, draining)
	m.log.Info("node draining changed", "node", id, "draining", draining)
	return nil
}

// Close stops serving, gives up the leader lease and this manager's record, and waits for every
// goroutine it started.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ShutdownTimeout)
		defer cancel()
		var errs []error
		if m.server != nil {
			if err := m.server.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("shutdown http: %w", err))
			}
		}
		if m.cancel != nil {
			m.cancel()
		}
		m.wg.Wait()
		if m.nc != nil {
			m.nc.Close()
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// probeInterval is how often a manager writes its probe; stallAfter is how long without the
// probe coming back means the heartbeats bucket is stalled.
const (
	probeInterval = 250 * time.Millisecond
	stallAfter    = time.Second
)

// runProbe writes this manager's probe to the heartbeats bucket every probeInterval.
func (m *Manager) runProbe(ctx context.Context) {
	kv := m.kv[contract.BucketHeartbeats]
	key := contract.ProbeKey(m.cfg.ID)
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, _ = kv.Put(pctx, key, []byte(strconv.FormatInt(time.Now().UnixNano(), 10)))
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// applyProbe notes this manager's probe coming back through the watch, when it is fresh (a
// re-watch's initial values carry the last one written, however old).
func (m *Manager) applyProbe(key string, put bool, e jetstream.KeyValueEntry) {
	if !put || key != contract.ProbeKey(m.cfg.ID) {
		return
	}
	written, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return
	}
	now := time.Now()
	if now.Sub(time.Unix(0, written)) < stallAfter {
		m.probeSeen.Store(now.UnixNano())
		m.probeWritten.Store(written)
	}
}

// checkStall tells the state whether the heartbeats flow: a probe came back within stallAfter.
func (m *Manager) checkStall() {
	seen := m.probeSeen.Load()
	if seen == 0 {
		return // not seen yet: starting
	}
	last := time.Unix(0, seen)
	stalled := time.Since(last) > stallAfter
	if stalled != m.state.Stalled() {
		if stalled {
			m.log.Warn("heartbeats stalled: failure detection paused until the heartbeats bucket answers again", "since", last)
		} else {
			m.log.Info("heartbeats flow again; failure detection resumes")
		}
	}
	m.state.SetStalled(stalled, last)
}
