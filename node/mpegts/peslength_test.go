package mpegts

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	tsf "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
)

// muxTestTS writes n H264 access units of varied sizes (one over the 16-bit PES length) and n AAC
// frames with the demuxer's own muxer, which leaves video PES lengths at zero like ffmpeg.
func muxTestTS(t testing.TB, n int) (ts []byte, aus [][][]byte) {
	t.Helper()
	var buf bytes.Buffer
	video := &tsf.Track{Codec: &codecs.H264{}}
	audio := &tsf.Track{Codec: &codecs.Opus{ChannelCount: 2}}
	w := &tsf.Writer{W: &buf, Tracks: []*tsf.Track{video, audio}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		size := 10 + rng.IntN(3000)
		if i == n/2 {
			size = 70000 // too long for PES_packet_length
		}
		if i%7 == 3 {
			size = 184*5 - 30 // lands near a packet boundary
		}
		if i == n/2+1 || i%7 == 4 {
			size = 10 // one packet, right after a long or a boundary-aligned one
		}
		nal := make([]byte, size)
		for j := range nal {
			nal[j] = byte(1 + rng.IntN(255))
		}
		nal[0] = 0x41
		if i%30 == 0 {
			nal[0] = 0x65
		}
		au := [][]byte{nal}
		if i%30 == 0 {
			au = [][]byte{testSPSNAL, testPPSNAL, nal}
		}
		aus = append(aus, au)
		pts := int64(i) * 3000
		if err := w.WriteH264(video, pts, pts, au); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteOpus(audio, pts, [][]byte{{0xf8, 1, 2, 3}}); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes(), aus
}

var (
	testSPSNAL = []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48}
	testPPSNAL = []byte{0x68, 0xce, 0x3c, 0x80}
)

// demuxH264 returns the H264 access units a reader of r gets, and calls onAU after each.
func demuxH264(t *testing.T, r io.Reader, onAU func(i int)) [][][]byte {
	t.Helper()
	rd := &tsf.Reader{R: r}
	if err := rd.Initialize(); err != nil {
		t.Fatal(err)
	}
	var got [][][]byte
	for _, tr := range rd.Tracks() {
		if _, ok := tr.Codec.(*codecs.H264); ok {
			rd.OnDataH264(tr, func(_, _ int64, au [][]byte) error {
				cp := make([][]byte, len(au))
				for i := range au {
					cp[i] = append([]byte(nil), au[i]...)
				}
				got = append(got, cp)
				if onAU != nil {
					onAU(len(got) - 1)
				}
				return nil
			})
		}
	}
	for rd.Read() == nil {
	}
	return got
}

func equalAUs(a, b [][]byte) bool {
	// The muxer prepends an access unit delimiter; compare what follows it.
	if len(a) > 0 && a[0][0]&0x1f == 9 {
		a = a[1:]
	}
	if len(b) > 0 && b[0][0]&0x1f == 9 {
		b = b[1:]
	}
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// packetReader returns one TS packet per Read, and records how many it has returned.
type packetReader struct {
	data []byte
	read int
}

func (r *packetReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), tsPacketSize)], r.data)
	r.data = r.data[n:]
	r.read += n
	return n, nil
}

func TestPESLengthFillerKeepsContent(t *testing.T) {
	ts, want := muxTestTS(t, 90)
	got := demuxH264(t, newPESLengthFiller(bytes.NewReader(ts)), nil)
	if len(got) != len(want) {
		t.Fatalf("%d access units, want %d", len(got), len(want))
	}
	for i := range want {
		if !equalAUs(got[i], want[i]) {
			t.Fatalf("access unit %d differs", i)
		}
	}
}

// TestPESLengthFillerEmitsAtOnce checks the point of the filler: an access unit reaches the
// demuxer's callback before any byte of the next video PES has been read.
func TestPESLengthFillerEmitsAtOnce(t *testing.T) {
	ts, want := muxTestTS(t, 60)
	// Where each video PES starts in the stream, in bytes.
	var starts []int
	for off := 0; off+tsPacketSize <= len(ts); off += tsPacketSize {
		pkt := ts[off : off+tsPacketSize]
		if payload, _, ok := tsPayload(pkt); ok && pkt[1]&0x40 != 0 && isVideoPES(payload) {
			starts = append(starts, off)
		}
	}
	if len(starts) != len(want) {
		t.Fatalf("%d video PES starts, want %d", len(starts), len(want))
	}
	for _, fill := range []bool{false, true} {
		src := &packetReader{data: ts}
		var r io.Reader = src
		if fill {
			r = newPESLengthFiller(src)
		}
		late := 0
		demuxH264(t, r, func(i int) {
			if i+1 < len(starts) && src.read > starts[i+1] {
				late++
			}
		})
		t.Logf("filler %v: %d of %d access units waited for the next PES", fill, late, len(want))
		switch {
		case !fill && late < len(want)-2:
			t.Fatalf("without the filler only %d access units waited: the test does not show the wait", late)
		case fill && late > len(want)/10+1:
			// Those that end on a packet boundary, or are too long, may still wait.
			t.Fatalf("with the filler %d of %d access units still waited for the next PES", late, len(want))
		}
	}
}

func FuzzPESLengthFiller(f *testing.F) {
	ts, _ := muxTestTS(f, 8)
	f.Add(ts)
	f.Add(ts[:len(ts)/2])
	f.Add([]byte{0x47, 0x40, 0x00, 0x30, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Nothing is lost, invented or reordered within the bytes of a PID: at most two length
		// bytes per PES change. Here: the same length out as in.
		out, err := io.ReadAll(newPESLengthFiller(bytes.NewReader(data)))
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != len(data) {
			t.Fatalf("%d bytes out of %d in", len(out), len(data))
		}
	})
}
