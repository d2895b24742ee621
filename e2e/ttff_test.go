package e2e

import (
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/browser"
	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/node"
)

// TestBrowserTimeToFirstFrame checks that the watch page reports its time to first frame, and
// logs it. The figure itself is a benchmark (BenchmarkBrowserTimeToFirstFrame), not a timed
// assertion.
func TestBrowserTimeToFirstFrame(t *testing.T) {
	b := browser.New(t.Context(), t)
	n := nodetest.Start(t, nil)
	pub := openPublisher(t, b, n, "live/ttff")
	defer pub.Close()
	ms := watchFirstFrame(t, b, n, "live/ttff")
	if ms <= 0 || ms > 20000 {
		t.Fatalf("firstFrameMs = %v", ms)
	}
	t.Logf("Chromium time to first frame: %.0f ms", ms)
}

func openPublisher(t testing.TB, b *browser.Browser, n *node.Node, stream string) *browser.Page {
	t.Helper()
	pub, err := b.Open(pageURL(n, "publish", map[string]string{"stream": stream, "codec": "VP8", "auto": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitFor(`sf.state === 'connected' && sf.stats.framesSent > 10`, 20*time.Second); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	return pub
}

// watchFirstFrame opens a watch page and returns its time to first frame in milliseconds.
func watchFirstFrame(t testing.TB, b *browser.Browser, n *node.Node, stream string) float64 {
	t.Helper()
	watch, err := b.Open(pageURL(n, "watch", map[string]string{"stream": stream, "auto": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	if err := watch.WaitFor(`typeof sf.firstFrameMs === 'number'`, 20*time.Second); err != nil {
		t.Fatalf("viewer: %v", err)
	}
	var ms float64
	if err := watch.Eval(`sf.firstFrameMs`, &ms); err != nil {
		t.Fatal(err)
	}
	var conn float64
	_ = watch.Eval(`sf.connectedMs`, &conn)
	t.Logf("connected after %.0f ms, first frame after %.0f ms", conn, ms)
	return ms
}

// BenchmarkBrowserTimeToFirstFrame measures, with headless Chromium as both publisher and viewer,
// the time from starting WHEP playback to the first presented frame: signalling, ICE, DTLS, the
// keyframe request and the decode. Run with -benchtime=20x.
func BenchmarkBrowserTimeToFirstFrame(bm *testing.B) {
	b := browser.New(bm.Context(), bm)
	cfg := node.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.WebRTC.ICEUDPAddr = "127.0.0.1:0"
	cfg.RTSP.Addr, cfg.RTSP.UDPRTPAddr, cfg.RTSP.UDPRTCPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.SRT.Addr = "127.0.0.1:0"
	n, err := node.New(cfg, nil)
	if err != nil {
		bm.Fatal(err)
	}
	if err := n.Start(bm.Context()); err != nil {
		bm.Fatal(err)
	}
	defer n.Close()
	pub := openPublisher(bm, b, n, "live/ttff")
	defer pub.Close()
	var total float64
	samples := make([]float64, 0, bm.N)
	bm.ResetTimer()
	for range bm.N {
		ms := watchFirstFrame(bm, b, n, "live/ttff")
		samples = append(samples, ms)
		total += ms
		time.Sleep(300 * time.Millisecond) // let the previous viewer's session end
	}
	bm.StopTimer()
	bm.ReportMetric(total/float64(bm.N), "ms/first-frame")
	bm.ReportMetric(median(samples), "ms/first-frame-p50")
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
