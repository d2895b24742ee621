package devcluster

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/internal/rtctest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/pion/interceptor/pkg/report.(*SenderInterceptor).loop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// TestDevCluster runs the dev cluster on free ports: a stream published on the origin plays on the
// edge, pulled through the relay.
func TestDevCluster(t *testing.T) {
	cfg := nodetest.Config()
	cfg.ClusterSecret = Secret()
	if len(cfg.ClusterSecret) != 32 || cfg.ClusterSecret == Secret() {
		t.Fatal("secrets are not fresh 128-bit values")
	}
	c, err := Start(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	if got := c.Relay.Puller().Upstreams(); len(got) != 1 || got[0] != c.Origin.RTSPAddr().String() {
		t.Fatalf("relay upstreams %v", got)
	}
	if got := c.Edge.Puller().Upstreams(); len(got) != 2 || got[0] != c.Relay.RTSPAddr().String() {
		t.Fatalf("edge upstreams %v", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	src, err := rtctest.PublishStream(ctx, api, c.Origin.HTTPURL()+"/whip/live/test", rtctest.H264)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	v, err := rtctest.View(ctx, api, c.Edge.HTTPURL()+"/whep/live/test", "")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for len(v.Payloads("video")) < 10 {
		if ctx.Err() != nil {
			t.Fatal("no video at the edge")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p := c.Relay.Puller().Pulls(); len(p) != 1 || p[0].Sessions != 1 {
		t.Fatalf("relay pulls %+v", p)
	}
	cfg.RTSP.Addr = ""
	if _, err := Start(t.Context(), cfg, nil); err == nil {
		t.Fatal("a dev cluster without RTSP started")
	}
}
