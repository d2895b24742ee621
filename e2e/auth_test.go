package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/browser"
	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/internal/token"
	"github.com/streamfleet/streamfleet/node"
	"github.com/streamfleet/streamfleet/node/auth/authtest"
)

// redirector stands in for a stream manager: it answers POST /whip/... and /whep/... with a 307 to
// the node, keeping the query, with the CORS headers a browser needs to follow it. It records the
// Authorization header it saw.
type redirector struct {
	url   string
	mu    sync.Mutex
	auths []string
}

func newRedirector(t *testing.T, target string) *redirector {
	r := &redirector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		h.Set("Access-Control-Expose-Headers", "Location")
		if req.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		r.mu.Lock()
		r.auths = append(r.auths, req.Header.Get("Authorization"))
		r.mu.Unlock()
		u := target + req.URL.Path
		if req.URL.RawQuery != "" {
			u += "?" + req.URL.RawQuery
		}
		http.Redirect(w, req, u, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// TestBrowserTokensThroughRedirect: on a node that requires signed tokens, the publish and watch
// pages pass the token of their URL on; the watch page's WHEP POST goes to another origin that
// redirects it (307) to the node, as a stream manager does. Chromium drops the Authorization header
// on that cross-origin redirect, so the node is reached with the token in ?token= only, and plays.
// A viewer with a token for another stream sees the 401 and its code.
func TestBrowserTokensThroughRedirect(t *testing.T) {
	s := authtest.Signers(t)[0]
	n := nodetest.Start(t, func(c *node.Config) { c.Auth = s.Config })
	red := newRedirector(t, n.HTTPURL())
	b := browser.New(t.Context(), t)

	stream := "live/e2e-auth"
	pub, err := b.Open(pageURL(n, "publish", map[string]string{"stream": stream, "codec": "VP8", "auto": "1",
		"token": s.Mint(t, stream, token.ActionPublish)}))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	waitFor(t, pub, `sf.state === 'connected' && sf.stats.framesSent > 10`, 20*time.Second)

	play := s.Mint(t, stream, token.ActionPlay)
	watch, err := b.Open(pageURL(n, "watch", map[string]string{"stream": stream, "auto": "1", "server": red.url, "token": play}))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	waitFor(t, watch, `sf.state === 'connected' && sf.stats.framesDecoded > 30`, 20*time.Second)
	red.mu.Lock()
	auths := append([]string(nil), red.auths...)
	red.mu.Unlock()
	if len(auths) != 1 || auths[0] != "Bearer "+play {
		t.Errorf("the redirector saw Authorization %q, want the page's bearer token once", auths)
	}

	other, err := b.Open(pageURL(n, "watch", map[string]string{"stream": stream, "auto": "1", "server": red.url,
		"token": s.Mint(t, "live/other", token.ActionPlay)}))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	waitFor(t, other, `sf.state === 'error'`, 15*time.Second)
	if st := readSF(t, other); !strings.Contains(st.Error, "401") || !strings.Contains(st.Error, "token_wrong_stream") {
		t.Errorf("sf.error = %q, want the 401 with token_wrong_stream", st.Error)
	}
}
