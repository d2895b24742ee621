package mpegts

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/node/hub"
)

// nopCloser makes a bytes.Reader an io.ReadCloser.
type nopCloser struct{ io.Reader }

func (nopCloser) Close() error { return nil }

// sampleTS encodes a short H264 + AAC test pattern with ffmpeg.
func sampleTS(t testing.TB, args ...string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.ts")
	cmd := []string{"-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x90:rate=30",
		"-f", "lavfi", "-i", "sine", "-t", "1"}
	cmd = append(cmd, args...)
	cmd = append(cmd, "-f", "mpegts", path)
	if out, err := exec.Command("ffmpeg", cmd...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ingestBytes(t testing.TB, data []byte) (*hub.Hub, error) {
	h := hub.New(hub.Config{}, nil)
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := Ingest(ctx, h, nopCloser{bytes.NewReader(data)}, IngestConfig{Name: "live/fuzz", ProbeTimeout: time.Second, InputTimeout: time.Second})
	return h, err
}

// TestIngestSample publishes a real ffmpeg capture and checks the tracks the hub gets.
func TestIngestSample(t *testing.T) {
	data := sampleTS(t, "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-c:a", "aac")
	h := hub.New(hub.Config{Grace: time.Minute}, nil)
	defer h.Close()
	if err := Ingest(context.Background(), h, nopCloser{bytes.NewReader(data)}, IngestConfig{Name: "live/s"}); err != nil {
		t.Fatal(err)
	}
	st, err := h.Stream("live/s")
	if err != nil {
		t.Fatal(err)
	}
	var mimes []string
	for _, tr := range st.Tracks() {
		mimes = append(mimes, tr.Codec().MimeType)
		if tr.Source() == nil && tr.Layers()[0].Stats().Packets == 0 {
			t.Errorf("track %s got no packets", tr.Codec().MimeType)
		}
	}
	// H264, AAC, and the hub's derived Opus beside the AAC.
	if len(mimes) != 3 || mimes[0] != "video/H264" || mimes[1] != "audio/mpeg4-generic" || mimes[2] != "audio/opus" {
		t.Fatalf("tracks %v", mimes)
	}
	if f := st.Tracks()[0].Codec().SDPFmtpLine; !bytes.Contains([]byte(f), []byte("packetization-mode=1;profile-level-id=")) {
		t.Errorf("H264 fmtp %q", f)
	}
}

// TestIngestBFrames refuses video with B-frames.
func TestIngestBFrames(t *testing.T) {
	data := sampleTS(t, "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-pix_fmt", "yuv420p", "-c:a", "aac")
	var stats Stats
	h := hub.New(hub.Config{}, nil)
	defer h.Close()
	err := Ingest(context.Background(), h, nopCloser{bytes.NewReader(data)}, IngestConfig{Name: "live/b", Stats: &stats})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(ErrBFrames.Error())) {
		t.Fatalf("err = %v, want %v", err, ErrBFrames)
	}
	if stats.BFrameRefusals.Load() != 1 {
		t.Errorf("B-frame refusals %d", stats.BFrameRefusals.Load())
	}
}

// FuzzIngest feeds arbitrary bytes through the demuxer into a hub: it must never panic.
func FuzzIngest(f *testing.F) {
	sample := sampleTS(f, "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-c:a", "aac")
	f.Add(sample[:min(len(sample), 188*40)])
	f.Add(sample[188*3 : min(len(sample), 188*30)])
	f.Add([]byte{0x47, 0x40, 0x00, 0x10, 0x00})
	f.Add(bytes.Repeat([]byte{0x47}, 188*3))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ingestBytes(t, data)
	})
}
