package srtserver

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	srt "github.com/datarhei/gosrt"

	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/internal/testlog"
	"github.com/streamfleet/streamfleet/node/hub"
)

// startServer runs a hub and an SRT server on a free port of 127.0.0.1.
func startServer(t *testing.T, configure func(*Config)) (*Server, *hub.Hub, *testlog.Writer) {
	t.Helper()
	logs := testlog.New(t)
	log := logs.Logger()
	h := hub.New(hub.Config{Grace: 0}, log)
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.ProbeTimeout = 3 * time.Second
	cfg.InputTimeout = 3 * time.Second
	if configure != nil {
		configure(&cfg)
	}
	s, err := New(cfg, h, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		h.Close()
	})
	return s, h, logs
}

func srtURL(s *Server, query string) string {
	return fmt.Sprintf("srt://%s?%s", s.Addr().String(), query)
}

// ffmpegPublish starts ffmpeg publishing a test pattern and a sine over SRT; it is killed at the
// end of the test. extra replaces the default video encoding arguments when given.
func ffmpegPublish(t *testing.T, url string, videoArgs ...string) *exec.Cmd {
	t.Helper()
	if len(videoArgs) == 0 {
		videoArgs = []string{"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p"}
	}
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=640x360:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"}
	args = append(args, videoArgs...)
	args = append(args, "-c:a", "aac", "-f", "mpegts", url)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	cmd.Stderr = &prefixWriter{t: t, prefix: "ffmpeg: "}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start ffmpeg: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	return cmd
}

type prefixWriter struct {
	t      *testing.T
	prefix string
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.t.Log(w.prefix + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitStream waits until name is live on h with at least packets packets on its first track.
func waitStream(t *testing.T, h *hub.Hub, name string, packets uint64, timeout time.Duration) *hub.Stream {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if st, err := h.Stream(streamname.Name(name)); err == nil && st.Live() && streamPackets(st) >= packets {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("stream %s not live with %d packets after %s", name, packets, timeout)
	return nil
}

// streamPackets is the number of packets published on every track of st.
func streamPackets(st *hub.Stream) uint64 {
	var n uint64
	for _, tr := range st.Tracks() {
		for _, l := range tr.Layers() {
			n += l.Stats().Packets
		}
	}
	return n
}

// dial connects a gosrt caller with the given streamid (and passphrase).
func dial(s *Server, streamID, passphrase string) (srt.Conn, error) {
	conf := srt.DefaultConfig()
	conf.StreamId = streamID
	conf.Passphrase = passphrase
	conf.ConnectionTimeout = 3 * time.Second
	return srt.Dial("srt", s.Addr().String(), conf)
}

// readTS reads from an SRT reader for d and returns the bytes.
func readTS(t *testing.T, c srt.Conn, d time.Duration) []byte {
	t.Helper()
	var out []byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if err != io.EOF {
					t.Logf("read: %v", err)
				}
				return
			}
			out = append(out, buf[:n]...)
		}
	}()
	time.Sleep(d)
	c.Close()
	<-done
	return out
}
