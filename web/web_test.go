package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/streamfleet/streamfleet/web"
)

func get(t *testing.T, h http.Handler, method, target string, header http.Header) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestHandlerServesPages(t *testing.T) {
	h := web.Handler()
	tests := []struct {
		path        string
		contentType string
		contains    string
	}{
		{"/", "text/html; charset=utf-8", `formaction="publish"`},
		{"/publish", "text/html; charset=utf-8", `src="static/publish.js"`},
		{"/publish?stream=live/a&codec=VP8&auto=1", "text/html; charset=utf-8", `id="codec"`},
		{"/watch", "text/html; charset=utf-8", `src="static/watch.js"`},
		{"/static/whip.js", "text/javascript; charset=utf-8", "export async function negotiate"},
		{"/static/stats.js", "text/javascript; charset=utf-8", "export function receiverStats"},
		{"/static/publish.js", "text/javascript; charset=utf-8", "setCodecPreferences"},
		{"/static/watch.js", "text/javascript; charset=utf-8", "recvonly"},
		{"/static/style.css", "text/css; charset=utf-8", ":root"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp := get(t, h, http.MethodGet, tt.path, nil)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200; body %q", resp.StatusCode, body)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type %q, want %q", got, tt.contentType)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
			if !strings.Contains(string(body), tt.contains) {
				t.Errorf("body lacks %q", tt.contains)
			}

			head := get(t, h, http.MethodHead, tt.path, nil)
			if head.StatusCode != http.StatusOK || head.Header.Get("Content-Type") != tt.contentType {
				t.Errorf("HEAD: status %d, Content-Type %q", head.StatusCode, head.Header.Get("Content-Type"))
			}

			etag := resp.Header.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			again := get(t, h, http.MethodGet, tt.path, http.Header{"If-None-Match": {etag}})
			if again.StatusCode != http.StatusNotModified {
				t.Errorf("GET with If-None-Match: status %d, want 304", again.StatusCode)
			}
		})
	}
}

func TestHandlerPageHeaders(t *testing.T) {
	resp := get(t, web.Handler(), http.MethodGet, "/watch?token=secret", nil)
	if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("Referrer-Policy %q, want no-referrer (the query may hold a token)", got)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy %q does not limit scripts to the origin", csp)
	}
}

func TestHandlerNotFound(t *testing.T) {
	h := web.Handler()
	for _, path := range []string{
		"/nope",
		"/index.html",
		"/publish.html",
		"/publish/",
		"/publish/extra",
		"/watchx",
		"/static/",
		"/static/nope.js",
		"/static/pages/index.html",
		"/static/../web.go",
		"/pages/index.html",
		"/whip/live/test",
		"/favicon.ico",
	} {
		resp := get(t, h, http.MethodGet, path, nil)
		// The mux redirects a path with ".." to the clean path; follow it.
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
			resp = get(t, h, http.MethodGet, loc, nil)
		}
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, resp.StatusCode)
		}
	}
}

func TestHandlerMethodNotAllowed(t *testing.T) {
	h := web.Handler()
	for _, path := range []string{"/", "/publish", "/watch", "/static/whip.js"} {
		resp := get(t, h, http.MethodPost, path, nil)
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: status %d, want 405", path, resp.StatusCode)
		}
	}
}

// Every script and style sheet a page refers to is served, and every module a
// script imports.
func TestHandlerReferencesResolve(t *testing.T) {
	h := web.Handler()
	ref := regexp.MustCompile(`(?:src|href)="(static/[^"]+)"|from '\./([^']+)'`)
	seen := map[string]bool{}
	queue := []string{"/", "/publish", "/watch"}
	for len(queue) > 0 {
		path := queue[0]
		queue = queue[1:]
		resp := get(t, h, http.MethodGet, path, nil)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d", path, resp.StatusCode)
			continue
		}
		for _, m := range ref.FindAllStringSubmatch(string(body), -1) {
			next := "/" + m[1]
			if m[2] != "" {
				next = "/static/" + m[2]
			}
			if !seen[next] {
				seen[next] = true
				queue = append(queue, next)
			}
		}
	}
	for _, want := range []string{"/static/style.css", "/static/publish.js", "/static/watch.js", "/static/whip.js", "/static/stats.js"} {
		if !seen[want] {
			t.Errorf("no page refers to %s", want)
		}
	}
}
