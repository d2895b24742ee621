package e2e

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/browser"
	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/node"
)

// pageURL builds the URL of a page of the node with query parameters.
func pageURL(n *node.Node, page string, params map[string]string) string {
	q := url.Values{}
	for k, v := range params {
		q.Set(k, v)
	}
	return n.HTTPURL() + "/" + page + "?" + q.Encode()
}

// waitFor waits for a page condition; on timeout it fails the test with the
// page's window.sf and status line.
func waitFor(t *testing.T, p *browser.Page, js string, timeout time.Duration) {
	t.Helper()
	if err := p.WaitFor(js, timeout); err != nil {
		var dump string
		_ = p.Eval(`JSON.stringify({sf: window.sf, status: document.getElementById('status')?.textContent})`, &dump)
		t.Fatalf("tab %d: %v\npage state: %s", p.ID(), err, dump)
	}
}

// sf is window.sf as the pages publish it.
type sf struct {
	State string         `json:"state"`
	Error string         `json:"error"`
	Stats map[string]any `json:"stats"`
}

func readSF(t *testing.T, p *browser.Page) sf {
	t.Helper()
	var st sf
	if err := p.Eval(`window.sf`, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestBrowserPublishAndWatch publishes the fake camera from the publish page
// and plays it on the watch page, in two tabs of one Chromium, for each codec
// Chromium both sends and decodes, and with simulcast; then the publisher
// stops and the viewer sees the stream end.
func TestBrowserPublishAndWatch(t *testing.T) {
	b := browser.New(t.Context(), t)
	tests := []struct {
		name, codec string
		simulcast   bool
	}{
		{name: "H264", codec: "H264"},
		{name: "VP8", codec: "VP8"},
		{name: "VP8 simulcast", codec: "VP8", simulcast: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			codec := tt.codec
			n := nodetest.Start(t, func(cfg *node.Config) { cfg.Grace = time.Second })
			stream := "live/e2e-" + strings.ToLower(codec)
			params := map[string]string{"stream": stream, "codec": codec, "auto": "1"}
			if tt.simulcast {
				params["simulcast"] = "1"
			}

			pub, err := b.Open(pageURL(n, "publish", params))
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			waitFor(t, pub, `sf.state === 'connected' && sf.stats.framesSent > 10`, 20*time.Second)
			if got := readSF(t, pub).Stats["videoCodec"]; got != "video/"+codec {
				t.Errorf("publisher sends %v, want video/%s", got, codec)
			}
			if tt.simulcast {
				waitFor(t, pub, `sf.stats.layers.length === 3 && sf.stats.layers.every(l => l.framesSent > 0)`, 10*time.Second)
			}

			watch, err := b.Open(pageURL(n, "watch", map[string]string{"stream": stream, "auto": "1"}))
			if err != nil {
				t.Fatal(err)
			}
			defer watch.Close()
			waitFor(t, watch, `sf.state === 'connected' && sf.stats.framesDecoded > 30`, 20*time.Second)
			waitFor(t, watch, `sf.stats.totalSamplesReceived > 0`, 5*time.Second)

			if tt.simulcast {
				// Viewers get the highest layer (1280x720; the others are 640x360 and 320x180).
				waitFor(t, watch, `sf.stats.frameWidth >= 1280`, 20*time.Second)
			}
			// Chromium decodes what the node encrypted itself (srtpkeys.go), not pion.
			if ws := n.WebRTC().Stats(); ws.OwnSRTPViewers.Load() != 1 || ws.OwnSRTPFallbacks.Load() != 0 {
				t.Errorf("own SRTP for %d viewers, %d left to pion; want 1 and 0", ws.OwnSRTPViewers.Load(), ws.OwnSRTPFallbacks.Load())
			}
			st := readSF(t, watch)
			if got := st.Stats["videoCodec"]; got != "video/"+codec {
				t.Errorf("viewer receives %v, want video/%s", got, codec)
			}
			if w, _ := st.Stats["frameWidth"].(float64); w == 0 {
				t.Errorf("viewer decodes frames of width 0: %v", st.Stats)
			}

			// The publisher stops; after the node's grace period the
			// stream ends and the viewer says so.
			if err := pub.Eval(`document.getElementById('stop').click()`, nil); err != nil {
				t.Fatal(err)
			}
			waitFor(t, pub, `sf.state === 'ended'`, 5*time.Second)
			waitFor(t, watch, `sf.state === 'ended' && document.getElementById('status').textContent === 'stream ended'`, 10*time.Second)
		})
	}
}

// TestBrowserErrors checks that the node's error answers reach the pages'
// status line and window.sf.error.
func TestBrowserErrors(t *testing.T) {
	b := browser.New(t.Context(), t)
	n := nodetest.Start(t, nil)
	tests := []struct {
		name, page, stream string
		wantStatus         int
	}{
		{"invalid name", "watch", "live/bad name!", 400},
		{"too many segments", "publish", "a/b/c/d/e", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := b.Open(pageURL(n, tt.page, map[string]string{"stream": tt.stream, "auto": "1"}))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			waitFor(t, p, `sf.state === 'error'`, 10*time.Second)
			st := readSF(t, p)
			if !strings.Contains(st.Error, fmt.Sprint(tt.wantStatus)) {
				t.Errorf("sf.error = %q, want status %d in it", st.Error, tt.wantStatus)
			}
		})
	}
}
