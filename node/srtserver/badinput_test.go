package srtserver

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/mpegts"
)

const (
	testPassphrase = "correct horse battery"
	testPubToken   = "pub-secret"
	testPlayToken  = "play-secret"
)

// tsSample encodes a second of the test pattern to MPEG-TS with ffmpeg.
func tsSample(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sample.ts")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc=size=320x180:rate=30", "-f", "lavfi", "-i", "sine",
		"-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15",
		"-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg sample: %v: %s", err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestBadInput refuses each bad caller for itself while a good publisher keeps flowing: a garbage
// or missing streamid, an invalid name, a missing or wrong passphrase, a missing or wrong token, a
// publish to a live stream, a read of an unknown stream, truncated and corrupt MPEG-TS, and an
// input with no supported codec.
func TestBadInput(t *testing.T) {
	s, h, logs := startServer(t, func(c *Config) {
		c.Passphrase = testPassphrase
		c.PublishToken, c.PlayToken = testPubToken, testPlayToken
	})
	good := "#!::r=live/good,m=publish,t=" + testPubToken
	ffmpegPublish(t, srtURL(s, "mode=caller&latency=120000&passphrase="+url.QueryEscape(testPassphrase)+"&streamid="+good))
	st := waitStream(t, h, "live/good", 100, 15*time.Second)

	// flowing checks that the good publisher's packet count still grows.
	flowing := func(t *testing.T) {
		t.Helper()
		before := streamPackets(st)
		deadline := time.Now().Add(3 * time.Second)
		for streamPackets(st) <= before+20 {
			if time.Now().After(deadline) || !st.Live() {
				t.Fatalf("the good publisher stopped flowing (%d packets, live %v)", streamPackets(st), st.Live())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	refused := []struct {
		name, streamID, passphrase, reason string
	}{
		{"garbage streamid", "#!::r=live/y,garbage", testPassphrase, RejectStreamID},
		{"missing streamid", "", testPassphrase, RejectStreamID},
		{"bad mode", "#!::r=live/y,m=bidirectional", testPassphrase, RejectStreamID},
		{"invalid name", "publish:live/bad name!", testPassphrase, RejectStreamID},
		{"no passphrase", "#!::r=live/y,m=publish,t=" + testPubToken, "", RejectEncryption},
		{"wrong passphrase", "#!::r=live/y,m=publish,t=" + testPubToken, "wrong passphrase!", RejectEncryption},
		{"missing token", "publish:live/y", testPassphrase, RejectToken},
		{"wrong token", "#!::r=live/y,m=publish,t=nope", testPassphrase, RejectToken},
		{"play token to publish", "#!::r=live/y,m=publish,t=" + testPlayToken, testPassphrase, RejectToken},
		{"publish to a live stream", good, testPassphrase, RejectBusy},
		{"read an unknown stream", "#!::r=live/none,t=" + testPlayToken, testPassphrase, RejectNotFound},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Stats().Rejected(tt.reason)
			c, err := dial(s, tt.streamID, tt.passphrase)
			if err == nil {
				c.Close()
				t.Fatal("connection accepted")
			}
			if got := s.Stats().Rejected(tt.reason); got != before+1 {
				t.Errorf("rejected[%s] = %d, want %d (%v)", tt.reason, got, before+1, err)
			}
			flowing(t)
		})
	}
	if strings.Contains(logs.String(), testPubToken) || strings.Contains(logs.String(), testPassphrase) {
		t.Error("a token or the passphrase was logged")
	}

	sample := tsSample(t)
	inputs := []struct {
		name string
		data func() []byte
	}{
		{"random bytes", func() []byte {
			b := make([]byte, 300*1316)
			for i := range b {
				b[i] = byte(rand.IntN(256))
			}
			return b
		}},
		{"truncated packets", func() []byte {
			var b []byte
			for i := 0; i+188 <= len(sample); i += 188 {
				b = append(b, sample[i:i+100]...) // every packet cut short
			}
			return b
		}},
		{"corrupt packets", func() []byte {
			b := append([]byte(nil), sample...)
			for i := 0; i < len(b)/50; i++ {
				b[rand.IntN(len(b))] = byte(rand.IntN(256))
			}
			return b
		}},
		{"cut after the tables", func() []byte { return sample[:188*4] }},
	}
	for i, tt := range inputs {
		t.Run(tt.name, func(t *testing.T) {
			name := "live/bad" + string(rune('a'+i))
			c, err := dial(s, "#!::m=publish,r="+name+",t="+testPubToken, testPassphrase)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			data := tt.data()
			for off := 0; off < len(data); off += 1316 {
				if _, err := c.Write(data[off:min(off+1316, len(data))]); err != nil {
					break
				}
				if off/1316%50 == 49 {
					time.Sleep(10 * time.Millisecond) // stay within the send queue
				}
			}
			flowing(t)
			// Without valid media the session ends within the input timeout (3 s here).
			deadline := time.Now().Add(10 * time.Second)
			for s.Stats().PublishSessions.Load() > 1 {
				if time.Now().After(deadline) {
					t.Fatalf("%d publish sessions open, want the bad one gone", s.Stats().PublishSessions.Load())
				}
				time.Sleep(50 * time.Millisecond)
			}
			c.Close()
			flowing(t)
		})
	}
	if s.Stats().TS.TSErrors.Load() == 0 {
		t.Error("no MPEG-TS errors counted")
	}

	t.Run("no supported codec", func(t *testing.T) {
		ffmpegUnsupported(t, srtURL(s, "mode=caller&latency=120000&passphrase="+url.QueryEscape(testPassphrase)+
			"&streamid=#!::r=live/mpeg2,m=publish,t="+testPubToken))
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(logs.String(), mpegts.ErrNoSupportedTrack.Error()) {
			if time.Now().After(deadline) {
				t.Fatal("no log line refusing the MPEG-2 input")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := h.Stream(streamname.Name("live/mpeg2")); !errors.Is(err, hub.ErrStreamNotFound) {
			t.Errorf("MPEG-2 stream exists: %v", err)
		}
		flowing(t)
	})
}

// ffmpegUnsupported publishes MPEG-2 video and MP2 audio, neither of which a node takes.
func ffmpegUnsupported(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x180:rate=30", "-f", "lavfi", "-i", "sine",
		"-c:v", "mpeg2video", "-c:a", "mp2", "-f", "mpegts", url)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
}
