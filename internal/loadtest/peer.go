package loadtest

import (
	"fmt"
	"net"
	"net/url"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Payload types offered for the synthetic codecs (the ones browsers commonly use).
const (
	ptH264 = 102
	ptVP8  = 96
	ptOpus = 111
)

var (
	h264Codec = webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90_000, SDPFmtpLine: h264Fmtp,
	}
	opusCodec = webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: opusClockRate, Channels: 2,
		SDPFmtpLine: "minptime=10;useinbandfec=1",
	}
	// videoFeedback is what every video m-line offers; NACKs are offered like a browser does,
	// but subscribers do not send them (loss is measured, not repaired).
	videoFeedback = []webrtc.RTCPFeedback{
		{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"},
	}
)

// newSettingEngine returns the settings shared by every PeerConnection of a run: no mDNS,
// loopback candidates included (so a server on 127.0.0.1 works), UDP of the server's address
// family only, and SRTP with AEAD-AES-128-GCM preferred (about 2.5 times cheaper per packet
// than AES-CM-HMAC-SHA1 on both ends) and AES-CM-HMAC-SHA1-80 as the fallback.
func newSettingEngine(server string) webrtc.SettingEngine {
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if u, err := url.Parse(server); err == nil {
		if ip := net.ParseIP(u.Hostname()); ip != nil {
			if ip.To4() != nil {
				networks = networks[:1]
			} else {
				networks = networks[1:]
			}
		}
	}
	se.SetNetworkTypes(networks)
	return se
}

// newPublisherAPI returns the API of the one publisher: H264 42e01f and Opus only, with pion's
// default interceptors (NACK responder, sender reports, TWCC sequence numbers) as a real
// encoder-side peer would have.
func newPublisherAPI(se webrtc.SettingEngine) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m, false); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, fmt.Errorf("register publisher interceptors: %w", err)
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m),
		webrtc.WithInterceptorRegistry(ir)), nil
}

// newSubscriberAPI returns the API shared by all subscribers: H264 42e01f (first), VP8 and Opus,
// the MID header extension, and no interceptors unless receiverReports asks for RTCP receiver
// reports. Each subscriber therefore costs the load tool only SRTP, demuxing and its own loop.
func newSubscriberAPI(se webrtc.SettingEngine, receiverReports bool) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m, true); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if receiverReports {
		rr, err := report.NewReceiverInterceptor()
		if err != nil {
			return nil, fmt.Errorf("receiver report interceptor: %w", err)
		}
		ir.Add(rr)
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m),
		webrtc.WithInterceptorRegistry(ir)), nil
}

// registerCodecs registers the synthetic codecs, VP8 too when withVP8 (so that subscribers can
// also play a stream from a browser publisher), and the MID extension used to demultiplex
// streams when the answer carries no a=ssrc lines.
func registerCodecs(m *webrtc.MediaEngine, withVP8 bool) error {
	type entry struct {
		params webrtc.RTPCodecParameters
		kind   webrtc.RTPCodecType
	}
	h264 := h264Codec
	h264.RTCPFeedback = videoFeedback
	codecs := []entry{
		{webrtc.RTPCodecParameters{RTPCodecCapability: h264, PayloadType: ptH264}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{RTPCodecCapability: opusCodec, PayloadType: ptOpus}, webrtc.RTPCodecTypeAudio},
	}
	if withVP8 {
		vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90_000, RTCPFeedback: videoFeedback}
		codecs = append(codecs, entry{webrtc.RTPCodecParameters{RTPCodecCapability: vp8, PayloadType: ptVP8},
			webrtc.RTPCodecTypeVideo})
	}
	for _, c := range codecs {
		if err := m.RegisterCodec(c.params, c.kind); err != nil {
			return fmt.Errorf("register codec %s: %w", c.params.MimeType, err)
		}
	}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		ext := webrtc.RTPHeaderExtensionCapability{URI: sdp.SDESMidURI}
		if err := m.RegisterHeaderExtension(ext, kind); err != nil {
			return fmt.Errorf("register MID extension: %w", err)
		}
	}
	return nil
}
