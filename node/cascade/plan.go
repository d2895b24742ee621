package cascade

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/rtpformat"
	"github.com/streamfleet/streamfleet/node/rtspserver"
)

// layerPlan is one media of an upstream's all-layers session: which track and layer it feeds.
type layerPlan struct {
	track int
	rid   string
	video bool
}

// pullPlan is what an upstream's session description says: the tracks to publish (in order) and,
// media by media, the layer each feeds.
type pullPlan struct {
	specs  []hub.TrackSpec
	layers []layerPlan
}

// maxSDPSize bounds the session description read from an upstream.
const maxSDPSize = 64 << 10

// planPull reads an upstream's all-layers session description (the SDP of its DESCRIBE answer):
// each media names its track and layer in its mid (rtspserver.LayerMID) and carries the track's
// codec in its rtpmap and fmtp, exactly as the upstream hub has it. It checks what an upstream could
// get wrong: tracks numbered 0..n-1 without holes, one codec per track, no layer twice, the hub's
// limits.
func planPull(body []byte) (pullPlan, error) {
	var plan pullPlan
	if len(body) > maxSDPSize {
		return plan, fmt.Errorf("%w: SDP of %d bytes", ErrBadSession, len(body))
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(body); err != nil {
		return plan, fmt.Errorf("%w: %v", ErrBadSession, err)
	}
	if len(sd.MediaDescriptions) == 0 {
		return plan, fmt.Errorf("%w: no media", ErrBadSession)
	}
	seen := map[layerPlan]bool{}
	perTrack := map[int]int{}
	for i, md := range sd.MediaDescriptions {
		mid, _ := md.Attribute("mid")
		track, rid, err := rtspserver.ParseLayerMID(mid, hub.MaxTracks)
		if err != nil {
			return plan, fmt.Errorf("%w: media %d: %v", ErrBadSession, i, err)
		}
		c, err := capabilityOf(md)
		if err != nil {
			return plan, fmt.Errorf("%w: media %d: %v", ErrBadSession, i, err)
		}
		if kind := hub.KindOf(c); string(kind) != md.MediaName.Media {
			return plan, fmt.Errorf("%w: media %d is %q but its codec %s", ErrBadSession, i, md.MediaName.Media, c.MimeType)
		}
		switch {
		case track == len(plan.specs):
			plan.specs = append(plan.specs, hub.TrackSpec{Codec: c})
		case track > len(plan.specs):
			return plan, fmt.Errorf("%w: media %d is of track %d before track %d", ErrBadSession, i, track, len(plan.specs))
		case !sameCodec(plan.specs[track].Codec, c):
			return plan, fmt.Errorf("%w: media %d: track %d has two codecs", ErrBadSession, i, track)
		}
		l := layerPlan{track: track, rid: rid, video: hub.KindOf(c) == hub.KindVideo}
		if seen[l] {
			return plan, fmt.Errorf("%w: media %d: layer %q of track %d twice", ErrBadSession, i, rid, track)
		}
		seen[l] = true
		if perTrack[track]++; perTrack[track] > hub.MaxLayers {
			return plan, fmt.Errorf("%w: track %d has more than %d layers", ErrBadSession, track, hub.MaxLayers)
		}
		plan.layers = append(plan.layers, l)
	}
	return plan, nil
}

// capabilityOf reads the codec of a media's first format from its rtpmap and fmtp as written,
// so no fmtp parameter is lost (gortsplib's typed formats keep only those they use).
func capabilityOf(md *sdp.MediaDescription) (c webrtc.RTPCodecCapability, err error) {
	if len(md.MediaName.Formats) == 0 {
		return c, fmt.Errorf("no format")
	}
	pt := md.MediaName.Formats[0]
	n, err := strconv.ParseUint(pt, 10, 8)
	if err != nil || n > 127 {
		return c, fmt.Errorf("bad payload type %q", pt)
	}
	g := &format.Generic{PayloadTyp: uint8(n), RTPMa: formatAttribute(md, "rtpmap", pt)}
	if fmtp := formatAttribute(md, "fmtp", pt); fmtp != "" {
		g.FMT = map[string]string{}
		for _, kv := range strings.Split(fmtp, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			if k != "" {
				g.FMT[k] = v
			}
		}
	}
	if g.RTPMa == "" {
		return c, fmt.Errorf("no rtpmap for payload type %s", pt)
	}
	return rtpformat.FromFormat(g)
}

// formatAttribute returns the value of a=key:pt value, without the payload type.
func formatAttribute(md *sdp.MediaDescription, key, pt string) string {
	for _, a := range md.Attributes {
		if a.Key != key {
			continue
		}
		if p, v, ok := strings.Cut(a.Value, " "); ok && p == pt {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func sameCodec(a, b webrtc.RTPCodecCapability) bool {
	return a.MimeType == b.MimeType && a.ClockRate == b.ClockRate && a.Channels == b.Channels && a.SDPFmtpLine == b.SDPFmtpLine
}
