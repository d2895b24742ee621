package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/internal/browser"
	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/internal/rtctest"
	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/node"
)

// runFFmpeg runs ffmpeg until the test ends.
func runFFmpeg(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ffmpeg", append([]string{"-hide_banner", "-loglevel", "error"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("ffmpeg stderr: %s", stderr.String())
		}
	})
}

// waitLive waits until the node has stream live with media flowing on its first track.
func waitLive(t *testing.T, n *node.Node, stream string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if st, err := n.Hub().Stream(streamname.Name(stream)); err == nil && st.Live() && st.Tracks()[0].BestLayer() != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s not live after 15 s", stream)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRTSPPublishPlaysInBrowser: ffmpeg publishes the test pattern (x264 zerolatency) and a sine
// (AAC) over RTSP/TCP; headless Chromium plays it over WHEP on the watch page: video frames
// decoded, and audio from the Opus track the transcoder makes of the AAC.
func TestRTSPPublishPlaysInBrowser(t *testing.T) {
	b := browser.New(t.Context(), t)
	n := nodetest.Start(t, nil)
	const stream = "live/rtsp-in"
	runFFmpeg(t, "-re", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", "120", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-f", "rtsp", "-rtsp_transport", "tcp", "rtsp://"+n.RTSPAddr().String()+"/"+stream)
	waitLive(t, n, stream)

	watch, err := b.Open(pageURL(n, "watch", map[string]string{"stream": stream, "auto": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	waitFor(t, watch, `sf.state === 'connected' && sf.stats.framesDecoded > 30`, 25*time.Second)
	waitFor(t, watch, `sf.stats.frameWidth === 640 && sf.stats.frameHeight === 360`, 5*time.Second)
	waitFor(t, watch, `sf.stats.totalSamplesReceived > 0`, 20*time.Second)
	st := readSF(t, watch)
	if got := st.Stats["videoCodec"]; got != "video/H264" {
		t.Errorf("viewer receives %v, want video/H264", got)
	}
}

// rtpRelay receives ffmpeg's RTP on a loopback UDP port and writes it to a WHIP track.
func rtpRelay(t *testing.T, track *webrtc.TrackLocalStaticRTP) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		var p rtp.Packet
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if p.Unmarshal(buf[:n]) != nil || p.PayloadType >= 72 && p.PayloadType <= 76 { // skip RTCP
				continue
			}
			if err := track.WriteRTP(&p); err != nil && !errors.Is(err, net.ErrClosed) {
				continue
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().(*net.UDPAddr).Port
}

type probed struct {
	Streams []struct {
		CodecName  string `json:"codec_name"`
		Width      int    `json:"width"`
		Height     int    `json:"height"`
		ReadFrames string `json:"nb_read_frames"`
	} `json:"streams"`
}

// TestWHIPReadOverRTSP: a pion WHIP publisher sends real H264 (640x360, 30 fps) and Opus made by
// ffmpeg; ffprobe reads the stream back over RTSP with TCP and with UDP: h264 and opus, the size,
// and a steady frame count over five seconds.
func TestWHIPReadOverRTSP(t *testing.T) {
	n := nodetest.Start(t, nil)
	const stream = "live/whip-to-rtsp"
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rtctest.Publish(t.Context(), api, n.HTTPURL()+"/whip/"+stream, "", rtctest.H264, rtctest.Opus)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	video, audio := rtpRelay(t, pub.Tracks[0]), rtpRelay(t, pub.Tracks[1])
	runFFmpeg(t, "-re", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", "120", "-map", "0:v", "-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30",
		"-pix_fmt", "yuv420p", "-f", "rtp", "-pkt_size", "1200", "rtp://127.0.0.1:"+strconv.Itoa(video),
		"-map", "1:a", "-c:a", "libopus", "-f", "rtp", "-pkt_size", "1200", "rtp://127.0.0.1:"+strconv.Itoa(audio))
	waitLive(t, n, stream)

	url := "rtsp://" + n.RTSPAddr().String() + "/" + stream
	for _, transport := range []string{"tcp", "udp"} {
		t.Run(transport, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-rtsp_transport", transport, "-count_frames", "-read_intervals", "%+6",
				"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "json", url).Output()
			if err != nil {
				t.Fatalf("ffprobe: %v\n%s", err, out)
			}
			var p probed
			if err := json.Unmarshal(out, &p); err != nil {
				t.Fatalf("ffprobe output %s: %v", out, err)
			}
			t.Logf("ffprobe over %s: %+v", transport, p.Streams)
			var h264, opus bool
			for _, s := range p.Streams {
				frames, _ := strconv.Atoi(s.ReadFrames)
				switch s.CodecName {
				case "h264":
					h264 = true
					if s.Width != 640 || s.Height != 360 {
						t.Errorf("h264 %dx%d, want 640x360", s.Width, s.Height)
					}
					if frames < 100 { // 30 fps over 6 s, less the wait for the first keyframe
						t.Errorf("%d video frames in 6 s, want >= 100", frames)
					}
				case "opus":
					opus = true
					if frames < 150 { // 50 frames/s
						t.Errorf("%d opus frames in 6 s, want >= 150", frames)
					}
				}
			}
			if !h264 || !opus {
				t.Errorf("ffprobe over %s: %s, want h264 and opus", transport, out)
			}
		})
	}
}
