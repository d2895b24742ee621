package e2e

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/internal/natstest"
	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/internal/rtctest"
	"github.com/streamfleet/streamfleet/node"
	"github.com/streamfleet/streamfleet/streammanager"
)

// TestManagerRoutesPublishAndPlay: a WHIP publisher pointed at the manager is redirected to the
// origin; WHEP viewers pointed at the manager with ?region=eu land on the eu edges, spread by
// load (capacity 2 each), pull the stream from the origin and receive media; a drained edge gets
// no new viewers and refuses them itself.
func TestManagerRoutesPublishAndPlay(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	ns := natstest.Start(t)
	mcfg := streammanager.DefaultConfig()
	mcfg.ID, mcfg.HTTPAddr, mcfg.NATSURL, mcfg.APIKeys = "m1", "127.0.0.1:0", ns.ClientURL(), []string{"e2e-api-key-0123456789"}
	m, err := streammanager.New(mcfg, slog.New(slog.NewTextHandler(&nodetest.Log{T: t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })

	withNATS := func(id string, role node.Role, region string, capacity int, upstream string) func(*node.Config) {
		return func(c *node.Config) {
			c.ID, c.Role = id, role
			c.NATS.URL, c.NATS.Region, c.NATS.Capacity.Sessions = ns.ClientURL(), region, capacity
			c.NATS.HeartbeatInterval = 200 * time.Millisecond
			if upstream != "" {
				c.Upstreams = []string{upstream}
			}
		}
	}
	origin := nodetest.Start(t, withNATS("origin", node.RoleOrigin, "eu", 0, ""))
	up := origin.RTSPAddr().String()
	edges := map[string]*node.Node{
		"edge-eu-1": nodetest.Start(t, withNATS("edge-eu-1", node.RoleEdge, "eu", 2, up)),
		"edge-eu-2": nodetest.Start(t, withNATS("edge-eu-2", node.RoleEdge, "eu", 2, up)),
		"edge-us":   nodetest.Start(t, withNATS("edge-us", node.RoleEdge, "us", 10, up)),
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		for _, v := range m.State().Nodes() {
			if v.State == "in_service" {
				n++
			}
		}
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes in service: %d of 4", n)
		}
		time.Sleep(50 * time.Millisecond)
	}

	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rtctest.PublishStream(ctx, api, m.URL()+"/whip/live/managed", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000})
	if err != nil {
		t.Fatalf("publish through the manager: %v", err)
	}
	defer pub.Close()
	if _, err := origin.Hub().Stream("live/managed"); err != nil {
		t.Fatalf("the publisher did not land on the origin: %v", err)
	}

	var viewers []*rtctest.Viewer
	defer func() {
		for _, v := range viewers {
			v.Close()
		}
	}()
	for i := range 4 {
		v, err := rtctest.View(ctx, api, m.URL()+"/whep/live/managed?region=eu", "")
		if err != nil {
			t.Fatalf("viewer %d through the manager: %v", i, err)
		}
		viewers = append(viewers, v)
	}
	for i, v := range viewers {
		for len(v.Payloads("video")) < 10 {
			if ctx.Err() != nil {
				t.Fatalf("viewer %d received %d video packets", i, len(v.Payloads("video")))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for id, e := range edges {
		got := int(e.WebRTC().Stats().WHEPSessions.Load())
		want := map[string]int{"edge-eu-1": 2, "edge-eu-2": 2, "edge-us": 0}[id]
		if got != want {
			t.Errorf("%s has %d viewers, want %d (region first, spread by capacity)", id, got, want)
		}
	}

	// Drain edge-us: the manager stops sending viewers, and the node itself refuses them.
	req, _ := http.NewRequest(http.MethodPost, m.URL()+"/api/v1/nodes/edge-us/drain", nil)
	req.Header.Set("Authorization", "Bearer e2e-api-key-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("drain: %v %v", err, resp)
	}
	resp.Body.Close()
	for edges["edge-us"].Agent() == nil || !edges["edge-us"].Agent().Draining() {
		if ctx.Err() != nil {
			t.Fatal("edge-us never learned it is draining")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := rtctest.View(ctx, api, edges["edge-us"].HTTPURL()+"/whep/live/managed", ""); err == nil {
		t.Fatal("a draining edge accepted a new viewer")
	}
	resp, err = http.Get(m.URL() + "/api/v1/streams/live/managed/subscribe?region=us")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("subscribe with every edge full or draining: %d, want 503", resp.StatusCode)
	}
}
