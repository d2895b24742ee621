package transcode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/pion/rtp"

	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/rtpformat"
)

// ptsBase is where the MPEG-TS timestamps given to ffmpeg start (in 90 kHz ticks), far enough
// from zero that the encoder's priming never makes them negative.
const ptsBase = 90000

// opusClock is the RTP clock of Opus.
const opusClock = 48000

// aacToOpus fills one derived Opus track from its AAC source track. It reads the source through
// one hub reader for its whole life, so timestamps stay continuous across ffmpeg restarts: the
// MPEG-TS given to ffmpeg carries the source's elapsed time as PTS (-copyts keeps it), and the
// Opus RTP timestamps are computed from the PTS ffmpeg returns.
type aacToOpus struct {
	s      *Supervisor
	track  *hub.Track // the derived one
	layer  *hub.Layer
	log    *slog.Logger
	aac    *format.MPEG4Audio
	reader *hub.Reader

	// source clock, owned by the feeding goroutine
	rewriter  *hub.Rewriter
	hdr       rtp.Header
	started   bool
	lastTS    uint32
	elapsed   int64 // source ticks since the first packet
	sinceIdle time.Time

	// output, owned by the goroutine reading ffmpeg
	ssrc uint32
	seq  uint16

	procMu sync.Mutex
	proc   *os.Process // the running ffmpeg, for tests
}

func (j *aacToOpus) process() *os.Process {
	j.procMu.Lock()
	defer j.procMu.Unlock()
	return j.proc
}

func newAACToOpus(s *Supervisor, t *hub.Track) *aacToOpus {
	return &aacToOpus{
		s:        s,
		track:    t,
		layer:    t.Layer(""),
		log:      s.log.With("stream", t.Stream().Name().String(), "track", t.Index()),
		rewriter: hub.NewRewriter(t.Source().Codec().ClockRate),
		ssrc:     rand.Uint32(),
		seq:      uint16(rand.Uint32()),
	}
}

// errNotNeeded ends a job whose track lost its readers or whose stream ended.
var errNotNeeded = errors.New("transcoder no longer needed")

func (j *aacToOpus) run() {
	f, err := rtpformat.ToFormat(j.track.Source().Codec(), 96)
	if err != nil {
		j.log.Error("transcode: cannot read the AAC track", "err", err)
		j.s.stats.Failures.Add(1)
		return
	}
	aac, ok := f.(*format.MPEG4Audio)
	if !ok || aac.Config == nil {
		j.log.Error("transcode: source track is not AAC with a config", "codec", j.track.Source().Codec().MimeType)
		j.s.stats.Failures.Add(1)
		return
	}
	j.aac = aac
	j.reader = j.track.Source().NewReader(0)
	defer j.reader.Close()
	j.sinceIdle = time.Now()
	j.log.Info("transcoder started", "from", "aac", "to", "opus", "sample_rate", aac.Config.SampleRate)
	defer j.log.Info("transcoder stopped")

	for {
		err := j.runFFmpeg()
		if errors.Is(err, errNotNeeded) {
			return
		}
		j.s.stats.Failures.Add(1)
		j.log.Warn("transcoder ffmpeg ended: restarting", "err", err, "after", j.s.cfg.RestartDelay)
		select {
		case <-j.s.done:
			return
		case <-j.reader.Done():
			return
		case <-time.After(j.s.cfg.RestartDelay):
		}
	}
}

// ffmpegArgs reads MPEG-TS with AAC on stdin and writes MPEG-TS with Opus on stdout, keeping the
// input timestamps and buffering as little as it can.
func (j *aacToOpus) ffmpegArgs() []string {
	return []string{
		"-hide_banner", "-nostdin", "-loglevel", "error",
		"-fflags", "nobuffer", "-probesize", "32", "-analyzeduration", "0",
		"-f", "mpegts", "-i", "pipe:0",
		"-map", "0:a:0", "-c:a", "libopus", "-b:a", strconv.Itoa(j.s.cfg.OpusBitrate),
		"-ar", "48000", "-ac", "2", "-frame_duration", "20", "-application", "lowdelay",
		"-copyts", "-muxdelay", "0", "-muxpreload", "0", "-flush_packets", "1",
		"-f", "mpegts", "pipe:1",
	}
}

// runFFmpeg runs one ffmpeg process until it dies or is no longer needed.
func (j *aacToOpus) runFFmpeg() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, j.s.cfg.FFmpeg, j.ffmpegArgs()...)
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("ffmpeg stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("ffmpeg stdout: %w", err)
	}
	stderr := &tailBuffer{max: 2048}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", j.s.cfg.FFmpeg, err)
	}
	j.s.stats.Started.Add(1)
	j.procMu.Lock()
	j.proc = cmd.Process
	j.procMu.Unlock()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		// Kill ffmpeg when the node closes or the source ends, even if a write to it is stuck.
		defer wg.Done()
		select {
		case <-j.s.done:
		case <-j.reader.Done():
		case <-ctx.Done():
		}
		cancel()
	}()
	outErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		outErr <- j.readOpus(stdout)
	}()
	feedErr := j.feed(ctx, stdin, outErr)
	_ = stdin.Close()
	cancel()
	waitErr := cmd.Wait()
	wg.Wait()
	if errors.Is(feedErr, errNotNeeded) {
		return feedErr
	}
	msg := strings.TrimSpace(stderr.String())
	if msg != "" {
		return fmt.Errorf("%w; %v: %s", feedErr, waitErr, msg)
	}
	return fmt.Errorf("%w; %v", feedErr, waitErr)
}

// feed writes the source's AAC to ffmpeg as MPEG-TS until ffmpeg fails or the job is not needed.
func (j *aacToOpus) feed(ctx context.Context, stdin io.Writer, outErr <-chan error) error {
	bw := bufio.NewWriterSize(stdin, 4096)
	w := &mpegts.Writer{W: bw, Tracks: []*mpegts.Track{{Codec: &codecs.MPEG4Audio{Config: *j.aac.Config}}}}
	if err := w.Initialize(); err != nil {
		return fmt.Errorf("mpegts writer: %w", err)
	}
	dec, err := j.aac.CreateDecoder()
	if err != nil {
		return fmt.Errorf("aac depacketizer: %w", err)
	}
	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	for {
		select {
		case <-j.s.done:
			return errNotNeeded
		case <-j.reader.Done():
			return errNotNeeded
		case err := <-outErr:
			return fmt.Errorf("reading ffmpeg output: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-idle.C:
			if j.track.ReaderCount() > 0 {
				j.sinceIdle = time.Now()
			} else if time.Since(j.sinceIdle) >= j.s.cfg.Linger {
				return errNotNeeded
			}
		case e := <-j.reader.C():
			if err := j.writeAAC(w, bw, dec, e); err != nil {
				return err
			}
		}
	}
}

func (j *aacToOpus) writeAAC(w *mpegts.Writer, bw *bufio.Writer, dec *rtpmpeg4audio.Decoder, e hub.Entry) error {
	if !j.rewriter.Rewrite(e, 0, 0, &j.hdr) {
		return nil
	}
	if !j.started {
		j.started, j.lastTS = true, j.hdr.Timestamp
	}
	j.elapsed += int64(int32(j.hdr.Timestamp - j.lastTS))
	j.lastTS = j.hdr.Timestamp
	aus, err := dec.Decode(&rtp.Packet{Header: j.hdr, Payload: e.Packet.Payload})
	if err != nil {
		return nil // a fragment awaiting the rest, or a broken packet: it costs its own audio only
	}
	pts := ptsBase + j.elapsed*90000/int64(j.aac.Config.SampleRate)
	if err := w.WriteMPEG4Audio(w.Tracks[0], pts, aus); err != nil {
		return fmt.Errorf("mux aac: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write to ffmpeg: %w", err)
	}
	return nil
}

// readOpus turns ffmpeg's MPEG-TS output into RTP packets on the derived layer.
func (j *aacToOpus) readOpus(r io.Reader) error {
	tr := &mpegts.Reader{R: bufio.NewReaderSize(r, 188*16)}
	if err := tr.Initialize(); err != nil {
		return fmt.Errorf("ffmpeg output: %w", err)
	}
	var opus *mpegts.Track
	for _, t := range tr.Tracks() {
		if _, ok := t.Codec.(*codecs.Opus); ok {
			opus = t
		}
	}
	if opus == nil {
		return errors.New("ffmpeg output has no Opus track")
	}
	tr.OnDecodeError(func(error) {})
	tr.OnDataOpus(opus, func(pts int64, packets [][]byte) error {
		ts := (pts - ptsBase) * opusClock / 90000
		for _, p := range packets {
			j.seq++
			payload := append([]byte(nil), p...)
			j.layer.WritePacket(&hub.Packet{
				Header:  rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: j.seq, Timestamp: uint32(ts), SSRC: j.ssrc, Marker: false},
				Payload: payload,
			})
			j.s.stats.Packets.Add(1)
			ts += int64(opusDuration(p))
		}
		return nil
	})
	for {
		if err := tr.Read(); err != nil {
			return err
		}
	}
}

// opusDuration is the length of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716
// §3.1); 960 (20 ms) if the packet is too short to say.
func opusDuration(p []byte) int {
	if len(p) == 0 {
		return 960
	}
	toc := p[0]
	config := toc >> 3
	var frame int // in samples at 48 kHz
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = []int{480, 960, 1920, 2880}[config&3]
	case config < 16: // hybrid: 10, 20 ms
		frame = []int{480, 960}[config&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = []int{120, 240, 480, 960}[config&3]
	}
	switch toc & 3 {
	case 0:
		return frame
	case 1, 2:
		return 2 * frame
	default:
		if len(p) < 2 {
			return frame
		}
		return int(p[1]&0x3f) * frame
	}
}

// tailBuffer keeps the last max bytes written to it: ffmpeg's last words.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
