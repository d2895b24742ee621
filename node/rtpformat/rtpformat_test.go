package rtpformat

import (
	"errors"
	"strings"
	"testing"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/webrtc/v4"
)

// testSPS is a real H264 SPS (640x360, constrained baseline).
var testSPS = []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48}

func TestRoundTrip(t *testing.T) {
	aac := &format.MPEG4Audio{
		PayloadTyp:       97,
		Config:           &mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 44100, ChannelCount: 2},
		SizeLength:       13,
		IndexLength:      3,
		IndexDeltaLength: 3,
	}
	cases := []struct {
		name string
		f    format.Format
		mime string
	}{
		{"h264", &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: testSPS, PPS: []byte{0x68, 0xce, 0x3c, 0x80}}, MimeH264},
		{"h265", &format.H265{PayloadTyp: 96}, MimeH265},
		{"vp8", &format.VP8{PayloadTyp: 96}, MimeVP8},
		{"vp9", &format.VP9{PayloadTyp: 96}, MimeVP9},
		{"av1", &format.AV1{PayloadTyp: 96}, MimeAV1},
		{"opus", &format.Opus{PayloadTyp: 111, ChannelCount: 2}, MimeOpus},
		{"aac", aac, MimeAAC},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := FromFormat(tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if c.MimeType != tc.mime || c.ClockRate != uint32(tc.f.ClockRate()) {
				t.Fatalf("capability %+v, want %s at %d Hz", c, tc.mime, tc.f.ClockRate())
			}
			back, err := ToFormat(c, tc.f.PayloadType())
			if err != nil {
				t.Fatal(err)
			}
			if back.Codec() != tc.f.Codec() || back.RTPMap() != tc.f.RTPMap() || joinFMTP(back.FMTP()) != joinFMTP(tc.f.FMTP()) {
				t.Fatalf("round trip: %s %s %v, want %s %s %v", back.Codec(), back.RTPMap(), back.FMTP(), tc.f.Codec(), tc.f.RTPMap(), tc.f.FMTP())
			}
		})
	}
}

func TestOpusFromWebRTC(t *testing.T) {
	f, err := ToFormat(webrtc.RTPCodecCapability{MimeType: "audio/opus", ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, 111)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.(*format.Opus); !ok {
		t.Fatalf("got %#v", f)
	}
}

func TestUnsupported(t *testing.T) {
	if _, err := FromFormat(&format.G711{PayloadTyp: 0, MULaw: true, SampleRate: 8000, ChannelCount: 1}); !errors.Is(err, ErrUnsupportedCodec) || !strings.Contains(err.Error(), "G711") {
		t.Fatalf("G711: %v", err)
	}
	for _, c := range []webrtc.RTPCodecCapability{{MimeType: "video/MJPEG", ClockRate: 90000}, {MimeType: "bogus", ClockRate: 1}} {
		if _, err := ToFormat(c, 96); !errors.Is(err, ErrUnsupportedCodec) {
			t.Fatalf("%s: %v", c.MimeType, err)
		}
	}
}
