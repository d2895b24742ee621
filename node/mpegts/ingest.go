package mpegts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtpsimpleaudio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	tsf "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/streamfleet/streamfleet/internal/streamname"
	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/rtpformat"
)

// Ingest defaults.
const (
	DefaultProbeTimeout = 5 * time.Second
	DefaultProbeBytes   = 8 << 20
	DefaultInputTimeout = 5 * time.Second
)

// IngestConfig configures one MPEG-TS input.
type IngestConfig struct {
	// Name is the stream to publish.
	Name streamname.Name
	// Log gets the input's lines; it should carry the stream and session attributes.
	Log *slog.Logger
	// Stats receives the counters; nil keeps them private.
	Stats *Stats
	// ProbeTimeout and ProbeBytes bound the start of the input that is buffered until every
	// track has shown its codec parameters (SPS and PPS for video, the config for AAC). Tracks
	// still unknown at the bound are left out.
	ProbeTimeout time.Duration
	ProbeBytes   int
	// InputTimeout ends the input when it carried no valid media for this long.
	InputTimeout time.Duration
}

func (c *IngestConfig) defaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Stats == nil {
		c.Stats = &Stats{}
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.ProbeBytes <= 0 {
		c.ProbeBytes = DefaultProbeBytes
	}
	if c.InputTimeout <= 0 {
		c.InputTimeout = DefaultInputTimeout
	}
}

// Ingest reads MPEG-TS from r and publishes its H264, H265, AAC and Opus tracks to stream
// cfg.Name on h until r ends (nil), ctx ends, or the input becomes unusable. It closes r when it
// has to stop reading early. When it returns the publication is detached with Close, so a
// publisher that reconnects within the hub's grace period takes its stream back.
//
// Broken input never panics: unparseable bytes, packets and PES are skipped and counted in
// Stats.TSErrors; only an input without valid media for InputTimeout ends.
func Ingest(ctx context.Context, h *hub.Hub, r io.ReadCloser, cfg IngestConfig) error {
	cfg.defaults()
	in := &ingest{cfg: cfg, hub: h, log: cfg.Log, stats: cfg.Stats, probing: true, started: time.Now()}
	in.src = &watchedReader{r: r, limit: int64(cfg.ProbeBytes)}
	in.src.lastValid.Store(in.started.UnixNano())

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		in.watch(ctx, stop)
	}()
	err := in.run()
	close(stop)
	wg.Wait()
	if in.pub != nil {
		in.pub.Close()
	}
	if reason := in.src.reason.Load(); reason != nil {
		if errors.Is(*reason, ErrInputUnusable) {
			in.stats.TSErrors.Add(1)
		}
		return *reason
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// watch ends the input when ctx ends or no valid media came for InputTimeout.
func (in *ingest) watch(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(in.cfg.InputTimeout / 10)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			in.src.abort(ctx.Err())
			return
		case now := <-t.C:
			if idle := now.UnixNano() - in.src.lastValid.Load(); idle > int64(in.cfg.InputTimeout) {
				in.src.abort(fmt.Errorf("%w (%s)", ErrInputUnusable, in.cfg.InputTimeout))
				return
			}
		}
	}
}

// watchedReader counts the bytes read, caps them while the tracks are probed, and can be closed
// from the watchdog to unblock a read.
type watchedReader struct {
	r         io.ReadCloser
	limit     int64
	n         atomic.Int64
	probed    atomic.Bool
	lastValid atomic.Int64 // UnixNano of the last valid media
	reason    atomic.Pointer[error]
	readErr   atomic.Pointer[error] // the last error of the underlying reader: fatal
	once      sync.Once
}

func (w *watchedReader) Read(p []byte) (int, error) {
	if !w.probed.Load() && w.n.Load() > w.limit {
		err := fmt.Errorf("%w: no program table in the first %d bytes", ErrProbeTimeout, w.limit)
		w.readErr.Store(&err)
		return 0, err
	}
	n, err := w.r.Read(p)
	w.n.Add(int64(n))
	if err != nil {
		w.readErr.Store(&err)
	}
	return n, err
}

func (w *watchedReader) abort(err error) {
	w.once.Do(func() {
		w.reason.Store(&err)
		_ = w.r.Close()
	})
}

type codecKind int

const (
	codecH264 codecKind = iota
	codecH265
	codecAAC
	codecOpus
)

// inTrack is one supported elementary stream of the input.
type inTrack struct {
	ts     *tsf.Track
	kind   codecKind
	params paramSets
	clock  ptsToRTP
	aac    *mpeg4audio.AudioSpecificConfig
	layer  *hub.Layer

	h264 *rtph264.Encoder
	h265 *rtph265.Encoder
	mp4a *rtpmpeg4audio.Encoder
	opus *rtpsimpleaudio.Encoder
}

func (t *inTrack) ready() bool {
	switch t.kind {
	case codecH264:
		return t.params.ready() && len(t.params.sps) >= 4
	case codecH265:
		return t.params.ready()
	}
	return true
}

type pendingData struct {
	t    *inTrack
	pts  int64
	data [][]byte
}

type ingest struct {
	cfg   IngestConfig
	hub   *hub.Hub
	log   *slog.Logger
	stats *Stats
	src   *watchedReader

	tracks  []*inTrack
	pub     *hub.Publication
	started time.Time

	probing      bool
	pending      []pendingData
	pendingBytes int
	origin       int64
	originSet    bool
}

func (in *ingest) run() error {
	// The program table, and for AAC the first frame, come before anything else. A broken one is
	// skipped: the reader starts over on the bytes that follow, until the input ends or the
	// watchdog gives up on it.
	var rd *tsf.Reader
	for {
		rd = &tsf.Reader{R: newPESLengthFiller(in.src)}
		err := rd.Initialize()
		if err == nil {
			break
		}
		if in.src.readErr.Load() != nil {
			return fmt.Errorf("read program table: %w", err)
		}
		in.stats.TSErrors.Add(1)
	}
	in.src.probed.Store(true)
	rd.OnDecodeError(func(error) { in.stats.TSErrors.Add(1) })

	for _, tr := range rd.Tracks() {
		t := &inTrack{ts: tr}
		switch c := tr.Codec.(type) {
		case *tsf.CodecH264:
			t.kind = codecH264
			rd.OnDataH264(tr, func(pts, dts int64, au [][]byte) error { return in.video(t, pts, dts, au) })
		case *tsf.CodecH265:
			t.kind, t.params.h265 = codecH265, true
			rd.OnDataH265(tr, func(pts, dts int64, au [][]byte) error { return in.video(t, pts, dts, au) })
		case *tsf.CodecMPEG4Audio:
			t.kind = codecAAC
			conf := c.Config
			t.aac = &conf
			rd.OnDataMPEG4Audio(tr, func(pts int64, aus [][]byte) error { return in.data(t, pts, aus) })
		case *tsf.CodecOpus:
			t.kind = codecOpus
			rd.OnDataOpus(tr, func(pts int64, packets [][]byte) error { return in.data(t, pts, packets) })
		default:
			in.stats.SkippedTracks.Add(1)
			in.log.Warn("mpeg-ts input: skipping a track with an unsupported codec", "pid", tr.PID, "codec", fmt.Sprintf("%T", tr.Codec))
			continue
		}
		in.tracks = append(in.tracks, t)
	}
	if len(in.tracks) == 0 {
		return fmt.Errorf("%w: the input has %d tracks, none H264, H265, AAC or Opus", ErrNoSupportedTrack, len(rd.Tracks()))
	}
	if len(in.tracks) > hub.MaxTracks/2 {
		in.tracks = in.tracks[:hub.MaxTracks/2] // leave room for derived tracks
	}
	for {
		if err := rd.Read(); err != nil {
			return err
		}
		if in.probing && in.probeExpired() {
			if err := in.publish(); err != nil {
				return err
			}
		}
	}
}

func (in *ingest) probeExpired() bool {
	return time.Since(in.started) > in.cfg.ProbeTimeout || in.pendingBytes > in.cfg.ProbeBytes
}

func (in *ingest) video(t *inTrack, pts, dts int64, au [][]byte) error {
	if pts != dts {
		in.stats.BFrameRefusals.Add(1)
		return ErrBFrames
	}
	return in.data(t, pts, t.params.apply(au))
}

// data takes one access unit (video) or a group of audio frames with the PTS of the first.
func (in *ingest) data(t *inTrack, pts int64, data [][]byte) error {
	if len(data) == 0 {
		in.stats.TSErrors.Add(1)
		return nil
	}
	in.src.lastValid.Store(time.Now().UnixNano())
	if !in.originSet {
		in.origin, in.originSet = pts&tsMask, true
	}
	if !in.probing {
		if t.layer != nil {
			in.write(t, pts, data)
		}
		return nil
	}
	in.pending = append(in.pending, pendingData{t: t, pts: pts, data: data})
	for _, d := range data {
		in.pendingBytes += len(d)
	}
	for _, t := range in.tracks {
		if !t.ready() {
			if in.probeExpired() {
				return in.publish()
			}
			return nil
		}
	}
	return in.publish()
}

// publish ends the probe: it publishes the tracks whose parameters are known and writes what was
// buffered.
func (in *ingest) publish() error {
	in.probing = false
	var specs []hub.TrackSpec
	var published []*inTrack
	for _, t := range in.tracks {
		if !t.ready() {
			in.stats.SkippedTracks.Add(1)
			in.log.Warn("mpeg-ts input: skipping a track whose parameters did not arrive in time", "pid", t.ts.PID, "timeout", in.cfg.ProbeTimeout)
			continue
		}
		c, err := t.setup()
		if err != nil {
			in.stats.SkippedTracks.Add(1)
			in.log.Warn("mpeg-ts input: skipping a track", "pid", t.ts.PID, "error", err)
			continue
		}
		specs = append(specs, hub.TrackSpec{Codec: c})
		published = append(published, t)
	}
	if len(specs) == 0 {
		return fmt.Errorf("%w: no track showed its codec parameters within %s", ErrNoSupportedTrack, in.cfg.ProbeTimeout)
	}
	pub, err := in.hub.Publish(in.cfg.Name, specs)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	in.pub = pub
	tracks := pub.Stream().Tracks()
	for i, t := range published {
		t.layer = tracks[i].Layer("")
		stats := in.stats
		t.layer.SetKeyframeRequester(func() { stats.KeyframeRequests.Add(1) })
	}
	codecs := make([]string, len(specs))
	for i, s := range specs {
		codecs[i] = s.Codec.MimeType
	}
	in.log.Info("mpeg-ts input published", "tracks", codecs)
	for _, p := range in.pending {
		if p.t.layer != nil {
			in.write(p.t, p.pts, p.data)
		}
	}
	in.pending, in.pendingBytes = nil, 0
	return nil
}

// setup builds the track's RTP packetizer and returns its hub codec.
func (t *inTrack) setup() (webrtc.RTPCodecCapability, error) {
	switch t.kind {
	case codecH264:
		t.clock.rate = 90000
		f := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: t.params.sps, PPS: t.params.pps}
		enc, err := f.CreateEncoder()
		if err != nil {
			return webrtc.RTPCodecCapability{}, err
		}
		t.h264 = enc
		return webrtc.RTPCodecCapability{MimeType: rtpformat.MimeH264, ClockRate: 90000, SDPFmtpLine: h264Fmtp(t.params.sps)}, nil
	case codecH265:
		t.clock.rate = 90000
		f := &format.H265{PayloadTyp: 96, VPS: t.params.vps, SPS: t.params.sps, PPS: t.params.pps}
		enc, err := f.CreateEncoder()
		if err != nil {
			return webrtc.RTPCodecCapability{}, err
		}
		t.h265 = enc
		return webrtc.RTPCodecCapability{MimeType: rtpformat.MimeH265, ClockRate: 90000}, nil
	case codecAAC:
		if t.aac.SampleRate <= 0 {
			return webrtc.RTPCodecCapability{}, fmt.Errorf("aac sample rate %d", t.aac.SampleRate)
		}
		t.clock.rate = int64(t.aac.SampleRate)
		f := &format.MPEG4Audio{PayloadTyp: 96, Config: t.aac, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}
		enc, err := f.CreateEncoder()
		if err != nil {
			return webrtc.RTPCodecCapability{}, err
		}
		t.mp4a = enc
		return rtpformat.FromFormat(f)
	default: // codecOpus
		t.clock.rate = 48000
		f := &format.Opus{PayloadTyp: 111, ChannelCount: 2}
		enc, err := f.CreateEncoder()
		if err != nil {
			return webrtc.RTPCodecCapability{}, err
		}
		t.opus = enc
		return hub.DerivedOpus, nil
	}
}

// write packetizes one access unit (or group of audio frames) and hands it to the hub.
func (in *ingest) write(t *inTrack, pts int64, data [][]byte) {
	_, ts := t.clock.convert(in.origin, pts)
	var pkts []*rtp.Packet
	var err error
	switch t.kind {
	case codecH264:
		pkts, err = t.h264.Encode(data)
		for _, p := range pkts {
			p.Timestamp = ts
		}
	case codecH265:
		pkts, err = t.h265.Encode(data)
		for _, p := range pkts {
			p.Timestamp = ts
		}
	case codecAAC:
		pkts, err = t.mp4a.Encode(data)
		for _, p := range pkts {
			p.Timestamp += ts
		}
	case codecOpus:
		off := uint32(0)
		for _, frame := range data {
			p, e := t.opus.Encode(frame)
			if e != nil {
				err = e
				continue
			}
			p.Timestamp = ts + off
			off += uint32(opus.PacketDuration2(frame))
			pkts = append(pkts, p)
		}
	}
	if err != nil {
		in.stats.TSErrors.Add(1)
	}
	for _, p := range pkts {
		t.layer.WritePacket(&hub.Packet{Header: p.Header, Payload: p.Payload})
	}
}
