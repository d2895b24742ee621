// Package rtpformat maps the hub's track codecs (WebRTC codec capabilities, as WHIP negotiates
// them) to and from the RTP formats of gortsplib, which the RTSP server, the MPEG-TS conversion of
// SRT and the transcoder speak. Both sides describe a codec by its SDP rtpmap and fmtp, so the
// mapping goes through those and loses nothing.
package rtpformat

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// MIME types of the codecs a stream may carry.
const (
	MimeH264 = "video/H264"
	MimeH265 = "video/H265"
	MimeVP8  = "video/VP8"
	MimeVP9  = "video/VP9"
	MimeAV1  = "video/AV1"
	MimeOpus = "audio/opus"
	// MimeAAC is MPEG-4 audio (AAC) in RFC 3640 packets, as RTSP carries it.
	MimeAAC = "audio/mpeg4-generic"
)

// ErrUnsupportedCodec is returned for a codec no stream may carry.
var ErrUnsupportedCodec = errors.New("unsupported codec")

// subtypes maps the lower-case rtpmap encoding name to the MIME type of each supported codec.
var subtypes = map[string]string{
	"h264":          MimeH264,
	"h265":          MimeH265,
	"vp8":           MimeVP8,
	"vp9":           MimeVP9,
	"av1":           MimeAV1,
	"opus":          MimeOpus,
	"mpeg4-generic": MimeAAC,
}

// FromFormat returns the codec capability of a gortsplib format.
func FromFormat(f format.Format) (webrtc.RTPCodecCapability, error) {
	rtpMap := f.RTPMap()
	parts := strings.Split(rtpMap, "/")
	mime, ok := subtypes[strings.ToLower(parts[0])]
	if !ok || len(parts) < 2 {
		name := f.Codec()
		if rtpMap != "" {
			name += " (" + rtpMap + ")"
		}
		return webrtc.RTPCodecCapability{}, fmt.Errorf("%w: %s", ErrUnsupportedCodec, name)
	}
	clock, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil || clock == 0 {
		return webrtc.RTPCodecCapability{}, fmt.Errorf("%w: bad clock rate in %q", ErrUnsupportedCodec, rtpMap)
	}
	c := webrtc.RTPCodecCapability{MimeType: mime, ClockRate: uint32(clock), SDPFmtpLine: joinFMTP(f.FMTP())}
	if len(parts) > 2 {
		ch, err := strconv.ParseUint(parts[2], 10, 16)
		if err != nil {
			return webrtc.RTPCodecCapability{}, fmt.Errorf("%w: bad channel count in %q", ErrUnsupportedCodec, rtpMap)
		}
		c.Channels = uint16(ch)
	}
	return c, nil
}

// ToFormat returns the gortsplib format of a codec capability, with the given payload type.
func ToFormat(c webrtc.RTPCodecCapability, payloadType uint8) (format.Format, error) {
	mime, subtype, ok := strings.Cut(c.MimeType, "/")
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedCodec, c.MimeType)
	}
	if _, ok := subtypes[strings.ToLower(subtype)]; !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedCodec, c.MimeType)
	}
	pt := strconv.Itoa(int(payloadType))
	rtpMap := subtype + "/" + strconv.FormatUint(uint64(c.ClockRate), 10)
	if c.Channels > 0 {
		rtpMap += "/" + strconv.Itoa(int(c.Channels))
	}
	md := &sdp.MediaDescription{
		MediaName:  sdp.MediaName{Media: strings.ToLower(mime), Protos: []string{"RTP", "AVP"}, Formats: []string{pt}},
		Attributes: []sdp.Attribute{{Key: "rtpmap", Value: pt + " " + rtpMap}},
	}
	if c.SDPFmtpLine != "" {
		md.Attributes = append(md.Attributes, sdp.Attribute{Key: "fmtp", Value: pt + " " + c.SDPFmtpLine})
	}
	f, err := format.Unmarshal(md, pt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.MimeType, err)
	}
	return f, nil
}

// joinFMTP renders fmtp parameters in a stable order.
func joinFMTP(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(m[k])
	}
	return b.String()
}
