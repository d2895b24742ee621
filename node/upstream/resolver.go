package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamfleet/streamfleet/internal/contract"
	"github.com/streamfleet/streamfleet/internal/kvwatch"
	"github.com/streamfleet/streamfleet/internal/streamname"
)

// DefaultLoadWait bounds how long a lookup made before the first copy of the table is in waits
// for it.
const DefaultLoadWait = 2 * time.Second

// ErrInvalidConfig is wrapped by every error of Config.Validate.
var ErrInvalidConfig = errors.New("invalid upstream resolver config")

// Config configures a Resolver.
type Config struct {
	// Self, Role and Region are the node's (see Query).
	Self, Role, Region string
	// FailAfter: a node whose last heartbeat is older is failed (default contract.HeartbeatTTL).
	FailAfter time.Duration
	// LoadWait bounds how long a lookup waits for the first copy of the table (default
	// DefaultLoadWait).
	LoadWait time.Duration
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if err := contract.CheckID(c.Self); err != nil {
		errs = append(errs, err)
	}
	if c.Role != contract.RoleEdge && c.Role != contract.RoleRelay {
		errs = append(errs, fmt.Errorf("role %q: only relays and edges pull", c.Role))
	}
	if c.FailAfter < 0 || c.LoadWait < 0 {
		errs = append(errs, errors.New("fail-after and load wait must not be negative"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// Stats count the resolver's work, for metrics and tests.
type Stats struct {
	Lookups     atomic.Uint64 // Upstreams calls
	Empty       atomic.Uint64 // lookups that found no upstream
	BadEntries  atomic.Uint64 // KV entries ignored (undecodable, unknown version)
	WatchErrors atomic.Uint64 // watches that failed or ended and were started again
}

// Resolver is a cascade.UpstreamResolver over a watched copy of the routing table. New validates,
// Start watches (in the background, over the node agent's NATS connection), Close stops the
// watches and waits for them.
type Resolver struct {
	cfg   Config
	table *Table
	log   *slog.Logger
	stats Stats

	loaded    chan struct{} // closed once every bucket's initial values are in
	loadedN   atomic.Int32
	loadOnce  sync.Once
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New validates cfg and returns a resolver that knows nothing until Start.
func New(cfg Config, log *slog.Logger) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.FailAfter == 0 {
		cfg.FailAfter = contract.HeartbeatTTL
	}
	if cfg.LoadWait == 0 {
		cfg.LoadWait = DefaultLoadWait
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Resolver{cfg: cfg, table: NewTable(cfg.FailAfter), log: log.With("component", "upstream-resolver"), loaded: make(chan struct{})}, nil
}

// Table is the resolver's copy of the routing table.
func (r *Resolver) Table() *Table { return r.table }

// Stats returns the resolver's counters.
func (r *Resolver) Stats() *Stats { return &r.stats }

// Loaded is closed once the first copy of every bucket is in.
func (r *Resolver) Loaded() <-chan struct{} { return r.loaded }

// watched are the buckets the resolver copies.
var watched = []string{contract.BucketNodes, contract.BucketHeartbeats, contract.BucketRoutes}

// Start watches the node records, heartbeats and routes over nc, in the background: it waits
// for the managers to create the buckets, and watches again after errors and reconnects.
func (r *Resolver) Start(nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("upstream resolver: jetstream: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	reconnected := make([]chan struct{}, len(watched))
	for i, bucket := range watched {
		reconnected[i] = make(chan struct{}, 1)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			kvwatch.Watch(ctx, js, kvwatch.Config{
				Bucket: bucket,
				Apply:  func(e jetstream.KeyValueEntry) { r.apply(bucket, e) },
				Resync: func(seen map[string]bool) { r.resync(bucket, seen) },
				Loaded: func() {
					if r.loadedN.Add(1) == int32(len(watched)) {
						r.loadOnce.Do(func() { close(r.loaded) })
					}
				},
				Rewatch: reconnected[i],
				Errors:  &r.stats.WatchErrors,
				Log:     r.log,
			})
		}()
	}
	// After a reconnect the ordered consumer behind a watch may have lived on a server that is
	// gone: watch again rather than wait for its idle heartbeats to notice.
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		last := nc.Stats().Reconnects
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if n := nc.Stats().Reconnects; n != last {
				last = n
				for _, ch := range reconnected {
					select {
					case ch <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	return nil
}

// Close stops the watches and waits for them.
func (r *Resolver) Close() {
	r.closeOnce.Do(func() {
		if r.cancel != nil {
			r.cancel()
		}
		r.wg.Wait()
	})
}

// Upstreams implements cascade.UpstreamResolver: the table's answer for this node. A lookup
// before the first copy of the table is in waits for it, at most LoadWait.
func (r *Resolver) Upstreams(ctx context.Context, stream streamname.Name) ([]string, error) {
	r.stats.Lookups.Add(1)
	select {
	case <-r.loaded:
	default:
		t := time.NewTimer(r.cfg.LoadWait)
		select {
		case <-r.loaded:
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		select {
		case <-r.loaded:
		default:
			r.stats.Empty.Add(1)
			return nil, errors.New("the routing table is not loaded yet")
		}
	}
	ups, err := r.table.Upstreams(Query{Stream: string(stream), Self: r.cfg.Self, Role: r.cfg.Role, Region: r.cfg.Region})
	if len(ups) == 0 {
		r.stats.Empty.Add(1)
	}
	return ups, err
}

// resync forgets, after a (re)watch's initial values, whatever the bucket no longer holds.
func (r *Resolver) resync(bucket string, seen map[string]bool) {
	switch bucket {
	case contract.BucketNodes:
		for _, id := range r.table.NodeIDs() {
			if !seen[contract.NodeKey(id)] {
				r.table.RemoveNode(id)
			}
		}
	case contract.BucketRoutes:
		for _, k := range r.table.routeKeys() {
			if !seen[contract.RouteKey(k[0], k[1])] {
				r.table.RemoveRoute(k[0], k[1])
			}
		}
	}
}

// apply feeds one KV entry into the table.
func (r *Resolver) apply(bucket string, e jetstream.KeyValueEntry) {
	if _, err := kvwatch.ApplyRouting(r.table, bucket, e); err != nil {
		r.stats.BadEntries.Add(1)
	}
}
