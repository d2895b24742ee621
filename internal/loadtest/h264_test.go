package loadtest

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/pion/rtp"
)

const testGOP = 60

func TestH264KeyframeStructure(t *testing.T) {
	gen := newH264Generator(2_000_000, VideoFPS, testGOP, 7)
	payloads, key := gen.nextFrame(false)
	if !key {
		t.Fatal("first frame is not a keyframe")
	}
	if len(payloads) < 3 {
		t.Fatalf("keyframe at 2 Mbit/s has %d packets, want a STAP-A and several FU-A", len(payloads))
	}

	// STAP-A: SPS then PPS.
	stap := payloads[0]
	if stap[0]&0x1f != nalSTAPA || stap[0]&0x80 != 0 {
		t.Fatalf("first packet header %#x, want a STAP-A", stap[0])
	}
	var nals [][]byte
	for p := stap[1:]; len(p) > 0; {
		size := int(binary.BigEndian.Uint16(p))
		nals = append(nals, p[2:2+size])
		p = p[2+size:]
	}
	if len(nals) != 2 || !bytes.Equal(nals[0], h264SPS) || !bytes.Equal(nals[1], h264PPS) {
		t.Fatalf("STAP-A holds %x, want SPS %x and PPS %x", nals, h264SPS, h264PPS)
	}
	if h264Stampable(stap) {
		t.Error("STAP-A must not carry a stamp")
	}
	if !h264KeyframeStart(stap) {
		t.Error("STAP-A with SPS not recognised as a keyframe start")
	}

	// FU-A fragments of one IDR slice: S on the first, E on the last, neither in between.
	frags := payloads[1:]
	idr := []byte{0}
	for i, f := range frags {
		if len(f) > maxRTPPayload || len(f) < minStampedPayload {
			t.Errorf("fragment %d has %d bytes, want %d..%d", i, len(f), minStampedPayload, maxRTPPayload)
		}
		if f[0]&0x1f != nalFUA || f[1]&0x1f != nalIDR {
			t.Fatalf("fragment %d: indicator %#x header %#x, want FU-A of an IDR", i, f[0], f[1])
		}
		if start, end := f[1]&0x80 != 0, f[1]&0x40 != 0; start != (i == 0) || end != (i == len(frags)-1) {
			t.Errorf("fragment %d of %d: start=%v end=%v", i, len(frags), start, end)
		}
		if !h264Stampable(f) {
			t.Errorf("fragment %d is not stampable", i)
		}
		idr[0] = f[0]&0xe0 | f[1]&0x1f
		idr = append(idr, f[2:]...)
	}
	if !bytes.HasPrefix(idr, idrPrefix) || bytes.IndexByte(idr, 0) >= 0 {
		t.Errorf("reassembled IDR starts %x or holds a zero byte", idr[:4])
	}
	if !h264KeyframeStart(frags[0]) || h264KeyframeStart(frags[1]) {
		t.Error("keyframe start detection on FU-A is wrong")
	}

	// The next frame is a delta frame of type 1 NAL units.
	payloads, key = gen.nextFrame(false)
	if key {
		t.Fatal("second frame is a keyframe")
	}
	for _, p := range payloads {
		typ := p[0] & 0x1f
		if typ == nalFUA {
			typ = p[1] & 0x1f
		}
		if typ != nalSlice || !h264Stampable(p) || h264KeyframeStart(p) {
			t.Errorf("delta frame packet %x... is not a stampable non-IDR slice", p[:2])
		}
	}

	// A keyframe request restarts the GOP; otherwise keyframes come every testGOP frames.
	if _, key = gen.nextFrame(true); !key {
		t.Error("forced frame is not a keyframe")
	}
	for i := 1; i < testGOP; i++ {
		if _, key = gen.nextFrame(false); key {
			t.Fatalf("frame %d after a keyframe is a keyframe", i)
		}
	}
	if _, key = gen.nextFrame(false); !key {
		t.Error("frame after a full GOP is not a keyframe")
	}
}

func TestH264SmallFramesAreSingleNALs(t *testing.T) {
	gen := newH264Generator(100_000, VideoFPS, testGOP, 3)
	gen.nextFrame(false)
	payloads, _ := gen.nextFrame(false)
	if len(payloads) != 1 || payloads[0][0] != slicePrefix[0] || len(payloads[0]) < minNALSize {
		t.Fatalf("delta frame at 100k: %d packets, first byte %#x", len(payloads), payloads[0][0])
	}
}

func TestH264Bitrate(t *testing.T) {
	for _, bitrate := range []Bitrate{300_000, 600_000, 2_000_000, 6_000_000} {
		t.Run(bitrate.String(), func(t *testing.T) {
			gen := newH264Generator(bitrate, VideoFPS, testGOP, 11)
			const seconds = 10
			var bytes int
			for range seconds * VideoFPS {
				payloads, _ := gen.nextFrame(false)
				for _, p := range payloads {
					bytes += len(p)
				}
			}
			got := float64(bytes*8) / seconds
			if math.Abs(got-float64(bitrate))/float64(bitrate) > 0.10 {
				t.Errorf("bitrate over %d s = %.0f, want %d ± 10 %%", seconds, got, bitrate)
			}
		})
	}
}

func TestWriteFrameMarkersSequenceAndStamps(t *testing.T) {
	gen := newH264Generator(2_000_000, VideoFPS, testGOP, 5)
	var sent []rtp.Packet
	write := func(p *rtp.Packet) error {
		c := *p
		c.Payload = bytes.Clone(p.Payload)
		sent = append(sent, c)
		return nil
	}
	var pkt rtp.Packet
	var counters publisherCounters
	seq := uint16(65534) // crosses the wrap
	before := time.Now().UnixNano()
	for frame := range 3 {
		payloads, _ := gen.nextFrame(false)
		start := len(sent)
		seq = writeFrame(write, &pkt, payloads, seq, uint32(frame*3000), true, h264Stampable, nil, &counters)
		for i, p := range sent[start:] {
			if p.Marker != (i == len(payloads)-1) {
				t.Errorf("frame %d packet %d: marker %v", frame, i, p.Marker)
			}
			if p.Timestamp != uint32(frame*3000) {
				t.Errorf("frame %d packet %d: timestamp %d", frame, i, p.Timestamp)
			}
			sentAt, ok := readStamp(p.Payload)
			if ok != h264Stampable(p.Payload) || ok && (sentAt < before || sentAt > time.Now().UnixNano()) {
				t.Errorf("frame %d packet %d (type %d): stamp %v at %d", frame, i, p.Payload[0]&0x1f, ok, sentAt)
			}
		}
	}
	for i := 1; i < len(sent); i++ {
		if sent[i].SequenceNumber != sent[i-1].SequenceNumber+1 {
			t.Fatalf("sequence %d follows %d", sent[i].SequenceNumber, sent[i-1].SequenceNumber)
		}
	}
	if seq != sent[len(sent)-1].SequenceNumber+1 {
		t.Errorf("next sequence number %d", seq)
	}
}

// TestH264SPS decodes the hard-coded SPS far enough to check the profile and picture size.
func TestH264SPS(t *testing.T) {
	if h264SPS[1] != 0x42 || h264SPS[2] != 0xe0 || h264SPS[3] != 0x1f {
		t.Fatalf("profile-level-id %x, want 42e01f to match the fmtp", h264SPS[1:4])
	}
	r := bitReader{data: h264SPS[4:]}
	spsID, log2MaxFrameNum, pocType := r.ue(), r.ue(), r.ue()
	refFrames, gaps := r.ue(), r.bit()
	width, height := (r.ue()+1)*16, (r.ue()+1)*16
	frameMBsOnly, direct8x8, cropping, vui := r.bit(), r.bit(), r.bit(), r.bit()
	stop := r.bit()
	if spsID != 0 || log2MaxFrameNum != 0 || pocType != 2 || refFrames != 1 || gaps != 0 ||
		frameMBsOnly != 1 || direct8x8 != 1 || cropping != 0 || vui != 0 || stop != 1 || r.err {
		t.Fatalf("SPS fields wrong: %v %v %v %v %v %v %v %v %v %v", spsID, log2MaxFrameNum, pocType,
			refFrames, gaps, frameMBsOnly, direct8x8, cropping, vui, stop)
	}
	if width != 1280 || height != 720 {
		t.Errorf("SPS size %dx%d, want 1280x720", width, height)
	}
}

type bitReader struct {
	data []byte
	pos  int
	err  bool
}

func (r *bitReader) bit() int {
	if r.pos >= len(r.data)*8 {
		r.err = true
		return 0
	}
	b := int(r.data[r.pos/8]>>(7-r.pos%8)) & 1
	r.pos++
	return b
}

func (r *bitReader) ue() int {
	zeros := 0
	for r.bit() == 0 && !r.err {
		zeros++
	}
	v := 0
	for range zeros {
		v = v<<1 | r.bit()
	}
	return v + 1<<zeros - 1
}

func TestVP8KeyframeStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
		want    bool
	}{
		{"plain key", []byte{0x10, 0x00}, true},
		{"plain delta", []byte{0x10, 0x01}, false},
		{"not start", []byte{0x00, 0x00}, false},
		{"extended 15-bit picture id key", []byte{0x90, 0x80, 0x81, 0x23, 0x00}, true},
		{"extended with tl0 and tid, delta", []byte{0x90, 0xe0, 0x12, 0x34, 0x40, 0x01}, false},
		{"truncated", []byte{0x90}, false},
	} {
		if got := vp8KeyframeStart(tc.payload); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
}
