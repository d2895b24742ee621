package mpegts

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtpsimpleaudio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	tsf "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/pion/rtp"

	"github.com/streamfleet/streamfleet/node/hub"
	"github.com/streamfleet/streamfleet/node/rtpformat"
)

// ChunkSize is the largest chunk of MPEG-TS a muxer hands out: seven 188-byte packets, the
// payload of one SRT (or UDP) datagram.
const ChunkSize = 7 * 188

// Chunk is a run of whole MPEG-TS packets. Data is shared by every subscriber and must not be
// modified.
type Chunk struct {
	Data []byte
	// Start is set on a chunk a new reader can begin with: it opens with the program tables
	// and a video keyframe (or, for a stream without video, an audio frame).
	Start bool
}

// MuxerConfig configures muxers.
type MuxerConfig struct {
	Log   *slog.Logger
	Stats *Stats
	// ReaderQueue bounds each hub track reader's queue, in RTP packets.
	ReaderQueue int
}

func (c *MuxerConfig) defaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Stats == nil {
		c.Stats = &Stats{}
	}
}

// audioTablesEvery is how often a stream without video repeats its program tables, so readers
// joining it can start.
const audioTablesEvery = time.Second

// ptsStart is the PTS of a muxer's first frame: a second in, so the PCR (a little behind the
// PTS) is never negative.
const ptsStart = tsClock

// Muxer turns the tracks of one hub stream into one MPEG-TS byte stream, fanned out to its
// subscribers. H264, H265, AAC and Opus tracks are muxed; VP8, VP9 and AV1 cannot be carried in
// MPEG-TS for common players and are skipped, as are derived tracks (the original codec is sent).
// One goroutine per track reads the hub and writes the shared MPEG-TS writer under mu.
type Muxer struct {
	stream *hub.Stream
	cfg    MuxerConfig
	log    *slog.Logger
	owner  *Muxers

	tracks []*muxTrack
	video  *muxTrack // the track new readers start on; nil for audio-only

	mu           sync.Mutex // guards everything below it up to subsMu
	w            *tsf.Writer
	cur          []byte
	curStart     bool
	nextStart    bool
	videoStarted bool
	lastTables   time.Time
	startNanos   int64

	subs           atomic.Pointer[[]*Subscriber] // copy-on-write; written under Muxers.mu
	keyframeWanted atomic.Bool                   // a subscriber dropped and waits for a keyframe

	wg        sync.WaitGroup
	done      chan struct{}
	closeOnce sync.Once
}

// muxTrack reads one hub track and depacketizes it.
type muxTrack struct {
	m      *Muxer
	track  *hub.Track
	ts     *tsf.Track
	kind   codecKind
	reader *hub.Reader
	rw     *hub.Rewriter
	pkt    rtp.Packet
	clock  rtpToPTS
	params paramSets

	h264 *rtph264.Decoder
	h265 *rtph265.Decoder
	mp4a *rtpmpeg4audio.Decoder
	opus *rtpsimpleaudio.Decoder
	aac  *format.MPEG4Audio

	pending   bool // a video frame is being assembled
	pendingTS uint32
}

// SupportedTracks returns the tracks of s a Muxer carries, and describes the skipped ones.
func SupportedTracks(s *hub.Stream) (tracks []*hub.Track, skipped []string) {
	for _, t := range s.Tracks() {
		if t.Source() != nil {
			continue // derived: readers of MPEG-TS get the original
		}
		switch strings.ToLower(t.Codec().MimeType) {
		case strings.ToLower(rtpformat.MimeH264), strings.ToLower(rtpformat.MimeH265),
			strings.ToLower(rtpformat.MimeAAC), strings.ToLower(rtpformat.MimeOpus):
			tracks = append(tracks, t)
		default:
			skipped = append(skipped, t.Codec().MimeType)
		}
	}
	return tracks, skipped
}

// newMuxer prepares a muxer of s; start starts it.
func newMuxer(s *hub.Stream, cfg MuxerConfig) (*Muxer, error) {
	cfg.defaults()
	m := &Muxer{stream: s, cfg: cfg, log: cfg.Log.With("stream", s.Name()), done: make(chan struct{}), nextStart: true}
	m.subs.Store(&[]*Subscriber{})
	tracks, skipped := SupportedTracks(s)
	if len(skipped) > 0 {
		m.log.Info("mpeg-ts output: skipping tracks MPEG-TS cannot carry", "codecs", skipped)
	}
	var tsTracks []*tsf.Track
	for _, t := range tracks {
		mt := &muxTrack{m: m, track: t, rw: hub.NewRewriter(t.Codec().ClockRate)}
		mt.clock.rate = int64(t.Codec().ClockRate)
		if err := mt.setup(); err != nil {
			m.log.Warn("mpeg-ts output: skipping a track", "codec", t.Codec().MimeType, "error", err)
			continue
		}
		if mt.ts.Codec.IsVideo() && m.video == nil {
			m.video = mt
		} else if mt.ts.Codec.IsVideo() {
			m.log.Info("mpeg-ts output: skipping a second video track", "codec", t.Codec().MimeType)
			continue
		}
		m.tracks = append(m.tracks, mt)
		tsTracks = append(tsTracks, mt.ts)
	}
	if len(m.tracks) == 0 {
		return nil, fmt.Errorf("mux %s: %w (tracks: %v)", s.Name(), ErrNoSupportedTrack, skipped)
	}
	m.w = &tsf.Writer{W: chunkWriter{m}, Tracks: tsTracks}
	if err := m.w.Initialize(); err != nil {
		return nil, fmt.Errorf("mux %s: %w", s.Name(), err)
	}
	return m, nil
}

func (mt *muxTrack) setup() error {
	c := mt.track.Codec()
	switch strings.ToLower(c.MimeType) {
	case strings.ToLower(rtpformat.MimeH264):
		mt.kind = codecH264
		mt.ts = &tsf.Track{Codec: &tsf.CodecH264{}}
	case strings.ToLower(rtpformat.MimeH265):
		mt.kind, mt.params.h265 = codecH265, true
		mt.ts = &tsf.Track{Codec: &tsf.CodecH265{}}
	case strings.ToLower(rtpformat.MimeAAC):
		mt.kind = codecAAC
		f, err := rtpformat.ToFormat(c, 96)
		if err != nil {
			return err
		}
		aac, ok := f.(*format.MPEG4Audio)
		if !ok || aac.Config == nil {
			return fmt.Errorf("aac track without config (%q)", c.SDPFmtpLine)
		}
		mt.aac = aac
		mt.ts = &tsf.Track{Codec: &tsf.CodecMPEG4Audio{Config: *aac.Config}}
	default:
		mt.kind = codecOpus
		ch := int(c.Channels)
		if ch == 0 {
			ch = 2
		}
		mt.ts = &tsf.Track{Codec: &tsf.CodecOpus{ChannelCount: ch}}
	}
	return mt.resetDecoder()
}

func (mt *muxTrack) resetDecoder() error {
	var err error
	mt.pending = false
	switch mt.kind {
	case codecH264:
		mt.h264, err = (&format.H264{PayloadTyp: 96, PacketizationMode: 1}).CreateDecoder()
	case codecH265:
		mt.h265, err = (&format.H265{PayloadTyp: 96}).CreateDecoder()
	case codecAAC:
		mt.mp4a, err = mt.aac.CreateDecoder()
	case codecOpus:
		mt.opus, err = (&format.Opus{PayloadTyp: 111, ChannelCount: 2}).CreateDecoder()
	}
	return err
}

func (m *Muxer) start() {
	m.startNanos = time.Now().UnixNano()
	m.cfg.Stats.MuxersRunning.Add(1)
	for _, mt := range m.tracks {
		mt.reader = mt.track.NewReader(m.cfg.ReaderQueue)
	}
	for _, mt := range m.tracks {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			mt.run()
		}()
	}
	go func() {
		m.wg.Wait()
		m.cfg.Stats.MuxersRunning.Add(-1)
		if m.owner != nil {
			m.owner.remove(m)
		}
		close(m.done)
	}()
	m.log.Info("mpeg-ts muxer started", "tracks", len(m.tracks))
}

// Done is closed when the muxer has stopped: its stream ended or its last subscriber left.
func (m *Muxer) Done() <-chan struct{} { return m.done }

// close stops the muxer and waits for its goroutines.
func (m *Muxer) close() {
	m.closeOnce.Do(func() {
		for _, mt := range m.tracks {
			mt.reader.Close()
		}
	})
	<-m.done
}

// requestKeyframe asks the video track's publisher for a keyframe, for a subscriber that waits.
func (m *Muxer) requestKeyframe() {
	if m.video == nil || m.video.reader == nil {
		return
	}
	if l := m.video.reader.Layer(); l != nil {
		l.RequestKeyframe()
	}
}

func (mt *muxTrack) run() {
	r := mt.reader
	var last *hub.Layer
	for {
		select {
		case e := <-r.C():
			if e.Packet.Layer != last {
				if last != nil {
					r.Unsubscribe()
				}
				last = e.Packet.Layer
			}
			mt.handle(e)
		case <-r.Done():
			return
		}
	}
}

func (mt *muxTrack) handle(e hub.Entry) {
	m := mt.m
	if !mt.rw.Rewrite(e, 0, 0, &mt.pkt.Header) {
		return
	}
	if e.Resync {
		_ = mt.resetDecoder() // the frame being assembled lost packets
	}
	mt.pkt.Payload = e.Packet.Payload
	arrival := e.Packet.ArrivalNanos
	base := func() int64 { return ptsStart + (arrival-m.startNanos)*tsClock/int64(time.Second) }
	ts := mt.pkt.Timestamp

	switch mt.kind {
	case codecH264, codecH265:
		var au [][]byte
		var err error
		if mt.kind == codecH264 {
			au, err = mt.h264.Decode(&mt.pkt)
		} else {
			au, err = mt.h265.Decode(&mt.pkt)
		}
		auTS := ts
		if mt.pending && mt.pendingTS != ts {
			auTS = mt.pendingTS // the decoder closed the previous frame on a timestamp change
		}
		switch {
		case errors.Is(err, rtph264.ErrMorePacketsNeeded), errors.Is(err, rtph265.ErrMorePacketsNeeded):
			mt.pending, mt.pendingTS = true, ts
			return
		case err != nil:
			mt.pending = false
			m.cfg.Stats.MuxErrors.Add(1)
			return
		}
		mt.pending = auTS != ts
		mt.pendingTS = ts
		m.writeVideo(mt, mt.clock.convert(auTS, base), au)
	case codecAAC:
		aus, err := mt.mp4a.Decode(&mt.pkt)
		if err != nil {
			if !errors.Is(err, rtpmpeg4audio.ErrMorePacketsNeeded) {
				m.cfg.Stats.MuxErrors.Add(1)
			}
			return
		}
		m.writeAudio(mt, mt.clock.convert(ts, base), aus)
	case codecOpus:
		frame, err := mt.opus.Decode(&mt.pkt)
		if err != nil || len(frame) == 0 {
			m.cfg.Stats.MuxErrors.Add(1)
			return
		}
		m.writeAudio(mt, mt.clock.convert(ts, base), [][]byte{frame})
	}
}

func (m *Muxer) writeVideo(mt *muxTrack, pts int64, au [][]byte) {
	if len(au) == 0 {
		return
	}
	m.mu.Lock()
	m.writeVideoLocked(mt, pts, au)
	m.mu.Unlock()
	if m.keyframeWanted.Swap(false) {
		m.requestKeyframe()
	}
}

func (m *Muxer) writeVideoLocked(mt *muxTrack, pts int64, au [][]byte) {
	au = mt.params.apply(au)
	var random bool
	if mt.kind == codecH264 {
		random = h264.IsRandomAccess(au)
	} else {
		random = h265.IsRandomAccess(au)
	}
	if !m.videoStarted {
		if !random {
			return
		}
		m.videoStarted = true
	}
	if random {
		m.flush()
		m.nextStart = true
		if _, err := m.w.WriteTables(); err != nil {
			m.cfg.Stats.MuxErrors.Add(1)
		}
	}
	pts &= tsMask
	var err error
	if mt.kind == codecH264 {
		err = m.w.WriteH264(mt.ts, pts, pts, au)
	} else {
		err = m.w.WriteH265(mt.ts, pts, pts, au)
	}
	if err != nil {
		m.cfg.Stats.MuxErrors.Add(1)
	}
	m.flush()
}

func (m *Muxer) writeAudio(mt *muxTrack, pts int64, frames [][]byte) {
	m.mu.Lock()
	m.writeAudioLocked(mt, pts, frames)
	m.mu.Unlock()
	if m.keyframeWanted.Swap(false) {
		m.requestKeyframe()
	}
}

func (m *Muxer) writeAudioLocked(mt *muxTrack, pts int64, frames [][]byte) {
	if m.video != nil && !m.videoStarted {
		return // the video track leads (it carries the PCR); start with its first keyframe
	}
	if m.video == nil {
		if now := time.Now(); now.Sub(m.lastTables) >= audioTablesEvery {
			m.lastTables = now
			m.flush()
			m.nextStart = true
			if _, err := m.w.WriteTables(); err != nil {
				m.cfg.Stats.MuxErrors.Add(1)
			}
		}
	}
	pts &= tsMask
	var err error
	if mt.kind == codecAAC {
		err = m.w.WriteMPEG4Audio(mt.ts, pts, frames)
	} else {
		err = m.w.WriteOpus(mt.ts, pts, frames)
	}
	if err != nil {
		m.cfg.Stats.MuxErrors.Add(1)
	}
	m.flush()
}

// chunkWriter collects the MPEG-TS writer's output into chunks; it runs under Muxer.mu.
type chunkWriter struct{ m *Muxer }

func (c chunkWriter) Write(p []byte) (int, error) {
	m := c.m
	n := len(p)
	for len(p) > 0 {
		if m.cur == nil {
			m.cur = make([]byte, 0, ChunkSize)
			m.curStart, m.nextStart = m.nextStart, false
		}
		k := copy(m.cur[len(m.cur):cap(m.cur)], p)
		m.cur = m.cur[:len(m.cur)+k]
		p = p[k:]
		if len(m.cur) == cap(m.cur) {
			m.flush()
		}
	}
	return n, nil
}

// flush hands the current chunk to every subscriber; it runs under Muxer.mu.
func (m *Muxer) flush() {
	if len(m.cur) == 0 {
		return
	}
	c := Chunk{Data: m.cur, Start: m.curStart}
	m.cur = nil
	for _, s := range *m.subs.Load() {
		s.push(c)
	}
}

// Subscriber receives a muxer's MPEG-TS through a bounded queue, from a Start chunk on. A
// subscriber that falls behind loses chunks (counted) and resumes at the next Start chunk; it
// never slows the muxer or other subscribers.
type Subscriber struct {
	m       *Muxer
	queue   chan Chunk
	waiting atomic.Bool
	dropped atomic.Uint64
	once    sync.Once
}

// C delivers the chunks.
func (s *Subscriber) C() <-chan Chunk { return s.queue }

// Done is closed when the muxer stops (the stream ended).
func (s *Subscriber) Done() <-chan struct{} { return s.m.done }

// Dropped is the number of chunks this subscriber lost by falling behind.
func (s *Subscriber) Dropped() uint64 { return s.dropped.Load() }

// Close detaches the subscriber; the muxer stops when its last subscriber leaves.
func (s *Subscriber) Close() {
	s.once.Do(func() { s.m.owner.unsubscribe(s) })
}

// push runs under Muxer.mu and never blocks.
func (s *Subscriber) push(c Chunk) {
	if s.waiting.Load() {
		if !c.Start {
			return
		}
		s.waiting.Store(false)
	}
	select {
	case s.queue <- c:
	default:
		s.dropped.Add(1)
		s.m.cfg.Stats.SubscriberDrops.Add(1)
		s.waiting.Store(true)
		s.m.keyframeWanted.Store(true) // asked for after mu is released
	}
}

// Muxers runs at most one Muxer per stream, created with its first subscriber and stopped after
// its last leaves or when the stream ends.
type Muxers struct {
	cfg MuxerConfig

	mu     sync.Mutex // before Muxer.mu
	muxers map[*hub.Stream]*Muxer
	closed bool
}

// NewMuxers returns an empty set.
func NewMuxers(cfg MuxerConfig) *Muxers {
	cfg.defaults()
	return &Muxers{cfg: cfg, muxers: map[*hub.Stream]*Muxer{}}
}

// Subscribe attaches a subscriber with a queue of queue chunks to the muxer of s, starting one
// if needed. It fails with ErrNoSupportedTrack when s has nothing MPEG-TS can carry.
func (ms *Muxers) Subscribe(s *hub.Stream, queue int) (*Subscriber, error) {
	if queue <= 0 {
		queue = 256
	}
	ms.mu.Lock()
	if ms.closed {
		ms.mu.Unlock()
		return nil, ErrMuxerClosed
	}
	m := ms.muxers[s]
	if m == nil {
		var err error
		m, err = newMuxer(s, ms.cfg)
		if err != nil {
			ms.mu.Unlock()
			return nil, err
		}
		m.owner = ms
		ms.muxers[s] = m
		m.start()
	}
	sub := &Subscriber{m: m, queue: make(chan Chunk, queue)}
	sub.waiting.Store(true)
	old := *m.subs.Load()
	next := append(append(make([]*Subscriber, 0, len(old)+1), old...), sub)
	m.subs.Store(&next)
	ms.mu.Unlock()
	m.requestKeyframe()
	return sub, nil
}

func (ms *Muxers) unsubscribe(s *Subscriber) {
	m := s.m
	ms.mu.Lock()
	old := *m.subs.Load()
	next := make([]*Subscriber, 0, len(old))
	for _, x := range old {
		if x != s {
			next = append(next, x)
		}
	}
	m.subs.Store(&next)
	idle := len(next) == 0
	if idle && ms.muxers[m.stream] == m {
		delete(ms.muxers, m.stream)
	}
	ms.mu.Unlock()
	if idle {
		m.close()
	}
}

func (ms *Muxers) remove(m *Muxer) {
	ms.mu.Lock()
	if ms.muxers[m.stream] == m {
		delete(ms.muxers, m.stream)
	}
	ms.mu.Unlock()
}

// Running is the number of running muxers.
func (ms *Muxers) Running() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.muxers)
}

// Close stops every muxer and waits for them. Subscribe fails afterwards.
func (ms *Muxers) Close() {
	ms.mu.Lock()
	ms.closed = true
	all := make([]*Muxer, 0, len(ms.muxers))
	for _, m := range ms.muxers {
		all = append(all, m)
	}
	ms.mu.Unlock()
	for _, m := range all {
		m.close()
	}
}
