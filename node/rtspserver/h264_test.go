package rtspserver

import (
	"testing"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/node/hub"
)

var (
	testSPS = []byte{0x67, 0x64, 0x00, 0x1f, 0xac}
	testPPS = []byte{0x68, 0xee, 0x3c}
)

func pkt(seq uint16, ts uint32, marker bool, payload ...byte) *hub.Packet {
	return &hub.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: marker}, Payload: payload}
}

// TestH264ParamsInsert: an IDR access unit of several slices without SPS/PPS gets one STAP-A with
// both before its first slice, numbered in sequence; one that carries them, and non-IDR units, pass
// unchanged (renumbered after the insertion).
func TestH264ParamsInsert(t *testing.T) {
	h := newH264Params(&format.H264{SPS: testSPS, PPS: testPPS})
	var out []*hub.Packet
	write := func(p *hub.Packet) { out = append(out, p) }
	h.process(pkt(10, 1000, false, 0x7c, 0x85, 1), write) // FU-A start, IDR, slice 1
	h.process(pkt(11, 1000, false, 0x7c, 0x45, 2), write) // FU-A end
	h.process(pkt(12, 1000, true, 0x65, 0x88, 3), write)  // IDR slice 2: same AU, no second insert
	h.process(pkt(13, 4000, true, 0x41, 0x9a), write)     // P slice
	// an AU that carries its own parameter sets in a STAP-A
	h.process(pkt(14, 7000, false, 0x78, 0, 5, 0x67, 0x64, 0x00, 0x1f, 0xad, 0, 3, 0x68, 0xee, 0x3c), write)
	h.process(pkt(15, 7000, true, 0x65, 0x88, 4), write)

	wantSeq := []uint16{10, 11, 12, 13, 14, 15, 16}
	if len(out) != len(wantSeq) {
		t.Fatalf("%d packets out, want %d", len(out), len(wantSeq))
	}
	for i, p := range out {
		if p.Header.SequenceNumber != wantSeq[i] {
			t.Errorf("packet %d: seq %d, want %d", i, p.Header.SequenceNumber, wantSeq[i])
		}
	}
	stap := out[0]
	if stap.Payload[0]&0x1f != nalSTAPA || stap.Header.Timestamp != 1000 || stap.Header.Marker {
		t.Fatalf("first packet is not a STAP-A of the IDR's AU: %x", stap.Payload)
	}
	want := append(append(append([]byte{0, byte(len(testSPS))}, testSPS...), 0, byte(len(testPPS))), testPPS...)
	if string(stap.Payload[1:]) != string(want) {
		t.Errorf("STAP-A %x, want SPS and PPS %x", stap.Payload[1:], want)
	}
	if h.inserted != 1 {
		t.Errorf("inserted %d, want 1", h.inserted)
	}
	if string(h.sps) != string([]byte{0x67, 0x64, 0x00, 0x1f, 0xad}) {
		t.Errorf("in-band SPS not kept: %x", h.sps)
	}
}

func TestH264Capability(t *testing.T) {
	c := h264Capability(webrtc.RTPCodecCapability{MimeType: "video/H264", ClockRate: 90000}, &format.H264{SPS: testSPS, PPS: testPPS, PacketizationMode: 1})
	if c.SDPFmtpLine != "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f" {
		t.Errorf("fmtp %q", c.SDPFmtpLine)
	}
	c = h264Capability(webrtc.RTPCodecCapability{MimeType: "video/H264", ClockRate: 90000}, &format.H264{})
	if c.SDPFmtpLine != "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f" {
		t.Errorf("fmtp without SPS %q", c.SDPFmtpLine)
	}
}
