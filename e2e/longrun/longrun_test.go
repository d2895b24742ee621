// Package longrun holds the long end-to-end runs: minutes of real input, checked for drift. It is
// a package of its own so that `go test ./...` runs it beside the other packages.
package longrun

import (
	"bufio"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	srt "github.com/datarhei/gosrt"
	"github.com/pion/rtp"

	"github.com/streamfleet/streamfleet/internal/nodetest"
	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/node"
	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/rtpformat"
)

// runDuration is the length of the long run: ten minutes, as the SRT/RTSP issue asks. Developers
// may shorten it locally with STREAMFLEET_LONGRUN (a Go duration); CI runs the full length.
func runDuration(t *testing.T) time.Duration {
	if v := os.Getenv("STREAMFLEET_LONGRUN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Minute {
			t.Fatalf("STREAMFLEET_LONGRUN=%q: want a duration of at least 1m", v)
		}
		return d
	}
	return 10 * time.Minute
}

const tsClock = 90000

// inputPTS remembers the PTS the publisher gave each access unit, by content, so that an output
// unit can be matched to its input unit whatever the node did to its timestamps.
type inputPTS struct {
	mu  sync.Mutex
	pts map[uint64]int64
}

func (in *inputPTS) put(h uint64, pts int64) {
	in.mu.Lock()
	in.pts[h] = pts
	in.mu.Unlock()
}

func (in *inputPTS) get(h uint64) (int64, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	p, ok := in.pts[h]
	return p, ok
}

// sliceHash hashes the coded slices of an H264 access unit: what no node may change, unlike the
// parameter sets and delimiters around them.
func sliceHash(au [][]byte) (uint64, bool) {
	h := fnv.New64a()
	found := false
	for _, nal := range au {
		if len(nal) > 0 && (nal[0]&0x1f == 1 || nal[0]&0x1f == 5) {
			h.Write(nal)
			found = true
		}
	}
	return h.Sum64(), found
}

func auHash(au []byte) uint64 {
	h := fnv.New64a()
	h.Write(au)
	return h.Sum64()
}

// offsets follows, for one track at one output, how far the output's timestamps sit from the
// input's (output time − input time, in 90 kHz ticks), per 30 s window of the run.
type offsets struct {
	name    string
	start   time.Time
	mu      sync.Mutex
	byWin   map[int][]int64
	matched int
	missed  int
}

func newOffsets(name string, start time.Time) *offsets {
	return &offsets{name: name, start: start, byWin: map[int][]int64{}}
}

func (o *offsets) add(in *inputPTS, h uint64, outTicks int64) {
	inPTS, ok := in.get(h)
	o.mu.Lock()
	defer o.mu.Unlock()
	if !ok {
		o.missed++
		return
	}
	o.matched++
	win := int(time.Since(o.start) / (30 * time.Second))
	o.byWin[win] = append(o.byWin[win], outTicks-inPTS)
}

// median of a window's offsets; ok is false for an empty window.
func (o *offsets) median(win int) (int64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	v := slices.Clone(o.byWin[win])
	if len(v) == 0 {
		return 0, false
	}
	slices.Sort(v)
	return v[len(v)/2], true
}

// spread is the range of a track's offsets over the whole run: zero for a node that converts
// timestamps exactly.
func (o *offsets) spread() time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	lo, hi := int64(1<<62), int64(-1<<62)
	for _, v := range o.byWin {
		for _, x := range v {
			lo, hi = min(lo, x), max(hi, x)
		}
	}
	return time.Duration(hi-lo) * time.Second / tsClock
}

// unwrap extends 32-bit RTP timestamps into a continuous count.
type unwrap struct {
	started bool
	last    uint32
	total   int64
}

func (u *unwrap) next(ts uint32) int64 {
	if !u.started {
		u.started, u.last, u.total = true, ts, int64(ts)
	}
	u.total += int64(int32(ts - u.last))
	u.last = ts
	return u.total
}

// readUnits demuxes MPEG-TS from r until it ends and hands on each H264 access unit (by the hash
// of its slices) and each AAC frame (by its hash) with its PTS in 90 kHz ticks.
func readUnits(t *testing.T, what string, r io.Reader, onVideo, onAudio func(h uint64, pts int64)) {
	tr := &mpegts.Reader{R: r}
	if err := tr.Initialize(); err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	for _, tk := range tr.Tracks() {
		switch c := tk.Codec.(type) {
		case *codecs.H264:
			tr.OnDataH264(tk, func(pts, _ int64, au [][]byte) error {
				if h, ok := sliceHash(au); ok {
					onVideo(h, pts)
				}
				return nil
			})
		case *codecs.MPEG4Audio:
			rate := int64(c.SampleRate)
			tr.OnDataMPEG4Audio(tk, func(pts int64, aus [][]byte) error {
				for i, au := range aus {
					onAudio(auHash(au), pts+int64(i)*1024*tsClock/rate)
				}
				return nil
			})
		}
	}
	tr.OnDecodeError(func(error) {})
	for tr.Read() == nil {
	}
}

// tsChunker sends what it is given to an SRT connection in whole 1316-byte payloads (seven TS
// packets), as an SRT encoder does.
type tsChunker struct {
	conn srt.Conn
	buf  []byte
}

func (c *tsChunker) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	for len(c.buf) >= 1316 {
		if _, err := c.conn.Write(c.buf[:1316]); err != nil {
			return 0, err
		}
		c.buf = c.buf[1316:]
	}
	return len(p), nil
}

// TestSRTLongRun publishes ten minutes of ffmpeg's test pattern and noise (H264 + AAC in MPEG-TS)
// over SRT and checks that the node neither drifts nor jumps any track's timestamps, so audio and
// video stay within one frame of each other: at the SRT output (MPEG-TS PTS) and at the WebRTC
// source (the RTP timestamps of the H264 and AAC tracks in the hub, which WHEP viewers get after
// a header rewrite). Every output access unit is matched by content to its input unit, whose PTS
// the test read from the stream it sent, so ffmpeg's own pacing does not enter the measure.
func TestSRTLongRun(t *testing.T) {
	dur := runDuration(t)
	const frame = time.Second / 30
	n := nodetest.Start(t, func(c *node.Config) { c.RTSP.Addr = "" })
	srtAddr := n.SRTAddr().String()
	const stream = "live/long"

	ctx, cancel := context.WithTimeout(t.Context(), dur+2*time.Minute)
	defer cancel()
	ff := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x180:rate=30",
		// Noise, not a tone: a tone's AAC frames repeat, and units are matched by content.
		"-f", "lavfi", "-i", "anoisesrc=color=pink:sample_rate=48000:amplitude=0.2:seed=7",
		"-t", fmt.Sprint(int((dur + 20*time.Second).Seconds())),
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "64k", "-f", "mpegts", "pipe:1")
	var ffErr strings.Builder
	ff.Stderr = &ffErr
	stdout, err := ff.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ff.Start(); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	defer func() {
		_ = ff.Process.Kill()
		_ = ff.Wait()
	}()

	// Publish: ffmpeg's MPEG-TS goes to the node over SRT, and through a demuxer here that
	// records each unit's input PTS.
	pconf := srt.DefaultConfig()
	pconf.StreamId = "publish:" + stream
	pub, err := srt.Dial("srt", srtAddr, pconf)
	if err != nil {
		t.Fatalf("srt publish: %v", err)
	}
	defer pub.Close()
	video, audio := &inputPTS{pts: map[uint64]int64{}}, &inputPTS{pts: map[uint64]int64{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		readUnits(t, "input", io.TeeReader(stdout, &tsChunker{conn: pub}), video.put, audio.put)
	})

	var st *hub.Stream
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := n.Hub().Stream(streamname.Name(stream))
		if err == nil {
			st = s
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stream %s after 20 s; ffmpeg said: %s", stream, ffErr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()

	// The WebRTC source: the hub's H264 and AAC tracks, depacketized, through a Rewriter as every
	// output reads them.
	rtpVideo, rtpAudio := newOffsets("webrtc-source h264", start), newOffsets("webrtc-source aac", start)
	for _, tr := range st.Tracks() {
		if tr.Source() != nil {
			continue
		}
		f, err := rtpformat.ToFormat(tr.Codec(), 96)
		if err != nil {
			t.Fatal(err)
		}
		clock := int64(tr.Codec().ClockRate)
		var decode func(*rtp.Packet) ([][]byte, error)
		var record func(aus [][]byte, ticks int64)
		switch f := f.(type) {
		case *format.H264:
			d, err := f.CreateDecoder()
			if err != nil {
				t.Fatal(err)
			}
			decode = d.Decode
			record = func(au [][]byte, ticks int64) {
				if h, ok := sliceHash(au); ok {
					rtpVideo.add(video, h, ticks)
				}
			}
		case *format.MPEG4Audio:
			d, err := f.CreateDecoder()
			if err != nil {
				t.Fatal(err)
			}
			decode = d.Decode
			record = func(aus [][]byte, ticks int64) {
				for i, au := range aus {
					rtpAudio.add(audio, auHash(au), ticks+int64(i)*1024*tsClock/clock)
				}
			}
		default:
			continue
		}
		r := tr.NewReader(0)
		rw := hub.NewRewriter(tr.Codec().ClockRate)
		wg.Go(func() {
			var pkt rtp.Packet
			var ts unwrap
			for {
				select {
				case e := <-r.C():
					if !rw.Rewrite(e, 1, 96, &pkt.Header) {
						continue
					}
					pkt.Payload = e.Packet.Payload
					ticks := ts.next(pkt.Timestamp) * tsClock / clock
					if aus, err := decode(&pkt); err == nil {
						record(aus, ticks)
					}
				case <-r.Done():
					return
				case <-ctx.Done():
					r.Close()
					return
				}
			}
		})
	}

	// The SRT output: MPEG-TS PTS of H264 and AAC.
	tsVideo, tsAudio := newOffsets("srt-output h264", start), newOffsets("srt-output aac", start)
	rconf := srt.DefaultConfig()
	rconf.StreamId = "read:" + stream
	conn, err := srt.Dial("srt", srtAddr, rconf)
	if err != nil {
		t.Fatalf("srt read: %v", err)
	}
	wg.Go(func() {
		readUnits(t, "srt read", bufio.NewReaderSize(conn, 1316*8),
			func(h uint64, pts int64) { tsVideo.add(video, h, pts) },
			func(h uint64, pts int64) { tsAudio.add(audio, h, pts) })
	})

	t.Logf("running for %v", dur)
	select {
	case <-time.After(dur):
	case <-ctx.Done():
	}
	cancel()
	_ = conn.Close()
	_ = pub.Close()
	_ = ff.Process.Kill()
	wg.Wait()

	windows := int(dur / (30 * time.Second))
	for _, pair := range [][2]*offsets{{tsVideo, tsAudio}, {rtpVideo, rtpAudio}} {
		v, a := pair[0], pair[1]
		for _, o := range pair {
			t.Logf("%s: %d units matched to their input (%d not), timestamps spread %v over the run", o.name, o.matched, o.missed, o.spread())
			if o.matched < int(dur/time.Second) {
				t.Errorf("%s: only %d units matched", o.name, o.matched)
			}
			if s := o.spread(); s > frame {
				t.Errorf("%s: timestamps moved by %v against the input's; want within one frame (%v)", o.name, s, frame)
			}
		}
		var first time.Duration
		var worst time.Duration
		for w := 0; w < windows; w++ {
			dv, ok1 := v.median(w)
			da, ok2 := a.median(w)
			if !ok1 || !ok2 {
				t.Errorf("%s/%s: no data in window %d", v.name, a.name, w)
				continue
			}
			d := time.Duration(dv-da) * time.Second / tsClock
			if w == 0 {
				first = d
			}
			worst = max(worst, d-first, first-d)
		}
		t.Logf("%s vs %s: A/V offset moved at most %v from the first half minute over %v", v.name, a.name, worst, dur)
		if worst > frame {
			t.Errorf("%s and %s drifted %v apart; want within one frame (%v)", v.name, a.name, worst, frame)
		}
	}
}
