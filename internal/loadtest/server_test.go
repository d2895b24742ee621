package loadtest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// testServer is a minimal WHIP/WHEP server for the end-to-end tests, on 127.0.0.1: the tracks of
// the one publisher are forwarded to every WHEP session through a TrackLocalStaticRTP per kind
// (which rewrites SSRC and payload type but keeps sequence numbers, timestamps and payloads).
// Every new viewer, and every PLI from one, sends a PLI to the publisher.
type testServer struct {
	t            testing.TB
	token        string
	api          *webrtc.API
	video, audio *webrtc.TrackLocalStaticRTP
	http         *httptest.Server

	mu        sync.Mutex
	sessions  map[string]*webrtc.PeerConnection
	publisher *webrtc.PeerConnection
	nextID    int
	closed    bool
	wg        sync.WaitGroup

	publisherVideoSSRC atomic.Uint32
	keyframeRequests   atomic.Int64
	deletes            atomic.Int64
}

// newTestServer starts the server; each setting, if any, adjusts its SettingEngine.
func newTestServer(t testing.TB, token string, settings ...func(*webrtc.SettingEngine)) *testServer {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	// Offer and accept only 127.0.0.1, so that no test packet leaves the loopback interface.
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	for _, set := range settings {
		set(&se)
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	s := &testServer{
		t:        t,
		token:    token,
		api:      webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir)),
		sessions: map[string]*webrtc.PeerConnection{},
	}
	var err error
	if s.video, err = webrtc.NewTrackLocalStaticRTP(h264Codec, "video", "test"); err != nil {
		t.Fatal(err)
	}
	if s.audio, err = webrtc.NewTrackLocalStaticRTP(opusCodec, "audio", "test"); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /whip/{stream...}", s.handleWHIP)
	mux.HandleFunc("POST /whep/{stream...}", s.handleWHEP)
	mux.HandleFunc("DELETE /session/{id}", s.handleDelete)
	s.http = httptest.NewServer(mux)
	return s
}

// Close stops the HTTP server, closes every PeerConnection and waits for the forwarders.
func (s *testServer) Close() {
	s.http.Close()
	s.mu.Lock()
	s.closed = true
	pcs := make([]*webrtc.PeerConnection, 0, len(s.sessions))
	for _, pc := range s.sessions {
		pcs = append(pcs, pc)
	}
	s.sessions = nil
	s.mu.Unlock()
	for _, pc := range pcs {
		_ = pc.GracefulClose()
	}
	s.wg.Wait()
}

func (s *testServer) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

func (s *testServer) handleWHIP(w http.ResponseWriter, r *http.Request) {
	pc, ok := s.newSession(w, r)
	if !ok {
		return
	}
	pc.OnTrack(func(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if !s.enter() {
			return
		}
		defer s.wg.Done()
		local := s.audio
		if track.Kind() == webrtc.RTPCodecTypeVideo {
			local = s.video
			s.publisherVideoSSRC.Store(uint32(track.SSRC()))
		}
		buf := make([]byte, 1500)
		var pkt rtp.Packet
		for {
			n, _, err := track.Read(buf)
			if err != nil {
				return
			}
			if pkt.Unmarshal(buf[:n]) == nil {
				_ = local.WriteRTP(&pkt)
			}
		}
	})
	s.mu.Lock()
	s.publisher = pc
	s.mu.Unlock()
	s.answer(w, r, pc)
}

func (s *testServer) handleWHEP(w http.ResponseWriter, r *http.Request) {
	pc, ok := s.newSession(w, r)
	if !ok {
		return
	}
	for _, track := range []webrtc.TrackLocal{s.video, s.audio} {
		sender, err := pc.AddTrack(track)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if !s.enter() {
			return
		}
		go s.readViewerRTCP(sender)
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			s.requestKeyframe()
		}
	})
	s.answer(w, r, pc)
}

func (s *testServer) readViewerRTCP(sender *webrtc.RTPSender) {
	defer s.wg.Done()
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			if _, ok := p.(*rtcp.PictureLossIndication); ok {
				s.requestKeyframe()
			}
		}
	}
}

func (s *testServer) requestKeyframe() {
	s.mu.Lock()
	pub := s.publisher
	s.mu.Unlock()
	if ssrc := s.publisherVideoSSRC.Load(); pub != nil && ssrc != 0 {
		if pub.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}) == nil {
			s.keyframeRequests.Add(1)
		}
	}
}

// newSession checks the request and registers a new PeerConnection for it.
func (s *testServer) newSession(w http.ResponseWriter, r *http.Request) (*webrtc.PeerConnection, bool) {
	if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
		http.Error(w, "bad token", http.StatusUnauthorized)
		return nil, false
	}
	if r.Header.Get("Content-Type") != "application/sdp" {
		http.Error(w, "want application/sdp", http.StatusUnsupportedMediaType)
		return nil, false
	}
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = pc.Close()
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return nil, false
	}
	s.nextID++
	id := fmt.Sprint(s.nextID)
	s.sessions[id] = pc
	w.Header().Set("Location", "/session/"+id)
	return pc, true
}

// answer applies the offer in the request body and writes 201 with the complete answer.
func (s *testServer) answer(w http.ResponseWriter, r *http.Request, pc *webrtc.PeerConnection) {
	offer, err := io.ReadAll(r.Body)
	if err == nil {
		err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)})
	}
	var answer webrtc.SessionDescription
	if err == nil {
		answer, err = pc.CreateAnswer(nil)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err == nil {
		err = pc.SetLocalDescription(answer)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	<-gathered
	w.Header().Set("Content-Type", "application/sdp")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, pc.LocalDescription().SDP)
}

func (s *testServer) handleDelete(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	pc, ok := s.sessions[r.PathValue("id")]
	delete(s.sessions, r.PathValue("id"))
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.deletes.Add(1)
	_ = pc.GracefulClose()
	w.WriteHeader(http.StatusOK)
}
