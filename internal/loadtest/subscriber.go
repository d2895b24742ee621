package loadtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// pliRetry is how often a subscriber that has not seen a keyframe asks for one again.
const pliRetry = 2 * time.Second

// subscriber is one viewer: a WHEP recvonly video and audio PeerConnection, or an SRT or RTSP
// reader, whose track readers count packets, losses and delays while the shared measuring flag is
// set.
type subscriber struct {
	id        int
	sig       *signaler
	measuring *atomic.Bool
	pc        *webrtc.PeerConnection
	closeFn   func() error // ends an SRT or RTSP reader

	// Set by connect, read after it returns.
	neg      negotiation
	setupErr error

	// postedAt is when the offer was POSTed (Unix ns); firstVideo and firstKeyframe are
	// nanoseconds from then, 0 until seen. Atomic: packets may arrive before connect returns.
	postedAt      atomic.Int64
	firstVideo    atomic.Int64
	firstKeyframe atomic.Int64
	dropped       atomic.Bool // the connection failed or closed while it should have been up

	// Owned by the track readers until they are joined in close.
	video, audio trackStats
	// arr holds the kernel receive times of the WHEP subscriber's RTP packets (rxstamp.go); out,
	// when the publisher's packets went out (sendstamp.go).
	arr *arrivals
	out *outTimes
	// direct reads the WHEP subscriber's media in its sockets' read loops; nil with
	// Config.PionReceive (directrx.go).
	direct *directRx

	mu      sync.Mutex
	closing bool
	tracks  []*trackReader // the WHEP tracks, for their counts
	wg      sync.WaitGroup
}

// trackStats is what one track reader measured inside the measurement window.
type trackStats struct {
	seq   seqCounter
	delay histogram
	// socketDelay ends when the datagram reached the subscriber's socket (WHEP only).
	socketDelay histogram
}

func newSubscriber(id int, sig *signaler, out *outTimes, measuring *atomic.Bool) *subscriber {
	return &subscriber{id: id, sig: sig, out: out, measuring: measuring}
}

// connect sets up the PeerConnection and the WHEP session. On error the subscriber still has to be
// closed (the server may hold a session for it).
func (s *subscriber) connect(ctx context.Context, apis *subscriberAPIs, endpoint string) error {
	var err error
	s.arr = new(arrivals)
	if !apis.pionReceive {
		s.direct = newDirectRx()
	}
	if s.pc, err = apis.forSubscriber(s.arr, s.direct).NewPeerConnection(webrtc.Configuration{}); err != nil {
		return fmt.Errorf("new peer connection: %w", err)
	}
	recvonly := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		tr, err := s.pc.AddTransceiverFromKind(kind, recvonly)
		if err != nil {
			return fmt.Errorf("add %s transceiver: %w", kind, err)
		}
		if !s.enter() {
			return errors.New("subscriber closed")
		}
		go s.drainRTCP(tr.Receiver())
	}
	s.pc.OnTrack(s.readTrack)
	watch := watchState(s.pc, func(st webrtc.PeerConnectionState) {
		if st != webrtc.PeerConnectionStateFailed && st != webrtc.PeerConnectionStateClosed {
			return
		}
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if !closing {
			s.dropped.Store(true)
		}
	})
	s.neg, err = connect(ctx, s.pc, watch, s.sig, endpoint, func(t time.Time) {
		s.postedAt.Store(t.UnixNano())
	})
	return err
}

// enter registers a goroutine of the subscriber, unless it is closing.
func (s *subscriber) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

// close DELETEs the WHEP session, closes the PeerConnection and waits for the track readers.
func (s *subscriber) close(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	var errs []error
	if s.closeFn != nil {
		if err := s.closeFn(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.sig.remove(ctx, s.neg.location); err != nil {
		errs = append(errs, fmt.Errorf("end WHEP session: %w", err))
	}
	if s.pc != nil {
		if err := s.pc.GracefulClose(); err != nil {
			errs = append(errs, fmt.Errorf("close peer connection: %w", err))
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// drainRTCP reads the receiver's RTCP (sender reports), so that the receive buffer never fills and
// any interceptor sees it.
func (s *subscriber) drainRTCP(r *webrtc.RTPReceiver) {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		if _, _, err := r.Read(buf); err != nil {
			return
		}
	}
}

// readTrack is the OnTrack handler: it reads the track until the PeerConnection closes. With
// direct receive (directrx.go) the track is handed to the socket's reader after its first packet,
// and this loop then only sees what pion still delivers. The work per packet is a header parse, a
// clock read and, inside the measurement window, a sequence counter and a histogram update;
// nothing allocates.
func (s *subscriber) readTrack(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	if !s.enter() {
		return
	}
	defer s.wg.Done()
	t := &trackReader{s: s, isVideo: track.Kind() == webrtc.RTPCodecTypeVideo, ssrc: uint32(track.SSRC()),
		keyframeStart: h264KeyframeStart}
	if strings.EqualFold(track.Codec().MimeType, webrtc.MimeTypeVP8) {
		t.keyframeStart = vp8KeyframeStart
	}
	t.requestKeyframe = func() {
		_ = s.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: t.ssrc}})
	}
	s.mu.Lock()
	s.tracks = append(s.tracks, t)
	s.mu.Unlock()
	if s.direct != nil {
		s.direct.adopt(t)
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		seq, payload, ok := rtpPayload(buf[:n])
		if !ok {
			continue
		}
		t.packet(seq, payload, 0, false)
	}
}

// trackReader measures the packets of one WHEP track. They come from pion's track reader and,
// once the track is adopted for direct receive, from the socket's read loop, hence mu.
type trackReader struct {
	s               *subscriber
	isVideo         bool
	ssrc            uint32
	keyframeStart   func([]byte) bool
	requestKeyframe func()

	mu      sync.Mutex
	lastPLI time.Time
	// viaPion and viaDirect count the packets measured each way, over the whole run.
	viaPion, viaDirect uint64

	// direct is guarded by the directRx's mu: a packet of the track was decrypted there.
	direct bool
}

// packet measures one packet, received at Unix ns at when known (else 0).
func (t *trackReader) packet(seq uint16, payload []byte, at int64, direct bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if direct {
		t.viaDirect++
	} else {
		t.viaPion++
	}
	t.s.onRTP(t.isVideo, seq, payload, t.keyframeStart, &t.lastPLI, t.requestKeyframe, t.ssrc, at)
}

// receiveCounts returns how many packets the subscriber's WHEP tracks measured through pion and
// directly, once the subscriber is closed.
func (s *subscriber) receiveCounts() (viaPion, viaDirect uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tracks {
		t.mu.Lock()
		viaPion += t.viaPion
		viaDirect += t.viaDirect
		t.mu.Unlock()
	}
	return viaPion, viaDirect
}

// onRTP measures one RTP packet of a WHEP or RTSP subscriber; at is when the kernel received it
// (Unix ns), 0 when the caller does not know (the WHEP subscriber's arrivals may then).
func (s *subscriber) onRTP(isVideo bool, seq uint16, payload []byte, keyframeStart func([]byte) bool,
	lastPLI *time.Time, requestKeyframe func(), ssrc uint32, at int64,
) {
	now := time.Now()
	stats := &s.audio
	if isVideo {
		stats = &s.video
		if s.firstKeyframe.Load() == 0 {
			s.awaitKeyframe(payload, keyframeStart, now, lastPLI, requestKeyframe)
		}
	}
	if !s.measuring.Load() {
		return
	}
	stats.seq.add(seq)
	if stamp, ok := readStamp(payload); ok {
		sent := s.out.sentAt(stamp)
		stats.delay.record(time.Duration(now.UnixNano() - sent))
		if at == 0 && s.arr != nil {
			at, _ = s.arr.lookup(ssrc, seq)
		}
		if at != 0 {
			stats.socketDelay.record(time.Duration(at - sent))
		}
	}
}

// awaitKeyframe runs on video packets until the first keyframe: it records the time to first
// frame and to first keyframe, and asks for a keyframe with a PLI, as a browser would, when the
// stream does not start with one.
func (s *subscriber) awaitKeyframe(payload []byte, keyframeStart func([]byte) bool, now time.Time, lastPLI *time.Time,
	requestKeyframe func(),
) {
	since := max(1, now.UnixNano()-s.postedAt.Load())
	s.firstVideo.CompareAndSwap(0, since)
	if keyframeStart(payload) {
		s.firstKeyframe.Store(since)
		return
	}
	if now.Sub(*lastPLI) < pliRetry {
		return
	}
	*lastPLI = now
	requestKeyframe()
}
