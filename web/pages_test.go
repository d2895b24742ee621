package web_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/internal/browser"
	"github.com/streamfleet/streamfleet/web"
)

// These tests run the pages in Chromium against stubServer, a minimal
// WHIP/WHEP server, so the pages are tested without a node. e2e/ runs them
// against a real one.

// request is what stubServer saw of one HTTP request.
type request struct {
	Method, Path, ContentType, Authorization, Body string
	// SessionState is, for a DELETE, the state of the session's
	// connection when the DELETE arrived.
	SessionState webrtc.PeerConnectionState
}

// failure is a canned error answer.
type failure struct {
	status      int
	contentType string
	body        string
}

// stubServer serves the pages and answers WHIP and WHEP on 127.0.0.1 with
// pion (ICE-lite, loopback only). It forwards the publisher's audio and its
// first (or "h") video layer to every viewer, and asks the publisher for a
// key frame every second.
type stubServer struct {
	t   *testing.T
	api *webrtc.API
	url string
	wg  sync.WaitGroup // RTP readers and PLI senders

	mu       sync.Mutex
	requests []request
	patches  []request
	fail     map[string]failure // by "whip" or "whep"
	sessions map[string]*webrtc.PeerConnection
	nextID   int
	video    *webrtc.TrackLocalStaticRTP // from the publisher, once it sends
	audio    *webrtc.TrackLocalStaticRTP
	packets  map[string]int // by video RID ("" without simulcast) and "audio"
	codec    string         // the publisher's video MIME type
}

func newStubServer(t *testing.T) *stubServer {
	t.Helper()
	var m webrtc.MediaEngine
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(&m); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetLite(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)

	s := &stubServer{
		t:        t,
		api:      webrtc.NewAPI(webrtc.WithMediaEngine(&m), webrtc.WithSettingEngine(se)),
		fail:     map[string]failure{},
		sessions: map[string]*webrtc.PeerConnection{},
		packets:  map[string]int{},
	}
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.HandleFunc("POST /whip/{stream...}", s.handleOffer)
	mux.HandleFunc("POST /whep/{stream...}", s.handleOffer)
	mux.HandleFunc("DELETE /session/{id}", s.handleDelete)
	mux.HandleFunc("PATCH /session/{id}", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.patches = append(s.patches, request{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"),
			Authorization: r.Header.Get("Authorization"), Body: string(body)})
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("OPTIONS /{path...}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Methods", "POST, PATCH, DELETE, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(allowAnyOrigin(mux))
	s.url = srv.URL
	t.Cleanup(func() {
		srv.Close()
		s.mu.Lock()
		for _, pc := range s.sessions {
			_ = pc.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// allowAnyOrigin adds the CORS headers a WHIP server sends, so pages of
// another origin can use it.
func allowAnyOrigin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Expose-Headers", "Location")
		h.ServeHTTP(w, r)
	})
}

func (s *stubServer) failWith(kind string, f failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[kind] = f
}

func (s *stubServer) record(r *http.Request) string {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, request{
		Method:        r.Method,
		Path:          r.URL.Path,
		ContentType:   r.Header.Get("Content-Type"),
		Authorization: r.Header.Get("Authorization"),
		Body:          string(body),
	})
	return string(body)
}

func (s *stubServer) handleOffer(w http.ResponseWriter, r *http.Request) {
	offer := s.record(r)
	kind := strings.Split(r.URL.Path, "/")[1]
	s.mu.Lock()
	f, failing := s.fail[kind]
	video, audio := s.video, s.audio
	s.mu.Unlock()
	if failing {
		w.Header().Set("Content-Type", f.contentType)
		w.WriteHeader(f.status)
		_, _ = io.WriteString(w, f.body)
		return
	}
	if kind == "whep" && video == nil {
		http.Error(w, "nothing published yet", http.StatusNotFound)
		return
	}

	pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if kind == "whip" {
		pc.OnTrack(s.onPublisherTrack(pc))
	} else {
		for _, track := range []*webrtc.TrackLocalStaticRTP{video, audio} {
			if track == nil {
				continue
			}
			if _, err := pc.AddTrack(track); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
	}
	answer, err := answer(pc, offer)
	if err != nil {
		_ = pc.Close()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.nextID++
	id := fmt.Sprint(s.nextID)
	s.sessions[id] = pc
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/session/"+id)
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

func answer(pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", err
	}
	<-gathered
	return pc.LocalDescription().SDP, nil
}

// onPublisherTrack counts the publisher's packets and forwards them.
func (s *stubServer) onPublisherTrack(pc *webrtc.PeerConnection) func(*webrtc.TrackRemote, *webrtc.RTPReceiver) {
	return func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		key := remote.RID()
		if remote.Kind() == webrtc.RTPCodecTypeAudio {
			key = "audio"
		}
		local, err := webrtc.NewTrackLocalStaticRTP(remote.Codec().RTPCodecCapability, remote.Kind().String(), "stub")
		if err != nil {
			s.t.Errorf("stub: forward track: %v", err)
			return
		}
		s.mu.Lock()
		forward := false
		switch {
		case key == "audio" && s.audio == nil:
			s.audio, forward = local, true
		case key != "audio" && s.video == nil && (key == "" || key == "h"):
			s.video, forward = local, true
			s.codec = remote.Codec().MimeType
		}
		s.mu.Unlock()

		done := make(chan struct{})
		if remote.Kind() == webrtc.RTPCodecTypeVideo {
			s.wg.Go(func() {
				ticker := time.NewTicker(time.Second)
				defer ticker.Stop()
				for {
					select {
					case <-done:
						return
					case <-ticker.C:
						_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(remote.SSRC())}})
					}
				}
			})
		}
		s.wg.Go(func() {
			defer close(done)
			for {
				pkt, _, err := remote.ReadRTP()
				if err != nil {
					return
				}
				s.mu.Lock()
				s.packets[key]++
				s.mu.Unlock()
				if forward {
					_ = local.WriteRTP(pkt)
				}
			}
		})
	}
}

func (s *stubServer) handleDelete(w http.ResponseWriter, r *http.Request) {
	s.record(r)
	id := r.PathValue("id")
	s.mu.Lock()
	if pc, ok := s.sessions[id]; ok {
		s.requests[len(s.requests)-1].SessionState = pc.ConnectionState()
	}
	s.mu.Unlock()
	if !s.closeSession(id) {
		http.NotFound(w, r)
	}
}

// closeSession ends a session from the server side.
func (s *stubServer) closeSession(id string) bool {
	s.mu.Lock()
	pc, ok := s.sessions[id]
	delete(s.sessions, id)
	s.mu.Unlock()
	if ok {
		_ = pc.Close()
	}
	return ok
}

func (s *stubServer) patchesSnapshot() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.patches...)
}

func (s *stubServer) requestsSnapshot() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.requests...)
}

func (s *stubServer) packetCount(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.packets[key]
}

func (s *stubServer) videoCodec() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.codec
}

// sfState is window.sf as the pages publish it.
type sfState struct {
	State string         `json:"state"`
	Error string         `json:"error"`
	Stats map[string]any `json:"stats"`
}

// waitFor waits for a page condition and on timeout fails with window.sf and
// the status line in the message.
func waitFor(t *testing.T, p *browser.Page, js string, timeout time.Duration) {
	t.Helper()
	if err := p.WaitFor(js, timeout); err != nil {
		var dump string
		_ = p.Eval(`JSON.stringify({sf: window.sf, status: document.getElementById('status')?.textContent})`, &dump)
		t.Fatalf("%v\npage state: %s", err, dump)
	}
}

func readSF(t *testing.T, p *browser.Page) sfState {
	t.Helper()
	var st sfState
	if err := p.Eval(`window.sf`, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func number(stats map[string]any, key string) float64 {
	n, _ := stats[key].(float64)
	return n
}

// firstVideoCodec returns the codec name of the first payload type of the
// video m-line of an SDP.
func firstVideoCodec(sdp string) string {
	m := regexp.MustCompile(`(?m)^m=video \d+ \S+ (\d+)`).FindStringSubmatch(sdp)
	if m == nil {
		return ""
	}
	rtpmap := regexp.MustCompile(`(?m)^a=rtpmap:` + m[1] + ` ([^/]+)/`).FindStringSubmatch(sdp)
	if rtpmap == nil {
		return ""
	}
	return rtpmap[1]
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPublishPage(t *testing.T) {
	b := browser.New(t.Context(), t)
	tests := []struct {
		codec     string
		simulcast bool
	}{
		{codec: "H264"},
		{codec: "VP8"},
		{codec: "VP9"},
		{codec: "AV1"},
		{codec: "VP8", simulcast: true},
	}
	for _, tt := range tests {
		name := tt.codec
		if tt.simulcast {
			name += "/simulcast"
		}
		t.Run(name, func(t *testing.T) {
			stub := newStubServer(t)
			url := stub.url + "/publish?stream=live/cam&token=secret&auto=1&codec=" + tt.codec
			if tt.simulcast {
				url += "&simulcast=1"
			}
			p, err := b.Open(url)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			waitFor(t, p, `sf.state === 'connected' && sf.stats.framesSent > 10`, 20*time.Second)

			st := readSF(t, p)
			if got, want := st.Stats["videoCodec"], "video/"+tt.codec; got != want {
				t.Errorf("sf.stats.videoCodec = %v, want %s", got, want)
			}
			if got := stub.videoCodec(); !strings.EqualFold(got, "video/"+tt.codec) {
				t.Errorf("server received %s, want video/%s", got, tt.codec)
			}
			eventually(t, "server receives audio", 5*time.Second, func() bool { return stub.packetCount("audio") > 0 })

			reqs := stub.requestsSnapshot()
			if len(reqs) != 1 {
				t.Fatalf("requests %+v, want one POST", reqs)
			}
			post := reqs[0]
			if post.Method != http.MethodPost || post.Path != "/whip/live/cam" ||
				post.ContentType != "application/sdp" || post.Authorization != "Bearer secret" {
				t.Errorf("WHIP request %s %s, Content-Type %q, Authorization %q", post.Method, post.Path, post.ContentType, post.Authorization)
			}
			eventually(t, "candidates trickled by PATCH", 5*time.Second, func() bool {
				for _, p := range stub.patchesSnapshot() {
					if p.Path == "/session/1" && p.ContentType == "application/trickle-ice-sdpfrag" &&
						p.Authorization == "Bearer secret" && strings.Contains(p.Body, "a=candidate:") &&
						strings.Contains(p.Body, "a=ice-ufrag:") && strings.Contains(p.Body, "a=mid:") {
						return true
					}
				}
				return false
			})
			if got := firstVideoCodec(post.Body); !strings.EqualFold(got, tt.codec) {
				t.Errorf("offer lists %s first, want %s", got, tt.codec)
			}
			if tt.simulcast {
				for _, want := range []string{"a=rid:h send", "a=rid:m send", "a=rid:l send", "a=simulcast:send h;m;l"} {
					if !strings.Contains(post.Body, want) {
						t.Errorf("offer lacks %q", want)
					}
				}
				for _, rid := range []string{"h", "m", "l"} {
					eventually(t, "server receives layer "+rid, 10*time.Second, func() bool { return stub.packetCount(rid) > 0 })
				}
				waitFor(t, p, `sf.stats.layers.length === 3`, 5*time.Second)
			}

			if err := p.Eval(`document.getElementById('stop').click()`, nil); err != nil {
				t.Fatal(err)
			}
			waitFor(t, p, `sf.state === 'ended' && document.getElementById('status').textContent === 'stopped'`, 5*time.Second)
			reqs = stub.requestsSnapshot()
			if len(reqs) != 2 {
				t.Fatalf("requests %+v, want POST and DELETE", reqs)
			}
			if del := reqs[1]; del.Method != http.MethodDelete || del.Path != "/session/1" || del.Authorization != "Bearer secret" {
				t.Errorf("after stop: %s %s, Authorization %q; want DELETE /session/1 with the token", del.Method, del.Path, del.Authorization)
			} else if del.SessionState != webrtc.PeerConnectionStateConnected {
				t.Errorf("the DELETE came when the session was %s: the page must DELETE before it closes the connection", del.SessionState)
			}
		})
	}
}

func TestWatchPage(t *testing.T) {
	stub := newStubServer(t)
	b := browser.New(t.Context(), t)
	pub, err := b.Open(stub.url + "/publish?stream=live/cam&codec=VP8&auto=1")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, pub, `sf.state === 'connected' && sf.stats.framesSent > 10`, 20*time.Second)

	watch, err := b.Open(stub.url + "/watch?stream=live/cam&auto=1&token=viewer")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, watch, `sf.state === 'connected' && sf.stats.framesDecoded > 30`, 20*time.Second)
	waitFor(t, watch, `sf.stats.totalSamplesReceived > 0 && sf.stats.videoBitrate > 0 && sf.stats.roundTripTime !== null`, 5*time.Second)

	st := readSF(t, watch)
	if st.Stats["videoCodec"] != "video/VP8" || number(st.Stats, "frameWidth") == 0 || number(st.Stats, "bytesReceived") == 0 {
		t.Errorf("sf.stats = %v", st.Stats)
	}
	var rendered int
	if err := watch.Eval(`document.querySelectorAll('#stats dt').length`, &rendered); err != nil || rendered < 10 {
		t.Errorf("stats list has %d rows, %v", rendered, err)
	}
	var playing bool
	if err := watch.Eval(`(() => { const v = document.getElementById('player'); return !v.paused && v.videoWidth > 0; })()`, &playing); err != nil || !playing {
		t.Errorf("video element playing = %v, %v", playing, err)
	}

	post := stub.requestsSnapshot()[1]
	if post.Path != "/whep/live/cam" || post.Authorization != "Bearer viewer" || !strings.Contains(post.Body, "a=recvonly") {
		t.Errorf("WHEP request %s, Authorization %q", post.Path, post.Authorization)
	}

	// The server ends the session: the page says so.
	if !stub.closeSession("2") {
		t.Fatal("no WHEP session 2")
	}
	waitFor(t, watch, `sf.state === 'ended' && document.getElementById('status').textContent === 'stream ended'`, 15*time.Second)
	time.Sleep(300 * time.Millisecond)
	for _, r := range stub.requestsSnapshot() {
		if r.Method == http.MethodDelete {
			t.Errorf("page sent DELETE %s for a session the server closed", r.Path)
		}
	}
}

func TestPagesShowHTTPErrors(t *testing.T) {
	b := browser.New(t.Context(), t)
	tests := []struct {
		page      string
		fail      failure
		wantError []string
	}{
		{
			page:      "publish",
			fail:      failure{http.StatusBadRequest, "application/json", `{"code":"invalid_stream","message":"invalid stream name"}`},
			wantError: []string{"400", "invalid stream name"},
		},
		{
			page:      "watch",
			fail:      failure{http.StatusNotFound, "text/plain; charset=utf-8", "stream not found\n"},
			wantError: []string{"404", "stream not found"},
		},
		{
			page:      "watch",
			fail:      failure{http.StatusUnauthorized, "application/json", `{"code":"unauthorized","message":"bad token"}`},
			wantError: []string{"401", "bad token"},
		},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.page, tt.fail.status), func(t *testing.T) {
			stub := newStubServer(t)
			kind := map[string]string{"publish": "whip", "watch": "whep"}[tt.page]
			stub.failWith(kind, tt.fail)
			p, err := b.Open(stub.url + "/" + tt.page + "?stream=live/x&auto=1")
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			waitFor(t, p, `sf.state === 'error'`, 10*time.Second)
			st := readSF(t, p)
			var status string
			if err := p.Eval(`document.getElementById('status').textContent`, &status); err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.wantError {
				if !strings.Contains(st.Error, want) || !strings.Contains(status, want) {
					t.Errorf("sf.error %q, status line %q: want both to contain %q", st.Error, status, want)
				}
			}
			var startEnabled bool
			if err := p.Eval(`!document.querySelector('#controls button[type=submit]').disabled`, &startEnabled); err != nil || !startEnabled {
				t.Errorf("start button enabled = %v, %v; want it usable again", startEnabled, err)
			}
		})
	}
}

// The server parameter sends WHIP to another origin, whose error the page
// shows like any other.
func TestPublishPageServerParameter(t *testing.T) {
	pages := newStubServer(t)
	media := newStubServer(t)
	media.failWith("whip", failure{http.StatusTeapot, "text/plain", "other origin"})
	b := browser.New(t.Context(), t)
	p, err := b.Open(pages.url + "/publish?auto=1&server=" + media.url)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, `sf.state === 'error'`, 10*time.Second)
	if st := readSF(t, p); !strings.Contains(st.Error, "418") || !strings.Contains(st.Error, "other origin") {
		t.Errorf("sf.error = %q, want the other origin's 418", st.Error)
	}
	reqs := media.requestsSnapshot()
	if len(reqs) != 1 || reqs[0].Path != "/whip/live/test" {
		t.Errorf("other origin got %+v, want POST /whip/live/test", reqs)
	}
	if n := len(pages.requestsSnapshot()); n != 0 {
		t.Errorf("page origin got %d WHIP requests, want 0", n)
	}
}

// A codec the browser cannot send is an error before anything reaches the
// server.
func TestPublishPageUnknownCodec(t *testing.T) {
	stub := newStubServer(t)
	b := browser.New(t.Context(), t)
	p, err := b.Open(stub.url + "/publish?auto=1&codec=NOPE264")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, `sf.state === 'error'`, 10*time.Second)
	if st := readSF(t, p); !strings.Contains(st.Error, "cannot send NOPE264") {
		t.Errorf("sf.error = %q, want it to name the codec", st.Error)
	}
	if reqs := stub.requestsSnapshot(); len(reqs) != 0 {
		t.Errorf("server got %+v, want nothing", reqs)
	}
}
