package cascade

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// sdpOf builds an all-layers session description from m-sections.
func sdpOf(medias ...string) []byte {
	return []byte("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=live/x\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n" + strings.Join(medias, ""))
}

func video(pt, mid, rtpmap, fmtp string) string {
	s := "m=video 0 RTP/AVP " + pt + "\r\na=mid:" + mid + "\r\na=control:trackID=0\r\na=rtpmap:" + pt + " " + rtpmap + "\r\n"
	if fmtp != "" {
		s += "a=fmtp:" + pt + " " + fmtp + "\r\n"
	}
	return s
}

func audio(pt, mid string) string {
	return "m=audio 0 RTP/AVP " + pt + "\r\na=mid:" + mid + "\r\na=rtpmap:" + pt + " opus/48000/2\r\na=fmtp:" + pt + " minptime=10; useinbandfec=1\r\n"
}

const h264fmtp = "level-asymmetry-allowed=1; packetization-mode=1; profile-level-id=42e01f"

func TestPlanPull(t *testing.T) {
	plan, err := planPull(sdpOf(
		video("96", "t0rh", "H264/90000", h264fmtp),
		video("97", "t0rm", "H264/90000", h264fmtp),
		video("98", "t0x6c2d31", "H264/90000", h264fmtp), // RID "l-1"
		audio("99", "t1r"),
	))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.specs) != 2 || len(plan.layers) != 4 {
		t.Fatalf("plan %+v", plan)
	}
	// The fmtp comes through whole (WebRTC viewers need profile-level-id), in a stable order.
	if got := plan.specs[0].Codec.SDPFmtpLine; got != "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f" {
		t.Fatalf("H264 fmtp %q", got)
	}
	if c := plan.specs[1].Codec; c.MimeType != "audio/opus" || c.ClockRate != 48000 || c.Channels != 2 || c.SDPFmtpLine != "minptime=10;useinbandfec=1" {
		t.Fatalf("opus %+v", c)
	}
	want := []layerPlan{{0, "h", true}, {0, "m", true}, {0, "l-1", true}, {1, "", false}}
	for i, l := range plan.layers {
		if l != want[i] {
			t.Fatalf("layer %d: %+v, want %+v", i, l, want[i])
		}
	}
}

func TestPlanPullRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		sdp  []byte
	}{
		{"garbage", []byte("not sdp")},
		{"no media", sdpOf()},
		{"no mid", sdpOf("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")},
		{"bad mid", sdpOf(video("96", "track0", "H264/90000", ""))},
		{"track hole", sdpOf(video("96", "t1r", "H264/90000", ""))},
		{"track out of range", sdpOf(video("96", "t9r", "H264/90000", ""))},
		{"layer twice", sdpOf(video("96", "t0rh", "VP8/90000", ""), video("97", "t0rh", "VP8/90000", ""))},
		{"two codecs in a track", sdpOf(video("96", "t0rh", "VP8/90000", ""), video("97", "t0rm", "H264/90000", ""))},
		{"unknown codec", sdpOf(video("96", "t0r", "MP4V-ES/90000", ""))},
		{"kind mismatch", sdpOf("m=video 0 RTP/AVP 96\r\na=mid:t0r\r\na=rtpmap:96 opus/48000/2\r\n")},
		{"no rtpmap", sdpOf("m=video 0 RTP/AVP 96\r\na=mid:t0r\r\n")},
		{"bad payload type", sdpOf("m=video 0 RTP/AVP 300\r\na=mid:t0r\r\na=rtpmap:300 VP8/90000\r\n")},
		{"too big", append(sdpOf(video("96", "t0r", "VP8/90000", "")), make([]byte, maxSDPSize)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := planPull(tc.sdp); !errors.Is(err, ErrBadSession) {
				t.Fatalf("got %v, want ErrBadSession", err)
			}
		})
	}
	var many []string
	for i := range 9 {
		many = append(many, video("96", "t0r"+string(rune('a'+i)), "VP8/90000", ""))
	}
	if _, err := planPull(sdpOf(many...)); !errors.Is(err, ErrBadSession) {
		t.Fatalf("nine layers: %v", err)
	}
}

// FuzzPlanPull feeds arbitrary session descriptions (what an upstream, or something posing as
// one, answers) to the planner: it must never panic, and what it accepts is within the hub's limits.
func FuzzPlanPull(f *testing.F) {
	f.Add(sdpOf(video("96", "t0rh", "H264/90000", h264fmtp), video("97", "t0rl", "H264/90000", h264fmtp), audio("111", "t1r")))
	f.Add(sdpOf(video("96", "t0x00ff", "VP8/90000", "")))
	f.Add(sdpOf("m=audio 0 RTP/AVP 97\r\na=mid:t0r\r\na=rtpmap:97 mpeg4-generic/48000/2\r\na=fmtp:97 config=1190;mode=AAC-hbr;sizelength=13\r\n"))
	f.Add([]byte("v=0\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		plan, err := planPull(body)
		if err != nil {
			return
		}
		if len(plan.specs) == 0 || len(plan.specs) > 8 || len(plan.layers) == 0 {
			t.Fatalf("accepted plan out of limits: %+v", plan)
		}
		for _, l := range plan.layers {
			if l.track < 0 || l.track >= len(plan.specs) {
				t.Fatalf("layer of track %d of %d", l.track, len(plan.specs))
			}
		}
	})
}

func TestParseUpstream(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"rtsp://10.0.0.5:8554", "10.0.0.5:8554"},
		{"rtsp://10.0.0.5:8554/", "10.0.0.5:8554"},
		{"10.0.0.5:9554", "10.0.0.5:9554"},
		{"relay-1.internal", "relay-1.internal:8554"},
		{"rtsp://relay-1", "relay-1:8554"},
		{"[::1]:8554", "[::1]:8554"},
		{"[::1]", "[::1]:8554"},
		{" 127.0.0.1:1 ", "127.0.0.1:1"},
	} {
		if got, err := ParseUpstream(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseUpstream(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "http://x:80", "rtsp://x:80/live", "x:0", "x:99999", "x:port", "user@x:1", ":8554", "rtsp://"} {
		if got, err := ParseUpstream(bad); !errors.Is(err, ErrBadUpstream) {
			t.Errorf("ParseUpstream(%q) = %q, %v; want ErrBadUpstream", bad, got, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Upstreams = []string{"127.0.0.1:8554"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*Config){
		"no upstream":  func(c *Config) { c.Upstreams = nil },
		"bad upstream": func(c *Config) { c.Upstreams = []string{"http://x"} },
		"no linger":    func(c *Config) { c.Linger = 0 },
		"no stall":     func(c *Config) { c.StallTimeout = 0 },
		"backoff":      func(c *Config) { c.MaxBackoff = time.Millisecond },
	} {
		c := ok
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
