package cascade_test

import (
	"bytes"
	"context"
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

// checkPayloads asserts a viewer got at least n payloads of a kind, each byte for byte what the
// publisher sent for its index, the indices rising.
func checkPayloads(t *testing.T, v *rtctest.Viewer, kind, mime string, n int, tag string) {
	t.Helper()
	waitFor(t, 10*time.Second, kind+" payloads at the viewer", func() bool { return len(v.Payloads(kind)) >= n })
	var last uint32
	for i, p := range v.Payloads(kind) {
		idx, gotTag, ok := rtctest.PayloadIndex(p)
		if !ok {
			t.Fatalf("%s payload %d is not the publisher's: % x", kind, i, p[:min(len(p), 16)])
		}
		if gotTag != tag {
			t.Fatalf("%s payload %d from layer %q, want %q", kind, i, gotTag, tag)
		}
		key := len(p) > 0 && (p[0] == 0x65 || (mime == webrtc.MimeTypeVP8 && p[1] == 0x00))
		if kind == "audio" {
			key = true
		}
		if want := rtctest.Payload(mime, key, idx, tag); !bytes.Equal(p, want) {
			t.Fatalf("%s payload %d (index %d) differs from what was published", kind, i, idx)
		}
		if idx < last {
			t.Fatalf("%s payload %d: index %d after %d", kind, i, idx, last)
		}
		last = idx
	}
}

// TestOnePullManyViewers plays a WHIP stream on an edge two hops from the origin: concurrent
// first viewers share one pull per node, and every payload arrives unchanged.
func TestOnePullManyViewers(t *testing.T) {
	nodes := chain(t, 2, nil)
	origin, relay, edge := nodes[0], nodes[1], nodes[2]
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
		checkPayloads(t, v, "video", webrtc.MimeTypeH264, 20, "")
		checkPayloads(t, v, "audio", webrtc.MimeTypeOpus, 20, "")
	}
	for _, n := range []*node.Node{relay, edge} {
		pulls := n.Puller().Pulls()
		if len(pulls) != 1 || pulls[0].Sessions != 1 || pulls[0].Stream != "live/one" {
			t.Fatalf("%s pulls %+v, want one session of live/one", n.HTTPURL(), pulls)
		}
		if got := n.Puller().Stats().SessionsOpened.Load(); got != 1 {
			t.Fatalf("%s opened %d upstream sessions, want 1", n.HTTPURL(), got)
		}
	}
	for _, n := range []*node.Node{origin, relay} {
		if got := n.RTSP().Stats().StreamsCreated.Load(); got != 1 {
			t.Fatalf("%s made %d RTSP streams, want 1", n.HTTPURL(), got)
		}
	}
}
