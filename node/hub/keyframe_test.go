package hub

import (
	"bytes"
	"strings"
	"testing"
)

func TestKeyframeStart(t *testing.T) {
	const (
		h264 = "video/H264"
		h265 = "video/H265"
		vp8  = "video/VP8"
		vp9  = "video/VP9"
		av1  = "video/AV1"
	)
	for _, tc := range []struct {
		name    string
		mime    string
		payload []byte
		want    bool
	}{
		// H.264, RFC 6184.
		{"h264 empty", h264, nil, false},
		{"h264 single IDR", h264, h264IDR, true},
		{"h264 single IDR other NRI", h264, []byte{0x25, 0x88}, true},
		{"h264 single SPS", h264, []byte{0x67, 0x42, 0xe0, 0x1f}, true},
		{"h264 single non-IDR slice", h264, h264Slice, false},
		{"h264 single SEI", h264, []byte{0x06, 0x05, 0x01}, false},
		{"h264 single NAL header only", h264, []byte{0x65}, true},
		{"h264 STAP-A with SPS and PPS", h264, h264STAPAKey, true},
		{"h264 STAP-A SEI then IDR", h264, []byte{0x78, 0x00, 0x02, 0x06, 0x05, 0x00, 0x02, 0x65, 0x88}, true},
		{"h264 STAP-A non-IDR only", h264, []byte{0x78, 0x00, 0x02, 0x41, 0x9a, 0x00, 0x01, 0x41}, false},
		{"h264 STAP-A size beyond payload", h264, []byte{0x78, 0x00, 0x09, 0x67, 0x42}, false},
		{"h264 STAP-A size zero", h264, []byte{0x78, 0x00, 0x00, 0x67}, false},
		{"h264 STAP-A size bytes only", h264, []byte{0x78, 0x00, 0x01}, false},
		{"h264 STAP-A header only", h264, []byte{0x78}, false},
		{"h264 FU-A start of IDR", h264, h264FUAStart, true},
		{"h264 FU-A start of SPS", h264, []byte{0x7c, 0x87, 0x42}, true},
		{"h264 FU-A middle of IDR", h264, h264FUAMiddle, false},
		{"h264 FU-A end of IDR", h264, h264FUAEnd, false},
		{"h264 FU-A start of non-IDR", h264, []byte{0x7c, 0x81, 0x9a}, false},
		{"h264 FU-A header only", h264, []byte{0x7c}, false},
		{"h264 MIME type lower case", "video/h264", h264IDR, true},

		// H.265, RFC 7798: type = (byte0 >> 1) & 0x3f.
		{"h265 empty", h265, nil, false},
		{"h265 one byte", h265, []byte{0x26}, false},
		{"h265 IDR_W_RADL", h265, []byte{19 << 1, 0x01, 0xaf}, true},
		{"h265 IDR_N_LP", h265, []byte{20 << 1, 0x01}, true},
		{"h265 CRA", h265, []byte{21 << 1, 0x01}, true},
		{"h265 BLA_W_LP", h265, []byte{16 << 1, 0x01}, true},
		{"h265 VPS", h265, []byte{32 << 1, 0x01, 0x0c}, true},
		{"h265 SPS", h265, []byte{33 << 1, 0x01, 0x01}, true},
		{"h265 PPS", h265, []byte{34 << 1, 0x01}, false},
		{"h265 TRAIL_R", h265, []byte{1 << 1, 0x01, 0xd0}, false},
		{"h265 reserved IRAP 22", h265, []byte{22 << 1, 0x01}, false},
		{"h265 AP with VPS", h265, []byte{48 << 1, 0x01, 0x00, 0x02, 32 << 1, 0x01}, true},
		{"h265 AP PPS then IDR", h265, []byte{48 << 1, 0x01, 0x00, 0x02, 34 << 1, 0x01, 0x00, 0x02, 19 << 1, 0x01}, true},
		{"h265 AP TRAIL only", h265, []byte{48 << 1, 0x01, 0x00, 0x02, 1 << 1, 0x01}, false},
		{"h265 AP size beyond payload", h265, []byte{48 << 1, 0x01, 0x00, 0x05, 32 << 1, 0x01}, false},
		{"h265 AP size zero", h265, []byte{48 << 1, 0x01, 0x00, 0x00, 32 << 1}, false},
		{"h265 AP header only", h265, []byte{48 << 1, 0x01}, false},
		{"h265 FU start of IDR", h265, []byte{49 << 1, 0x01, 0x80 | 19, 0xaf}, true},
		{"h265 FU start of CRA", h265, []byte{49 << 1, 0x01, 0x80 | 21}, true},
		{"h265 FU middle of IDR", h265, []byte{49 << 1, 0x01, 19, 0xaf}, false},
		{"h265 FU end of IDR", h265, []byte{49 << 1, 0x01, 0x40 | 19}, false},
		{"h265 FU start of TRAIL", h265, []byte{49 << 1, 0x01, 0x80 | 1}, false},
		{"h265 FU without FU header", h265, []byte{49 << 1, 0x01}, false},

		// VP8, RFC 7741. Extension bytes are odd where a misparse would read them as the payload
		// header's P bit.
		{"vp8 empty", vp8, nil, false},
		{"vp8 descriptor only", vp8, []byte{0x10}, false},
		{"vp8 key", vp8, vp8Key, true},
		{"vp8 delta", vp8, vp8Delta, false},
		{"vp8 not start of partition", vp8, []byte{0x00, 0x00}, false},
		{"vp8 start of partition 1", vp8, []byte{0x11, 0x00}, false},
		{"vp8 N bit set key", vp8, []byte{0x30, 0x00}, true},
		{"vp8 X no fields key", vp8, []byte{0x90, 0x00, 0x00}, true},
		{"vp8 X no fields delta", vp8, []byte{0x90, 0x00, 0x01}, false},
		{"vp8 X I 7-bit picture ID key", vp8, []byte{0x90, 0x80, 0x01, 0x00}, true},
		{"vp8 X I 7-bit picture ID delta", vp8, []byte{0x90, 0x80, 0x00, 0x01}, false},
		{"vp8 X I 15-bit picture ID key", vp8, []byte{0x90, 0x80, 0x81, 0x01, 0x00}, true},
		{"vp8 X I 15-bit picture ID delta", vp8, []byte{0x90, 0x80, 0x80, 0x00, 0x01}, false},
		{"vp8 X L key", vp8, []byte{0x90, 0x40, 0x01, 0x00}, true},
		{"vp8 X T key", vp8, []byte{0x90, 0x20, 0x01, 0x00}, true},
		{"vp8 X K key", vp8, []byte{0x90, 0x10, 0x01, 0x00}, true},
		{"vp8 X T and K share a byte", vp8, []byte{0x90, 0x30, 0x01, 0x00}, true},
		{"vp8 X I L T K key", vp8, []byte{0x90, 0xf0, 0x81, 0x01, 0x01, 0x01, 0x00}, true},
		{"vp8 X I L T K delta", vp8, []byte{0x90, 0xf0, 0x80, 0x00, 0x00, 0x00, 0x01}, false},
		{"vp8 X byte missing", vp8, []byte{0x90}, false},
		{"vp8 X picture ID missing", vp8, []byte{0x90, 0x80}, false},
		{"vp8 X 15-bit picture ID truncated", vp8, []byte{0x90, 0x80, 0x81}, false},
		{"vp8 X I L T K no payload", vp8, []byte{0x90, 0xf0, 0x81, 0x00, 0x00, 0x00}, false},

		// VP9: I P L F B E V Z in the first byte.
		{"vp9 empty", vp9, nil, false},
		{"vp9 B no layers", vp9, []byte{0x08, 0x00}, true},
		{"vp9 B E V no layers", vp9, []byte{0x0e}, true},
		{"vp9 inter predicted", vp9, []byte{0x48, 0x00}, false},
		{"vp9 not beginning of frame", vp9, []byte{0x00, 0x00}, false},
		{"vp9 I 7-bit B", vp9, []byte{0x88, 0x05}, true},
		{"vp9 L base spatial layer", vp9, []byte{0x28, 0x00}, true},
		{"vp9 L spatial layer 1", vp9, []byte{0x28, 0x02}, false},
		{"vp9 I 7-bit L base spatial layer", vp9, []byte{0xa8, 0x05, 0x00, 0x00}, true},
		{"vp9 I 7-bit L spatial layer 2", vp9, []byte{0xa8, 0x05, 0x04, 0x00}, false},
		{"vp9 I 15-bit L base spatial layer", vp9, []byte{0xa8, 0x81, 0x02, 0x00, 0x00}, true},
		{"vp9 I 15-bit L spatial layer 1", vp9, []byte{0xa8, 0x80, 0x00, 0x02, 0x00}, false},
		{"vp9 L flexible mode base layer", vp9, []byte{0xb8, 0x05, 0x00}, true},
		{"vp9 L layer byte missing", vp9, []byte{0x28}, false},
		{"vp9 I L picture ID missing", vp9, []byte{0xa8}, false},
		{"vp9 I 15-bit L layer byte missing", vp9, []byte{0xa8, 0x81, 0x02}, false},

		// AV1: Z Y W W N - - - aggregation header.
		{"av1 empty", av1, nil, false},
		{"av1 N", av1, []byte{0x08, 0x0a}, true},
		{"av1 N W=1", av1, []byte{0x18, 0x0a}, true},
		{"av1 W=1", av1, []byte{0x10, 0x32}, false},
		{"av1 Z Y", av1, []byte{0xc0, 0x32}, false},

		// Others.
		{"opus", "audio/opus", opusFrame, true},
		{"opus empty", "audio/opus", nil, true},
		{"pcmu", "audio/PCMU", []byte{0xff}, true},
		{"unknown video codec", "video/unknown", h264IDR, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := bytes.Clone(tc.payload)
			if got := keyframeStart(strings.ToLower(tc.mime), payload); got != tc.want {
				t.Errorf("keyframeStart(%s, % x) = %v, want %v", tc.mime, tc.payload, got, tc.want)
			}
			if !bytes.Equal(payload, tc.payload) {
				t.Errorf("keyframeStart changed the payload: % x, was % x", payload, tc.payload)
			}
		})
	}
}

var fuzzMimeTypes = []string{"video/H264", "video/H265", "video/VP8", "video/VP9", "video/AV1", "audio/opus", "video/unknown"}

// FuzzKeyframeStart feeds publisher-controlled payloads to every codec's parser: none may panic,
// read past the payload or change it.
func FuzzKeyframeStart(f *testing.F) {
	seeds := [][]byte{
		nil, {0x00}, h264IDR, h264Slice, h264STAPAKey, h264FUAStart, h264FUAMiddle,
		{0x78, 0xff, 0xff, 0x67}, {0x78, 0x00, 0x01, 0x65, 0x00},
		{48 << 1, 0x01, 0x00, 0x02, 32 << 1, 0x01}, {49 << 1, 0x01, 0x93},
		vp8Key, {0x90, 0xf0, 0x81, 0x01, 0x01, 0x01, 0x00}, {0x90, 0x80, 0x81},
		{0xa8, 0x81, 0x02, 0x00}, {0xa8}, {0x08}, opusFrame,
	}
	for codec := range fuzzMimeTypes {
		for _, s := range seeds {
			f.Add(uint8(codec), s)
		}
	}
	f.Fuzz(func(t *testing.T, codec uint8, payload []byte) {
		mime := strings.ToLower(fuzzMimeTypes[int(codec)%len(fuzzMimeTypes)])
		// A tight slice: a read past len(payload) panics rather than reading spare capacity.
		payload = payload[:len(payload):len(payload)]
		before := bytes.Clone(payload)
		got := keyframeStart(mime, payload)
		if !bytes.Equal(payload, before) {
			t.Fatalf("keyframeStart(%s) changed the payload", mime)
		}
		if got != keyframeStart(mime, payload) {
			t.Fatalf("keyframeStart(%s, % x) is not deterministic", mime, payload)
		}
		if mime == "audio/opus" && !got {
			t.Fatalf("an audio packet must always count as a start")
		}
		if len(payload) == 0 && got && mime != "audio/opus" && mime != "video/unknown" {
			t.Fatalf("keyframeStart(%s, empty) = true", mime)
		}
	})
}
