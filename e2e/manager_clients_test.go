package e2e

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/browser"
	"github.com/streamfleet/streamfleet/internal/loadtest"
	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/node"
	"github.com/streamfleet/streamfleet/streammanager"
)

// managed is a manager (minting with an HS256 secret its nodes trust) with an origin and two eu
// edges of capacity cap each, on embedded NATS.
type managed struct {
	m      *streammanager.Manager
	origin *node.Node
	edges  []*node.Node
	apiKey string
}

func startManaged(t *testing.T, edgeCapacity int) *managed {
	t.Helper()
	const secret = "e2e-token-secret-0123456789abcdef"
	c := &managed{apiKey: "e2e-api-key-0123456789"}
	m, ns := startManager(t.Context(), t, func(mc *streammanager.Config) { mc.APIKeys, mc.TokenSecret = []string{c.apiKey}, secret })
	c.m = m
	conf := func(id string, role node.Role, capacity int, upstream string) func(*node.Config) {
		return func(cfg *node.Config) {
			cfg.ID, cfg.Role = id, role
			cfg.NATS.URL, cfg.NATS.Region, cfg.NATS.Capacity.Sessions = ns.ClientURL(), "eu", capacity
			cfg.NATS.HeartbeatInterval = 200 * time.Millisecond
			cfg.Auth.TokenSecrets, cfg.ClusterSecret = []string{secret}, "e2e-cluster-secret"
			if upstream != "" {
				cfg.Upstreams = []string{upstream}
			}
		}
	}
	c.origin = nodetest.Start(t, conf("origin", node.RoleOrigin, 0, ""))
	for _, id := range []string{"edge-1", "edge-2"} {
		c.edges = append(c.edges, nodetest.Start(t, conf(id, node.RoleEdge, edgeCapacity, c.origin.RTSPAddr().String())))
	}
	waitInService(t, m, 3)
	return c
}

// mint asks the manager for a token.
func (c *managed) mint(t *testing.T, stream, action string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, c.m.URL()+"/api/v1/tokens",
		strings.NewReader(`{"stream":"`+stream+`","action":"`+action+`"}`))
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("mint: %d %v", resp.StatusCode, err)
	}
	return body.Token
}

func (c *managed) whepSessions() (total int, each []int) {
	for _, e := range c.edges {
		n := int(e.WebRTC().Stats().WHEPSessions.Load())
		total += n
		each = append(each, n)
	}
	return total, each
}

// TestLoadToolThroughManager: the load tool with --server set to the manager publishes through
// a 307 to the origin (with a manager-minted publish token) and its WHEP subscribers (a play
// token) follow 307s to the two edges, spread by load; the report counts every subscriber
// connected, media received with little loss, and the publisher's packets.
func TestLoadToolThroughManager(t *testing.T) {
	c := startManaged(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	cfg := loadtest.DefaultConfig()
	cfg.Server, cfg.Stream = c.m.URL(), "live/loadtest-managed"
	cfg.PublishToken, cfg.Token = c.mint(t, cfg.Stream, "publish"), c.mint(t, cfg.Stream, "play")
	cfg.VideoBitrate, cfg.Subscribers, cfg.RampPerSecond = 500_000, 6, 20
	cfg.Warmup, cfg.Duration = time.Second, 3*time.Second
	type result struct {
		rep *loadtest.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := loadtest.Run(ctx, cfg, slog.New(slog.NewTextHandler(&nodetest.Log{T: t}, nil)))
		done <- result{rep, err}
	}()
	// While the run measures, every subscriber is on an edge: 3 each (capacity 3), none elsewhere.
	var each []int
	for deadline := time.Now().Add(30 * time.Second); ; {
		var total int
		if total, each = c.whepSessions(); total == cfg.Subscribers || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if each[0] != 3 || each[1] != 3 {
		t.Errorf("viewers per edge %v, want [3 3] (spread by capacity)", each)
	}
	if n := c.origin.WebRTC().Stats().WHIPSessions.Load(); n != 1 {
		t.Errorf("origin WHIP sessions %d, want the load tool's publisher", n)
	}
	res := <-done
	if res.err != nil {
		t.Fatalf("load tool through the manager: %v", res.err)
	}
	rep := res.rep
	if rep.Server != c.m.URL() || rep.Subscribers.Requested != 6 || rep.Subscribers.Connected != 6 || rep.Subscribers.Failed != 0 {
		t.Errorf("report server %q subscribers %+v, want 6 of 6 connected through %s", rep.Server, rep.Subscribers, c.m.URL())
	}
	if rep.Publisher == nil || rep.Publisher.VideoPackets == 0 || rep.Video.Packets < rep.Publisher.VideoPackets*5 {
		t.Errorf("publisher %+v, subscribers' video %+v: want the six subscribers to receive about what was sent", rep.Publisher, rep.Video)
	}
	if rep.LossPercent > 2 || rep.TimeToFirstFrame.Count != 6 {
		t.Errorf("loss %.2f%%, time to first frame %+v", rep.LossPercent, rep.TimeToFirstFrame)
	}
	if total, _ := c.whepSessions(); total != 0 {
		t.Errorf("%d WHEP sessions left after the run: the load tool's DELETEs did not reach the edges", total)
	}
}

// TestBrowserThroughManager: Chromium opens the publish page and the watch page served by the
// manager, with manager-minted tokens; the publish page's WHIP POST is answered by a 307 to the
// origin (another origin: CORS, and the token carried as ?token=), the watch page's WHEP POST
// by a 307 to an edge, which pulls the stream from the origin; frames are decoded.
func TestBrowserThroughManager(t *testing.T) {
	c := startManaged(t, 10)
	b := browser.New(t.Context(), t)
	stream := "live/e2e-managed"
	page := func(name string, params map[string]string) string {
		q := url.Values{}
		for k, v := range params {
			q.Set(k, v)
		}
		return c.m.URL() + "/" + name + "?" + q.Encode()
	}
	pub, err := b.Open(page("publish", map[string]string{"stream": stream, "codec": "VP8", "auto": "1", "token": c.mint(t, stream, "publish")}))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	waitFor(t, pub, `sf.state === 'connected' && sf.stats.framesSent > 10`, 20*time.Second)
	if _, err := c.origin.Hub().Stream(streamname.Name(stream)); err != nil {
		t.Fatalf("the page's stream is not on the origin: %v", err)
	}
	watch, err := b.Open(page("watch", map[string]string{"stream": stream, "auto": "1", "token": c.mint(t, stream, "play")}))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	waitFor(t, watch, `sf.state === 'connected' && sf.stats.framesDecoded > 30`, 20*time.Second)
	first := readSF(t, watch).Stats["framesDecoded"].(float64)
	time.Sleep(time.Second)
	if now := readSF(t, watch).Stats["framesDecoded"].(float64); now <= first+10 {
		t.Errorf("framesDecoded %v then %v: playback through the manager does not progress", first, now)
	}
	if total, _ := c.whepSessions(); total != 1 {
		t.Errorf("edges hold %d WHEP sessions, want the page's one", total)
	}
	if n := c.m.Stats().Redirects.Load(); n < 2 {
		t.Errorf("manager redirects %d, want the WHIP and the WHEP POST", n)
	}
}
