package streammanager

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamfleet/streamfleet/internal/contract"
)

// runLease announces this manager, competes for the leader lease (create-if-absent, then
// renewals by compare-and-set on the revision; the bucket's TTL frees a dead holder's lease),
// and, while leading, does the housekeeping. Every manager logs the nodes it sees fail.
func (m *Manager) runLease(ctx context.Context) {
	kv := m.kv[contract.BucketLeases]
	var rev uint64
	acquired := time.Time{}
	tick := time.NewTicker(contract.LeaseRenewInterval)
	defer tick.Stop()
	rec, _ := json.Marshal(contract.ManagerRecord{V: contract.Version, ID: m.cfg.ID, API: m.URL(), Started: m.started})
	for {
		actx, cancel := context.WithTimeout(ctx, contract.LeaseRenewInterval)
		if _, err := kv.Put(actx, contract.ManagerKey(m.cfg.ID), rec); err != nil && ctx.Err() == nil {
			m.log.Debug("announce manager", "err", err)
		}
		now := time.Now().UTC()
		if rev == 0 {
			acquired = now
		}
		lease, _ := json.Marshal(contract.Lease{V: contract.Version, Holder: m.cfg.ID, Acquired: acquired, Renewed: now})
		var err error
		if rev == 0 {
			rev, err = kv.Create(actx, contract.LeaderKey, lease)
			if err == nil {
				m.leading.Store(true)
				m.log.Info("leader lease acquired")
			} else {
				rev = 0
			}
		} else {
			rev, err = kv.Update(actx, contract.LeaderKey, lease, rev)
			if err != nil {
				rev = 0
				m.leading.Store(false)
				m.log.Warn("leader lease lost", "err", err)
			}
		}
		cancel()
		m.housekeep(ctx)
		select {
		case <-ctx.Done():
			m.resign(kv, rev)
			return
		case <-tick.C:
		}
	}
}

// resign gives the lease up (so another manager takes over at once) and withdraws the record.
func (m *Manager) resign(kv jetstream.KeyValue, rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if rev != 0 {
		if err := kv.Delete(ctx, contract.LeaderKey, jetstream.LastRevision(rev)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			m.log.Debug("give up leader lease", "err", err)
		}
		m.leading.Store(false)
	}
	_ = kv.Delete(ctx, contract.ManagerKey(m.cfg.ID))
}

// housekeep logs newly failed nodes and, on the leader, withdraws the routes failed nodes still
// hold, so every reader of the routing table sees them gone.
func (m *Manager) housekeep(ctx context.Context) {
	m.checkStall()
	failed, stale := m.state.failedNodes()
	for _, id := range failed {
		m.stats.NodesFailed.Add(1)
		m.log.Warn("node failed: no heartbeat", "node", id)
	}
	if !m.Leading() {
		return
	}
	kv := m.kv[contract.BucketRoutes]
	for _, r := range stale {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		if err := kv.Delete(dctx, contract.RouteKey(r[0], r[1])); err == nil {
			m.state.RemoveRoute(r[0], r[1])
		}
		cancel()
	}
}
