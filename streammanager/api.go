package streammanager

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/web"
)

// maxBodyBytes bounds every JSON request body.
const maxBodyBytes = 64 << 10

// route is one entry of the manager's HTTP routes. Every route must appear in openapi.yaml (a
// test checks both ways). Admin routes need an API key.
type route struct {
	method  string
	path    string // a net/http pattern path
	admin   bool
	handler http.HandlerFunc
}

// routes is the table of the manager's HTTP routes. To add an endpoint (e.g. POST
// /api/v1/tokens), add a line here and its path in openapi.yaml.
func (m *Manager) routes() []route {
	return []route{
		{http.MethodGet, "/api/v1/streams", false, m.handleStreams},
		{http.MethodGet, "/api/v1/streams/{rest...}", false, m.handleStreamPath},
		{http.MethodGet, "/api/v1/nodes", false, m.handleNodes},
		{http.MethodGet, "/api/v1/nodes/{id}", false, m.handleNode},
		{http.MethodPost, "/api/v1/nodes/{id}/drain", true, m.handleDrain(true)},
		{http.MethodDelete, "/api/v1/nodes/{id}/drain", true, m.handleDrain(false)},
		{http.MethodGet, "/api/v1/cluster", false, m.handleCluster},
		{http.MethodPost, "/api/v1/tokens", true, m.handleMint},
		{http.MethodPost, "/whip/{stream...}", false, m.handleRedirect(true)},
		{http.MethodOptions, "/whip/{stream...}", false, handlePreflight},
		{http.MethodPost, "/whep/{stream...}", false, m.handleRedirect(false)},
		{http.MethodOptions, "/whep/{stream...}", false, handlePreflight},
		{http.MethodGet, "/healthz", false, m.handleHealth},
		{http.MethodGet, "/metrics", false, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}).ServeHTTP},
	}
}

// newMux builds the HTTP handler: the routes table (with a JSON 405 for other methods on its
// paths and a JSON 404 elsewhere under /api/), the pages and the dashboard.
func (m *Manager) newMux() *http.ServeMux {
	mux := http.NewServeMux()
	allowed := map[string][]string{}
	var paths []string
	for _, rt := range m.routes() {
		h := rt.handler
		if rt.admin {
			h = m.requireAPIKey(h)
		}
		mux.HandleFunc(rt.method+" "+rt.path, h)
		if _, ok := allowed[rt.path]; !ok {
			paths = append(paths, rt.path)
		}
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	for _, p := range paths {
		methods := strings.Join(allowed[p], ", ")
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", methods)
			writeError(w, newError(http.StatusMethodNotAllowed, codeMethodNotAllowed, r.Method+" is not allowed here (allowed: "+methods+")"))
		})
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, newError(http.StatusNotFound, codeNotFound, "no such API endpoint"))
	})
	pages := web.Handler()
	mux.Handle("GET /publish", pages)
	mux.Handle("GET /watch", pages)
	mux.Handle("GET /static/", pages)
	dash := dashboardHandler()
	mux.Handle("GET /{$}", dash)
	mux.Handle("GET /dashboard/", dash)
	return mux
}

// writeJSON sends v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"code":"internal","message":"encode answer"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{e.code, e.message})
}

// requireAPIKey refuses calls without one of the configured API keys (Authorization: Bearer
// <key> or X-API-Key), compared in constant time over digests (internal/token.APIKeys).
func (m *Manager) requireAPIKey(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !m.apiKeys.Allow(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="streamfleet-admin"`)
			writeError(w, newError(http.StatusUnauthorized, codeUnauthorized, "an admin API key is required (Authorization: Bearer <key> or X-API-Key)"))
			return
		}
		next(w, r)
	}
}

// handleMint answers POST /api/v1/tokens: 201 {token, stream, action, expires_at, jti}, signed
// with the configured key (internal/token.Minter), or a {code, message} refusal.
func (m *Manager) handleMint(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	if m.minter == nil {
		writeError(w, newError(http.StatusNotImplemented, codeNoSigningKey, "this manager has no token signing key (--token-key or --token-signing-key)"))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, newError(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "send application/json"))
		return
	}
	m.minter.ServeHTTP(w, r)
}

// lookupQuery is a parsed publish or subscribe lookup.
type lookupQuery struct {
	stream   streamname.Name
	region   string
	protocol string
	token    string
}

var (
	subscribeProtocols = map[string]bool{"webrtc": true, "srt": true, "rtsp": true, "hls": true}
	publishProtocols   = map[string]bool{"webrtc": true, "srt": true, "rtsp": true}
)

// parseLookup checks a lookup's stream name and query: region (1–64 of [A-Za-z0-9_-]), protocol
// (of allowed; empty means webrtc) and, where tokenOK, token. Any other parameter is refused.
func parseLookup(stream, rawQuery string, allowed map[string]bool, tokenOK bool) (lookupQuery, *apiError) {
	var q lookupQuery
	name, err := streamname.Parse(stream)
	if err != nil {
		return q, newError(http.StatusBadRequest, codeInvalidStreamName, err.Error())
	}
	q.stream = name
	values, err := url.ParseQuery(rawQuery)
	if err != nil {
		return q, newError(http.StatusBadRequest, codeInvalidParameter, "malformed query string")
	}
	for k, v := range values {
		if len(v) != 1 {
			return q, newError(http.StatusBadRequest, codeInvalidParameter, fmt.Sprintf("parameter %q given %d times", k, len(v)))
		}
		switch {
		case k == "region":
			if !validRegion(v[0]) {
				return q, newError(http.StatusBadRequest, codeInvalidParameter, "region must be 1 to 64 characters of A-Z a-z 0-9 _ -")
			}
			q.region = v[0]
		case k == "protocol" && allowed != nil:
			if !allowed[v[0]] {
				return q, newError(http.StatusBadRequest, codeInvalidParameter, fmt.Sprintf("protocol %q is not one of %s", v[0], protocolList(allowed)))
			}
			q.protocol = v[0]
		case k == "token" && tokenOK:
			if len(v[0]) > 8192 {
				return q, newError(http.StatusBadRequest, codeInvalidParameter, "token too long")
			}
			q.token = v[0]
		default:
			return q, newError(http.StatusBadRequest, codeUnknownParameter, fmt.Sprintf("unknown parameter %q", k))
		}
	}
	if q.protocol == "" {
		q.protocol = "webrtc"
	}
	return q, nil
}

func protocolList(m map[string]bool) string {
	var out []string
	for _, p := range []string{"webrtc", "srt", "rtsp", "hls"} {
		if m[p] {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}

// clientRegion is the region of the request: ?region=, else the configured map of client
// networks.
func (m *Manager) clientRegion(r *http.Request, region string) string {
	if region != "" || len(m.cfg.RegionMap) == 0 {
		return region
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	ip = ip.Unmap()
	for _, p := range m.cfg.RegionMap {
		if p.Prefix.Contains(ip) {
			return p.Region
		}
	}
	return ""
}

// LookupResponse is the answer of a publish or subscribe lookup.
type LookupResponse struct {
	Stream   string `json:"stream"`
	Protocol string `json:"protocol"`
	// URL is where the client goes, in its protocol.
	URL  string  `json:"url"`
	Node NodeRef `json:"node"`
	// URLs are the node's URLs for the stream in every protocol it serves.
	URLs        map[string]string `json:"urls"`
	RegionMatch bool              `json:"region_match"`
}

// NodeRef names a chosen node.
type NodeRef struct {
	ID     string `json:"id"`
	Role   string `json:"role"`
	Region string `json:"region,omitempty"`
}

// escapeStream escapes each path segment of a stream name for a URL path.
func escapeStream(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func lookupResponse(c Choice, stream, protocol string, publish bool) LookupResponse {
	urls := map[string]string{}
	u := c.Node.URLs
	p := escapeStream(stream)
	if u.HTTP != "" {
		if publish {
			urls["whip"] = u.HTTP + "/whip/" + p
		} else {
			urls["whep"] = u.HTTP + "/whep/" + p
			urls["hls"] = u.HTTP + "/hls/" + p + "/index.m3u8"
		}
	}
	if u.SRT != "" {
		mode := "read"
		if publish {
			mode = "publish"
		}
		urls["srt"] = "srt://" + u.SRT + "?streamid=" + mode + ":" + stream
	}
	if u.RTSP != "" {
		urls["rtsp"] = "rtsp://" + u.RTSP + "/" + p
	}
	key := protocol
	if protocol == "webrtc" {
		key = "whep"
		if publish {
			key = "whip"
		}
	}
	return LookupResponse{Stream: stream, Protocol: protocol, URL: urls[key], URLs: urls,
		Node: NodeRef{ID: c.Node.ID, Role: c.Node.Role, Region: c.Node.Region}, RegionMatch: c.RegionMatch}
}

// lookup runs a publish or subscribe lookup.
func (m *Manager) lookup(r *http.Request, q lookupQuery, publish bool) (LookupResponse, *apiError) {
	m.stats.Lookups.Add(1)
	req := Request{Stream: string(q.stream), Region: m.clientRegion(r, q.region), Protocol: q.protocol}
	var c Choice
	var err error
	if publish {
		c, err = m.state.Publish(req)
	} else {
		c, err = m.state.Subscribe(req)
	}
	if err != nil {
		m.stats.LookupFailures.Add(1)
		return LookupResponse{}, lookupError(err, publish)
	}
	return lookupResponse(c, string(q.stream), q.protocol, publish), nil
}

// handleStreamPath serves GET /api/v1/streams/{stream}, .../{stream}/publish and
// .../{stream}/subscribe (stream names hold slashes, so the suffix is matched here).
func (m *Manager) handleStreamPath(w http.ResponseWriter, r *http.Request) {
	rest := r.PathValue("rest")
	for _, kind := range []struct {
		suffix    string
		protocols map[string]bool
		publish   bool
	}{{"/publish", publishProtocols, true}, {"/subscribe", subscribeProtocols, false}} {
		stream, ok := strings.CutSuffix(rest, kind.suffix)
		if !ok {
			continue
		}
		q, aerr := parseLookup(stream, r.URL.RawQuery, kind.protocols, false)
		if aerr == nil {
			var resp LookupResponse
			if resp, aerr = m.lookup(r, q, kind.publish); aerr == nil {
				writeJSON(w, http.StatusOK, resp)
				return
			}
		}
		writeError(w, aerr)
		return
	}
	q, aerr := parseLookup(rest, r.URL.RawQuery, nil, false)
	if aerr == nil && q.region != "" {
		aerr = newError(http.StatusBadRequest, codeUnknownParameter, `unknown parameter "region"`)
	}
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	v, ok := m.state.Stream(string(q.stream))
	if !ok {
		writeError(w, newError(http.StatusNotFound, codeNotFound, "no node carries stream "+string(q.stream)))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// noQuery refuses any query parameter.
func noQuery(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.RawQuery != "" {
		writeError(w, newError(http.StatusBadRequest, codeUnknownParameter, "this endpoint takes no parameters"))
		return false
	}
	return true
}

func (m *Manager) handleStreams(w http.ResponseWriter, r *http.Request) {
	if noQuery(w, r) {
		writeJSON(w, http.StatusOK, struct {
			Streams []StreamView `json:"streams"`
		}{m.state.Streams()})
	}
}

func (m *Manager) handleNodes(w http.ResponseWriter, r *http.Request) {
	if noQuery(w, r) {
		writeJSON(w, http.StatusOK, struct {
			Nodes []NodeView `json:"nodes"`
		}{m.state.Nodes()})
	}
}

// nodeID checks the {id} of a node path.
func nodeID(r *http.Request) (string, *apiError) {
	id := r.PathValue("id")
	if !validRegion(id) { // same alphabet as node ids
		return "", newError(http.StatusBadRequest, codeInvalidParameter, "node id must be 1 to 64 characters of A-Z a-z 0-9 _ -")
	}
	return id, nil
}

func (m *Manager) handleNode(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	id, aerr := nodeID(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	v, ok := m.state.Node(id)
	if !ok {
		writeError(w, newError(http.StatusNotFound, codeNodeNotFound, "no node "+id))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// drainRequest is the optional body of POST /api/v1/nodes/{id}/drain.
type drainRequest struct {
	Reason string `json:"reason"`
}

// decodeJSON reads an optional JSON body of at most maxBodyBytes into v, refusing unknown
// fields, trailing data and other content types.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) *apiError {
	if r.ContentLength == 0 && r.Header.Get("Transfer-Encoding") == "" {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return newError(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "send application/json")
	}
	if r.ContentLength > maxBodyBytes {
		return newError(http.StatusRequestEntityTooLarge, codeBodyTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxBodyBytes))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return newError(http.StatusRequestEntityTooLarge, codeBodyTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxBodyBytes))
		}
		return newError(http.StatusBadRequest, codeBadRequest, "read body: "+err.Error())
	}
	return parseJSON(body, v)
}

// parseJSON decodes one JSON object into v, refusing unknown fields and trailing data.
func parseJSON(body []byte, v any) *apiError {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			return newError(http.StatusBadRequest, codeUnknownField, err.Error())
		}
		return newError(http.StatusBadRequest, codeMalformedJSON, "malformed JSON: "+err.Error())
	}
	if dec.More() {
		return newError(http.StatusBadRequest, codeMalformedJSON, "malformed JSON: data after the object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return newError(http.StatusBadRequest, codeMalformedJSON, "malformed JSON: data after the object")
	}
	return nil
}

func (m *Manager) handleDrain(draining bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !noQuery(w, r) {
			return
		}
		id, aerr := nodeID(r)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		var req drainRequest
		if aerr := decodeJSON(w, r, &req); aerr != nil {
			writeError(w, aerr)
			return
		}
		if len(req.Reason) > 1024 {
			writeError(w, newError(http.StatusBadRequest, codeInvalidParameter, "reason longer than 1024 characters"))
			return
		}
		if _, ok := m.state.Node(id); !ok {
			writeError(w, newError(http.StatusNotFound, codeNodeNotFound, "no node "+id))
			return
		}
		if err := m.SetDraining(r.Context(), id, draining); err != nil {
			writeError(w, newError(http.StatusServiceUnavailable, codeUnavailable, err.Error()))
			return
		}
		v, _ := m.state.Node(id)
		writeJSON(w, http.StatusOK, v)
	}
}

// ClusterView is the answer of GET /api/v1/cluster.
type ClusterView struct {
	Manager  string        `json:"manager"`
	Leader   string        `json:"leader"`
	Leading  bool          `json:"leading"`
	Managers []ManagerView `json:"managers"`
	NATS     NATSView      `json:"nats"`
	// HeartbeatsStalled is set while this manager's probe does not come back through the
	// heartbeats bucket (a NATS server died and the bucket's leader is being re-elected): no
	// node is failed for a missing heartbeat meanwhile.
	HeartbeatsStalled bool `json:"heartbeats_stalled"`
}

// ManagerView is one live manager.
type ManagerView struct {
	ID      string    `json:"id"`
	API     string    `json:"api,omitempty"`
	Started time.Time `json:"started"`
}

// NATSView is this manager's NATS connection.
type NATSView struct {
	Connected bool   `json:"connected"`
	Server    string `json:"server,omitempty"`
	Replicas  int    `json:"replicas"`
}

func (m *Manager) handleCluster(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	v := ClusterView{Manager: m.cfg.ID, Leading: m.Leading(), Managers: []ManagerView{}, HeartbeatsStalled: m.state.Stalled(),
		NATS: NATSView{Connected: m.nc != nil && m.nc.IsConnected(), Replicas: m.cfg.Replicas}}
	if m.nc != nil {
		v.NATS.Server = m.nc.ConnectedUrlRedacted()
	}
	m.leaderMu.Lock()
	v.Leader = m.leader
	for _, r := range m.managers {
		v.Managers = append(v.Managers, ManagerView{ID: r.ID, API: r.API, Started: r.Started})
	}
	m.leaderMu.Unlock()
	sortManagers(v.Managers)
	writeJSON(w, http.StatusOK, v)
}

func sortManagers(ms []ManagerView) {
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && ms[j].ID < ms[j-1].ID; j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
}

func (m *Manager) handleHealth(w http.ResponseWriter, _ *http.Request) {
	ok := m.nc != nil && m.nc.IsConnected()
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"status": map[bool]string{true: "ok", false: "nats_disconnected"}[ok],
		"manager": m.cfg.ID, "leading": m.Leading(), "uptime_seconds": int(time.Since(m.started).Seconds())})
}

// setCORS allows browsers on any origin to call the WHIP/WHEP redirects and read Location.
func setCORS(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	h.Set("Access-Control-Expose-Headers", "Location")
	h.Set("Access-Control-Max-Age", "600")
}

func handlePreflight(w http.ResponseWriter, _ *http.Request) {
	setCORS(w)
	w.Header().Set("Accept-Post", "application/sdp")
	w.WriteHeader(http.StatusNoContent)
}

// handleRedirect answers POST /whip/{stream} and /whep/{stream} with 307 to the chosen node.
// Browsers drop Authorization on a cross-origin redirect, so the client's token (bearer header
// or ?token=) travels in the Location as ?token=, which nodes accept on WHIP and WHEP.
func (m *Manager) handleRedirect(publish bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		setCORS(w)
		q, aerr := parseLookup(r.PathValue("stream"), r.URL.RawQuery, nil, true)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		q.protocol = "webrtc"
		if q.token == "" {
			if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
				q.token = strings.TrimSpace(v)
			}
		}
		resp, aerr := m.lookup(r, q, publish)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		loc := resp.URL
		if q.token != "" {
			loc += "?token=" + url.QueryEscape(q.token)
		}
		m.stats.Redirects.Add(1)
		w.Header().Set("Location", loc)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusTemporaryRedirect)
	}
}
