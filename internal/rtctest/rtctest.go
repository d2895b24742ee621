// Package rtctest provides real pion WHIP publishers and WHEP viewers for tests: standard
// RFC 9725 clients on loopback, with hooks to send chosen packets and record what arrives.
package rtctest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Codecs used by tests.
var (
	H264 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}
	VP8  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	VP9  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"}
	AV1  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000}
	Opus = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
)

// NewAPI returns a pion API for a loopback test client: default codecs and interceptors, no mDNS,
// loopback candidates only.
func NewAPI() (*webrtc.API, error) { return NewAPIWithSettings(nil) }

// NewAPIWithSettings is NewAPI with its settings passed through edit before the API is made, as
// a test that watches the client's ICE needs.
func NewAPIWithSettings(edit func(*webrtc.SettingEngine)) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	return loopbackAPI(m, edit)
}

// loopbackAPI builds an API on m with pion's default interceptors that gathers loopback
// candidates only; edit, if not nil, changes the settings last.
func loopbackAPI(m *webrtc.MediaEngine, edit func(*webrtc.SettingEngine)) (*webrtc.API, error) {
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	if edit != nil {
		edit(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// Exchange POSTs pc's offer to url (WHIP or WHEP) and applies the answer. It returns the session
// URL from the Location header.
func Exchange(ctx context.Context, pc *webrtc.PeerConnection, url, token string) (string, error) {
	return ExchangeEdited(ctx, pc, url, token, nil)
}

// ExchangeEdited is Exchange with the offer's SDP passed through edit (if not nil) on its way to
// the server, as a client that offers differently would send it.
func ExchangeEdited(ctx context.Context, pc *webrtc.PeerConnection, url, token string, edit func(sdp string) string) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	sdp := pc.LocalDescription().SDP
	if edit != nil {
		sdp = edit(sdp)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(sdp))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", &HTTPError{Status: resp.StatusCode, Body: string(body)}
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		return "", fmt.Errorf("apply answer: %w", err)
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("201 without Location")
	}
	base := req.URL
	u, err := base.Parse(loc)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// HTTPError is a non-201 answer to an offer.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// WaitConnected waits for pc to reach the connected state.
func WaitConnected(ctx context.Context, pc *webrtc.PeerConnection) error {
	for {
		switch pc.ConnectionState() {
		case webrtc.PeerConnectionStateConnected:
			return nil
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			return fmt.Errorf("peer connection %s", pc.ConnectionState())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not connected: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Publisher is a WHIP publisher with one track per codec.
type Publisher struct {
	PC       *webrtc.PeerConnection
	Tracks   []*webrtc.TrackLocalStaticRTP
	Location string
	// PLIs counts keyframe requests received per track.
	mu   sync.Mutex
	plis []int
}

// Publish connects a publisher to a WHIP URL with a track for each codec.
func Publish(ctx context.Context, api *webrtc.API, url, token string, codecs ...webrtc.RTPCodecCapability) (*Publisher, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &Publisher{PC: pc, plis: make([]int, len(codecs))}
	for i, c := range codecs {
		kind := strings.SplitN(c.MimeType, "/", 2)[0]
		tr, err := webrtc.NewTrackLocalStaticRTP(c, fmt.Sprintf("%s%d", kind, i), "test")
		if err != nil {
			pc.Close()
			return nil, err
		}
		sender, err := pc.AddTrack(tr)
		if err != nil {
			pc.Close()
			return nil, err
		}
		// Offer only the track's codec, as a hardware or OBS publisher does.
		for _, t := range pc.GetTransceivers() {
			if t.Sender() == sender {
				if err := t.SetCodecPreferences([]webrtc.RTPCodecParameters{{RTPCodecCapability: c}}); err != nil {
					pc.Close()
					return nil, err
				}
			}
		}
		p.Tracks = append(p.Tracks, tr)
		go func() {
			for {
				pkts, _, err := sender.ReadRTCP()
				if err != nil {
					return
				}
				for _, pkt := range pkts {
					if _, ok := pkt.(*rtcp.PictureLossIndication); ok {
						p.mu.Lock()
						p.plis[i]++
						p.mu.Unlock()
					}
				}
			}
		}()
	}
	if p.Location, err = Exchange(ctx, pc, url, token); err != nil {
		pc.Close()
		return nil, err
	}
	return p, nil
}

// PLIs returns the keyframe requests received on track i.
func (p *Publisher) PLIs(i int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.plis[i]
}

// Close ends the session with DELETE and closes the connection.
func (p *Publisher) Close() {
	Delete(p.Location)
	p.PC.Close()
}

// Delete sends DELETE to a session URL.
func Delete(location string) int {
	if location == "" {
		return 0
	}
	req, _ := http.NewRequest(http.MethodDelete, location, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Viewer is a WHEP viewer recording the payloads it receives per track kind.
type Viewer struct {
	PC       *webrtc.PeerConnection
	Location string

	mu       sync.Mutex
	payloads map[string][][]byte
	headers  map[string][]rtp.Header
	changed  chan struct{}
}

// View connects a viewer to a WHEP URL with recvonly video and audio.
func View(ctx context.Context, api *webrtc.API, url, token string) (*Viewer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	v := &Viewer{PC: pc, payloads: map[string][][]byte{}, headers: map[string][]rtp.Header{}, changed: make(chan struct{}, 1)}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			pc.Close()
			return nil, err
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		kind := tr.Kind().String()
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			v.mu.Lock()
			v.payloads[kind] = append(v.payloads[kind], bytes.Clone(pkt.Payload))
			v.headers[kind] = append(v.headers[kind], pkt.Header)
			v.mu.Unlock()
			select {
			case v.changed <- struct{}{}:
			default:
			}
		}
	})
	if v.Location, err = Exchange(ctx, pc, url, token); err != nil {
		pc.Close()
		return nil, err
	}
	return v, nil
}

// Payloads returns the payloads received on the track of a kind ("video", "audio").
func (v *Viewer) Payloads(kind string) [][]byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([][]byte(nil), v.payloads[kind]...)
}

// Headers returns the RTP headers received on the track of a kind.
func (v *Viewer) Headers(kind string) []rtp.Header {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]rtp.Header(nil), v.headers[kind]...)
}

// Close ends the session with DELETE and closes the connection.
func (v *Viewer) Close() {
	Delete(v.Location)
	v.PC.Close()
}
