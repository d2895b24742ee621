package node_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/internal/rtctest"
	"github.com/streamfleet/streamfleet/node"
)

func patch(t *testing.T, url, ctype, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPatch, url, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestTrickleAndICEServers checks the RFC 9725 extras: configured ICE servers are announced in
// Link headers, PATCH takes trickled candidates (checked, then not needed: the node answers the
// checks where they come from) and refuses a malformed one, and an ICE restart is refused clearly.
func TestTrickleAndICEServers(t *testing.T) {
	n := startNode(t, func(c *node.Config) {
		c.WebRTC.ICEServers = []webrtc.ICEServer{{URLs: []string{"stun:stun.example.test:3478"}}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	req, _ := http.NewRequest(http.MethodOptions, n.HTTPURL()+"/whip/live/trickle", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if link := resp.Header.Get("Link"); link != `<stun:stun.example.test:3478>; rel="ice-server"` {
		t.Fatalf("Link header %q", link)
	}

	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rtctest.Publish(ctx, api, n.HTTPURL()+"/whip/live/trickle", "", rtctest.VP8)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	local := pub.PC.LocalDescription().SDP
	var ufrag, candidate string
	for _, line := range strings.Split(local, "\r\n") {
		if strings.HasPrefix(line, "a=ice-ufrag:") && ufrag == "" {
			ufrag = line
		}
		if strings.HasPrefix(line, "a=candidate:") && candidate == "" {
			candidate = line
		}
	}
	if candidate == "" {
		t.Fatal("the publisher gathered no candidate")
	}
	frag := ufrag + "\r\na=mid:0\r\n" + candidate + "\r\n"
	if got := patch(t, pub.Location, "application/trickle-ice-sdpfrag", frag); got != http.StatusNoContent {
		t.Fatalf("trickle PATCH: %d, want 204", got)
	}
	if got := patch(t, pub.Location, "application/trickle-ice-sdpfrag", ufrag+"\r\na=candidate:1 1 udp\r\n"); got != http.StatusBadRequest {
		t.Fatalf("PATCH with a malformed candidate: %d, want 400", got)
	}
	if got := patch(t, pub.Location, "application/sdp", frag); got != http.StatusUnsupportedMediaType {
		t.Fatalf("PATCH with the wrong type: %d, want 415", got)
	}
	restart := "a=ice-ufrag:newufrag\r\na=ice-pwd:newpasswordnewpassword12\r\n"
	if got := patch(t, pub.Location, "application/trickle-ice-sdpfrag", restart); got != http.StatusUnprocessableEntity {
		t.Fatalf("ICE restart PATCH: %d, want 422", got)
	}
	if err := rtctest.WaitConnected(ctx, pub.PC); err != nil {
		t.Fatal(err)
	}
}

// TestViewerThatVanishes: a viewer whose connection disappears without DELETE is cleaned up
// within seconds, and its reader leaves the stream.
func TestViewerThatVanishes(t *testing.T) {
	n := startNode(t, func(c *node.Config) {
		c.WebRTC.DisconnectedTimeout = 500 * time.Millisecond
		c.WebRTC.FailedTimeout = 500 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	live := startLiveSession(t, ctx, n.HTTPURL(), "live/vanish")
	defer live.close()
	live.assertFlowing()

	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	v, err := rtctest.View(ctx, api, n.HTTPURL()+"/whep/live/vanish", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := rtctest.WaitConnected(ctx, v.PC); err != nil {
		t.Fatal(err)
	}
	if got := n.WebRTC().Stats().WHEPSessions.Load(); got != 2 {
		t.Fatalf("%d WHEP sessions, want 2", got)
	}
	v.PC.Close() // gone: no DELETE
	st, err := n.Hub().Stream("live/vanish")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.WebRTC().Stats().WHEPSessions.Load() != 1 || st.ReaderCount() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("vanished viewer not cleaned up: %d sessions, %d readers",
				n.WebRTC().Stats().WHEPSessions.Load(), st.ReaderCount())
		}
		time.Sleep(50 * time.Millisecond)
	}
	live.assertFlowing()
}

// TestPublicIPInAnswer: with --public-ip (1:1 NAT), the answer's host candidate carries the public
// address instead of the bound one.
func TestPublicIPInAnswer(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.WebRTC.PublicIPs = []string{"127.0.0.77"} })
	req, _ := http.NewRequest(http.MethodPost, n.HTTPURL()+"/whip/live/nat", strings.NewReader(offerSDP(t, rtctest.VP8)))
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(string(body), " 127.0.0.77 ") {
		t.Fatalf("answer does not announce the public IP:\n%s", body)
	}
	if strings.Contains(string(body), " 127.0.0.1 ") {
		t.Fatalf("answer still announces the bound address:\n%s", body)
	}
}

// TestNodeChecksBackOnlyWhereChecked: the node is a full ICE agent, so a viewer's first check is
// answered with a check of the node's own (on which a controlling client nominates at once,
// instead of on its next timer tick); and the node checks only the address a check came from,
// never a candidate the offer merely lists (here a decoy socket's), which would let an offer
// aim the node's STUN traffic anywhere.
func TestNodeChecksBackOnlyWhereChecked(t *testing.T) {
	n := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	live := startLiveSession(t, ctx, n.HTTPURL(), "live/checks")
	defer live.close()
	live.assertFlowing()

	decoy, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer decoy.Close()
	var decoyGot atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := decoy.ReadFrom(buf); err != nil {
				return
			}
			decoyGot.Add(1)
		}
	}()

	var fromNode atomic.Int64 // binding requests the viewer received
	api, err := rtctest.NewAPIWithSettings(func(se *webrtc.SettingEngine) {
		se.SetICEBindingRequestHandler(func(*stun.Message, ice.Candidate, ice.Candidate, *ice.CandidatePair) bool {
			fromNode.Add(1)
			return false
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	port := decoy.LocalAddr().(*net.UDPAddr).Port
	decoyLine := fmt.Sprintf("a=candidate:999 1 udp 2130706431 127.0.0.1 %d typ host\r\n", port)
	added := 0
	loc, err := rtctest.ExchangeEdited(ctx, pc, n.HTTPURL()+"/whep/live/checks", "", func(sdp string) string {
		// The decoy first among each section's candidates, with the highest priority.
		var b strings.Builder
		inSection := false
		for _, line := range strings.SplitAfter(sdp, "\r\n") {
			if strings.HasPrefix(line, "m=") {
				inSection = false
			}
			if strings.HasPrefix(line, "a=candidate:") && !inSection {
				b.WriteString(decoyLine)
				inSection = true
				added++
			}
			b.WriteString(line)
		}
		return b.String()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rtctest.Delete(loc)
	if added == 0 {
		t.Fatal("the offer had no candidate to put the decoy before")
	}
	if strings.Contains(pc.RemoteDescription().SDP, "a=ice-lite") {
		t.Fatal("the answer declares ICE-lite")
	}
	if err := rtctest.WaitConnected(ctx, pc); err != nil {
		t.Fatal(err)
	}
	if fromNode.Load() == 0 {
		t.Error("the node answered the viewer's checks without a check of its own")
	}
	// pion checks a listed candidate at once and every 200 ms while connecting: a second is
	// plenty for a check to have reached the decoy.
	time.Sleep(time.Second)
	if got := decoyGot.Load(); got != 0 {
		t.Errorf("the decoy candidate got %d datagrams from the node", got)
	}
	live.assertFlowing()
}

// TestICELiteViewer: a viewer that is an ICE-lite agent (it never checks; it lists its
// candidates and answers checks) gets its media: for such an offer the node keeps the listed
// candidates and, as the full agent, checks and nominates them itself (RFC 8445 §6.1.1).
func TestICELiteViewer(t *testing.T) {
	n := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	live := startLiveSession(t, ctx, n.HTTPURL(), "live/lite")
	defer live.close()
	live.assertFlowing()

	api, err := rtctest.NewAPIWithSettings(func(se *webrtc.SettingEngine) { se.SetLite(true) })
	if err != nil {
		t.Fatal(err)
	}
	v, err := rtctest.View(ctx, api, n.HTTPURL()+"/whep/live/lite", "")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if !strings.Contains(v.PC.LocalDescription().SDP, "a=ice-lite") {
		t.Fatal("the viewer's offer does not declare ICE-lite")
	}
	if err := rtctest.WaitConnected(ctx, v.PC); err != nil {
		t.Fatal(err)
	}
	for len(v.Payloads("video")) < 20 {
		select {
		case <-ctx.Done():
			t.Fatalf("the ICE-lite viewer got %d video packets", len(v.Payloads("video")))
		case <-time.After(20 * time.Millisecond):
		}
	}
	live.assertFlowing()
}
