package webrtcserver

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/streamfleet/streamfleet/internal/rtctest"
	"github.com/streamfleet/streamfleet/node/hub"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pion's client side (the test's publisher and viewers) parks goroutines briefly after Close.
		goleak.IgnoreTopFunction("github.com/pion/interceptor/pkg/report.(*SenderInterceptor).loop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// srViewer is a WHEP viewer that records the RTP timestamps it receives and the sender reports.
type srViewer struct {
	pc  *webrtc.PeerConnection
	loc string

	mu      sync.Mutex
	ssrc    map[string]uint32
	stamps  map[uint32]map[uint32]bool // SSRC → RTP timestamps received
	packets map[uint32]int
	lastSeq map[uint32]uint16
	reports map[uint32][]rtcp.SenderReport
	byes    int // RTCP BYEs received
	// firstRTP and firstSR are when the first packet and the first sender report of each SSRC
	// arrived.
	firstRTP, firstSR map[uint32]time.Time
}

func newSRViewer(ctx context.Context, t *testing.T, api *webrtc.API, url string) *srViewer {
	return newEditedSRViewer(ctx, t, api, url, nil)
}

// newEditedSRViewer is newSRViewer with the offer's SDP edited on its way (rtctest.ExchangeEdited).
func newEditedSRViewer(ctx context.Context, t *testing.T, api *webrtc.API, url string, edit func(string) string) *srViewer {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	v := &srViewer{pc: pc, ssrc: map[string]uint32{}, stamps: map[uint32]map[uint32]bool{}, packets: map[uint32]int{}, lastSeq: map[uint32]uint16{}, reports: map[uint32][]rtcp.SenderReport{},
		firstRTP: map[uint32]time.Time{}, firstSR: map[uint32]time.Time{}}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		ssrc := uint32(tr.SSRC())
		v.mu.Lock()
		v.ssrc[tr.Kind().String()] = ssrc
		v.stamps[ssrc] = map[uint32]bool{}
		v.mu.Unlock()
		go func() {
			for {
				pkts, _, err := recv.ReadRTCP()
				if err != nil {
					return
				}
				v.mu.Lock()
				for _, p := range pkts {
					switch p := p.(type) {
					case *rtcp.SenderReport:
						v.reports[p.SSRC] = append(v.reports[p.SSRC], *p)
						if _, ok := v.firstSR[p.SSRC]; !ok {
							v.firstSR[p.SSRC] = time.Now()
						}
					case *rtcp.Goodbye:
						v.byes++
					}
				}
				v.mu.Unlock()
			}
		}()
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			v.mu.Lock()
			v.stamps[ssrc][pkt.Timestamp] = true
			if v.packets[ssrc] == 0 {
				v.firstRTP[ssrc] = time.Now()
			}
			v.packets[ssrc]++
			v.lastSeq[ssrc] = pkt.SequenceNumber
			v.mu.Unlock()
		}
	})
	if v.loc, err = rtctest.ExchangeEdited(ctx, pc, url, "", edit); err != nil {
		t.Fatalf("whep: %v", err)
	}
	return v
}

func (v *srViewer) close() {
	rtctest.Delete(v.loc)
	_ = v.pc.Close()
}

// TestBatchedFanOutSenderReportsAndNACK: three viewers of one stream are served by one fan-out
// group whose packets go out in sendmmsg batches; each viewer gets RTCP sender reports from the
// group (about one a second per track, with the NTP time of a packet and that packet's RTP
// timestamp, and the counts of what it was sent), a NACK is answered by the group, and when the
// stream ends each viewer gets an RTCP BYE.
func TestBatchedFanOutSenderReportsAndNACK(t *testing.T) {
	ctx, s, base, api, pub := startSR(t, nil)
	const viewers = 3
	vs := joinSR(ctx, t, s, api, base, viewers)
	step := sendSR(t, pub, 2500*time.Millisecond, 0)

	now := time.Now()

	for i, v := range vs {
		v.mu.Lock()
		for _, kind := range []string{"video", "audio"} {
			ssrc := v.ssrc[kind]
			srs := v.reports[ssrc]
			if len(srs) < 2 || len(srs) > 4 {
				t.Errorf("viewer %d %s: %d sender reports in 2.5 s, want 2–4 (one a second)", i, kind, len(srs))
				continue
			}
			// A track's first report follows its first packet at once (lip sync from the start),
			// not at the viewer's next report a second later.
			if d := v.firstSR[ssrc].Sub(v.firstRTP[ssrc]); d > 300*time.Millisecond {
				t.Errorf("viewer %d %s: first sender report %v after the first packet, want at once", i, kind, d)
			}
			for j, sr := range srs {
				at := ntpToTime(sr.NTPTime)
				if d := now.Sub(at); d < 0 || d > 4*time.Second {
					t.Errorf("viewer %d %s report %d: NTP time %v, %v before the end of the test", i, kind, j, at, d)
				}
				if !v.stamps[ssrc][sr.RTPTime] {
					t.Errorf("viewer %d %s report %d: RTP time %d is no packet's timestamp", i, kind, j, sr.RTPTime)
				}
				if sr.PacketCount == 0 || int(sr.PacketCount) > v.packets[ssrc] || sr.OctetCount < sr.PacketCount*200 {
					t.Errorf("viewer %d %s report %d: %d packets, %d octets (received %d packets of 200+ bytes)", i, kind, j, sr.PacketCount, sr.OctetCount, v.packets[ssrc])
				}
				if j > 0 && (sr.PacketCount <= srs[j-1].PacketCount || sr.NTPTime <= srs[j-1].NTPTime) {
					t.Errorf("viewer %d %s report %d: counts or time did not advance", i, kind, j)
				}
			}
		}
		if v.packets[v.ssrc["video"]] < 60 || v.packets[v.ssrc["audio"]] < 100 {
			t.Errorf("viewer %d received %d video and %d audio packets, want about 75 and 125", i, v.packets[v.ssrc["video"]], v.packets[v.ssrc["audio"]])
		}
		v.mu.Unlock()
	}
	batches, batched := s.stats.SendBatches.Load(), s.stats.BatchedPackets.Load()
	if batches == 0 || float64(batched)/float64(batches) < 2 {
		t.Errorf("%d datagrams in %d sendmmsg batches: want the three viewers' packets batched", batched, batches)
	}
	if n := s.stats.SendErrors.Load(); n != 0 {
		t.Errorf("%d send errors", n)
	}
	// Every batched datagram's hub → kernel delay was measured.
	if _, _, count, sum := s.stats.FanoutDelay.Snapshot(); count != batched || count == 0 || sum/float64(count) > 0.5 {
		t.Errorf("fan-out delay: %d datagrams measured, mean %.6f s; want %d datagrams and well under 0.5 s", count, sum/float64(count), batched)
	}
	// The node encrypted every viewer's RTP itself after the first packet matched pion's.
	if own, fell := s.stats.OwnSRTPViewers.Load(), s.stats.OwnSRTPFallbacks.Load(); own != viewers || fell != 0 {
		t.Errorf("own SRTP for %d viewers, %d left to pion; want %d and 0", own, fell, viewers)
	}

	// A change of a viewer's selected ICE pair (pion's callback sets reverify) sends its next
	// packet through pion again, compared again; the viewers keep receiving every packet.
	for _, sess := range sessionsOf(s) {
		if vs, ok := sess.(*whepSession); ok {
			vs.tracks[0].out.reverify.Store(true)
		}
	}
	before := make([]int, len(vs))
	for i, v := range vs {
		v.mu.Lock()
		before[i] = v.packets[v.ssrc["video"]]
		v.mu.Unlock()
	}
	sendSR(t, pub, 500*time.Millisecond, step)
	if n := s.stats.OwnSRTPVerifications.Load(); n != 2*viewers || s.stats.OwnSRTPFallbacks.Load() != 0 {
		t.Errorf("%d matching comparisons (%d fallbacks), want %d: each viewer's first packet and the one after its pair changed", n, s.stats.OwnSRTPFallbacks.Load(), 2*viewers)
	}
	for i, v := range vs {
		v.mu.Lock()
		if got := v.packets[v.ssrc["video"]] - before[i]; got < 10 {
			t.Errorf("viewer %d: %d video packets after the re-verification, want about 15", i, got)
		}
		v.mu.Unlock()
	}

	// A NACK for a video packet already sent is answered from the layer's history, by the group.
	v := vs[0]
	v.mu.Lock()
	ssrc := v.ssrc["video"]
	seq := v.lastSeq[ssrc]
	v.mu.Unlock()
	rtxBefore := s.stats.Retransmissions.Load()
	if err := v.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: seq - 5}}}}); err != nil {
		t.Fatal(err)
	}
	for s.stats.Retransmissions.Load() == rtxBefore {
		if time.Now().After(now.Add(5 * time.Second)) {
			t.Fatal("NACK not answered")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The stream ends (the publisher's DELETE): each viewer is told with an RTCP BYE.
	pub.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got := 0
		for _, v := range vs {
			v.mu.Lock()
			got += min(v.byes, 1)
			v.mu.Unlock()
		}
		if got == viewers {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d viewers told the stream ended", got, viewers)
		}
	}
}

// newFanoutServer serves WHIP and WHEP on loopback until the test ends, configured by edit
// (if not nil).
func newFanoutServer(t *testing.T, edit func(*Config)) (*Server, string) {
	t.Helper()
	h := hub.New(hub.Config{Grace: time.Second}, nil)
	t.Cleanup(h.Close)
	cfg := DefaultConfig()
	cfg.ICEUDPAddr = "127.0.0.1:0"
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		srv.Close()
	})
	return s, srv.URL
}

// startSR starts a server (configured by edit, if not nil) and publishes H264 + Opus to live/sr
// on it, for sendSR; the context ends with the test, at most 30 s from now.
func startSR(t *testing.T, edit func(*Config)) (context.Context, *Server, string, *webrtc.API, *rtctest.Publisher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	s, base := newFanoutServer(t, edit)
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rtctest.Publish(ctx, api, base+"/whip/live/sr", "", rtctest.H264, rtctest.Opus)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	t.Cleanup(pub.Close)
	if err := rtctest.WaitConnected(ctx, pub.PC); err != nil {
		t.Fatal(err)
	}
	return ctx, s, base, api, pub
}

// joinSR starts n WHEP viewers of live/sr (closed when the test ends) and waits until they are
// in fan-out groups.
func joinSR(ctx context.Context, t *testing.T, s *Server, api *webrtc.API, base string, n int) []*srViewer {
	t.Helper()
	vs := make([]*srViewer, n)
	for i := range vs {
		vs[i] = newSRViewer(ctx, t, api, base+"/whep/live/sr")
		t.Cleanup(vs[i].close)
	}
	waitGrouped(ctx, t, s, n, vs...)
	return vs
}

// waitGrouped waits until the viewers are connected and n viewers are in fan-out groups (a
// session starts forwarding once connected).
func waitGrouped(ctx context.Context, t *testing.T, s *Server, n int, vs ...*srViewer) {
	t.Helper()
	for _, v := range vs {
		if err := rtctest.WaitConnected(ctx, v.pc); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.stats.WHEPSessions.Load() < int64(n) || groupMembers(s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d viewers in fan-out groups, want %d", groupMembers(s), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sendSR publishes d of media: 30 video and 50 audio packets a second, consecutive sequence
// numbers from step from (0 at first; the returned step to go on).
func sendSR(t *testing.T, pub *rtctest.Publisher, d time.Duration, from int) int {
	t.Helper()
	start := time.Now()
	i := from
	for ; time.Since(start) < d; i++ {
		if i%3 == 0 {
			f := uint32(i / 3)
			p := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(f), Timestamp: f * 3000, Marker: true},
				Payload: rtctest.Payload(rtctest.H264.MimeType, f%30 == 0, f, "")}
			if err := pub.Tracks[0].WriteRTP(p); err != nil {
				t.Fatal(err)
			}
		}
		if i%2 == 0 {
			f := uint32(i / 2)
			p := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(f), Timestamp: f * 960},
				Payload: rtctest.Payload(rtctest.Opus.MimeType, true, f, "")}
			if err := pub.Tracks[1].WriteRTP(p); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	return i + 6 - i%6 // the next step that starts a video and an audio frame
}

// TestOwnSRTPProfilesAndFallback: a viewer that offers only AES-CM-HMAC-SHA1-80 gets the node's
// own SRTP too; a viewer that makes the node the DTLS client (a=setup:passive in its offer) has
// no secrets to capture and is served by pion's path; both receive every packet.
func TestOwnSRTPProfilesAndFallback(t *testing.T) {
	ctx, s, base, api, pub := startSR(t, nil)

	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetSRTPProtectionProfiles(dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	cmAPI := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))

	cm := newSRViewer(ctx, t, cmAPI, base+"/whep/live/sr")
	defer cm.close()
	passive := newEditedSRViewer(ctx, t, api, base+"/whep/live/sr", func(sdp string) string {
		return strings.ReplaceAll(sdp, "a=setup:actpass", "a=setup:passive")
	})
	defer passive.close()
	waitGrouped(ctx, t, s, 2, cm, passive)
	sendSR(t, pub, 1500*time.Millisecond, 0)

	if own, fell := s.stats.OwnSRTPViewers.Load(), s.stats.OwnSRTPFallbacks.Load(); own != 1 || fell != 0 {
		t.Errorf("own SRTP for %d viewers, %d fell back; want 1 (the AES-CM viewer) and 0", own, fell)
	}
	for name, v := range map[string]*srViewer{"aes-cm": cm, "passive": passive} {
		v.mu.Lock()
		for _, kind := range []string{"video", "audio"} {
			ssrc := v.ssrc[kind]
			want := map[string]int{"video": 45, "audio": 75}[kind]
			if got := v.packets[ssrc]; got < want*9/10 || int(v.lastSeq[ssrc])+1-got > 1 {
				t.Errorf("%s viewer: %d %s packets, last sequence number %d; want about %d, none missing", name, got, kind, v.lastSeq[ssrc], want)
			}
		}
		v.mu.Unlock()
	}
}

// sessionsOf is the server's sessions.
func sessionsOf(s *Server) []session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, sess)
	}
	return out
}

func groupMembers(s *Server) int {
	s.fanout.mu.Lock()
	defer s.fanout.mu.Unlock()
	n := 0
	for _, gs := range s.fanout.groups {
		for _, g := range gs {
			n += len(*g.viewers.Load())
		}
	}
	return n
}

func ntpToTime(ntp uint64) time.Time {
	secs := int64(ntp>>32) - 2208988800
	frac := int64((ntp & 0xffffffff) * 1e9 >> 32)
	return time.Unix(secs, frac)
}

// TestDelayHistogram: bucket bounds double from 50 µs, a value on a bound counts in that bucket,
// and anything over 102.4 ms only in the total.
func TestDelayHistogram(t *testing.T) {
	var h DelayHistogram
	for _, d := range []time.Duration{0, 50 * time.Microsecond, 51 * time.Microsecond, 100 * time.Microsecond, 3 * time.Millisecond, 102400 * time.Microsecond, time.Second, -time.Millisecond} {
		h.observe(int64(d))
	}
	bounds, cumulative, count, sum := h.Snapshot()
	if len(bounds) != 12 || bounds[0] != 50e-6 || bounds[1] != 100e-6 || bounds[11] != 0.1024 {
		t.Fatalf("bounds %v", bounds)
	}
	// ≤50 µs: 0, 50 µs, -1 ms (as 0); ≤100 µs: +51 µs, 100 µs; ≤3.2 ms: +3 ms; ≤102.4 ms: +102.4 ms.
	want := []uint64{3, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 7}
	for i := range want {
		if cumulative[i] != want[i] {
			t.Fatalf("cumulative %v, want %v", cumulative, want)
		}
	}
	if count != 8 {
		t.Errorf("count %d, want 8", count)
	}
	if wantSum := (50 + 51 + 100 + 3000 + 102400 + 1e6) * 1e-6; sum < wantSum-1e-9 || sum > wantSum+1e-9 {
		t.Errorf("sum %v, want %v", sum, wantSum)
	}
}

func TestNTPTime(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 30, 0, 250_000_000, time.UTC)
	got := ntpToTime(ntpTime(at.UnixNano()))
	if d := got.Sub(at); d < -time.Microsecond || d > time.Microsecond {
		t.Fatalf("ntp round trip: %v, want %v", got, at)
	}
	if ntpTime(at.UnixNano())>>32 != uint64(at.Unix()+2208988800) {
		t.Fatal("ntp seconds are not since 1900")
	}
}

// TestCloseReleasesICEPort: every fan-out group sends through a descriptor of its own of the ICE
// socket; once the server is closed, none is left open — the port can be bound again at once.
func TestCloseReleasesICEPort(t *testing.T) {
	ctx, s, base, api, pub := startSR(t, nil) // its cleanup closes the server again: Close is idempotent
	v1, v2 := newSRViewer(ctx, t, api, base+"/whep/live/sr"), newSRViewer(ctx, t, api, base+"/whep/live/sr")
	defer v1.close()
	defer v2.close()
	waitGrouped(ctx, t, s, 2, v1, v2)
	sendSR(t, pub, 200*time.Millisecond, 0)

	addr := s.ICEUDPAddr().String()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := groupMembers(s); n != 0 {
		t.Fatalf("%d viewers still in groups after Close", n)
	}
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("the ICE port after Close: %v (a descriptor of the socket is still open)", err)
	}
	c.Close()
}
