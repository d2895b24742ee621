package hub

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/streamfleet/streamfleet/internal/streamname"
)

// TestMain fails the package if a test leaves a goroutine behind. The hub starts none of its own
// (grace timers aside, which Close stops); every goroutine a test starts must have ended once the
// hub is closed and the test's cleanups have run.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Codecs as the WebRTC server declares them: pion's MIME types are mixed case.
var (
	codecH264 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "packetization-mode=1;profile-level-id=42e01f"}
	codecVP8  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	codecOpus = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
)

// Payloads a publisher sends.
var (
	h264IDR       = []byte{0x65, 0x88, 0x84, 0x00}                                     // single NAL unit: IDR slice
	h264Slice     = []byte{0x41, 0x9a, 0x02, 0x00}                                     // single NAL unit: non-IDR slice
	h264STAPAKey  = []byte{0x78, 0x00, 0x03, 0x67, 0x42, 0xe0, 0x00, 0x02, 0x68, 0xce} // STAP-A: SPS, PPS
	h264FUAStart  = []byte{0x7c, 0x85, 0x88, 0x84}                                     // FU-A, S=1, IDR
	h264FUAMiddle = []byte{0x7c, 0x05, 0x12, 0x34}                                     // FU-A, S=0 E=0, IDR
	h264FUAEnd    = []byte{0x7c, 0x45, 0x56, 0x78}                                     // FU-A, E=1, IDR
	vp8Key        = []byte{0x10, 0x00, 0x9d, 0x01, 0x2a}                               // S=1 PID=0, P=0
	vp8Delta      = []byte{0x10, 0x01, 0x00}                                           // S=1 PID=0, P=1
	opusFrame     = []byte{0xfc, 0xff, 0xfe}
)

// h264Stream returns the payload of packet i of an H.264 stream with a keyframe every gop packets.
func h264Stream(gop int) func(i int) []byte {
	return func(i int) []byte {
		if i%gop == 0 {
			return h264IDR
		}
		return h264Slice
	}
}

func opusStream(int) []byte { return opusFrame }

func newTestHub(t testing.TB, grace time.Duration) *Hub {
	t.Helper()
	h := New(Config{Grace: grace}, nil)
	t.Cleanup(h.Close)
	return h
}

func specsOf(codecs ...webrtc.RTPCodecCapability) []TrackSpec {
	specs := make([]TrackSpec, len(codecs))
	for i, c := range codecs {
		specs[i] = TrackSpec{Codec: c}
	}
	return specs
}

func mustPublish(t testing.TB, h *Hub, name streamname.Name, codecs ...webrtc.RTPCodecCapability) *Publication {
	t.Helper()
	p, err := h.Publish(name, specsOf(codecs...))
	if err != nil {
		t.Fatalf("publish %s: %v", name, err)
	}
	return p
}

// newPacket returns a packet as an ingest hands it to Layer.WritePacket.
func newPacket(ssrc uint32, seq uint16, ts uint32, payload []byte) *Packet {
	return &Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 96, SSRC: ssrc, SequenceNumber: seq, Timestamp: ts},
		Payload: payload,
	}
}

// readerKinds are the two ways to read a track: a plain reader's channel, and a notified
// reader's position in the track's ring. Tests of what a reader gets run for both.
var readerKinds = []struct {
	name      string
	newReader func(t *Track, queue int) *Reader
}{
	{"plain", (*Track).NewReader},
	{"notified", func(t *Track, queue int) *Reader { return t.NewNotifiedReader(queue, NewNotifier()) }},
}

// queued takes every entry waiting in r's queue without blocking. WritePacket queues synchronously,
// so after it returns the entries are there.
func queued(r *Reader) []Entry {
	var out []Entry
	if r.notify != nil {
		for e, ok := r.Next(); ok; e, ok = r.Next() {
			out = append(out, e)
		}
		return out
	}
	for {
		select {
		case e := <-r.C():
			out = append(out, e)
		default:
			return out
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitClosed(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not closed after 5s", what)
	}
}

func seqs(entries []Entry) []uint16 {
	out := make([]uint16, len(entries))
	for i, e := range entries {
		out[i] = e.Packet.Header.SequenceNumber
	}
	return out
}
