package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"

	"github.com/streamfleet/streamfleet/internal/browser"
	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/internal/rtctest"
	"github.com/streamfleet/streamfleet/node"
)

// startFFmpegSRT publishes lavfi testsrc + sine (libx264 zerolatency, AAC) to the node over SRT.
func startFFmpegSRT(t *testing.T, n *node.Node, stream string) {
	t.Helper()
	url := fmt.Sprintf("srt://%s?mode=caller&latency=120000&streamid=publish:%s", n.SRTAddr(), stream)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-f", "mpegts", url)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("ffmpeg: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
}

// TestSRTPublishWatchWHEP: ffmpeg publishes over SRT; Chromium plays the stream over WHEP on the
// watch page, decoding video and (through the AAC-to-Opus transcoder) audio.
func TestSRTPublishWatchWHEP(t *testing.T) {
	b := browser.New(t.Context(), t)
	n := nodetest.Start(t, nil)
	startFFmpegSRT(t, n, "live/srt-e2e")
	deadline := time.Now().Add(15 * time.Second)
	for {
		if st, err := n.Hub().Stream("live/srt-e2e"); err == nil && st.Live() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("SRT stream not live")
		}
		time.Sleep(100 * time.Millisecond)
	}
	watch, err := b.Open(pageURL(n, "watch", map[string]string{"stream": "live/srt-e2e", "auto": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	waitFor(t, watch, `sf.state === 'connected' && sf.stats.framesDecoded > 30`, 25*time.Second)
	first := readSF(t, watch).Stats["framesDecoded"].(float64)
	waitFor(t, watch, fmt.Sprintf(`sf.stats.framesDecoded > %v + 30`, first), 10*time.Second)
	waitFor(t, watch, `sf.stats.totalSamplesReceived > 0`, 20*time.Second)
	st := readSF(t, watch)
	if got := st.Stats["videoCodec"]; got != "video/H264" {
		t.Errorf("viewer receives %v, want video/H264", got)
	}
	if w, _ := st.Stats["frameWidth"].(float64); w != 640 {
		t.Errorf("frame width %v, want 640", st.Stats["frameWidth"])
	}
	// SRT delivers whole frames: their packets reach the viewer in UDP GSO messages, which
	// Chromium has just decoded.
	if ws := n.WebRTC().Stats(); ws.GSOMessages.Load() == 0 || ws.GSODisabled.Load() != 0 {
		t.Errorf("%d GSO messages, GSO refused %d times; want some, and none refused", ws.GSOMessages.Load(), ws.GSODisabled.Load())
	}
}

// h264AccessUnits encodes seconds of the test pattern with x264 (baseline, an AUD per frame) and
// returns its access units.
func h264AccessUnits(t *testing.T, seconds int) [][][]byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v.h264")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30",
		"-t", strconv.Itoa(seconds), "-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-tune", "zerolatency",
		"-g", "30", "-pix_fmt", "yuv420p", "-x264-params", "aud=1", "-f", "h264", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var nalus [][]byte // split on start codes (AnnexB.Unmarshal caps the count per call)
	for _, part := range bytes.Split(data, []byte{0, 0, 1}) {
		part = bytes.TrimRight(part, "\x00")
		if len(part) > 0 {
			nalus = append(nalus, part)
		}
	}
	var aus [][][]byte
	for _, nalu := range nalus {
		if h264.NALUType(nalu[0]&0x1f) == h264.NALUTypeAccessUnitDelimiter {
			aus = append(aus, nil)
			continue
		}
		if len(aus) == 0 {
			aus = append(aus, nil)
		}
		aus[len(aus)-1] = append(aus[len(aus)-1], nalu)
	}
	return aus
}

// publishWHIP publishes a real H264 bitstream at 30 fps and Opus frames every 20 ms over WHIP until
// the test ends.
func publishWHIP(t *testing.T, n *node.Node, stream string) {
	t.Helper()
	aus := h264AccessUnits(t, 2)
	api, err := rtctest.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pub, err := rtctest.Publish(ctx, api, n.HTTPURL()+"/whip/"+stream, "", rtctest.H264, rtctest.Opus)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := rtctest.WaitConnected(ctx, pub.PC); err != nil {
		cancel()
		t.Fatal(err)
	}
	enc, err := (&format.H264{PayloadTyp: 96, PacketizationMode: 1}).CreateEncoder()
	if err != nil {
		t.Fatal(err)
	}
	enc.PayloadMaxSize = 1100
	done := make(chan struct{})
	go func() {
		defer close(done)
		video := time.NewTicker(time.Second / 30)
		audio := time.NewTicker(20 * time.Millisecond)
		defer video.Stop()
		defer audio.Stop()
		var frame, samples uint32
		opusSeq := uint16(0)
		for {
			select {
			case <-ctx.Done():
				return
			case <-video.C:
				pkts, err := enc.Encode(aus[int(frame)%len(aus)])
				if err != nil {
					continue
				}
				for _, p := range pkts {
					p.Timestamp = frame * 3000
					_ = pub.Tracks[0].WriteRTP(p)
				}
				frame++
			case <-audio.C:
				p := &rtpPacket{seq: opusSeq, ts: samples}
				_ = pub.Tracks[1].WriteRTP(p.rtp())
				opusSeq++
				samples += 960
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		pub.Close()
	})
}

type probeResult struct {
	Streams []struct {
		CodecName string `json:"codec_name"`
		Width     int    `json:"width"`
		Height    int    `json:"height"`
		Packets   string `json:"nb_read_packets"`
	} `json:"streams"`
}

// TestWHIPReadOverSRT: a WHIP publisher's H264 + Opus stream read back over SRT by ffprobe (codecs,
// dimensions, a steady frame count) and by srt-live-transmit (valid MPEG-TS).
func TestWHIPReadOverSRT(t *testing.T) {
	n := nodetest.Start(t, nil)
	publishWHIP(t, n, "live/whip-srt")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := n.Hub().Stream("live/whip-srt"); err == nil && st.Live() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("WHIP stream not live")
		}
		time.Sleep(50 * time.Millisecond)
	}
	readURL := fmt.Sprintf("srt://%s?streamid=read:live/whip-srt", n.SRTAddr())

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-read_intervals", "%+4", "-count_packets",
		"-show_entries", "stream=codec_name,width,height,nb_read_packets", "-of", "json", readURL).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v: %s", err, out)
	}
	var p probeResult
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	var codecs []string
	for _, s := range p.Streams {
		codecs = append(codecs, s.CodecName)
		if s.CodecName == "h264" {
			if s.Width != 640 || s.Height != 360 {
				t.Errorf("h264 %dx%d, want 640x360", s.Width, s.Height)
			}
			if f, _ := strconv.Atoi(s.Packets); f < 60 {
				t.Errorf("%d frames in 4 s at 30 fps", f)
			}
		}
	}
	sort.Strings(codecs)
	if strings.Join(codecs, "+") != "h264+opus" {
		t.Fatalf("codecs %v, want h264 + opus (%s)", codecs, out)
	}

	// srt-live-transmit writes what it reads to stdout: whole TS packets, sync byte every 188.
	slt := exec.CommandContext(ctx, "srt-live-transmit", readURL, "file://con")
	var ts bytes.Buffer
	slt.Stdout = &ts
	if err := slt.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	_ = slt.Process.Kill()
	_ = slt.Wait()
	data := ts.Bytes()
	if len(data) < 188*100 {
		t.Fatalf("srt-live-transmit read %d bytes", len(data))
	}
	for i := 0; i+188 <= len(data); i += 188 {
		if data[i] != 0x47 {
			t.Fatalf("byte %d of %d is %#x, not a sync byte", i, len(data), data[i])
		}
	}
}

// rtpPacket builds the Opus packets of the WHIP publisher: a 20 ms silent frame.
type rtpPacket struct {
	seq uint16
	ts  uint32
}

func (p *rtpPacket) rtp() *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: p.seq, Timestamp: p.ts, Marker: true},
		Payload: []byte{0xf8, 0xff, 0xfe}}
}
