package rtctest

import (
	"fmt"
	"net"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// OfferSDP is a publisher's offer of one track of codec from a loopback test client, as created
// (no candidates gathered): for tests that POST an offer without connecting.
func OfferSDP(codec webrtc.RTPCodecCapability) (string, error) {
	api, err := NewAPI()
	if err != nil {
		return "", err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", err
	}
	defer pc.Close()
	tr, err := webrtc.NewTrackLocalStaticRTP(codec, "v", "s")
	if err != nil {
		return "", err
	}
	if _, err := pc.AddTrack(tr); err != nil {
		return "", err
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	return offer.SDP, nil
}

// CandidateIPs are the addresses of the ICE candidates in an SDP's media sections.
func CandidateIPs(s string) ([]net.IP, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return nil, err
	}
	var ips []net.IP
	for _, m := range d.MediaDescriptions {
		for _, a := range m.Attributes {
			if a.Key != "candidate" {
				continue
			}
			c, err := ice.UnmarshalCandidate(a.Value)
			if err != nil {
				return nil, fmt.Errorf("candidate %q: %w", a.Value, err)
			}
			ips = append(ips, net.ParseIP(c.Address()))
		}
	}
	return ips, nil
}
