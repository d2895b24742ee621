package rtctest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Payload is a test payload for a codec: a keyframe or delta frame in one packet, carrying a
// marker, an index and a tag (a simulcast RID, say), so a viewer far down a cascade can check it
// got exactly what was sent.
func Payload(mime string, keyframe bool, index uint32, tag string) []byte {
	var head []byte
	switch strings.ToLower(mime) {
	case "video/h264":
		head = []byte{0x41} // non-IDR slice
		if keyframe {
			head = []byte{0x65} // IDR slice
		}
	case "video/vp8":
		head = []byte{0x10, 0x01} // start of partition 0, inter frame
		if keyframe {
			head = []byte{0x10, 0x00}
		}
	default:
		head = []byte{0xfc}
	}
	b := append(head, 'S', 'F', 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(head)+2:], index)
	b = append(b, tag...)
	b = append(b, '|')
	return append(b, bytes.Repeat([]byte{byte(index)}, 200)...)
}

// PayloadIndex reads the index and tag of a Payload; ok is false for anything else.
func PayloadIndex(p []byte) (index uint32, tag string, ok bool) {
	i := bytes.Index(p, []byte("SF"))
	if i < 0 || i > 2 || len(p) < i+6 {
		return 0, "", false
	}
	rest := p[i+6:]
	j := bytes.IndexByte(rest, '|')
	if j < 0 {
		return 0, "", false
	}
	return binary.BigEndian.Uint32(p[i+2:]), string(rest[:j]), true
}

// Stream is a WHIP publisher that sends Payloads without pause: a video track (one layer per RID,
// or one plain layer) and an Opus track, 25 video packets a second per layer with a keyframe every
// GOP packets, and on PLI a keyframe at once.
type Stream struct {
	PC       *webrtc.PeerConnection
	Location string
	Video    webrtc.RTPCodecCapability
	RIDs     []string // "" for no simulcast
	GOP      uint32

	video  []*webrtc.TrackLocalStaticRTP
	audio  *webrtc.TrackLocalStaticRTP
	sender *webrtc.RTPSender
	// negotiated header extension IDs a simulcast sender puts in every packet (pion does not)
	midID, ridID uint8
	mid          string

	plis    atomic.Int64
	keyNext atomic.Bool
	sent    atomic.Uint32 // index of the last packet sent
	stop    chan struct{}
	wg      sync.WaitGroup
}

// PublishStream connects a Stream to a WHIP URL and starts sending. rids gives simulcast layers
// (empty: none).
func PublishStream(ctx context.Context, api *webrtc.API, url string, video webrtc.RTPCodecCapability, rids ...string) (*Stream, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	s := &Stream{PC: pc, Video: video, RIDs: rids, GOP: 25, stop: make(chan struct{})}
	if len(rids) == 0 {
		rids = []string{""}
	}
	var sender *webrtc.RTPSender
	for i, rid := range rids {
		var opts []func(*webrtc.TrackLocalStaticRTP)
		if rid != "" {
			opts = append(opts, webrtc.WithRTPStreamID(rid))
		}
		tr, err := webrtc.NewTrackLocalStaticRTP(video, "video", "test", opts...)
		if err != nil {
			pc.Close()
			return nil, err
		}
		s.video = append(s.video, tr)
		if i == 0 {
			sender, err = pc.AddTrack(tr)
		} else {
			err = sender.AddEncoding(tr)
		}
		if err != nil {
			pc.Close()
			return nil, fmt.Errorf("add video %q: %w", rid, err)
		}
	}
	for _, t := range pc.GetTransceivers() {
		if t.Sender() == sender {
			if err := t.SetCodecPreferences([]webrtc.RTPCodecParameters{{RTPCodecCapability: video}}); err != nil {
				pc.Close()
				return nil, err
			}
		}
	}
	s.sender = sender
	s.watchRTCP(sender)
	if s.audio, err = webrtc.NewTrackLocalStaticRTP(Opus, "audio", "test"); err != nil {
		pc.Close()
		return nil, err
	}
	as, err := pc.AddTrack(s.audio)
	if err != nil {
		pc.Close()
		return nil, err
	}
	s.watchRTCP(as)
	if s.Location, err = Exchange(ctx, pc, url, ""); err != nil {
		s.Close()
		return nil, err
	}
	if err := WaitConnected(ctx, pc); err != nil {
		s.Close()
		return nil, err
	}
	for _, t := range pc.GetTransceivers() {
		if t.Sender() == sender {
			s.mid = t.Mid()
		}
	}
	for _, e := range sender.GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			s.midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			s.ridID = uint8(e.ID)
		}
	}
	if len(s.RIDs) > 0 && (s.midID == 0 || s.ridID == 0) {
		s.Close()
		return nil, fmt.Errorf("simulcast: the mid and RID header extensions were not negotiated (use NewSimulcastAPI)")
	}
	s.wg.Add(1)
	go s.send()
	return s, nil
}

func (s *Stream) watchRTCP(sender *webrtc.RTPSender) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				switch p.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					s.plis.Add(1)
					s.keyNext.Store(true)
				}
			}
		}
	}()
}

// PLIs is the number of keyframe requests received.
func (s *Stream) PLIs() int64 { return s.plis.Load() }

// Sent is the index of the last packet sent.
func (s *Stream) Sent() uint32 { return s.sent.Load() }

func (s *Stream) send() {
	defer s.wg.Done()
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	var vseq, aseq uint16
	sinceKey := uint32(0)
	for i := uint32(1); ; i++ {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		key := sinceKey == 0 || s.keyNext.Swap(false)
		if key {
			sinceKey = 0
		}
		sinceKey = (sinceKey + 1) % s.GOP
		vseq++
		for li, tr := range s.video {
			tag := ""
			if len(s.RIDs) > 0 {
				tag = s.RIDs[li]
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: vseq, Timestamp: i * 3600}, Payload: Payload(s.Video.MimeType, key, i, tag)}
			if tag != "" {
				_ = pkt.Header.SetExtension(s.midID, []byte(s.mid))
				_ = pkt.Header.SetExtension(s.ridID, []byte(tag))
			}
			_ = tr.WriteRTP(pkt)
		}
		for range 2 {
			aseq++
			_ = s.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: aseq, Timestamp: uint32(aseq) * 960}, Payload: Payload(Opus.MimeType, true, i, "")})
		}
		s.sent.Store(i)
	}
}

// Close stops sending, ends the session with DELETE and closes the connection.
func (s *Stream) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	Delete(s.Location)
	s.PC.Close()
	s.wg.Wait()
}

// NewSimulcastAPI is NewAPI with the header extensions a simulcast sender needs (mid, RID and
// repaired RID), for PublishStream with RIDs.
func NewSimulcastAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	for _, uri := range []string{sdp.SDESMidURI, sdp.SDESRTPStreamIDURI, sdp.SDESRepairRTPStreamIDURI} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, err
		}
	}
	return loopbackAPI(m, nil)
}
