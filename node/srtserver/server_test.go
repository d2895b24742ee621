package srtserver

import (
	"context"
	"encoding/json"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// probed is what ffprobe reports of a stream read for a few seconds.
type probed struct {
	Streams []struct {
		CodecName string `json:"codec_name"`
		CodecType string `json:"codec_type"`
		Width     int    `json:"width"`
		Height    int    `json:"height"`
		Packets   string `json:"nb_read_packets"`
	} `json:"streams"`
}

func (p probed) codecs() string {
	var c []string
	for _, s := range p.Streams {
		c = append(c, s.CodecName)
	}
	sort.Strings(c)
	return strings.Join(c, "+")
}

// ffprobe reads url for seconds and reports its streams with their packet counts.
func ffprobe(t *testing.T, url string, seconds int) probed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+20)*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-analyzeduration", "3000000",
		"-read_intervals", "%+"+strconv.Itoa(seconds), "-count_packets",
		"-show_entries", "stream=codec_name,codec_type,width,height,nb_read_packets", "-of", "json", url).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v (%s)", url, err, out)
	}
	var p probed
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("ffprobe output: %v: %s", err, out)
	}
	return p
}

// TestSRTInSRTOut: ffmpeg publishes H264 + AAC over SRT; ffprobe reads the stream back over SRT and
// finds both codecs, the dimensions and a steady frame count.
func TestSRTInSRTOut(t *testing.T) {
	s, h, _ := startServer(t, nil)
	ffmpegPublish(t, srtURL(s, "mode=caller&latency=120000&streamid=publish:live/x"))
	waitStream(t, h, "live/x", 100, 15*time.Second)

	p := ffprobe(t, srtURL(s, "latency=120000&streamid=read:live/x"), 4)
	if got := p.codecs(); got != "aac+h264" {
		t.Fatalf("codecs over SRT = %s, want aac+h264 (%+v)", got, p)
	}
	for _, st := range p.Streams {
		if st.CodecType == "video" {
			if st.Width != 640 || st.Height != 360 {
				t.Errorf("video %dx%d, want 640x360", st.Width, st.Height)
			}
			// 4 s at 30 fps from a keyframe; allow for the start and ffprobe's own timing.
			if n := atoi(st.Packets); n < 60 {
				t.Errorf("%d video frames in 4 s, want at least 60", n)
			}
		}
		if st.CodecType == "audio" && atoi(st.Packets) < 60 {
			t.Errorf("%s audio packets in 4 s", st.Packets)
		}
	}
	if n := s.Stats().TS.MuxersRunning.Load(); n != 0 {
		// ffprobe has gone; the muxer stops with its last reader.
		time.Sleep(500 * time.Millisecond)
		if n = s.Stats().TS.MuxersRunning.Load(); n != 0 {
			t.Errorf("%d muxers running after the last reader left", n)
		}
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
