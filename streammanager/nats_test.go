package streammanager

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamfleet/streamfleet/internal/contract"
	"github.com/streamfleet/streamfleet/internal/natstest"
	"github.com/streamfleet/streamfleet/internal/proctest"
)

func startManager(t *testing.T, id, url string, replicas int) *Manager {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ID, cfg.HTTPAddr, cfg.NATSURL, cfg.Replicas = id, "127.0.0.1:0", url, replicas
	cfg.APIKeys = []string{testAPIKey}
	m, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatalf("start manager %s: %v", id, err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// fakeNode writes a node's record and heartbeats to KV like node/agent does.
type fakeNode struct {
	t    *testing.T
	js   jetstream.JetStream
	id   string
	stop chan struct{}
	done chan struct{}
}

func startFakeNode(t *testing.T, url, id, role, region string) *fakeNode {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	f := &fakeNode{t: t, js: js, id: id, stop: make(chan struct{}), done: make(chan struct{})}
	ctx := t.Context()
	nodes, err := js.KeyValue(ctx, contract.BucketNodes)
	if err != nil {
		t.Fatal(err)
	}
	hbs, _ := js.KeyValue(ctx, contract.BucketHeartbeats)
	rec, _ := json.Marshal(contract.NodeRecord{V: 1, ID: id, Role: role, Region: region, URLs: contract.NodeURLs{HTTP: "http://" + id}})
	if _, err := nodes.Put(ctx, id, rec); err != nil {
		t.Fatal(err)
	}
	beat := func() {
		hb, _ := json.Marshal(contract.Heartbeat{V: 1, Node: id, Time: time.Now(), Sessions: map[string]int{}})
		pctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = hbs.Put(pctx, id, hb)
		cancel()
	}
	beat()
	go func() {
		defer close(f.done)
		defer nc.Close()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-f.stop:
				return // a crash: no goodbye
			case <-tick.C:
				beat()
			}
		}
	}()
	t.Cleanup(f.kill)
	return f
}

func (f *fakeNode) kill() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

func subscribeNode(m *Manager, stream string) string {
	c, err := m.State().Subscribe(Request{Stream: stream, Protocol: "webrtc"})
	if err != nil {
		return ""
	}
	return c.Node.ID
}

// TestFailureDetection: an edge whose heartbeats stop leaves every lookup within 5 s.
func TestFailureDetection(t *testing.T) {
	s := natstest.Start(t)
	m := startManager(t, "m1", s.ClientURL(), 1)
	e1 := startFakeNode(t, s.ClientURL(), "e1", "edge", "eu")
	startFakeNode(t, s.ClientURL(), "e2", "edge", "eu")
	proctest.WaitFor(t, 5*time.Second, "two edges in service", func() bool {
		n := 0
		for _, v := range m.State().Nodes() {
			if v.State == "in_service" {
				n++
			}
		}
		return n == 2
	})
	e1.kill()
	killed := time.Now()
	proctest.WaitFor(t, 5*time.Second, "e1 failed", func() bool {
		v, _ := m.State().Node("e1")
		return v.State == "failed"
	})
	detect := time.Since(killed)
	for i := range 50 { // distinct streams: no carrying preference
		if got := subscribeNode(m, fmt.Sprintf("s%d", i)); got != "e2" {
			t.Fatalf("lookup %d after e1 failed chose %q", i, got)
		}
	}
	t.Logf("failure detected in %v (heartbeat TTL %v)", detect, contract.HeartbeatTTL)
}

// TestHAClusterOfThree: three NATS servers (R3 buckets) and two managers. One leader at a time;
// when it closes the other takes the lease; when a NATS server dies no state is lost and
// lookups and drains continue.
func TestHAClusterOfThree(t *testing.T) {
	servers := natstest.StartCluster(t)
	urls := servers[0].ClientURL() + "," + servers[1].ClientURL() + "," + servers[2].ClientURL()
	m1 := startManager(t, "m1", urls, 3)
	m2 := startManager(t, "m2", servers[2].ClientURL()+","+servers[1].ClientURL(), 3)
	startFakeNode(t, urls, "edge-a", "edge", "eu")
	startFakeNode(t, urls, "origin-a", "origin", "eu")
	for _, m := range []*Manager{m1, m2} {
		proctest.WaitFor(t, 10*time.Second, "nodes in service on "+m.cfg.ID, func() bool {
			return subscribeNode(m, "s") == "edge-a"
		})
	}
	proctest.WaitFor(t, 10*time.Second, "one leader", func() bool {
		return m1.Leading() != m2.Leading() && m1.Leader() != "" && m1.Leader() == m2.Leader()
	})
	leader, other := m1, m2
	if m2.Leading() {
		leader, other = m2, m1
	}
	// Drain through one manager: the other sees it.
	req, _ := http.NewRequest(http.MethodPost, leader.URL()+"/api/v1/nodes/edge-a/drain", nil)
	req.Header.Set("X-API-Key", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("drain: %v %v", err, resp)
	}
	resp.Body.Close()
	proctest.WaitFor(t, 5*time.Second, "drain seen by the other manager", func() bool {
		v, _ := other.State().Node("edge-a")
		return v.State == "draining"
	})
	// The leader goes away: the other takes over and answers.
	_ = leader.Close()
	proctest.WaitFor(t, 2*contract.LeaseTTL, "new leader", func() bool { return other.Leading() })
	// A NATS server dies (the one m1 may have used first): state is kept, watches continue.
	servers[0].Shutdown()
	servers[0].WaitForShutdown()
	if _, err := other.State().Publish(Request{Stream: "x", Protocol: "webrtc"}); err != nil {
		t.Fatalf("publish lookup after a NATS server died: %v", err)
	}
	req, _ = http.NewRequest(http.MethodDelete, other.URL()+"/api/v1/nodes/edge-a/drain", nil)
	req.Header.Set("X-API-Key", testAPIKey)
	proctest.WaitFor(t, 10*time.Second, "undrain with two NATS servers", func() bool {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	// Heartbeats keep arriving through the surviving servers: the edge stays in service.
	time.Sleep(contract.HeartbeatTTL + 500*time.Millisecond)
	if got := subscribeNode(other, "s"); got != "edge-a" {
		t.Fatalf("after a NATS server died and the drain was lifted, lookup chose %q", got)
	}
}
