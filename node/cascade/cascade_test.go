package cascade_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/internal/rtctest"
	"github.com/streamfleet/streamfleet/node"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pion's global DTLS/SRTP and net helpers park goroutines briefly after Close.
		goleak.IgnoreTopFunction("github.com/pion/interceptor/pkg/report.(*SenderInterceptor).loop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

const secret = "test-cluster-secret"

// chain starts an origin and then one node per hop, each pulling from the one before (all with
// the cluster secret), and returns them origin first.
func chain(t *testing.T, hops int, edit func(i int, c *node.Config)) []*node.Node {
	t.Helper()
	nodes := []*node.Node{nodetest.Start(t, func(c *node.Config) {
		c.ID, c.ClusterSecret = "origin", secret
		if edit != nil {
			edit(0, c)
		}
	})}
	for i := 1; i <= hops; i++ {
		up := nodes[i-1].RTSPAddr().String()
		nodes = append(nodes, nodetest.Start(t, func(c *node.Config) {
			c.ID, c.Role, c.ClusterSecret, c.Upstreams = "hop"+string(rune('0'+i)), node.RoleEdge, secret, []string{up}
			if edit != nil {
				edit(i, c)
			}
		}))
	}
	return nodes
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOnePullManyViewers plays a WHIP stream on an edge three hops from the origin (origin → relay
// → relay → edge): concurrent first viewers share one pull per node, and every payload arrives
// unchanged.
func TestOnePullManyViewers(t *testing.T) {
	nodes := chain(t, 3, nil)
	origin, edge := nodes[0], nodes[3]
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	src, err := rtctest.PublishStream(ctx, api, origin.HTTPURL()+"/whip/live/one", rtctest.H264)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer src.Close()

	const viewers = 6
	vs := make([]*rtctest.Viewer, viewers)
	var wg sync.WaitGroup
	errs := make(chan error, viewers)
	for i := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := rtctest.View(ctx, api, edge.HTTPURL()+"/whep/live/one", "")
			if err == nil {
				err = rtctest.WaitConnected(ctx, v.PC)
			}
			if err != nil {
				errs <- err
				return
			}
			vs[i] = v
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("viewer: %v", err)
	}
	defer func() {
		for _, v := range vs {
			v.Close()
		}
	}()
	for _, v := range vs {
		rtctest.CheckPayloads(t, v, "video", webrtc.MimeTypeH264, 20, "")
		rtctest.CheckPayloads(t, v, "audio", webrtc.MimeTypeOpus, 20, "")
	}
	for _, n := range nodes[1:] {
		pulls := n.Puller().Pulls()
		if len(pulls) != 1 || pulls[0].Sessions != 1 || pulls[0].Stream != "live/one" {
			t.Fatalf("%s pulls %+v, want one session of live/one", n.HTTPURL(), pulls)
		}
		if got := n.Puller().Stats().SessionsOpened.Load(); got != 1 {
			t.Fatalf("%s opened %d upstream sessions, want 1", n.HTTPURL(), got)
		}
	}
	for _, n := range nodes[:3] {
		if got := n.RTSP().Stats().StreamsCreated.Load(); got != 1 {
			t.Fatalf("%s made %d RTSP streams, want 1", n.HTTPURL(), got)
		}
	}
}

// TestSimulcastLayersReachTheEdge publishes three RIDs with pion: the relay and the edge carry all
// three layers, and the edge's WHEP viewer gets the highest.
func TestSimulcastLayersReachTheEdge(t *testing.T) {
	nodes := chain(t, 2, nil)
	origin, edge := nodes[0], nodes[2]
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	simAPI, err := rtctest.NewSimulcastAPI()
	if err != nil {
		t.Fatal(err)
	}
	src, err := rtctest.PublishStream(ctx, simAPI, origin.HTTPURL()+"/whip/live/sim", rtctest.VP8, "h", "m", "l")
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer src.Close()
	waitFor(t, 5*time.Second, "three layers at the origin", func() bool {
		st, err := origin.Hub().Stream("live/sim")
		return err == nil && len(st.Tracks()[0].Layers()) == 3
	})
	v, err := rtctest.View(ctx, api, edge.HTTPURL()+"/whep/live/sim", "")
	if err != nil {
		t.Fatalf("view: %v", err)
	}
	defer v.Close()
	rtctest.CheckPayloads(t, v, "video", webrtc.MimeTypeVP8, 20, "h")
	for _, n := range nodes[1:] {
		st, err := n.Hub().Stream("live/sim")
		if err != nil {
			t.Fatal(err)
		}
		var rids []string
		for _, l := range st.Tracks()[0].Layers() {
			rids = append(rids, l.RID())
			if l.Stats().Packets == 0 {
				t.Errorf("%s: layer %q has no packets", n.HTTPURL(), l.RID())
			}
		}
		if len(rids) != 3 {
			t.Fatalf("%s has layers %v, want h, m, l", n.HTTPURL(), rids)
		}
	}
}

// TestFailoverKeepsViewers closes the relay an edge pulls from while a viewer plays: the edge pulls
// from its second upstream (the origin) within 2 s, and the viewer, on its original peer connection,
// gets packets again with sequence numbers that continue without a jump.
func TestFailoverKeepsViewers(t *testing.T) {
	origin := nodetest.Start(t, func(c *node.Config) { c.ID, c.ClusterSecret = "origin", secret })
	relayCfg := nodetest.Config()
	relayCfg.ID, relayCfg.Role, relayCfg.ClusterSecret, relayCfg.Upstreams = "relay", node.RoleRelay, secret, []string{origin.RTSPAddr().String()}
	relay, err := node.New(relayCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	edge := nodetest.Start(t, func(c *node.Config) {
		c.ID, c.Role, c.ClusterSecret = "edge", node.RoleEdge, secret
		c.Upstreams = []string{relay.RTSPAddr().String(), "rtsp://" + origin.RTSPAddr().String()}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	src, err := rtctest.PublishStream(ctx, api, origin.HTTPURL()+"/whip/live/fo", rtctest.H264)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer src.Close()
	v, err := rtctest.View(ctx, api, edge.HTTPURL()+"/whep/live/fo", "")
	if err != nil {
		t.Fatalf("view: %v", err)
	}
	defer v.Close()
	rtctest.CheckPayloads(t, v, "video", webrtc.MimeTypeH264, 10, "")
	if pulls := edge.Puller().Pulls(); len(pulls) != 1 || pulls[0].Upstream != relay.RTSPAddr().String() {
		t.Fatalf("edge pulls %+v, want one from the relay", pulls)
	}
	before := len(v.Payloads("video"))
	killed := time.Now()
	relay.Close()
	waitFor(t, 2*time.Second, "the edge to pull from the origin", func() bool {
		p := edge.Puller().Pulls()
		return len(p) == 1 && p[0].Sessions == 1 && p[0].Upstream == origin.RTSPAddr().String()
	})
	waitFor(t, 3*time.Second, "video again at the viewer", func() bool { return len(v.Payloads("video")) > before+10 })
	t.Logf("failover: video again %v after the relay closed; gap %v", time.Since(killed),
		time.Duration(edge.Puller().Stats().LastFailoverGapNanos.Load()))
	if v.PC.ConnectionState() != webrtc.PeerConnectionStateConnected {
		t.Fatalf("viewer's peer connection %s", v.PC.ConnectionState())
	}
	if got := edge.Puller().Stats().Failovers.Load(); got != 1 {
		t.Fatalf("%d failovers, want 1", got)
	}
	rtctest.CheckPayloads(t, v, "video", webrtc.MimeTypeH264, before+10, "")
	rtctest.CheckSequence(t, v, "video", 2)
	rtctest.CheckSequence(t, v, "audio", 2)
}

// TestLingerThenRestart: when the last viewer leaves, the pull stops after the linger time (the
// edge's stream ends and the origin's RTSP stream for it closes); a new viewer starts it again.
func TestLingerThenRestart(t *testing.T) {
	nodes := chain(t, 1, func(i int, c *node.Config) { c.PullLinger = 700 * time.Millisecond })
	origin, edge := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	src, err := rtctest.PublishStream(ctx, api, origin.HTTPURL()+"/whip/live/linger", rtctest.H264)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer src.Close()
	for round := 1; round <= 2; round++ {
		v, err := rtctest.View(ctx, api, edge.HTTPURL()+"/whep/live/linger", "")
		if err != nil {
			t.Fatalf("view %d: %v", round, err)
		}
		rtctest.CheckPayloads(t, v, "video", webrtc.MimeTypeH264, 5, "")
		v.Close()
		left := time.Now()
		waitFor(t, 500*time.Millisecond, "the viewer to be gone", func() bool {
			st, err := edge.Hub().Stream("live/linger")
			return err == nil && st.ReaderCount() == 0
		})
		time.Sleep(300 * time.Millisecond)
		if len(edge.Puller().Pulls()) != 1 {
			t.Fatalf("round %d: the pull stopped before the linger", round)
		}
		waitFor(t, 3*time.Second, "the pull to stop", func() bool {
			_, err := edge.Hub().Stream("live/linger")
			return len(edge.Puller().Pulls()) == 0 && err != nil && origin.RTSP().StreamCount() == 0
		})
		if since := time.Since(left); since < 700*time.Millisecond {
			t.Fatalf("round %d: the pull stopped %v after the viewer left, before the linger", round, since)
		}
		if got := edge.Puller().Stats().PullsStarted.Load(); got != uint64(round) {
			t.Fatalf("round %d: %d pulls started", round, got)
		}
	}
	if got := edge.Puller().Stats().PullsLingered.Load(); got != 2 {
		t.Fatalf("%d pulls lingered out, want 2", got)
	}
}

// TestUnknownStreamIs404: a stream no upstream has is a 404 for the edge's viewer, and the failed
// pull leaves nothing behind.
func TestUnknownStreamIs404(t *testing.T) {
	nodes := chain(t, 2, nil)
	edge := nodes[2]
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	_, err = rtctest.View(ctx, api, edge.HTTPURL()+"/whep/live/nobody", "")
	var he *rtctest.HTTPError
	if !errors.As(err, &he) || he.Status != 404 {
		t.Fatalf("viewer of an unknown stream: %v, want HTTP 404", err)
	}
	waitFor(t, time.Second, "no pull left", func() bool { return len(edge.Puller().Pulls()) == 0 && len(nodes[1].Puller().Pulls()) == 0 })
}
