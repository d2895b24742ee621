package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/internal/rtctest"
	"github.com/streamfleet/streamfleet/node"
	"github.com/streamfleet/streamfleet/node/hub"
)

// liveSession is a publisher and a viewer that keep flowing while a test throws bad input at the
// node; check asserts the viewer still receives.
type liveSession struct {
	t      *testing.T
	pub    *rtctest.Publisher
	viewer *rtctest.Viewer
	stop   chan struct{}
	done   chan struct{}
}

func startLiveSession(t *testing.T, ctx context.Context, base, stream string) *liveSession {
	t.Helper()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rtctest.Publish(ctx, api, base+"/whip/"+stream, "", rtctest.VP8)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if err := rtctest.WaitConnected(ctx, pub.PC); err != nil {
		t.Fatal(err)
	}
	v, err := rtctest.View(ctx, api, base+"/whep/"+stream, "")
	if err != nil {
		t.Fatalf("view: %v", err)
	}
	ls := &liveSession{t: t, pub: pub, viewer: v, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(ls.done)
		for i := uint32(1); ; i++ {
			select {
			case <-ls.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			_ = pub.Tracks[0].WriteRTP(&rtp.Packet{
				Header:  rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: i * 3000},
				Payload: payload(webrtc.MimeTypeVP8, i%10 == 1, i),
			})
		}
	}()
	return ls
}

// assertFlowing waits for the viewer to receive more packets than it had.
func (ls *liveSession) assertFlowing() {
	ls.t.Helper()
	before := len(ls.viewer.Payloads("video"))
	deadline := time.Now().Add(5 * time.Second)
	for len(ls.viewer.Payloads("video")) <= before+5 {
		if time.Now().After(deadline) {
			ls.t.Fatalf("the live session stopped flowing (%d packets)", before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (ls *liveSession) close() {
	close(ls.stop)
	<-ls.done
	ls.viewer.Close()
	ls.pub.Close()
}

func post(t *testing.T, url, contentType, body string, header map[string]string) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e map[string]string
	if resp.StatusCode >= 400 {
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Errorf("error body is not JSON {code, message}: %v", err)
		}
		if e["code"] == "" || e["message"] == "" {
			t.Errorf("error body lacks code or message: %v", e)
		}
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		if loc := resp.Header.Get("Location"); loc != "" {
			rtctest.Delete(strings.TrimSuffix(url, req.URL.Path) + loc)
		}
	}
	return resp.StatusCode, e
}

// offerSDP makes a real offer from a pion peer with the given codec, for requests built by hand.
func offerSDP(t *testing.T, codec webrtc.RTPCodecCapability) string {
	t.Helper()
	offer, err := rtctest.OfferSDP(codec)
	if err != nil {
		t.Fatal(err)
	}
	return offer
}

const h263Offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 34\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:34 H263/90000\r\n" +
	"a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:00\r\na=setup:actpass\r\n"

func TestBadInput(t *testing.T) {
	n := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	live := startLiveSession(t, ctx, n.HTTPURL(), "live/keeps-flowing")
	defer live.close()
	live.assertFlowing()

	good := offerSDP(t, rtctest.VP8)
	base := n.HTTPURL()
	for _, tc := range []struct {
		name, path, ctype, body string
		status                  int
		code                    string
	}{
		{"malformed sdp", "/whip/live/x", "application/sdp", "this is not sdp", 400, "malformed_sdp"},
		{"sdp without media", "/whip/live/x", "application/sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", 400, "no_media"},
		{"oversized body", "/whip/live/x", "application/sdp", good + strings.Repeat("a=x-padding:"+strings.Repeat("p", 100)+"\r\n", 1000), 413, "offer_too_large"},
		{"wrong content type", "/whip/live/x", "application/json", good, 415, "unsupported_content_type"},
		{"missing content type", "/whip/live/x", "", good, 415, "unsupported_content_type"},
		{"no supported codec", "/whip/live/x", "application/sdp", h263Offer, 406, "unsupported_codec"},
		{"unknown stream", "/whep/live/nobody", "application/sdp", good, 404, "stream_not_found"},
		{"second publisher", "/whip/live/keeps-flowing", "application/sdp", good, 409, "stream_busy"},
		{"too many segments", "/whip/a/b/c/d/e", "application/sdp", good, 400, "invalid_stream_name"},
		{"bad characters", "/whip/live/bad%20name", "application/sdp", good, 400, "invalid_stream_name"},
		{"name too long", "/whep/live/" + strings.Repeat("n", 300), "application/sdp", good, 400, "invalid_stream_name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, e := post(t, base+tc.path, tc.ctype, tc.body, nil)
			if status != tc.status || e["code"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", status, e, tc.status, tc.code)
			}
		})
	}
	t.Run("sessions", func(t *testing.T) {
		for _, tc := range []struct {
			method, path, ctype string
			status              int
		}{
			{http.MethodDelete, "/sessions/nope", "", 404},
			{http.MethodPatch, "/sessions/nope", "application/trickle-ice-sdpfrag", 404},
		} {
			req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n"))
			req.Header.Set("Content-Type", tc.ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("%s %s: got %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
			}
		}
	})
	t.Run("cors preflight", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodOptions, base+"/whep/live/x", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Location") {
			t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
	})
	live.assertFlowing()
}

func TestBearerTokens(t *testing.T) {
	n := startNode(t, func(c *node.Config) {
		c.WebRTC.PublishToken = "pub-secret"
		c.WebRTC.PlayToken = "play-secret"
	})
	good := offerSDP(t, rtctest.VP8)
	for _, tc := range []struct {
		name, path, auth string
		status           int
	}{
		{"publish without token", "/whip/live/t", "", 401},
		{"publish with wrong token", "/whip/live/t", "Bearer nope", 401},
		{"publish with play token", "/whip/live/t", "Bearer play-secret", 401},
		{"publish with token", "/whip/live/t", "Bearer pub-secret", 201},
		{"play without token", "/whep/live/t", "", 401},
		{"play with token of an unknown stream", "/whep/live/none", "Bearer play-secret", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.auth != "" {
				h["Authorization"] = tc.auth
			}
			if status, e := post(t, n.HTTPURL()+tc.path, "application/sdp", good, h); status != tc.status {
				t.Fatalf("got %d %v, want %d", status, e, tc.status)
			}
		})
	}
}

// TestPeerThatNeverConnects checks that a session whose peer never completes ICE is removed after
// the connect timeout, and that its stream does not linger.
func TestPeerThatNeverConnects(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.WebRTC.ConnectTimeout = 500 * time.Millisecond })
	// A stream for the ghost viewer, with no peer behind it.
	pub, err := n.Hub().Publish("live/watched", []hub.TrackSpec{{Codec: rtctest.VP8}})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/whip/live/ghost", "/whep/live/watched"} {
		req, _ := http.NewRequest(http.MethodPost, n.HTTPURL()+path, strings.NewReader(offerSDP(t, rtctest.VP8)))
		req.Header.Set("Content-Type", "application/sdp")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
	}
	stats := n.WebRTC().Stats()
	if stats.WHIPSessions.Load() != 1 || stats.WHEPSessions.Load() != 1 {
		t.Fatal("sessions not counted")
	}
	deadline := time.Now().Add(5 * time.Second)
	// Only the stream published through the hub remains, with no reader.
	for stats.WHIPSessions.Load() != 0 || stats.WHEPSessions.Load() != 0 || len(n.Hub().Streams()) != 1 ||
		pub.Stream().ReaderCount() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("ghost sessions not cleaned up: %d WHIP, %d WHEP, %d streams, %d readers",
				stats.WHIPSessions.Load(), stats.WHEPSessions.Load(), len(n.Hub().Streams()), pub.Stream().ReaderCount())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if stats.SessionsTimedOut.Load() != 2 {
		t.Fatalf("timed-out sessions = %d, want 2", stats.SessionsTimedOut.Load())
	}
}

// FuzzOffer feeds arbitrary offers to the WHIP and WHEP entry points: the answer is 201 or a 4xx
// with a JSON error, never a 5xx or a crash.
func FuzzOffer(f *testing.F) {
	f.Add(true, "v=0\r\n")
	f.Add(false, "garbage")
	f.Add(true, h263Offer)
	f.Add(true, strings.Replace(h263Offer, "H263", "VP8", 1))
	f.Add(false, strings.Replace(h263Offer, "sendonly", "recvonly", 1))
	f.Add(false, strings.Replace(strings.Replace(h263Offer, "sendonly", "recvonly", 1), "H263", "VP8", 1))
	f.Add(true, "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=video 9 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n")
	cfg := node.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.WebRTC.ICEUDPAddr = "127.0.0.1:0"
	cfg.RTSP.Addr, cfg.RTSP.UDPRTPAddr, cfg.RTSP.UDPRTCPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.SRT.Addr = "127.0.0.1:0"
	cfg.WebRTC.ConnectTimeout = 200 * time.Millisecond
	n, err := node.New(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = n.Close() })
	// A stream with no peer behind it, so WHEP offers get as far as negotiation.
	if _, err := n.Hub().Publish("live/fuzz", []hub.TrackSpec{{Codec: rtctest.VP8}, {Codec: rtctest.Opus}}); err != nil {
		f.Fatal(err)
	}
	h := n.Handler()
	f.Fuzz(func(t *testing.T, whip bool, body string) {
		path := "/whep/live/fuzz"
		if whip {
			path = "/whip/live/fuzz"
		}
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/sdp")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusCreated:
			del := httptest.NewRequest(http.MethodDelete, rec.Header().Get("Location"), nil)
			h.ServeHTTP(httptest.NewRecorder(), del)
		case rec.Code >= 400 && rec.Code < 500:
			var e map[string]string
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e["code"] == "" {
				t.Fatalf("status %d without a JSON error: %q", rec.Code, rec.Body.String())
			}
		default:
			t.Fatalf("unexpected status %d: %s", rec.Code, rec.Body.String())
		}
	})
}
