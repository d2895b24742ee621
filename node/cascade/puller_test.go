package cascade_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/pion/rtp"

	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/internal/rtctest"
	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/node"
	"github.com/streamfleet/streamfleet/node/cascade"
	"github.com/streamfleet/streamfleet/node/hub"
)

// feeder writes H264 packets into a stream of an upstream node's hub, directly, so a test can
// make that upstream stall (pause) and resume.
type feeder struct {
	pub    *hub.Publication
	paused atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

func feed(t *testing.T, n *node.Node, name streamname.Name) *feeder {
	t.Helper()
	pub, err := n.Hub().Publish(name, []hub.TrackSpec{{Codec: rtctest.H264}})
	if err != nil {
		t.Fatal(err)
	}
	f := &feeder{pub: pub, stop: make(chan struct{})}
	l := pub.Stream().Tracks()[0].Layer("")
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for i := uint32(1); ; i++ {
			select {
			case <-f.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if f.paused.Load() {
				continue
			}
			l.WritePacket(&hub.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: i * 1800, SSRC: 7},
				Payload: rtctest.Payload(rtctest.H264.MimeType, i%10 == 1, i, "")})
		}
	}()
	t.Cleanup(func() {
		close(f.stop)
		f.wg.Wait()
		pub.End()
	})
	return f
}

// newPuller makes a puller of a bare hub, with short timeouts.
func newPuller(t *testing.T, upstreams []string, edit func(*cascade.Config)) (*cascade.Puller, *hub.Hub) {
	t.Helper()
	h := hub.New(hub.Config{Grace: 5 * time.Second}, nil)
	cfg := cascade.DefaultConfig()
	cfg.Upstreams, cfg.ClusterSecret = upstreams, secret
	cfg.StallTimeout, cfg.RTSPTimeout, cfg.Linger = 300*time.Millisecond, 2*time.Second, time.Minute
	if edit != nil {
		edit(&cfg)
	}
	p, err := cascade.New(cfg, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.SetSource(p)
	t.Cleanup(func() {
		p.Close()
		h.Close()
	})
	return p, h
}

// freePort is a TCP port on 127.0.0.1 nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func origin(t *testing.T) *node.Node {
	return nodetest.Start(t, func(c *node.Config) { c.ClusterSecret = secret })
}

// TestPullSkipsDeadAndMissingUpstreams: the first upstream refuses connections, the second lacks
// the stream, the third has it.
func TestPullSkipsDeadAndMissingUpstreams(t *testing.T) {
	empty, full := origin(t), origin(t)
	feed(t, full, "live/x")
	p, h := newPuller(t, []string{freePort(t), empty.RTSPAddr().String(), "rtsp://" + full.RTSPAddr().String() + "/"}, nil)
	st, err := h.Open(t.Context(), "live/x")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if got := p.Stats().AttemptFailures.Load(); got != 2 {
		t.Fatalf("%d failed attempts, want 2", got)
	}
	if pulls := p.Pulls(); len(pulls) != 1 || pulls[0].Upstream != full.RTSPAddr().String() {
		t.Fatalf("pulls %+v", pulls)
	}
	r := st.Tracks()[0].NewReader(0)
	defer r.Close()
	select {
	case e := <-r.C():
		if idx, _, ok := rtctest.PayloadIndex(e.Packet.Payload); !ok || idx%10 != 1 {
			t.Fatalf("first packet %v: want a keyframe of the feeder", e.Packet.Payload[:8])
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no packet pulled")
	}
}

// TestPullErrors: no upstream has the stream (ErrStreamNotFound), no upstream answers
// (ErrUpstreamUnavailable), the upstream refuses the secret (ErrUnauthorized).
func TestPullErrors(t *testing.T) {
	o := origin(t)
	feed(t, o, "live/x")
	for _, tc := range []struct {
		name      string
		upstreams []string
		secret    string
		stream    streamname.Name
		want      []error
	}{
		{"missing everywhere", []string{o.RTSPAddr().String(), o.RTSPAddr().String()}, secret, "live/nobody", []error{hub.ErrStreamNotFound}},
		{"all down", []string{freePort(t), freePort(t)}, secret, "live/x", []error{cascade.ErrUpstreamUnavailable}},
		{"no secret", []string{o.RTSPAddr().String()}, "", "live/x", []error{cascade.ErrUpstreamUnavailable, cascade.ErrUnauthorized}},
		{"wrong secret", []string{o.RTSPAddr().String()}, "not-the-secret", "live/x", []error{cascade.ErrUpstreamUnavailable, cascade.ErrUnauthorized}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, h := newPuller(t, tc.upstreams, func(c *cascade.Config) { c.ClusterSecret = tc.secret })
			_, err := h.Open(t.Context(), tc.stream)
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Fatalf("open: %v, want %v", err, want)
				}
			}
			waitFor(t, time.Second, "no pull left", func() bool { return len(p.Pulls()) == 0 })
			if _, err := h.Stream(tc.stream); err == nil {
				t.Fatal("a failed pull left a stream")
			}
		})
	}
}

// TestStallFailsOverAndBack: an upstream that goes silent (hung: not even heartbeats) is given up
// after the stall timeout for the next; the local stream and its reader carry on (the
// returning-publisher path), resuming on a keyframe; when that one hangs too, the pull goes round
// to the first again.
func TestStallFailsOverAndBack(t *testing.T) {
	a, b := origin(t), origin(t)
	feed(t, a, "live/x")
	feed(t, b, "live/x")
	pa, pb := newFreezer(t, a.RTSPAddr().String()), newFreezer(t, b.RTSPAddr().String())
	p, h := newPuller(t, []string{pa.Addr(), pb.Addr()}, nil)
	st, err := h.Open(t.Context(), "live/x")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	r := st.Tracks()[0].NewReader(0)
	defer r.Close()
	upstreamOf := func() string {
		if pl := p.Pulls(); len(pl) == 1 && pl[0].Sessions == 1 {
			return pl[0].Upstream
		}
		return ""
	}
	drain := func(d time.Duration) (n int, firstKey bool) {
		deadline := time.After(d)
		for {
			select {
			case e := <-r.C():
				if n == 0 {
					firstKey = e.Packet.Keyframe
				}
				n++
			case <-deadline:
				return n, firstKey
			}
		}
	}
	if n, _ := drain(300 * time.Millisecond); n == 0 {
		t.Fatal("nothing from the first upstream")
	}
	for round, next := range []*freezer{pb, pa} {
		if round == 0 {
			pa.frozen.Store(true)
		} else {
			pa.frozen.Store(false)
			pb.frozen.Store(true)
		}
		drain(100 * time.Millisecond) // what was under way
		start := time.Now()
		waitFor(t, 2*time.Second, "the next upstream", func() bool { return upstreamOf() == next.Addr() })
		t.Logf("round %d: failed over in %v", round, time.Since(start))
		n, firstKey := drain(500 * time.Millisecond)
		if n == 0 || !firstKey {
			t.Fatalf("round %d: %d packets after failover, first a keyframe: %v", round, n, firstKey)
		}
		if cur, _ := h.Stream("live/x"); cur != st {
			t.Fatal("the local stream was replaced: readers would have lost it")
		}
	}
	if got := p.Stats().Failovers.Load(); got != 2 {
		t.Fatalf("%d failovers, want 2", got)
	}
	select {
	case <-r.Done():
		t.Fatal("the reader was closed")
	default:
	}
}

// TestIdleUpstreamIsNotAStall: an upstream whose publisher pauses sends heartbeats; the puller
// stays with it (another origin would not have that publisher either) and the stream resumes.
func TestIdleUpstreamIsNotAStall(t *testing.T) {
	a, b := origin(t), origin(t)
	fa := feed(t, a, "live/x")
	feed(t, b, "live/x")
	p, h := newPuller(t, []string{a.RTSPAddr().String(), b.RTSPAddr().String()}, nil)
	st, err := h.Open(t.Context(), "live/x")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	r := st.Tracks()[0].NewReader(0)
	defer r.Close()
	fa.paused.Store(true)
	time.Sleep(1500 * time.Millisecond) // five stall timeouts
	if pl := p.Pulls(); len(pl) != 1 || pl[0].Upstream != a.RTSPAddr().String() || p.Stats().Failovers.Load() != 0 {
		t.Fatalf("pulls %+v, %d failovers: want still the first upstream", pl, p.Stats().Failovers.Load())
	}
	if a.RTSP().Stats().Heartbeats.Load() == 0 {
		t.Fatal("the idle upstream sent no heartbeat")
	}
	for len(r.C()) > 0 {
		<-r.C()
	}
	fa.paused.Store(false)
	select {
	case <-r.C():
	case <-time.After(2 * time.Second):
		t.Fatal("nothing after the publisher resumed")
	}
}

// TestCloseEndsPulledStreams: closing the puller ends its streams and their readers.
func TestCloseEndsPulledStreams(t *testing.T) {
	o := origin(t)
	feed(t, o, "live/x")
	p, h := newPuller(t, []string{o.RTSPAddr().String()}, nil)
	st, err := h.Open(t.Context(), "live/x")
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	select {
	case <-st.Done():
	case <-time.After(time.Second):
		t.Fatal("the pulled stream outlived the puller")
	}
	if err := p.Pull(context.Background(), "live/x"); !errors.Is(err, cascade.ErrClosed) {
		t.Fatalf("pull after close: %v", err)
	}
}

// TestStrangerCannotPullAllLayers: an RTSP client without the cluster secret gets 401 for an
// all-layers pull (without credentials, with a wrong password, with the right password under
// another user name), while a plain read stays open; the node's own user and secret get 200.
func TestStrangerCannotPullAllLayers(t *testing.T) {
	o := origin(t)
	feed(t, o, "live/x")
	describe := func(user, pass, query string) base.StatusCode {
		t.Helper()
		tcp := gortsplib.TransportTCP
		c := &gortsplib.Client{Transport: &tcp, ReadTimeout: 3 * time.Second}
		if err := c.Start("rtsp", o.RTSPAddr().String()); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		u, err := base.ParseURL("rtsp://" + o.RTSPAddr().String() + "/live/x" + query)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			u.User = urlUser(user, pass)
		}
		_, res, err := c.Describe(u)
		var bad liberrors.ErrClientBadStatusCode
		switch {
		case errors.As(err, &bad):
			return bad.Code
		case err != nil:
			t.Fatalf("describe: %v", err)
		}
		return res.StatusCode
	}
	for _, tc := range []struct {
		name, user, pass, query string
		want                    base.StatusCode
	}{
		{"no credentials", "", "", "?layers=all", base.StatusUnauthorized},
		{"wrong secret", "streamfleet-node", "guess", "?layers=all", base.StatusUnauthorized},
		{"other user", "admin", secret, "?layers=all", base.StatusUnauthorized},
		{"node", "streamfleet-node", secret, "?layers=all", base.StatusOK},
		{"plain read", "", "", "", base.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := describe(tc.user, tc.pass, tc.query); got != tc.want {
				t.Fatalf("DESCRIBE: %d, want %d", got, tc.want)
			}
		})
	}
}

// TestEdgeWithoutSecretIsRefused: an edge configured without the cluster secret cannot pull from
// an origin that has one; its viewer gets 503, not the stream.
func TestEdgeWithoutSecretIsRefused(t *testing.T) {
	o := origin(t)
	feed(t, o, "live/x")
	edge := nodetest.Start(t, func(c *node.Config) {
		c.Role, c.Upstreams = node.RoleEdge, []string{o.RTSPAddr().String()}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	_, err = rtctest.View(ctx, api, edge.HTTPURL()+"/whep/live/x", "")
	var he *rtctest.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("view through an edge without the secret: %v, want 503", err)
	}
	if got := edge.Puller().Stats().AttemptFailures.Load(); got == 0 {
		t.Fatal("the edge counted no failed attempt")
	}
	if _, err := edge.Hub().Stream("live/x"); err == nil {
		t.Fatal("the edge carries the stream")
	}
}

func urlUser(user, pass string) *url.Userinfo { return url.UserPassword(user, pass) }

// TestRelayFailoverIsInvisibleDownstream: when a relay fails over (its first origin hangs) to its
// second origin, the edge pulling from it sees no change (the relay's heartbeats keep its session;
// no failover), and the edge's viewer keeps getting the stream with continuous sequence numbers: the
// relay's RTSP output is rewritten like any viewer's.
func TestRelayFailoverIsInvisibleDownstream(t *testing.T) {
	a, b := origin(t), origin(t)
	feed(t, a, "live/x")
	feed(t, b, "live/x")
	pa := newFreezer(t, a.RTSPAddr().String())
	relay := nodetest.Start(t, func(c *node.Config) {
		c.ID, c.Role, c.ClusterSecret, c.Upstreams = "relay", node.RoleRelay, secret, []string{pa.Addr(), b.RTSPAddr().String()}
	})
	edge := nodetest.Start(t, func(c *node.Config) {
		c.ID, c.Role, c.ClusterSecret, c.Upstreams = "edge", node.RoleEdge, secret, []string{relay.RTSPAddr().String()}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	v, err := rtctest.View(ctx, api, edge.HTTPURL()+"/whep/live/x", "")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitFor(t, 5*time.Second, "video at the viewer", func() bool { return len(v.Payloads("video")) > 20 })
	pa.frozen.Store(true) // the first origin hangs
	waitFor(t, 3*time.Second, "the relay on the second origin", func() bool {
		p := relay.Puller().Pulls()
		return len(p) == 1 && p[0].Sessions == 1 && p[0].Upstream == b.RTSPAddr().String()
	})
	n := len(v.Payloads("video"))
	waitFor(t, 3*time.Second, "video again at the viewer", func() bool { return len(v.Payloads("video")) > n+20 })
	if f := relay.Puller().Stats().Failovers.Load(); f != 1 {
		t.Fatalf("relay failovers %d, want 1", f)
	}
	if f, s := edge.Puller().Stats().Failovers.Load(), edge.Puller().Stats().SessionsOpened.Load(); f != 0 || s != 1 {
		t.Fatalf("edge failovers %d, sessions %d: want 0 and 1", f, s)
	}
	rtctest.CheckSequence(t, v, "video", 0)
}

// TestLateLayerIsPulledToo: a simulcast layer that starts after the edge pulled the stream reaches
// the edge as well: the origin ends its all-layers session, the edge pulls again at once, and its
// viewer carries on.
func TestLateLayerIsPulledToo(t *testing.T) {
	o := origin(t)
	pub, err := o.Hub().Publish("live/late", []hub.TrackSpec{{Codec: rtctest.VP8}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.End()
	track := pub.Stream().Tracks()[0]
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer func() {
		close(stop)
		wg.Wait()
	}()
	send := func(rid string) {
		l := track.Layer(rid)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint32(1); ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				payload := rtctest.Payload(rtctest.VP8.MimeType, i%10 == 1, i, rid)
				if rid == "h" {
					payload = append(payload, make([]byte, 600)...) // a higher bitrate: viewers move up
				}
				l.WritePacket(&hub.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: i * 1800, SSRC: uint32(rid[0])},
					Payload: payload})
			}
		}()
	}
	send("l")
	edge := nodetest.Start(t, func(c *node.Config) {
		c.Role, c.ClusterSecret, c.Upstreams = node.RoleEdge, secret, []string{o.RTSPAddr().String()}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	v, err := rtctest.View(ctx, api, edge.HTTPURL()+"/whep/live/late", "")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitFor(t, 5*time.Second, "the low layer at the viewer", func() bool { return len(v.Payloads("video")) > 10 })
	send("h")
	waitFor(t, 3*time.Second, "two layers at the edge", func() bool {
		st, err := edge.Hub().Stream("live/late")
		return err == nil && len(st.Tracks()[0].Layers()) == 2
	})
	if o.RTSP().Stats().LayerRestarts.Load() != 1 {
		t.Fatal("the origin did not restart the all-layers session")
	}
	// The viewer moves to the new, higher layer (at its keyframe) on the same peer connection.
	waitFor(t, 5*time.Second, "the high layer at the viewer", func() bool {
		ps := v.Payloads("video")
		_, tag, ok := rtctest.PayloadIndex(ps[len(ps)-1])
		return ok && tag == "h"
	})
	rtctest.CheckSequence(t, v, "video", 0)
}

// TestEndUpstreamEndsDownstream: when the publisher stops on purpose at the origin, the stream ends
// on the relay and the edge within moments, not after their grace periods: every upstream
// answering 404 means the stream is over.
func TestEndUpstreamEndsDownstream(t *testing.T) {
	nodes := chain(t, 2, func(i int, c *node.Config) { c.Grace = 30 * time.Second })
	f := feed(t, nodes[0], "live/x")
	st, err := nodes[2].Hub().Open(t.Context(), "live/x")
	if err != nil {
		t.Fatal(err)
	}
	r := st.Tracks()[0].NewReader(0)
	defer r.Close()
	select {
	case <-r.C():
	case <-time.After(3 * time.Second):
		t.Fatal("nothing at the edge")
	}
	f.pub.End()
	ended := time.Now()
	select {
	case <-st.Done():
		t.Logf("the edge's stream ended %v after the origin's", time.Since(ended))
	case <-time.After(5 * time.Second):
		t.Fatal("the edge's stream outlived the origin's by 5 s")
	}
	waitFor(t, time.Second, "no pull left", func() bool {
		return len(nodes[1].Puller().Pulls()) == 0 && len(nodes[2].Puller().Pulls()) == 0
	})
}
