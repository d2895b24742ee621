// Package kvwatch keeps a copy of one JetStream KV bucket up to date: it waits for the bucket to
// exist, watches every key, says after each (re)watch's initial values which keys the bucket
// held (so the copy can forget the rest), and watches again after an error, an ended watch or a
// request (after a reconnect, the ordered consumer behind a watch may have lived on a server that
// is gone). ApplyRouting decodes the entries of the routing table's buckets (node records,
// heartbeats, routes) into a copy. Used by the stream manager and by the nodes' upstream resolver;
// of ours it imports only internal/contract.
package kvwatch

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Config is one bucket's watch.
type Config struct {
	Bucket string
	// Apply is called with every entry, in order, from the watch's goroutine.
	Apply func(jetstream.KeyValueEntry)
	// Resync is called after each (re)watch's initial values with the keys they held.
	Resync func(seen map[string]bool)
	// Loaded, if not nil, is called once, after the first watch's initial values (and Resync).
	Loaded func()
	// Rewatch: a value asks the watch to start over. May be nil.
	Rewatch <-chan struct{}
	// Errors, if not nil, counts watches that failed or ended and were started again.
	Errors *atomic.Uint64
	Log    *slog.Logger
}

// Retry pauses: between looks for a bucket not created yet, after a failed watch, after a watch
// that ended.
const (
	bucketWait = 500 * time.Millisecond
	errorWait  = 500 * time.Millisecond
	endedWait  = 200 * time.Millisecond
)

// Watch keeps cfg.Bucket until ctx ends; it returns once it has.
func Watch(ctx context.Context, js jetstream.JetStream, cfg Config) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	failed := func() {
		if cfg.Errors != nil {
			cfg.Errors.Add(1)
		}
	}
	var kv jetstream.KeyValue
	for kv == nil {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		b, err := js.KeyValue(actx, cfg.Bucket)
		cancel()
		if err == nil {
			kv = b
			break
		}
		log.Debug("waiting for the KV bucket", "bucket", cfg.Bucket, "err", err)
		if !sleep(ctx, bucketWait) {
			return
		}
	}
	first := true // a re-watch's initial values do not count as a first load again
	for ctx.Err() == nil {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			failed()
			log.Warn("watch kv bucket", "bucket", cfg.Bucket, "err", err)
			if !sleep(ctx, errorWait) {
				return
			}
			continue
		}
		seen := map[string]bool{}
		initial, again := true, false
	read:
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					break read
				}
				if e == nil { // the end of the initial values
					if initial {
						initial = false
						cfg.Resync(seen)
						if first && cfg.Loaded != nil {
							cfg.Loaded()
						}
						first = false
					}
					continue
				}
				if initial {
					seen[e.Key()] = true
				}
				cfg.Apply(e)
			case <-cfg.Rewatch:
				log.Debug("watching again", "bucket", cfg.Bucket)
				again = true
				break read
			}
		}
		_ = w.Stop()
		if ctx.Err() == nil && !again {
			failed()
			log.Warn("kv watch ended; watching again", "bucket", cfg.Bucket)
			if !sleep(ctx, endedWait) {
				return
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
