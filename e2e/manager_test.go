package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/internal/natstest"
	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/internal/rtctest"
	"github.com/streamfleet/streamfleet/node"
	"github.com/streamfleet/streamfleet/streammanager"
)

// startManager runs an embedded NATS server and a stream manager on it (ID m1, HTTP on a free
// port), changed by configure if not nil, and closes the manager when the test ends.
func startManager(ctx context.Context, t *testing.T, configure func(*streammanager.Config)) (*streammanager.Manager, *server.Server) {
	t.Helper()
	ns := natstest.Start(t)
	cfg := streammanager.DefaultConfig()
	cfg.ID, cfg.HTTPAddr, cfg.NATSURL = "m1", "127.0.0.1:0", ns.ClientURL()
	if configure != nil {
		configure(&cfg)
	}
	m, err := streammanager.New(cfg, slog.New(slog.NewTextHandler(&nodetest.Log{T: t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, ns
}

// TestManagerRoutesPublishAndPlay: a WHIP publisher pointed at the manager is redirected to the
// origin; WHEP viewers pointed at the manager with ?region=eu land on the eu edges, spread by
// load (capacity 2 each), pull the stream from the origin and receive media; a drained edge gets
// no new viewers and refuses them itself.
func TestManagerRoutesPublishAndPlay(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	m, ns := startManager(ctx, t, func(c *streammanager.Config) { c.APIKeys = []string{"e2e-api-key-0123456789"} })

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

// TestManagerMintedTokens: a token minted by the manager (POST /api/v1/tokens, HS256 with the
// secret the nodes trust) lets a publisher through the manager onto the origin and a viewer
// through the manager onto the edge; a play token of another stream, and no token, are refused by
// the node; minting without the API key is a 401 {code, message}.
func TestManagerMintedTokens(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	const secret, apiKey = "e2e-token-secret-0123456789abcdef", "e2e-api-key-0123456789"
	m, ns := startManager(ctx, t, func(c *streammanager.Config) { c.APIKeys, c.TokenSecret = []string{apiKey}, secret })
	withNATS := func(id string, role node.Role, upstream string) func(*node.Config) {
		return func(c *node.Config) {
			c.ID, c.Role = id, role
			c.NATS.URL, c.NATS.HeartbeatInterval = ns.ClientURL(), 200*time.Millisecond
			c.Auth.TokenSecrets = []string{secret}
			c.ClusterSecret = "e2e-cluster-secret" // pulls present it; the origin requires play tokens otherwise
			if upstream != "" {
				c.Upstreams = []string{upstream}
			}
		}
	}
	origin := nodetest.Start(t, withNATS("origin", node.RoleOrigin, ""))
	edge := nodetest.Start(t, withNATS("edge", node.RoleEdge, origin.RTSPAddr().String()))
	waitInService(t, m, 2)

	mint := func(stream, action, key string) (string, int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, m.URL()+"/api/v1/tokens",
			strings.NewReader(`{"stream":"`+stream+`","action":"`+action+`","ttl":"5m"}`))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Token, Code, Message string }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("mint answer: %v", err)
		}
		return body.Token, resp.StatusCode, body.Code + ": " + body.Message
	}
	if _, status, msg := mint("live/tok", "publish", ""); status != http.StatusUnauthorized || !strings.HasPrefix(msg, "unauthorized: ") || len(msg) < 20 {
		t.Fatalf("mint without an API key: %d %q", status, msg)
	}
	pubTok, status, msg := mint("live/tok", "publish", apiKey)
	if status != http.StatusCreated || pubTok == "" {
		t.Fatalf("mint publish: %d %s", status, msg)
	}
	playTok, _, _ := mint("live/tok", "play", apiKey)
	otherTok, _, _ := mint("live/other", "play", apiKey)

	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	var he *rtctest.HTTPError
	if _, err := rtctest.PublishStream(ctx, api, m.URL()+"/whip/live/tok", vp8); !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("publish without a token through the manager: %v, want a 401", err)
	}
	if _, err := rtctest.PublishStream(ctx, api, m.URL()+"/whip/live/tok?token="+playTok, vp8); !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("publish with a play token: %v, want a 401", err)
	}
	pub, err := rtctest.PublishStream(ctx, api, m.URL()+"/whip/live/tok?token="+pubTok, vp8)
	if err != nil {
		t.Fatalf("publish with the minted token through the manager: %v", err)
	}
	defer pub.Close()
	if _, err := origin.Hub().Stream("live/tok"); err != nil {
		t.Fatalf("the publisher did not land on the origin: %v", err)
	}
	if _, err := rtctest.View(ctx, api, m.URL()+"/whep/live/tok", otherTok); !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("play with another stream's token: %v, want a 401", err)
	}
	if _, err := rtctest.View(ctx, api, m.URL()+"/whep/live/tok", ""); !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("play without a token: %v, want a 401", err)
	}
	v, err := rtctest.View(ctx, api, m.URL()+"/whep/live/tok", playTok) // bearer header, carried as ?token= in the 307
	if err != nil {
		t.Fatalf("play with the minted token through the manager: %v", err)
	}
	defer v.Close()
	for len(v.Payloads("video")) < 10 {
		if ctx.Err() != nil {
			t.Fatalf("the viewer received %d video packets", len(v.Payloads("video")))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := edge.WebRTC().Stats().WHEPSessions.Load(); n != 1 {
		t.Fatalf("edge viewers %d, want 1", n)
	}
}

// waitInService waits until the manager sees n nodes in service.
func waitInService(t *testing.T, m *streammanager.Manager, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := 0
		for _, v := range m.State().Nodes() {
			if v.State == "in_service" {
				got++
			}
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes in service: %d of %d", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
