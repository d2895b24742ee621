package streammanager

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/contract"
	"github.com/streamfleet/streamfleet/internal/token"
)

const testAPIKey = "test-api-key-0123456789"

func newTestManager(t testing.TB) (*Manager, *fleet) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ID = "m1"
	cfg.APIKeys = []string{testAPIKey}
	m, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFleet(t)
	f.s = m.state
	f.s.now = func() time.Time { return f.now }
	return m, f
}

func do(t testing.TB, h http.Handler, method, target, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// errorBody checks a {code, message} answer.
func errorBody(t testing.TB, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct{ Code, Message string }
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Message == "" {
		t.Fatalf("%d answer is not {code, message}: %q", rec.Code, rec.Body.String())
	}
	return e.Code
}

func TestLookupsAndRedirects(t *testing.T) {
	m, f := newTestManager(t)
	f.add("origin-1", "origin", "eu", 0)
	f.add("edge-eu", "edge", "eu", 10)
	f.add("edge-us", "edge", "us", 10)
	h := m.Handler()

	rec := do(t, h, "GET", "/api/v1/streams/live/match1/subscribe?region=us&protocol=srt", "")
	var lr LookupResponse
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &lr) != nil {
		t.Fatalf("subscribe: %d %s", rec.Code, rec.Body)
	}
	if lr.Node.ID != "edge-us" || lr.URL != "srt://edge-us:9000?streamid=read:live/match1" || !lr.RegionMatch {
		t.Fatalf("subscribe answer %+v", lr)
	}
	rec = do(t, h, "GET", "/api/v1/streams/live/match1/publish", "")
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &lr) != nil || lr.URL != "http://origin-1/whip/live/match1" {
		t.Fatalf("publish: %d %s", rec.Code, rec.Body)
	}

	rec = do(t, h, "POST", "/whep/live/match1?region=eu", "v=0", "Authorization", "Bearer tok+en/1", "Origin", "http://page")
	if rec.Code != http.StatusTemporaryRedirect || rec.Header().Get("Location") != "http://edge-eu/whep/live/match1?token=tok%2Ben%2F1" {
		t.Fatalf("whep redirect: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if rec.Header().Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(rec.Header().Get("Access-Control-Expose-Headers"), "Location") {
		t.Fatalf("redirect CORS headers: %v", rec.Header())
	}
	rec = do(t, h, "POST", "/whip/live/match1", "v=0")
	if rec.Code != http.StatusTemporaryRedirect || rec.Header().Get("Location") != "http://origin-1/whip/live/match1" {
		t.Fatalf("whip redirect: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	rec = do(t, h, "OPTIONS", "/whep/live/match1", "")
	if rec.Code != http.StatusNoContent || !strings.Contains(rec.Header().Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", rec.Code, rec.Header())
	}

	// Full edges: 503 no_capacity.
	for range 20 {
		do(t, h, "POST", "/whep/live/match1", "")
	}
	rec = do(t, h, "GET", "/api/v1/streams/live/match1/subscribe", "")
	if rec.Code != http.StatusServiceUnavailable || errorBody(t, rec) != codeNoCapacity {
		t.Fatalf("full fleet: %d %s", rec.Code, rec.Body)
	}

	f.s.SetRoute(contract.Route{V: 1, Stream: "live/match1", Node: "origin-1", Role: "origin", Ingest: true})
	for _, path := range []string{"/api/v1/nodes", "/api/v1/nodes/edge-eu", "/api/v1/streams", "/api/v1/streams/live/match1", "/api/v1/cluster", "/healthz", "/metrics", "/", "/dashboard/dashboard.js", "/publish", "/watch"} {
		rec := do(t, h, "GET", path, "")
		if rec.Code != 200 && !(path == "/healthz" && rec.Code == http.StatusServiceUnavailable) {
			t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
}

// TestBadInput sends bad input to every route: each gets a 4xx {code, message}.
func TestBadInput(t *testing.T) {
	m, f := newTestManager(t)
	f.add("edge-1", "edge", "eu", 10)
	h := m.Handler()
	huge := `{"reason":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	key := []string{"Authorization", "Bearer " + testAPIKey, "Content-Type", "application/json"}
	cases := []struct {
		method, target, body string
		header               []string
		status               int
		code                 string
	}{
		{"GET", "/api/v1/streams?x=1", "", nil, 400, codeUnknownParameter},
		{"GET", "/api/v1/streams/bad%20name/subscribe", "", nil, 400, codeInvalidStreamName},
		{"GET", "/api/v1/streams/a/b/c/d/e/subscribe", "", nil, 400, codeInvalidStreamName},
		{"GET", "/api/v1/streams/a/%2E%2E/publish", "", nil, 400, codeInvalidStreamName},
		{"GET", "/api/v1/streams/live/a/subscribe?protocol=ftp", "", nil, 400, codeInvalidParameter},
		{"GET", "/api/v1/streams/live/a/subscribe?region=%00", "", nil, 400, codeInvalidParameter},
		{"GET", "/api/v1/streams/live/a/subscribe?region=a&region=b", "", nil, 400, codeInvalidParameter},
		{"GET", "/api/v1/streams/live/a/subscribe?nope=1", "", nil, 400, codeUnknownParameter},
		{"GET", "/api/v1/streams/live/a/subscribe?%zz", "", nil, 400, codeInvalidParameter},
		{"GET", "/api/v1/streams/live/a/publish?protocol=hls", "", nil, 400, codeInvalidParameter},
		{"GET", "/api/v1/streams/live/a?region=eu", "", nil, 400, codeUnknownParameter},
		{"GET", "/api/v1/streams/nothing-here", "", nil, 404, codeNotFound},
		{"GET", "/api/v1/nodes?all=1", "", nil, 400, codeUnknownParameter},
		{"GET", "/api/v1/nodes/bad.id", "", nil, 400, codeInvalidParameter},
		{"GET", "/api/v1/nodes/unknown", "", nil, 404, codeNodeNotFound},
		{"GET", "/api/v1/cluster?x", "", nil, 400, codeUnknownParameter},
		{"POST", "/api/v1/nodes/edge-1/drain", "", nil, 401, codeUnauthorized},
		{"POST", "/api/v1/nodes/edge-1/drain", "", []string{"X-API-Key", "wrong-key-wrong-key"}, 401, codeUnauthorized},
		{"DELETE", "/api/v1/nodes/edge-1/drain", "", nil, 401, codeUnauthorized},
		{"POST", "/api/v1/nodes/edge-1/drain", `{"reason":`, key, 400, codeMalformedJSON},
		{"POST", "/api/v1/nodes/edge-1/drain", `{"reason":"x"} {}`, key, 400, codeMalformedJSON},
		{"POST", "/api/v1/nodes/edge-1/drain", `[1]`, key, 400, codeMalformedJSON},
		{"POST", "/api/v1/nodes/edge-1/drain", `{"reason":"x","force":true}`, key, 400, codeUnknownField},
		{"POST", "/api/v1/nodes/edge-1/drain", huge, key, 413, codeBodyTooLarge},
		{"POST", "/api/v1/nodes/edge-1/drain", `{}`, []string{"X-API-Key", testAPIKey, "Content-Type", "text/plain"}, 415, codeUnsupportedMedia},
		{"POST", "/api/v1/nodes/no.such/drain", ``, key, 400, codeInvalidParameter},
		{"POST", "/api/v1/nodes/ghost/drain", ``, key, 404, codeNodeNotFound},
		{"POST", "/api/v1/nodes/edge-1/drain?now=1", ``, key, 400, codeUnknownParameter},
		{"POST", "/whip/bad%20name", "v=0", nil, 400, codeInvalidStreamName},
		{"POST", "/whep/a/b/c/d/e", "v=0", nil, 400, codeInvalidStreamName},
		{"POST", "/whep/live/a?foo=bar", "v=0", nil, 400, codeUnknownParameter},
		{"POST", "/whip/live/a?token=" + strings.Repeat("t", 9000), "v=0", nil, 400, codeInvalidParameter},
		{"POST", "/whip/live/a", "v=0", nil, 503, codeNoOrigin},
		{"PUT", "/api/v1/nodes", "", nil, 405, codeMethodNotAllowed},
		{"DELETE", "/whep/live/a", "", nil, 405, codeMethodNotAllowed},
		{"POST", "/api/v1/streams/live/a/subscribe", "", nil, 405, codeMethodNotAllowed},
		{"GET", "/api/v1/nope", "", nil, 404, codeNotFound},
	}
	for _, c := range cases {
		rec := do(t, h, c.method, c.target, c.body, c.header...)
		if rec.Code != c.status {
			t.Errorf("%s %.80s: status %d, want %d (%s)", c.method, c.target, rec.Code, c.status, rec.Body)
			continue
		}
		if code := errorBody(t, rec); code != c.code {
			t.Errorf("%s %.80s: code %q, want %q", c.method, c.target, code, c.code)
		}
	}
}

// TestOpenAPIMatchesRoutes checks that every route of the mux is in openapi.yaml and every
// operation of openapi.yaml is a route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	fh, err := os.Open("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	pathRe := regexp.MustCompile(`^  (/\S*):\s*$`)
	opRe := regexp.MustCompile(`^    (get|post|put|patch|delete|options|head):`)
	spec := map[string]bool{}
	var cur string
	inPaths := false
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Text()
		if line == "paths:" {
			inPaths = true
			continue
		}
		if inPaths && line != "" && line[0] != ' ' {
			inPaths = false
		}
		if !inPaths {
			continue
		}
		if mm := pathRe.FindStringSubmatch(line); mm != nil {
			cur = mm[1]
		} else if mm := opRe.FindStringSubmatch(line); mm != nil {
			spec[strings.ToUpper(mm[1])+" "+cur] = true
		}
	}
	m, _ := newTestManager(t)
	mux := map[string]bool{}
	for _, rt := range m.routes() {
		p := rt.path
		p = strings.ReplaceAll(p, "{stream...}", "{stream}")
		if p == "/api/v1/streams/{rest...}" {
			for _, q := range []string{"/api/v1/streams/{stream}", "/api/v1/streams/{stream}/publish", "/api/v1/streams/{stream}/subscribe"} {
				mux[rt.method+" "+q] = true
			}
			continue
		}
		mux[rt.method+" "+p] = true
	}
	var missing, extra []string
	for k := range mux {
		if !spec[k] {
			missing = append(missing, k)
		}
	}
	for k := range spec {
		if !mux[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("routes not in openapi.yaml: %v; openapi.yaml operations without a route: %v", missing, extra)
	}
}

// FuzzLookupRequest feeds the lookup parser arbitrary paths and queries: it never panics, and
// what it accepts is a valid stream name with a valid region and protocol.
func FuzzLookupRequest(f *testing.F) {
	for _, s := range [][2]string{{"live/a", "region=eu&protocol=srt"}, {"a/b/c/d", "token=x"}, {"..", ""}, {"a", "%zz"}, {"a b", "region="}} {
		f.Add(s[0], s[1], true)
	}
	f.Fuzz(func(t *testing.T, stream, query string, tokenOK bool) {
		q, aerr := parseLookup(stream, query, subscribeProtocols, tokenOK)
		if aerr != nil {
			if aerr.status/100 != 4 || aerr.code == "" {
				t.Fatalf("error %+v is not a 4xx with a code", aerr)
			}
			return
		}
		if string(q.stream) != stream || !subscribeProtocols[q.protocol] || (q.region != "" && !validRegion(q.region)) || (!tokenOK && q.token != "") {
			t.Fatalf("accepted %q %q as %+v", stream, query, q)
		}
	})
}

// FuzzDrainBody feeds the JSON body parser arbitrary bytes: never a panic, always a 4xx or ok.
func FuzzDrainBody(f *testing.F) {
	for _, s := range []string{`{}`, `{"reason":"x"}`, `{"reason":1}`, `{"x":1}`, `[]`, `{} {}`, ``, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req drainRequest
		if aerr := parseJSON(body, &req); aerr != nil && aerr.status/100 != 4 {
			t.Fatalf("error %+v is not a 4xx", aerr)
		}
	})
}

// TestMintTokens: POST /api/v1/tokens needs the API key (401 {code, message} without it or with
// a wrong one), mints a token the signing key verifies for the stream and action asked and no
// other, refuses bad requests with {code, message}, and is 501 without a signing key.
func TestMintTokens(t *testing.T) {
	const secret = "manager-test-token-secret-0123456789"
	cfg := DefaultConfig()
	cfg.ID, cfg.APIKeys, cfg.TokenSecret = "m1", []string{testAPIKey}, secret
	m, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := m.Handler()
	body := `{"stream":"live/x","action":"play","ttl":"90s","sub":"alice"}`
	for _, hdr := range [][]string{nil, {"X-API-Key", "wrong-key-0123456789"}, {"Authorization", "Bearer " + testAPIKey + "x"}, {"Authorization", testAPIKey}} {
		rec := do(t, h, http.MethodPost, "/api/v1/tokens", body, hdr...)
		if rec.Code != http.StatusUnauthorized || errorBody(t, rec) != codeUnauthorized {
			t.Fatalf("mint with %v: %d %s", hdr, rec.Code, rec.Body)
		}
	}
	rec := do(t, h, http.MethodPost, "/api/v1/tokens", body, "X-API-Key", testAPIKey, "Content-Type", "application/json")
	if rec.Code != http.StatusCreated {
		t.Fatalf("mint: %d %s", rec.Code, rec.Body)
	}
	var got token.MintResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Token == "" || got.ID == "" || got.Stream != "live/x" || got.Action != "play" {
		t.Fatalf("mint answer %q: %v", rec.Body, err)
	}
	if d := time.Until(got.ExpiresAt); d < 80*time.Second || d > 91*time.Second {
		t.Errorf("expires in %v, want 90s", d)
	}
	key, _ := token.NewHS256Key([]byte(secret))
	c, err := token.Verify(got.Token, []token.Key{key}, "live/x", token.ActionPlay, time.Now())
	if err != nil || c.Subject != "alice" {
		t.Fatalf("verify the minted token: %v %+v", err, c)
	}
	if _, err := token.Verify(got.Token, []token.Key{key}, "live/y", token.ActionPlay, time.Now()); !errors.Is(err, token.ErrWrongStream) {
		t.Errorf("another stream: %v", err)
	}
	if _, err := token.Verify(got.Token, []token.Key{key}, "live/x", token.ActionPublish, time.Now()); err == nil {
		t.Error("a play token allowed publishing")
	}
	for _, tc := range []struct {
		body, ct string
		status   int
		code     string
	}{
		{`{"stream":"live/x","action":"play"`, "", 400, "malformed_json"},
		{`{"stream":"live/x","action":"play","admin":true}`, "", 400, "malformed_json"},
		{`{"stream":"live/x","action":"watch"}`, "", 400, "invalid_action"},
		{`{"stream":"../x","action":"play"}`, "", 400, "invalid_stream"},
		{`{"stream":"live/x","action":"play","ttl":"48h"}`, "", 400, "ttl_too_long"},
		{`{"stream":"live/x","action":"play","ttl":"1ms"}`, "", 400, "invalid_ttl"},
		{`{"stream":"live/x","action":"play"}`, "text/plain", 415, codeUnsupportedMedia},
		{`{"stream":"` + strings.Repeat("a", 5000) + `","action":"play"}`, "", 413, "body_too_large"},
	} {
		rec := do(t, h, http.MethodPost, "/api/v1/tokens", tc.body, "Authorization", "Bearer "+testAPIKey, "Content-Type", tc.ct)
		if rec.Code != tc.status || errorBody(t, rec) != tc.code {
			t.Errorf("%.60s: %d %s, want %d %s", tc.body, rec.Code, rec.Body, tc.status, tc.code)
		}
	}
	if rec := do(t, h, http.MethodPost, "/api/v1/tokens?x=1", body, "X-API-Key", testAPIKey); rec.Code != 400 {
		t.Errorf("query: %d", rec.Code)
	}
	if rec := do(t, h, http.MethodGet, "/api/v1/tokens", "", "X-API-Key", testAPIKey); rec.Code != 405 {
		t.Errorf("GET: %d", rec.Code)
	}

	cfg.TokenSecret = ""
	m2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec = do(t, m2.Handler(), http.MethodPost, "/api/v1/tokens", body, "X-API-Key", testAPIKey)
	if rec.Code != http.StatusNotImplemented || errorBody(t, rec) != codeNoSigningKey {
		t.Fatalf("mint without a key: %d %s", rec.Code, rec.Body)
	}
	for _, bad := range []Config{{TokenSecret: "short"}, {TokenSecret: secret, TokenSigningKeyFile: "k.pem"}, {TokenSigningKeyFile: "/nonexistent.pem"}} {
		c := cfg
		c.TokenSecret, c.TokenSigningKeyFile = bad.TokenSecret, bad.TokenSigningKeyFile
		if _, err := New(c, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("config %+v: %v", bad, err)
		}
	}
}
