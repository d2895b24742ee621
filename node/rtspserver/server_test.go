package rtspserver

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/pion/rtcp"

	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/node/rtpformat"
)

// TestPublishTCPReadBack: ffmpeg publishes H264 (global headers: SPS/PPS only in the SDP) and AAC
// over RTSP/TCP; a gortsplib reader gets both intact, every IDR preceded by SPS and PPS.
func TestPublishTCPReadBack(t *testing.T) {
	s, h := startServer(t, nil)
	publishFFmpeg(t, s, h, "live/tcp", "tcp")

	st, err := h.Stream("live/tcp")
	if err != nil {
		t.Fatal(err)
	}
	tracks := st.Tracks()
	if len(tracks) != 3 || tracks[0].Codec().MimeType != rtpformat.MimeH264 || tracks[1].Codec().MimeType != rtpformat.MimeAAC || tracks[2].Source() != tracks[1] {
		t.Fatalf("tracks: want H264, AAC and the derived Opus, got %d", len(tracks))
	}
	if f := tracks[0].Codec().SDPFmtpLine; !strings.Contains(f, "packetization-mode=1") || !strings.Contains(f, "profile-level-id=64") {
		t.Errorf("H264 fmtp %q lacks packetization-mode=1 and the High profile-level-id of the SPS", f)
	}

	r := newRTSPReader(t, streamURL(s, "live/tcp"), gortsplib.TransportTCP)
	if got := strings.Join(r.codecsOffered, ","); got != "H264,MPEG-4 Audio" {
		t.Errorf("DESCRIBE offers %s, want H264 and MPEG-4 Audio (not the derived Opus)", got)
	}
	c := r.waitCounts(t, "H264 and AAC", 15*time.Second, func(c readerCounts) bool {
		return c.h264IDRs >= 2 && c.h264AUs >= 60 && c.aacAUs >= 50
	})
	if c.badIDRs != 0 {
		t.Errorf("%d of %d IDR access units came without SPS/PPS", c.badIDRs, c.h264IDRs)
	}
	if s.Stats().ParamSetsAdded.Load() == 0 {
		t.Error("no parameter sets inserted, but ffmpeg sends them only in the SDP")
	}
	if got := s.Stats().PublishSessions.Load(); got != 1 {
		t.Errorf("publish sessions = %d, want 1", got)
	}
	if got := s.Stats().ReadSessions.Load(); got != 1 {
		t.Errorf("read sessions = %d, want 1", got)
	}
}

// TestPublishUDPReadByFFprobe: ffmpeg publishes over UDP; ffprobe reads it back over TCP and UDP
// with the right codecs and size.
func TestPublishUDPReadByFFprobe(t *testing.T) {
	s, h := startServer(t, nil)
	publishFFmpeg(t, s, h, "live/udp", "udp")
	for _, tr := range []string{"tcp", "udp"} {
		streams := ffprobe(t, streamURL(s, "live/udp"), tr)
		var video, audio bool
		for _, p := range streams {
			switch p.CodecName {
			case "h264":
				video = p.Width == 640 && p.Height == 360
			case "aac":
				audio = p.SampleRate == "48000"
			}
		}
		if !video || !audio {
			t.Errorf("ffprobe over %s: %+v, want h264 640x360 and aac 48 kHz", tr, streams)
		}
	}
}

// TestOneServerStreamPerHubStream: three readers (TCP, TCP, UDP) share one ServerStream fed by one
// hub reader per track; a reader's PLI reaches the layer; the ServerStream goes with the last reader.
func TestOneServerStreamPerHubStream(t *testing.T) {
	s, h := startServer(t, nil)
	publishFFmpeg(t, s, h, "live/fan", "tcp")
	url := streamURL(s, "live/fan")
	readers := []*rtspReader{
		newRTSPReader(t, url, gortsplib.TransportTCP),
		newRTSPReader(t, url, gortsplib.TransportTCP),
		newRTSPReader(t, url, gortsplib.TransportUDP),
	}
	for _, r := range readers {
		r.waitCounts(t, "reader packets", 10*time.Second, func(c readerCounts) bool { return c.h264AUs > 10 && c.aacAUs > 10 })
	}
	if n := s.StreamCount(); n != 1 {
		t.Errorf("ServerStreams = %d with 3 readers, want 1", n)
	}
	if n := s.Stats().StreamsCreated.Load(); n != 1 {
		t.Errorf("ServerStreams created = %d, want 1", n)
	}
	st, _ := h.Stream("live/fan")
	if n := st.ReaderCount(); n != 2 {
		t.Errorf("hub readers = %d for 3 RTSP readers of H264+AAC, want 2 (one per track)", n)
	}

	layer := st.Tracks()[0].BestLayer()
	before := layer.Stats().KeyframeRequests
	r := readers[0]
	if err := r.c.WritePacketRTCP(r.h264Media, &rtcp.PictureLossIndication{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for layer.Stats().KeyframeRequests == before {
		if time.Now().After(deadline) {
			t.Fatal("a reader's PLI did not reach the layer")
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, r := range readers {
		r.Close()
	}
	deadline = time.Now().Add(5 * time.Second)
	for s.StreamCount() != 0 || st.ReaderCount() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the last reader: %d ServerStreams, %d hub readers; want 0", s.StreamCount(), st.ReaderCount())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStreamEndClosesReaders: when the publisher leaves (no grace), readers' sessions are closed.
func TestStreamEndClosesReaders(t *testing.T) {
	s, h := startServer(t, nil)
	pub := publishFFmpeg(t, s, h, "live/end", "tcp")
	r := newRTSPReader(t, streamURL(s, "live/end"), gortsplib.TransportTCP)
	r.waitCounts(t, "packets", 10*time.Second, func(c readerCounts) bool { return c.h264AUs > 5 })
	_ = pub.Process.Kill()
	done := make(chan error, 1)
	go func() { done <- r.c.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("reader still open 10 s after the stream ended")
	}
	if n := s.StreamCount(); n != 0 {
		t.Errorf("ServerStreams = %d after the stream ended", n)
	}
}

// h264SDP is a valid H264 ANNOUNCE body.
const h264SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n" +
	"a=fmtp:96 packetization-mode=1\r\na=control:streamid=0\r\n"

// TestBadInput: each bad request is refused for that client with a clear status while a live
// publisher and reader keep flowing.
func TestBadInput(t *testing.T) {
	s, h := startServer(t, func(c *Config) { c.PublishToken, c.PlayToken = "pub-secret", "play-secret" })
	u := streamURL(s, "live/good") + "?token=pub-secret"
	publishFFmpegURL(t, h, "live/good", u)
	r := newRTSPReader(t, streamURL(s, "live/good")+"?token=play-secret", gortsplib.TransportTCP)
	r.waitCounts(t, "packets", 10*time.Second, func(c readerCounts) bool { return c.h264AUs > 5 })

	sdp := map[string]string{"Content-Type": "application/sdp"}
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	withAuth := func(auth string) map[string]string {
		return map[string]string{"Content-Type": "application/sdp", "Authorization": auth}
	}
	mjpegG711 := "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nt=0 0\r\nm=video 0 RTP/AVP 26\r\na=control:streamid=0\r\n" +
		"m=audio 0 RTP/AVP 0\r\na=control:streamid=1\r\n"
	base := "rtsp://" + s.Addr().String() + "/"
	for _, tc := range []struct {
		name, method, url string
		headers           map[string]string
		body, want        string
	}{
		{"broken SDP", "ANNOUNCE", base + "live/x?token=pub-secret", sdp, "v=0\r\nm=video nonsense\r\n", "400"},
		{"only MJPEG and G711", "ANNOUNCE", base + "live/x?token=pub-secret", sdp, mjpegG711, "415"},
		{"second publisher", "ANNOUNCE", base + "live/good?token=pub-secret", sdp, h264SDP, "400"},
		{"invalid stream name", "ANNOUNCE", base + "live/bad%20name!?token=pub-secret", sdp, h264SDP, "400"},
		{"too many segments", "DESCRIBE", base + "a/b/c/d/e?token=play-secret", nil, "", "400"},
		{"missing publish token", "ANNOUNCE", base + "live/x", sdp, h264SDP, "401"},
		{"wrong publish token", "ANNOUNCE", base + "live/x?token=nope", sdp, h264SDP, "401"},
		{"wrong Basic password", "ANNOUNCE", base + "live/x", withAuth(basic("u", "nope")), h264SDP, "401"},
		{"play token to publish", "ANNOUNCE", base + "live/x", withAuth(basic("u", "play-secret")), h264SDP, "401"},
		{"missing play token", "DESCRIBE", base + "live/good", nil, "", "401"},
		{"wrong play token", "DESCRIBE", base + "live/good?token=pub", nil, "", "401"},
		{"unknown stream", "DESCRIBE", base + "live/nobody?token=play-secret", nil, "", "404"},
		{"right Basic password, any user", "DESCRIBE", base + "live/good", map[string]string{"Authorization": basic("anyone", "play-secret")}, "", "200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := rawRequest(t, s.Addr(), tc.method, tc.url, tc.headers, tc.body)
			if !strings.HasPrefix(line, "RTSP/1.0 "+tc.want) {
				t.Errorf("%s: got %q, want %s", tc.name, line, tc.want)
			}
			if strings.Contains(line, "secret") {
				t.Errorf("answer %q shows a token", line)
			}
		})
	}
	if n := s.Stats().SessionsRejected.Load(); n != 10 { // challenges without credentials are not counted
		t.Errorf("rejected = %d, want the refusals counted", n)
	}
	// The live session kept flowing.
	before := r.counts().h264AUs
	r.waitCounts(t, "packets after bad input", 5*time.Second, func(c readerCounts) bool { return c.h264AUs > before+10 })
	if st, err := h.Stream(streamname.Name("live/good")); err != nil || !st.Live() {
		t.Errorf("live stream disturbed: %v", err)
	}
	if _, err := h.Stream("live/x"); err == nil {
		t.Error("a refused publish left a stream behind")
	}
}
