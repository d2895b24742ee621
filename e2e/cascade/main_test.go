// Package cascade_test runs origin → relay → edge as separate streamfleet processes on loopback
// and drives them with real clients: pion, ffmpeg/ffprobe and headless Chromium.
//
// Ports: the test picks free ports (listen on :0, close, pass the port) and waits for /healthz.
package cascade_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"

	"github.com/streamfleet/streamfleet/internal/proctest"
)

const secret = "e2e-cluster-secret"

// binary is the streamfleet binary built once for the package.
var binary string

func TestMain(m *testing.M) { os.Exit(proctest.Run(m, &binary)) }

// proc is one node process.
type proc struct {
	*proctest.Proc
	HTTP, RTSP, SRT string // addresses
}

// URL is the node's HTTP base URL.
func (p *proc) URL() string { return "http://" + p.HTTP }

// startNode runs `streamfleet node` with free ports and the given extra flags, waits until it
// serves, and stops it when the test ends (its log goes to the test log if the test failed).
func startNode(t *testing.T, id, role string, extra ...string) *proc {
	t.Helper()
	p := &proc{HTTP: proctest.FreeTCP(t), RTSP: proctest.FreeTCP(t), SRT: proctest.FreeUDP(t)}
	args := append([]string{"node", "--id=" + id, "--role=" + role, "--http=" + p.HTTP, "--ice-udp=" + proctest.FreeUDP(t),
		"--rtsp=" + p.RTSP, "--rtsp-udp-rtp=", "--rtsp-udp-rtcp=", "--srt=" + p.SRT, "--cluster-secret=" + secret, "--grace=5s"}, extra...)
	p.Proc = proctest.Start(t, id, binary, args...)
	p.WaitHTTP(t, p.URL()+"/healthz", 15*time.Second)
	return p
}

// cascade starts origin, relay (pulling from the origin) and edge (pulling from the relay, and
// from the origin if the relay fails when fallback is set).
func cascade(t *testing.T, fallback bool) (origin, relay, edge *proc) {
	t.Helper()
	origin = startNode(t, "origin", "origin")
	relay = startNode(t, "relay", "relay", "--upstream=rtsp://"+origin.RTSP)
	ups := []string{relay.RTSP}
	if fallback {
		ups = append(ups, origin.RTSP)
	}
	edge = startNode(t, "edge", "edge", "--upstream="+strings.Join(ups, ","))
	return origin, relay, edge
}

// metric returns the value of the first sample of a metric whose line contains every label given
// (as `name="value"`), and whether there was one.
func (p *proc) metric(name string, labels ...string) (float64, bool) {
	resp, err := http.Get(p.URL() + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		return v, err == nil
	}
	return 0, false
}

// pulling reports whether the node has one upstream session open for stream from upstream.
func (p *proc) pulling(stream, upstream string) bool {
	v, ok := p.metric("streamfleet_upstream_pulls", `stream="`+stream+`"`, `upstream="`+upstream+`"`)
	return ok && v == 1
}

// layers DESCRIBEs stream on the node as another node would (every layer, with the cluster secret)
// and returns the RIDs of each track's medias.
func (p *proc) layers(t *testing.T, stream string) map[string][]string {
	t.Helper()
	tcp := gortsplib.TransportTCP
	c := &gortsplib.Client{Transport: &tcp, ReadTimeout: 5 * time.Second}
	if err := c.Start("rtsp", p.RTSP); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := base.ParseURL("rtsp://streamfleet-node:" + secret + "@" + p.RTSP + "/" + stream + "?layers=all")
	if err != nil {
		t.Fatal(err)
	}
	desc, _, err := c.Describe(u)
	if err != nil {
		t.Fatalf("describe %s on %s: %v", stream, p.Name, err)
	}
	return ridsOf(desc)
}

// ridsOf reads the layer mids of an all-layers session: "t<track>r<rid>".
func ridsOf(desc *description.Session) map[string][]string {
	out := map[string][]string{}
	for _, m := range desc.Medias {
		track, rid, _ := strings.Cut(strings.TrimPrefix(m.ID, "t"), "r")
		out[string(m.Type)+track] = append(out[string(m.Type)+track], rid)
	}
	return out
}

// runTool runs ffmpeg or another client until the test ends; its stderr goes to the log on failure.
func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("%s stderr: %s", name, stderr.String())
		}
	})
}
