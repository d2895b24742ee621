package webrtcserver

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Codecs the node passes through without transcoding.
const (
	mimeH264 = "video/H264"
	mimeVP8  = "video/VP8"
	mimeVP9  = "video/VP9"
	mimeAV1  = "video/AV1"
	mimeOpus = "audio/opus"
)

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"},
	{Type: "ccm", Parameter: "fir"},
	{Type: "nack"},
	{Type: "nack", Parameter: "pli"},
}

// supportedCodecs are registered in both media engines. H264 is registered once per profile so
// the answer keeps the publisher's profile; the RTP passes through untouched either way.
func supportedCodecs(withTWCC bool) []webrtc.RTPCodecParameters {
	fb := videoFeedback
	if withTWCC {
		fb = append(append([]webrtc.RTCPFeedback{}, videoFeedback...), webrtc.RTCPFeedback{Type: "transport-cc"})
	}
	video := func(pt uint8, mime, fmtp string) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: fb},
			PayloadType:        webrtc.PayloadType(pt),
		}
	}
	h264 := func(pt uint8, profile string) webrtc.RTPCodecParameters {
		return video(pt, mimeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id="+profile)
	}
	opusFB := []webrtc.RTCPFeedback(nil)
	if withTWCC {
		opusFB = []webrtc.RTCPFeedback{{Type: "transport-cc"}}
	}
	return []webrtc.RTPCodecParameters{
		video(96, mimeVP8, ""),
		h264(102, "42001f"),
		h264(104, "42e01f"),
		h264(106, "4d001f"),
		h264(108, "64001f"),
		video(98, mimeVP9, "profile-id=0"),
		video(100, mimeVP9, "profile-id=2"),
		video(45, mimeAV1, ""),
		{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1", RTCPFeedback: opusFB},
			PayloadType:        111,
		},
	}
}

// sendable reports whether a WebRTC viewer can be sent a track of codec c.
func sendable(c webrtc.RTPCodecCapability) bool {
	switch strings.ToLower(c.MimeType) {
	case strings.ToLower(mimeH264), strings.ToLower(mimeVP8), strings.ToLower(mimeVP9), strings.ToLower(mimeAV1), mimeOpus:
		return true
	}
	return false
}

func registerCodecs(m *webrtc.MediaEngine, withTWCC bool) error {
	for _, c := range supportedCodecs(withTWCC) {
		kind := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(c.MimeType, "audio/") {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := m.RegisterCodec(c, kind); err != nil {
			return fmt.Errorf("register codec %s: %w", c.MimeType, err)
		}
	}
	return nil
}

// offeredMedia is one m-line of a publisher's offer with the codec the node will take from it.
type offeredMedia struct {
	mid   string
	kind  string
	codec webrtc.RTPCodecParameters // with the offer's payload type
	ok    bool
}

// chooseCodecs picks, for every audio and video m-line of an offer, the first codec in the
// offerer's order that the node can pass through.
func chooseCodecs(desc *sdp.SessionDescription) []offeredMedia {
	out := make([]offeredMedia, 0, len(desc.MediaDescriptions))
	for _, md := range desc.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != "audio" && kind != "video" {
			continue
		}
		m := offeredMedia{kind: kind}
		m.mid, _ = md.Attribute(sdp.AttrKeyMID)
		for _, f := range md.MediaName.Formats {
			pt, err := strconv.ParseUint(f, 10, 8)
			if err != nil {
				continue
			}
			c, err := desc.GetCodecForPayloadType(uint8(pt))
			if err != nil {
				continue
			}
			if cap, ok := passThrough(kind, c); ok {
				m.codec = webrtc.RTPCodecParameters{RTPCodecCapability: cap, PayloadType: webrtc.PayloadType(pt)}
				m.ok = true
				break
			}
		}
		out = append(out, m)
	}
	return out
}

// passThrough reports whether an offered codec can be passed through, and describes it.
func passThrough(kind string, c sdp.Codec) (webrtc.RTPCodecCapability, bool) {
	name := strings.ToLower(c.Name)
	fmtp := fmtpMap(c.Fmtp)
	capOf := func(mime string) webrtc.RTPCodecCapability {
		return webrtc.RTPCodecCapability{MimeType: mime, ClockRate: c.ClockRate, SDPFmtpLine: c.Fmtp}
	}
	switch {
	case kind == "audio" && name == "opus" && c.ClockRate == 48000:
		cp := capOf(mimeOpus)
		cp.Channels = 2
		return cp, true
	case kind != "video" || c.ClockRate != 90000:
		return webrtc.RTPCodecCapability{}, false
	case name == "vp8":
		return capOf(mimeVP8), true
	case name == "vp9" && (fmtp["profile-id"] == "" || fmtp["profile-id"] == "0" || fmtp["profile-id"] == "2"):
		return capOf(mimeVP9), true
	case name == "av1" && (fmtp["profile"] == "" || fmtp["profile"] == "0"):
		return capOf(mimeAV1), true
	case name == "h264" && fmtp["packetization-mode"] == "1":
		switch p := strings.ToLower(fmtp["profile-level-id"]); {
		case len(p) != 6:
			return webrtc.RTPCodecCapability{}, false
		case p[:2] == "42", p[:2] == "4d", p[:2] == "64":
			return capOf(mimeH264), true
		}
	}
	return webrtc.RTPCodecCapability{}, false
}

func fmtpMap(line string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k != "" {
			m[strings.ToLower(k)] = v
		}
	}
	return m
}
