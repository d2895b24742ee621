package rtspserver

import (
	"errors"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
)

// TestDraining: while Config.Draining says so, a new reader's DESCRIBE and a new publisher's
// ANNOUNCE (ffmpeg) are answered 503, the publisher already connected keeps flowing, and another
// node's all-layers pull (the cluster secret) is still served; once the drain ends a reader is
// served again.
func TestDraining(t *testing.T) {
	var draining atomic.Bool
	const secret = "drain-cluster-secret"
	s, h := startServer(t, func(c *Config) { c.Draining, c.ClusterSecret = draining.Load, secret })
	publishFFmpeg(t, s, h, "live/drain", "tcp")
	draining.Store(true)

	describe := func(rawURL string) error {
		tcp := gortsplib.TransportTCP
		c := &gortsplib.Client{Transport: &tcp, ReadTimeout: 5 * time.Second}
		u, err := base.ParseURL(rawURL)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(u.Scheme, u.Host); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _, err = c.Describe(u)
		return err
	}
	var bad liberrors.ErrClientBadStatusCode
	if err := describe(streamURL(s, "live/drain")); !errors.As(err, &bad) || bad.Code != base.StatusServiceUnavailable {
		t.Fatalf("DESCRIBE while draining: %v, want a 503", err)
	}
	before := s.Stats().SessionsRejected.Load()
	out, err := exec.Command("ffmpeg", ffmpegArgs(streamURL(s, "live/other"), "tcp")...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "503") {
		t.Fatalf("ffmpeg publish while draining: %v %s, want a 503", err, out)
	}
	if s.Stats().SessionsRejected.Load() <= before {
		t.Error("the refused ANNOUNCE was not counted")
	}
	if err := describe("rtsp://streamfleet-node:" + secret + "@" + s.Addr().String() + "/live/drain?layers=all"); err != nil {
		t.Fatalf("a node's pull while draining: %v", err)
	}
	st, _ := h.Stream("live/drain")
	count := func() (n uint64) {
		for _, tr := range st.Tracks() {
			for _, l := range tr.Layers() {
				n += l.Stats().Packets
			}
		}
		return n
	}
	packets := count()
	time.Sleep(300 * time.Millisecond)
	after := count()
	if !st.Live() || after <= packets {
		t.Fatalf("the publisher connected before the drain stopped flowing (%d → %d)", packets, after)
	}
	draining.Store(false)
	if err := describe(streamURL(s, "live/drain")); err != nil {
		t.Fatalf("DESCRIBE after the drain ended: %v", err)
	}
}
