// Package ha_test runs the control plane's failure cases with every piece a separate process: three
// NATS servers in one JetStream cluster (`streamfleet nats`, the nats-server the binary embeds),
// two stream managers with R3 buckets, and an origin, a relay and two edges, all on loopback.
package ha_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/streamfleet/streamfleet/internal/proctest"
	"github.com/streamfleet/streamfleet/internal/rtctest"
)

var binary string

func TestMain(m *testing.M) {
	code := proctest.Run(m, &binary)
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/pion/interceptor/pkg/report.(*SenderInterceptor).loop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"), goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

const apiKey = "ha-api-key-0123456789"

type manager struct {
	*proctest.Proc
	url string
}

// get GETs a path of the manager and decodes the JSON answer into v (if not nil); it returns the
// status, or 0 when the manager did not answer.
func (m manager) get(path string, v any) int {
	c := http.Client{Timeout: 2 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(m.url + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil && json.Unmarshal(body, v) != nil {
		return -1
	}
	return resp.StatusCode
}

// post POSTs to a path of the manager with the API key, without following redirects.
func (m manager) post(path, contentType, body string) (*http.Response, error) {
	c := http.Client{Timeout: 2 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodPost, m.url+path, strings.NewReader(body))
	req.Header.Set("X-API-Key", apiKey)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

type nodeView struct {
	ID, Role, Region, State string
}

func (m manager) nodes() map[string]string {
	var v struct{ Nodes []nodeView }
	if m.get("/api/v1/nodes", &v) != 200 {
		return nil
	}
	out := map[string]string{}
	for _, n := range v.Nodes {
		out[n.ID] = n.State
	}
	return out
}

type lookup struct {
	URL  string
	Node struct{ ID, Role string }
}

func (m manager) subscribe(stream string) (lookup, int) {
	var l lookup
	st := m.get("/api/v1/streams/"+stream+"/subscribe?region=eu", &l)
	return l, st
}

// TestHA: SIGKILL the leading manager → the other answers every call (lookups, WHIP/WHEP
// redirects, nodes, streams, drain, token minting, a WHEP viewer through it) and takes the leader
// lease; SIGKILL one NATS server → no
// state lost (nodes and the stream stay, heartbeats and writes go on through the other two) and
// lookups continue; SIGKILL an edge → it is failed within 5 s and no lookup chooses it.
func TestHA(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	// Three NATS servers, one JetStream cluster.
	clients := []string{proctest.FreeTCP(t), proctest.FreeTCP(t), proctest.FreeTCP(t)}
	routes := []string{proctest.FreeTCP(t), proctest.FreeTCP(t), proctest.FreeTCP(t)}
	var natsProcs []*proctest.Proc
	for i := range 3 {
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, "nats-route://"+r)
			}
		}
		p := proctest.Start(t, fmt.Sprintf("nats%d", i), binary, "nats", fmt.Sprintf("--name=n%d", i), "--listen="+clients[i],
			"--store="+t.TempDir(), "--cluster="+routes[i], "--routes="+strings.Join(others, ","))
		natsProcs = append(natsProcs, p)
	}
	for i, p := range natsProcs {
		p.WaitTCP(t, clients[i], 10*time.Second)
	}
	natsURL := "nats://" + strings.Join(clients, ",nats://")

	// Two managers with R3 buckets.
	var managers []manager
	for i := range 2 {
		addr := proctest.FreeTCP(t)
		p := proctest.Start(t, fmt.Sprintf("m%d", i+1), binary, "manager", fmt.Sprintf("--id=m%d", i+1), "--http="+addr, "--nats="+natsURL,
			"--replicas=3", "--api-key="+apiKey, "--token-key=ha-token-secret-0123456789abcdef0123")
		managers = append(managers, manager{p, "http://" + addr})
	}
	for _, m := range managers {
		m.WaitHTTP(t, m.url+"/healthz", 30*time.Second)
	}

	// Origin, relay and two edges.
	type nodeProc struct {
		*proctest.Proc
		http, rtsp string
	}
	startNode := func(id, role string, extra ...string) nodeProc {
		n := nodeProc{http: proctest.FreeTCP(t), rtsp: proctest.FreeTCP(t)}
		args := append([]string{"node", "--id=" + id, "--role=" + role, "--http=" + n.http, "--ice-udp=" + proctest.FreeUDP(t),
			"--rtsp=" + n.rtsp, "--rtsp-udp-rtp=", "--rtsp-udp-rtcp=", "--srt=", "--cluster-secret=ha-cluster-secret",
			"--nats=" + natsURL, "--region=eu", "--heartbeat=500ms", "--capacity-sessions=100"}, extra...)
		n.Proc = proctest.Start(t, id, binary, args...)
		n.WaitHTTP(t, "http://"+n.http+"/healthz", 15*time.Second)
		return n
	}
	origin := startNode("origin", "origin")
	relay := startNode("relay", "relay", "--upstream="+origin.rtsp)
	edges := []nodeProc{startNode("edge-1", "edge", "--upstream="+relay.rtsp), startNode("edge-2", "edge", "--upstream="+relay.rtsp)}
	allIn := func(m manager, ids ...string) func() bool {
		return func() bool {
			ns := m.nodes()
			for _, id := range ids {
				if ns[id] != "in_service" {
					return false
				}
			}
			return true
		}
	}
	for _, m := range managers {
		proctest.WaitFor(t, 15*time.Second, m.Name+" sees the four nodes", allIn(m, "origin", "relay", "edge-1", "edge-2"))
	}

	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rtctest.PublishStream(ctx, api, managers[0].url+"/whip/live/ha", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000})
	if err != nil {
		t.Fatalf("publish through m1: %v", err)
	}
	defer pub.Close()
	for _, m := range managers {
		proctest.WaitFor(t, 5*time.Second, m.Name+" sees the stream on the origin", func() bool {
			var s struct{ Origin string }
			return m.get("/api/v1/streams/live/ha", &s) == 200 && s.Origin == "origin"
		})
	}

	// SIGKILL the leader: the other manager answers every call and takes the lease.
	var c0 struct{ Leader string }
	proctest.WaitFor(t, 10*time.Second, "a leader", func() bool { return managers[0].get("/api/v1/cluster", &c0) == 200 && c0.Leader != "" })
	dead, m2 := managers[0], managers[1]
	if c0.Leader == "m2" {
		dead, m2 = managers[1], managers[0]
	}
	dead.Kill()
	checkAnswers := func(stage string) {
		t.Helper()
		if l, st := m2.subscribe("live/ha"); st != 200 || l.Node.Role != "edge" {
			t.Errorf("%s: subscribe lookup %d %+v", stage, st, l)
		}
		var pl lookup
		if st := m2.get("/api/v1/streams/live/other/publish", &pl); st != 200 || pl.Node.ID != "origin" {
			t.Errorf("%s: publish lookup %d %+v", stage, st, pl)
		}
		for _, path := range []string{"/api/v1/nodes", "/api/v1/nodes/origin", "/api/v1/streams", "/api/v1/streams/live/ha", "/api/v1/cluster", "/healthz", "/metrics", "/"} {
			if st := m2.get(path, nil); st != 200 && !(st == -1 && (path == "/metrics" || path == "/")) {
				t.Errorf("%s: GET %s: %d", stage, path, st)
			}
		}
		for _, tc := range []struct{ path, ct, body string }{
			{"/whip/live/other", "application/sdp", "v=0"},
			{"/whep/live/ha?region=eu", "application/sdp", "v=0"},
		} {
			resp, err := m2.post(tc.path, tc.ct, tc.body)
			if err != nil || resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") == "" {
				t.Errorf("%s: POST %s: %v %v", stage, tc.path, err, resp)
			}
		}
		if resp, err := m2.post("/api/v1/tokens", "application/json", `{"stream":"live/ha","action":"play"}`); err != nil || resp.StatusCode != http.StatusCreated {
			t.Errorf("%s: mint: %v %v", stage, err, resp)
		}
	}
	checkAnswers("the leader killed")
	v, err := rtctest.View(ctx, api, m2.url+"/whep/live/ha?region=eu", "")
	if err != nil {
		t.Fatalf("WHEP through %s after %s died: %v", m2.Name, dead.Name, err)
	}
	defer v.Close()
	proctest.WaitFor(t, 10*time.Second, "video through the survivor, an edge and the relay", func() bool { return len(v.Payloads("video")) > 10 })
	took := proctest.WaitFor(t, 12*time.Second, "the survivor to take the leader lease", func() bool {
		var c struct{ Leader string }
		return m2.get("/api/v1/cluster", &c) == 200 && c.Leader == m2.Name
	})
	t.Logf("%s led; %s leads %v after its SIGKILL", c0.Leader, m2.Name, took.Round(10*time.Millisecond))

	// SIGKILL the NATS server m2 is connected to: no state lost, lookups continue.
	var cl struct{ NATS struct{ Server string } }
	m2.get("/api/v1/cluster", &cl)
	victim := 0
	for i, c := range clients {
		if strings.Contains(cl.NATS.Server, c) {
			victim = i
		}
	}
	natsProcs[victim].Kill()
	killed := time.Now()
	failedLookups := 0
	for time.Since(killed) < 6*time.Second { // longer than a heartbeat TTL: nodes must keep heartbeating
		if _, st := m2.subscribe("live/ha"); st != 200 {
			failedLookups++
		}
		time.Sleep(100 * time.Millisecond)
	}
	if failedLookups > 0 {
		t.Errorf("%d lookups failed after NATS server n%d died", failedLookups, victim)
	}
	if !allIn(m2, "origin", "relay", "edge-1", "edge-2")() {
		t.Fatalf("after NATS server n%d died, m2 sees %v", victim, m2.nodes())
	}
	stallEnd := proctest.WaitFor(t, 20*time.Second, "the heartbeats to flow again on "+m2.Name, func() bool {
		var c struct {
			Stalled bool `json:"heartbeats_stalled"`
		}
		return m2.get("/api/v1/cluster", &c) == 200 && !c.Stalled
	})
	t.Logf("NATS server n%d killed: heartbeats flowed again on %s %v after the 6 s of lookups", victim, m2.Name, stallEnd.Round(10*time.Millisecond))
	checkAnswers("a NATS server killed")
	// Writes go on: drain edge-2 and put it back. Each KV bucket is a JetStream stream of its own
	// that elects its leader on its own, so a write may get a 503 until the config bucket's
	// election is over (seen taking up to ~11 s); the manager says so, and the write then succeeds.
	var drainErr string
	took = proctest.WaitFor(t, 20*time.Second, "a drain accepted with a NATS server down", func() bool {
		resp, err := m2.post("/api/v1/nodes/edge-2/drain", "", "")
		if err != nil {
			drainErr = err.Error()
			return false
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			body, _ := io.ReadAll(resp.Body)
			drainErr = fmt.Sprintf("%d %s", resp.StatusCode, body)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("drain with a NATS server down: %s", drainErr)
			}
			return false
		}
		return true
	})
	t.Logf("drain accepted %v after the heartbeats flowed again (last refusal: %q)", took.Round(10*time.Millisecond), drainErr)
	proctest.WaitFor(t, 5*time.Second, "edge-2 draining", func() bool { return m2.nodes()["edge-2"] == "draining" })
	req, _ := http.NewRequest(http.MethodDelete, m2.url+"/api/v1/nodes/edge-2/drain", nil)
	req.Header.Set("X-API-Key", apiKey)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("undrain: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	proctest.WaitFor(t, 5*time.Second, "edge-2 back in service", allIn(m2, "edge-2"))

	// SIGKILL edge-1: failed within 5 s (of a control plane that flows: during a NATS leader
	// election failure detection is paused, above), then never chosen.
	edges[0].Kill()
	took = proctest.WaitFor(t, 5*time.Second, "edge-1 marked failed", func() bool { return m2.nodes()["edge-1"] == "failed" })
	t.Logf("edge-1 failed %v after SIGKILL", took.Round(10*time.Millisecond))
	for i := range 30 {
		l, st := m2.subscribe("live/ha")
		if st != 200 || l.Node.ID != "edge-2" {
			t.Fatalf("lookup %d after edge-1 died: %d %+v", i, st, l)
		}
	}
	if resp, err := m2.post("/whep/live/ha?region=eu", "application/sdp", "v=0"); err != nil || !strings.Contains(resp.Header.Get("Location"), edges[1].http) {
		t.Fatalf("WHEP redirect after edge-1 died: %v %v", err, resp)
	}
}
