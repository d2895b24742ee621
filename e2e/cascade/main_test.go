// Package cascade_test runs origin → relay → edge as separate streamfleet processes on loopback
// and drives them with real clients: pion, ffmpeg/ffprobe and headless Chromium.
//
// Ports: the test picks free ports (listen on :0, close, pass the port) and waits for /healthz.
package cascade_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
)

const secret = "e2e-cluster-secret"

// binary is the streamfleet binary built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "streamfleet-cascade-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "streamfleet")
	build := exec.Command("go", "build", "-o", binary, "github.com/streamfleet/streamfleet/cmd/streamfleet")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build streamfleet:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeTCP and freeUDP return a port on 127.0.0.1 that was free a moment ago.
func freeTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func freeUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// proc is one node process.
type proc struct {
	t    *testing.T
	id   string
	cmd  *exec.Cmd
	done chan struct{}

	HTTP, RTSP, SRT string // addresses
	logMu           sync.Mutex
	log             []string
}

// URL is the node's HTTP base URL.
func (p *proc) URL() string { return "http://" + p.HTTP }

// startNode runs `streamfleet node` with free ports and the given extra flags, waits until it
// serves, and stops it when the test ends (its log goes to the test log if the test failed).
func startNode(t *testing.T, id, role string, extra ...string) *proc {
	t.Helper()
	p := &proc{t: t, id: id, HTTP: freeTCP(t), RTSP: freeTCP(t), SRT: freeUDP(t), done: make(chan struct{})}
	args := append([]string{"node", "--id=" + id, "--role=" + role, "--http=" + p.HTTP, "--ice-udp=" + freeUDP(t),
		"--rtsp=" + p.RTSP, "--rtsp-udp-rtp=", "--rtsp-udp-rtcp=", "--srt=" + p.SRT, "--cluster-secret=" + secret, "--grace=5s"}, extra...)
	p.cmd = exec.Command(binary, args...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.logMu.Lock()
			p.log = append(p.log, sc.Text())
			p.logMu.Unlock()
		}
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.logMu.Lock()
			for _, l := range p.log {
				t.Logf("[%s] %s", id, l)
			}
			p.logMu.Unlock()
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(p.URL() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited at start", id)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not serving after 15 s: %v", id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
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
		t.Fatalf("describe %s on %s: %v", stream, p.id, err)
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

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
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
