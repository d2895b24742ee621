package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	srt "github.com/datarhei/gosrt"
)

// srtPayload is the SRT payload size: seven MPEG-TS packets, as every SRT encoder sends.
const srtPayload = 7 * 188

// srtStreamID is the SRT access-control streamid for mode (publish or request) on the stream.
func srtStreamID(cfg Config, mode string) string {
	id := "#!::r=" + cfg.Stream + ",m=" + mode
	tok := cfg.Token
	if mode == "publish" {
		tok = cfg.publishToken()
	}
	if tok != "" {
		id += ",t=" + tok
	}
	return id
}

func dialSRT(cfg Config, mode string) (srt.Conn, error) {
	c := srt.DefaultConfig()
	c.StreamId = srtStreamID(cfg, mode)
	c.Passphrase = cfg.SRTPassphrase
	if cfg.SRTLatency > 0 {
		c.Latency = cfg.SRTLatency
		c.ReceiverLatency = cfg.SRTLatency
		c.PeerLatency = cfg.SRTLatency
	}
	c.ConnectionTimeout = cfg.ConnectTimeout
	conn, err := srt.Dial("srt", cfg.SRT, c)
	if err != nil {
		return nil, fmt.Errorf("srt %s (%s): %w", cfg.SRT, mode, err)
	}
	return conn, nil
}

// srtPublisher sends the synthetic H264 and Opus as MPEG-TS over SRT, paced in real time. Each
// slice NAL unit and each Opus packet ends with a send-time stamp, which survives the server's
// conversion to RTP. SRT cannot carry keyframe requests: keyframes come every GOPDuration.
type srtPublisher struct {
	log      *slog.Logger
	conn     srt.Conn
	bitrate  Bitrate
	counters publisherCounters

	mu    sync.Mutex // the video and audio loops share the muxer
	out   *bufio.Writer
	ts    *mpegts.Writer
	video *mpegts.Track
	audio *mpegts.Track

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startSRTPublisher(cfg Config, log *slog.Logger) (*srtPublisher, error) {
	conn, err := dialSRT(cfg, "publish")
	if err != nil {
		return nil, err
	}
	p := &srtPublisher{log: log, conn: conn, bitrate: cfg.VideoBitrate}
	p.out = bufio.NewWriterSize(conn, srtPayload)
	p.video = &mpegts.Track{Codec: &codecs.H264{}}
	p.audio = &mpegts.Track{Codec: &codecs.Opus{ChannelCount: 1}}
	p.ts = &mpegts.Writer{W: p.out, Tracks: []*mpegts.Track{p.video, p.audio}}
	if err := p.ts.Initialize(); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("mpegts writer: %w", err)
	}
	log.Info("publisher connected", "srt", cfg.SRT)
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(2)
	go p.sendVideo(ctx)
	go p.sendAudio(ctx)
	if err := waitReadable(cfg); err != nil {
		p.Close(ctx)
		return nil, err
	}
	return p, nil
}

// waitReadable waits until the server lets a reader in: a server learns an MPEG-TS stream's tracks
// from its first packets, and refuses readers until then.
func waitReadable(cfg Config) error {
	deadline := time.Now().Add(cfg.ConnectTimeout)
	for {
		conn, err := dialSRT(cfg, "request")
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the published stream did not become readable: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// write muxes under the lock and sends what is complete; a failed write is counted.
func (p *srtPublisher) write(mux func() error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := mux(); err == nil {
		err = p.out.Flush()
		if err == nil {
			return
		}
	}
	p.counters.writeErrors.Add(1)
}

func (p *srtPublisher) sendVideo(ctx context.Context) {
	defer p.wg.Done()
	gen := newH264Generator(p.bitrate, VideoFPS, int(GOPDuration*VideoFPS/time.Second), 1)
	pace(ctx, time.Second/VideoFPS, func(n int, _ time.Time) {
		nals, key := gen.nextAccessUnit(false)
		if key {
			p.counters.keyframes.Add(1)
		}
		slice := nals[len(nals)-1]
		pts := int64(n) * 90_000 / VideoFPS
		p.write(func() error {
			writeStamp(slice, time.Now().UnixNano())
			return p.ts.WriteH264(p.video, pts, pts, nals)
		})
		for _, nal := range nals {
			p.counters.videoBytes.Add(uint64(len(nal)))
		}
		p.counters.videoPackets.Add(1)
	})
}

func (p *srtPublisher) sendAudio(ctx context.Context) {
	defer p.wg.Done()
	payload := newOpusPayload(2)
	pace(ctx, opusFrameDuration, func(n int, _ time.Time) {
		pts := int64(n) * int64(opusFrameDuration) * 90_000 / int64(time.Second)
		p.write(func() error {
			writeStamp(payload, time.Now().UnixNano())
			return p.ts.WriteOpus(p.audio, pts, [][]byte{payload})
		})
		p.counters.audioPackets.Add(1)
	})
}

func (p *srtPublisher) Close(context.Context) {
	p.cancel()
	p.wg.Wait()
	_ = p.conn.Close()
}

func (p *srtPublisher) snapshot() publisherSnapshot { return p.counters.snapshot() }

// pacerStats is nil: SRT paces its own sending.
func (p *srtPublisher) pacerStats() *PacerStats { return nil }

// writeDelays is nil: the SRT publisher's packets are measured from their stamps.
func (p *srtPublisher) writeDelays() *Percentiles { return nil }

// Failed reports whether sending failed: SRT writes fail once the connection is gone.
func (p *srtPublisher) Failed() bool { return p.counters.writeErrors.Load() > 0 }

// connectSRT reads the stream as MPEG-TS over SRT. Delay comes from the stamps at the end of each
// slice and Opus packet; loss is estimated from gaps in the stamps' frame slots (MPEG-TS has no
// sequence numbers the demuxer exposes), and time to first frame is to the first IDR.
func (s *subscriber) connectSRT(cfg Config) error {
	s.postedAt.Store(time.Now().UnixNano())
	conn, err := dialSRT(cfg, "request")
	if err != nil {
		return err
	}
	s.closeFn = conn.Close
	if !s.enter() {
		_ = conn.Close()
		return errors.New("subscriber closed")
	}
	ready := make(chan error, 1)
	go func() {
		defer s.wg.Done()
		s.readTS(conn, ready)
	}()
	select {
	case err := <-ready:
		return err
	case <-time.After(cfg.ConnectTimeout):
		return fmt.Errorf("srt %s: no MPEG-TS program within %v", cfg.SRT, cfg.ConnectTimeout)
	}
}

func (s *subscriber) readTS(conn srt.Conn, ready chan<- error) {
	r := &mpegts.Reader{R: bufio.NewReaderSize(conn, srtPayload*4)}
	if err := r.Initialize(); err != nil {
		ready <- fmt.Errorf("mpegts: %w", err)
		return
	}
	var video, audio slotCounter
	video.interval, audio.interval = int64(time.Second/VideoFPS), int64(opusFrameDuration)
	for _, t := range r.Tracks() {
		switch t.Codec.(type) {
		case *codecs.H264:
			r.OnDataH264(t, func(_, _ int64, au [][]byte) error {
				now := time.Now()
				for _, nal := range au {
					typ := nal[0] & 0x1f
					if typ == nalIDR && s.firstKeyframe.Load() == 0 {
						since := max(1, now.UnixNano()-s.postedAt.Load())
						s.firstVideo.CompareAndSwap(0, since)
						s.firstKeyframe.Store(since)
					}
					if typ != nalIDR && typ != nalSlice {
						continue
					}
					s.firstVideo.CompareAndSwap(0, max(1, now.UnixNano()-s.postedAt.Load()))
					if stamp, ok := readStamp(nal); ok && s.measuring.Load() {
						s.video.seq.add(video.slot(stamp))
						s.video.delay.record(time.Duration(now.UnixNano() - s.out.sentAt(stamp)))
					}
				}
				return nil
			})
		case *codecs.Opus:
			r.OnDataOpus(t, func(_ int64, packets [][]byte) error {
				now := time.Now()
				for _, p := range packets {
					if stamp, ok := readStamp(p); ok && s.measuring.Load() {
						s.audio.seq.add(audio.slot(stamp))
						s.audio.delay.record(time.Duration(now.UnixNano() - s.out.sentAt(stamp)))
					}
				}
				return nil
			})
		}
	}
	r.OnDecodeError(func(error) {})
	ready <- nil
	for {
		if err := r.Read(); err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if !closing && !strings.Contains(err.Error(), "closed") {
				s.dropped.Store(true)
			}
			return
		}
	}
}

// slotCounter turns send times, taken on a fixed pacing grid, into sequence numbers: the slot of
// the grid each was sent in, counted from the first seen.
type slotCounter struct {
	interval int64
	origin   int64
}

func (c *slotCounter) slot(sent int64) uint16 {
	if c.origin == 0 {
		c.origin = sent
	}
	return uint16((sent - c.origin + c.interval/2) / c.interval)
}
