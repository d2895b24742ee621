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
	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
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

// newSettingEngine returns the settings shared by every PeerConnection of a run: no mDNS, UDP
// of the server's address family only, loopback candidates only for a server that may be on
// loopback (a loopback address or a name), and SRTP with AEAD-AES-128-GCM preferred (about 2.5
// times cheaper per packet than AES-CM-HMAC-SHA1 on both ends) and AES-CM-HMAC-SHA1-80 as the
// fallback.
//
// A loopback candidate offered to a server elsewhere costs the viewer 200 ms of its first frame:
// its pair can never succeed but is not failed at once either (the kernel refuses the send), and
// with the same priority as the working pair pion's controlling agent counts it as the best pair,
// so it does not nominate the working one on the server's triggered check, only on its next
// check timer (TestLoopbackCandidates).
func newSettingEngine(server string) webrtc.SettingEngine {
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	loopback := true
	if u, err := url.Parse(server); err == nil {
		if ip := net.ParseIP(u.Hostname()); ip != nil {
			loopback = ip.IsLoopback()
			if ip.To4() != nil {
				networks = networks[:1]
			} else {
				networks = networks[1:]
			}
		}
	}
	se.SetIncludeLoopbackCandidate(loopback)
	se.SetNetworkTypes(networks)
	return se
}

// newPublisherAPI returns the API of the one publisher: H264 42e01f and Opus only, with pion's
// default interceptors (NACK responder, sender reports, TWCC sequence numbers) as a real
// encoder-side peer would have, and sockets that note when each RTP datagram is written in sent.
func newPublisherAPI(se webrtc.SettingEngine, sent *arrivals) (*webrtc.API, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("network interfaces: %w", err)
	}
	se.SetNet(sendNet(n, sent))
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

// subscriberAPIs makes the API of each subscriber: H264 42e01f (first), VP8 and Opus, the MID
// header extension, and no interceptors unless receiverReports asks for RTCP receiver reports,
// so that a subscriber costs the load tool only SRTP, demuxing and its own loop. The media engine
// and interceptors are shared (pion copies the engine per PeerConnection); what differs is the
// network: each subscriber's sockets note the kernel receive time of its packets (stampNet).
type subscriberAPIs struct {
	se  webrtc.SettingEngine
	m   *webrtc.MediaEngine
	ir  *interceptor.Registry
	net transport.Net
	// pionReceive leaves all media to pion's receive chain (Config.PionReceive).
	pionReceive bool
	// gro counts the sockets' UDP GRO reads; nil without UDP GRO (Config.GRO).
	gro *groCounts
}

func newSubscriberAPIs(se webrtc.SettingEngine, receiverReports, pionReceive, withGRO bool) (*subscriberAPIs, error) {
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
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("network interfaces: %w", err)
	}
	// Receiver reports count packets in pion's interceptor chain, which direct receive bypasses.
	pionReceive = pionReceive || receiverReports
	a := &subscriberAPIs{se: se, m: m, ir: ir, net: n, pionReceive: pionReceive}
	if withGRO {
		a.gro = new(groCounts)
	}
	return a, nil
}

// forSubscriber returns an API whose sockets note arrivals in arr and, unless direct is nil, read
// adopted tracks' media themselves, with the keys from the DTLS key log.
func (a *subscriberAPIs) forSubscriber(arr *arrivals, direct *directRx) *webrtc.API {
	se := a.se
	se.SetNet(stampNet(a.net, arr, direct, a.gro))
	if direct != nil {
		se.SetDTLSKeyLogWriter(direct)
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(a.m),
		webrtc.WithInterceptorRegistry(a.ir))
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
