package loadtest

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/internal/rtctest"
)

// TestLoopbackCandidates: the load tool's peers offer loopback candidates to a server that may be
// on loopback (a loopback address or a name) and none to a server at another address, where such
// a pair only delays the viewer's nomination (newSettingEngine).
func TestLoopbackCandidates(t *testing.T) {
	for _, tc := range []struct {
		server   string
		loopback bool
	}{
		{"http://127.0.0.1:8080", true},
		{"http://localhost:8080", true},
		{"http://10.200.0.1:8080", false},
		{"https://192.0.2.7", false},
	} {
		got := gatheredLoopback(t, tc.server)
		if got != tc.loopback {
			t.Errorf("server %s: loopback candidate gathered %v, want %v", tc.server, got, tc.loopback)
		}
	}
}

// gatheredLoopback gathers the host candidates of one offer with the run's settings for server
// (nothing is sent anywhere) and tells whether one of them is on a loopback address.
func gatheredLoopback(t *testing.T, server string) bool {
	t.Helper()
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(newSettingEngine(server))).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("server %s: gathering did not complete", server)
	}
	ips, err := rtctest.CandidateIPs(pc.LocalDescription().SDP)
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range ips {
		if ip.IsLoopback() {
			return true
		}
	}
	return false
}
