package rtspserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/internal/testlog"
	"github.com/streamfleet/streamfleet/node/hub"
)

// TestMain fails the package if a test leaves a goroutine behind: every session, feeder and
// gortsplib goroutine must be gone once the server is closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startServer runs a hub and an RTSP server on loopback with free TCP and UDP ports.
func startServer(t *testing.T, edit func(*Config)) (*Server, *hub.Hub) {
	t.Helper()
	logs := testlog.New(t)
	log := logs.Logger()
	h := hub.New(hub.Config{}, log)
	cfg := DefaultConfig()
	cfg.Addr, cfg.UDPRTPAddr, cfg.UDPRTCPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg, h, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, h
}

func streamURL(s *Server, stream string) string { return "rtsp://" + s.Addr().String() + "/" + stream }

// ffmpegArgs publishes the test pattern and a sine over RTSP: H264 (x264 zerolatency, several
// slices per frame) and AAC, for at most 60 s.
func ffmpegArgs(url, transport string) []string {
	return []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", "60", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-f", "rtsp", "-rtsp_transport", transport, url}
}

// publishFFmpeg starts ffmpeg publishing to stream and waits until the hub has it live.
func publishFFmpeg(t *testing.T, s *Server, h *hub.Hub, stream, transport string) *exec.Cmd {
	t.Helper()
	return startFFmpeg(t, h, stream, ffmpegArgs(streamURL(s, stream), transport))
}

// publishFFmpegURL publishes over TCP to url (with a token, say) as stream.
func publishFFmpegURL(t *testing.T, h *hub.Hub, stream, url string) *exec.Cmd {
	t.Helper()
	return startFFmpeg(t, h, stream, ffmpegArgs(url, "tcp"))
}

func startFFmpeg(t *testing.T, h *hub.Hub, stream string, args []string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ffmpeg", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	name := streamname.Name(stream)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if st, err := h.Stream(name); err == nil && st.Live() && st.Tracks()[0].BestLayer() != nil {
			return cmd
		}
		select {
		case <-done:
			t.Fatalf("ffmpeg exited: %s", stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s not live after 15 s; ffmpeg: %s", stream, stderr.String())
		}
	}
}

// probeStream is what ffprobe reports of one stream.
type probeStream struct {
	CodecName    string `json:"codec_name"`
	CodecType    string `json:"codec_type"`
	Width        int    `json:"width"`
	Height       int    `json:"height"`
	ReadFrames   string `json:"nb_read_frames"`
	ReadPackets  string `json:"nb_read_packets"`
	SampleRate   string `json:"sample_rate"`
	ChannelCount int    `json:"channels"`
}

// ffprobe reads url over transport for a few seconds and reports its streams.
func ffprobe(t *testing.T, url, transport string, extra ...string) []probeStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	args := append([]string{"-v", "error", "-rtsp_transport", transport}, extra...)
	args = append(args, "-show_entries", "stream=codec_name,codec_type,width,height,nb_read_frames,nb_read_packets,sample_rate,channels", "-of", "json", url)
	out, err := exec.CommandContext(ctx, "ffprobe", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s over %s: %v\n%s", url, transport, err, out)
	}
	var res struct {
		Streams []probeStream `json:"streams"`
	}
	if err := json.Unmarshal(out[strings.IndexByte(string(out), '{'):], &res); err != nil {
		t.Fatalf("ffprobe output: %v\n%s", err, out)
	}
	return res.Streams
}

// rawRequest sends one RTSP request on a new connection and returns the status line.
func rawRequest(t *testing.T, addr net.Addr, method, url string, headers map[string]string, body string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s RTSP/1.0\r\nCSeq: 1\r\n", method, url)
	for k, v := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	if _, err := c.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("%s %s: no answer: %v", method, url, err)
	}
	return strings.TrimSpace(line)
}
