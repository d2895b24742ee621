package node_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/streamfleet/streamfleet/internal/rtctest"
	"github.com/streamfleet/streamfleet/node"
)

// startNode runs a node on loopback with free ports and closes it when the test ends.
func startNode(t *testing.T, edit func(*node.Config)) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.WebRTC.ICEUDPAddr = "127.0.0.1:0"
	cfg.RTSP.Addr, cfg.RTSP.UDPRTPAddr, cfg.RTSP.UDPRTCPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.SRT.Addr = "127.0.0.1:0"
	if edit != nil {
		edit(&cfg)
	}
	n, err := node.New(cfg, nil)
	if err != nil {
		t.Fatalf("new node: %v", err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	return n
}

// payload builds a test payload for a codec: a keyframe or delta frame in one packet, carrying a
// marker and an index so a viewer can check it got exactly what was sent.
func payload(mime string, keyframe bool, index uint32) []byte {
	var head []byte
	switch mime {
	case webrtc.MimeTypeH264:
		head = []byte{0x41} // non-IDR slice
		if keyframe {
			head = []byte{0x65} // IDR slice
		}
	case webrtc.MimeTypeVP8:
		head = []byte{0x10, 0x01} // start of partition 0, inter frame
		if keyframe {
			head = []byte{0x10, 0x00}
		}
	case webrtc.MimeTypeVP9:
		head = []byte{0x48} // P (inter-picture predicted) and B (start of frame)
		if keyframe {
			head = []byte{0x08}
		}
	case webrtc.MimeTypeAV1:
		head = []byte{0x10} // one OBU element
		if keyframe {
			head = []byte{0x18} // N: first packet of a coded video sequence
		}
	default:
		head = []byte{0xfc}
	}
	b := append(head, 'S', 'F', 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(head)+2:], index)
	return append(b, bytes.Repeat([]byte{byte(index)}, 200)...)
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pion's global DTLS/SRTP and net helpers park goroutines briefly after Close.
		goleak.IgnoreTopFunction("github.com/pion/interceptor/pkg/report.(*SenderInterceptor).loop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// gosrt's Dial leaves its timeout timer's goroutine blocked after a refused handshake.
		goleak.IgnoreTopFunction("github.com/datarhei/gosrt.Dial.func3"),
		goleak.IgnoreTopFunction("github.com/datarhei/gosrt.Dial.func1"),
	)
}

// TestFanOutExactPayloads publishes over WHIP and checks that 50 WHEP viewers receive exactly the
// published payloads, in order, from the first keyframe on, for each video codec with Opus.
func TestFanOutExactPayloads(t *testing.T) {
	for _, tc := range []struct {
		video   webrtc.RTPCodecCapability
		viewers int
	}{
		{rtctest.H264, 50},
		{rtctest.VP8, 50},
		{rtctest.VP9, 5},
		{rtctest.AV1, 5},
	} {
		t.Run(tc.video.MimeType, func(t *testing.T) {
			testFanOut(t, tc.video, tc.viewers)
		})
	}
}

func testFanOut(t *testing.T, video webrtc.RTPCodecCapability, viewers int) {
	n := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	stream := "live/fanout"
	pub, err := rtctest.Publish(ctx, api, n.HTTPURL()+"/whip/"+stream, "", video, rtctest.Opus)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer pub.Close()
	if err := rtctest.WaitConnected(ctx, pub.PC); err != nil {
		t.Fatal(err)
	}
	st, err := n.Hub().Stream("live/fanout")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Tracks()[0].Codec().MimeType; got != video.MimeType {
		t.Fatalf("stream video codec %s, want %s", got, video.MimeType)
	}

	vs := make([]*rtctest.Viewer, viewers)
	var wg sync.WaitGroup
	errs := make(chan error, viewers)
	for i := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := rtctest.View(ctx, api, n.HTTPURL()+"/whep/"+stream, "")
			if err == nil {
				err = rtctest.WaitConnected(ctx, v.PC)
			}
			if err != nil {
				errs <- fmt.Errorf("viewer %d: %w", i, err)
				return
			}
			vs[i] = v
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	defer func() {
		for _, v := range vs {
			v.Close()
		}
	}()

	// Warm up: keyframes until every viewer's forwarding has started.
	var seq [2]uint16
	write := func(track int, mime string, keyframe bool, idx uint32, ts uint32) {
		seq[track]++
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq[track], Timestamp: ts, SSRC: 1}, Payload: payload(mime, keyframe, idx)}
		if err := pub.Tracks[track].WriteRTP(pkt); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	warm := func() bool {
		for _, v := range vs {
			if len(v.Payloads("video")) == 0 || len(v.Payloads("audio")) == 0 {
				return false
			}
		}
		return true
	}
	for i := uint32(0); !warm(); i++ {
		if ctx.Err() != nil {
			t.Fatal("viewers never started receiving")
		}
		write(0, video.MimeType, true, 0, i*3000)
		write(1, rtctest.Opus.MimeType, true, 0, i*960)
		time.Sleep(20 * time.Millisecond)
	}

	// The measured run: 300 packets of each track, a keyframe every 30.
	const count = 300
	base := uint32(1 << 20)
	for i := uint32(1); i <= count; i++ {
		write(0, video.MimeType, i%30 == 1, i, base+i*3000)
		write(1, rtctest.Opus.MimeType, true, i, base+i*960)
		time.Sleep(2 * time.Millisecond)
	}
	want := map[string][][]byte{}
	for i := uint32(1); i <= count; i++ {
		want["video"] = append(want["video"], payload(video.MimeType, i%30 == 1, i))
		want["audio"] = append(want["audio"], payload(rtctest.Opus.MimeType, true, i))
	}
	deadline := time.Now().Add(20 * time.Second)
	for i, v := range vs {
		for _, kind := range []string{"video", "audio"} {
			var got [][]byte
			for {
				got = measured(v.Payloads(kind))
				if len(got) >= count || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if len(got) != count {
				t.Fatalf("viewer %d %s: got %d measured payloads, want %d", i, kind, len(got), count)
			}
			for j := range got {
				if !bytes.Equal(got[j], want[kind][j]) {
					t.Fatalf("viewer %d %s packet %d: payload differs", i, kind, j)
				}
			}
			checkContinuous(t, v.Headers(kind))
		}
	}
	// Every viewer was sent what the node encrypted itself; the fan-out's delay is on /metrics.
	if own := n.WebRTC().Stats().OwnSRTPViewers.Load(); own != uint64(viewers) {
		t.Errorf("own SRTP for %d viewers, want %d", own, viewers)
	}
	metrics := scrape(t, n.HTTPURL()+"/metrics")
	if !regexp.MustCompile(`(?m)^streamfleet_webrtc_fanout_delay_seconds_count\{node="[^"]*",role="origin"\} [1-9]`).MatchString(metrics) ||
		!strings.Contains(metrics, `streamfleet_webrtc_fanout_delay_seconds_bucket{node=`) {
		t.Errorf("/metrics has no fan-out delay histogram:\n%s", grepLines(metrics, "fanout_delay"))
	}
}

// scrape GETs a metrics page.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(body)
}

// measured drops the warm-up payloads (index 0).
func measured(ps [][]byte) [][]byte {
	var out [][]byte
	for _, p := range ps {
		i := bytes.Index(p, []byte("SF"))
		if i >= 0 && len(p) >= i+6 && binary.BigEndian.Uint32(p[i+2:]) != 0 {
			out = append(out, p)
		}
	}
	return out
}

// checkContinuous asserts one SSRC and consecutive sequence numbers.
func checkContinuous(t *testing.T, hs []rtp.Header) {
	t.Helper()
	for i := 1; i < len(hs); i++ {
		if hs[i].SSRC != hs[0].SSRC {
			t.Fatalf("SSRC changed at packet %d", i)
		}
		if hs[i].SequenceNumber != hs[i-1].SequenceNumber+1 {
			t.Fatalf("sequence gap at packet %d: %d after %d", i, hs[i].SequenceNumber, hs[i-1].SequenceNumber)
		}
	}
}
