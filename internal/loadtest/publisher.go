package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// publisher is the WHIP publisher: one sendonly PeerConnection carrying the synthetic H264 and Opus
// tracks, produced in real time, answering PLI and FIR with a keyframe on the next frame. Video
// packets go out through a pacer at Config.Pacing × the bitrate, as a browser sends them; audio is
// not paced.
type publisher struct {
	log          *slog.Logger
	sig          *signaler
	pc           *webrtc.PeerConnection
	video, audio *webrtc.TrackLocalStaticRTP
	bitrate      Bitrate
	pacing       float64
	location     string

	// measuring is set inside the measurement window; pacerWait, owned by the video loop, holds
	// how long video packets waited from their frame's due time to their write inside it.
	measuring *atomic.Bool
	pacerWait histogram

	// sent holds when the publisher's sockets wrote each RTP datagram, which out maps to the
	// packets' stamps for the subscribers (sendstamp.go); writeDelay[video, audio], owned by the
	// send loops, is the time from stamp to socket inside the window.
	sent       *arrivals
	out        *outTimes
	writeDelay [2]histogram

	wantKeyframe atomic.Bool
	counters     publisherCounters
	failed       atomic.Bool // the connection failed after it was up

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// publisherCounters are updated by the send and RTCP loops and read at any time.
type publisherCounters struct {
	videoPackets, videoBytes, audioPackets atomic.Uint64
	keyframes, keyframeRequests            atomic.Uint64
	writeErrors                            atomic.Uint64
}

// startPublisher connects to the WHIP endpoint of cfg and starts sending. The caller must Close it.
// The video pacer's waits are recorded while measuring is set.
// Its sockets must note their RTP datagrams in sent (the API's sendNet); the send time of each
// stamped packet is then put in out.
func startPublisher(ctx context.Context, cfg Config, api *webrtc.API, sent *arrivals, out *outTimes, sig *signaler,
	measuring *atomic.Bool, log *slog.Logger,
) (*publisher, error) {
	p := &publisher{log: log, sig: sig, bitrate: cfg.VideoBitrate, pacing: cfg.Pacing, measuring: measuring,
		sent: sent, out: out}
	var err error
	if p.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return nil, fmt.Errorf("new publisher peer connection: %w", err)
	}
	if p.video, err = webrtc.NewTrackLocalStaticRTP(h264Codec, "video", "streamfleet-loadtest"); err != nil {
		return nil, errors.Join(fmt.Errorf("new video track: %w", err), p.pc.Close())
	}
	if p.audio, err = webrtc.NewTrackLocalStaticRTP(opusCodec, "audio", "streamfleet-loadtest"); err != nil {
		return nil, errors.Join(fmt.Errorf("new audio track: %w", err), p.pc.Close())
	}
	sendonly := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}
	var senders [2]*webrtc.RTPSender
	for i, track := range []webrtc.TrackLocal{p.video, p.audio} {
		tr, err := p.pc.AddTransceiverFromTrack(track, sendonly)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("add %s transceiver: %w", track.Kind(), err), p.pc.Close())
		}
		senders[i] = tr.Sender()
	}
	watch := watchState(p.pc, func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed && !p.failed.Swap(true) {
			log.Error("publisher connection failed")
		}
	})

	cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	n, err := connect(cctx, p.pc, watch, sig, cfg.endpoint("whip"), nil)
	cancel()
	p.location = n.location
	if err != nil {
		p.teardown(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("publish to %s: %w", cfg.endpoint("whip"), err)
	}
	log.Info("publisher connected", "setup", n.connected.Sub(n.postedAt).Round(time.Millisecond),
		"session", n.location)

	sendCtx, stop := context.WithCancel(context.Background())
	p.cancel = stop
	p.wg.Add(4)
	go p.readRTCP(senders[0], true)
	go p.readRTCP(senders[1], false)
	ssrc := func(s *webrtc.RTPSender) uint32 { return uint32(s.GetParameters().Encodings[0].SSRC) }
	go p.sendVideo(sendCtx, p.timed(p.video.WriteRTP, ssrc(senders[0]), &p.writeDelay[0]))
	go p.sendAudio(sendCtx, p.timed(p.audio.WriteRTP, ssrc(senders[1]), &p.writeDelay[1]))
	return p, nil
}

// timed wraps the write of a track with SSRC ssrc: after each stamped packet it puts the time its
// datagram went to the socket in p.out, and records the time from stamp to socket in delay
// inside the window.
func (p *publisher) timed(write func(*rtp.Packet) error, ssrc uint32, delay *histogram) func(*rtp.Packet) error {
	return func(pkt *rtp.Packet) error {
		stamp, stamped := readStamp(pkt.Payload)
		err := write(pkt)
		if !stamped {
			return err
		}
		if at, ok := p.sent.lookup(ssrc, pkt.SequenceNumber); ok && at >= stamp {
			p.out.put(stamp, at)
			if p.measuring.Load() {
				delay.record(time.Duration(at - stamp))
			}
		}
		return err
	}
}

// Close stops sending, DELETEs the WHIP session and closes the PeerConnection, waiting for every
// goroutine the publisher started.
func (p *publisher) Close(ctx context.Context) {
	p.cancel()
	p.teardown(ctx)
	p.wg.Wait()
}

func (p *publisher) teardown(ctx context.Context) {
	if err := p.sig.remove(ctx, p.location); err != nil {
		p.log.Warn("end WHIP session", "err", err)
	}
	if err := p.pc.GracefulClose(); err != nil {
		p.log.Warn("close publisher peer connection", "err", err)
	}
}

// pace calls send(n, due) for frame n at its due time start+n*interval until ctx ends, or at once
// when that has passed. A loop more than a second behind (a starved machine) skips ahead instead
// of bursting the backlog.
func pace(ctx context.Context, interval time.Duration, send func(n int, due time.Time)) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	start := time.Now()
	for n := 0; ; n++ {
		due := start.Add(time.Duration(n) * interval)
		wait := time.Until(due)
		if wait < -time.Second {
			n += int(-wait / interval)
			wait = 0
		}
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		send(n, due)
	}
}

// sendVideo sends the synthetic H264 at VideoFPS: RTP timestamps advance 90 kHz / VideoFPS per
// frame, the marker bit is set on each frame's last packet, and every stampable payload gets the
// send time just before it is written. Packets leave through the pacer; a frame due while the
// previous one still drains (after a keyframe) waits behind it, and each packet's wait, from its
// frame's due time to its write, is recorded inside the measurement window.
func (p *publisher) sendVideo(ctx context.Context, write func(*rtp.Packet) error) {
	defer p.wg.Done()
	gen := newH264Generator(p.bitrate, VideoFPS, int(GOPDuration*VideoFPS/time.Second), 1)
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: ptH264}}
	seq, ts0 := uint16(rand.Uint32()), rand.Uint32()
	pc := newPacer(p.bitrate, p.pacing)
	pace(ctx, time.Second/VideoFPS, func(n int, due time.Time) {
		payloads, key := gen.nextFrame(p.wantKeyframe.Swap(false))
		if key {
			p.counters.keyframes.Add(1)
		}
		hold := func(size int) bool {
			if pc.wait(ctx, size) != nil {
				return false
			}
			if p.measuring.Load() {
				p.pacerWait.record(pc.now().Sub(due))
			}
			return true
		}
		seq = writeFrame(write, &pkt, payloads, seq, ts0+uint32(n*90_000/VideoFPS), true, h264Stampable,
			hold, &p.counters)
		for _, payload := range payloads {
			p.counters.videoBytes.Add(uint64(len(payload)))
		}
		p.counters.videoPackets.Add(uint64(len(payloads)))
	})
}

// sendAudio sends one Opus packet every 20 ms with a 48 kHz timestamp. The audio never pauses, so
// only the first packet starts a talkspurt and has the marker bit (RFC 7587 4.1).
func (p *publisher) sendAudio(ctx context.Context, write func(*rtp.Packet) error) {
	defer p.wg.Done()
	payloads := [][]byte{newOpusPayload(2)}
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: ptOpus}}
	seq, ts0 := uint16(rand.Uint32()), rand.Uint32()
	pace(ctx, opusFrameDuration, func(n int, _ time.Time) {
		seq = writeFrame(write, &pkt, payloads, seq, ts0+uint32(n*opusFrameSamples), n == 0, opusStampable,
			nil, &p.counters)
		p.counters.audioPackets.Add(1)
	})
}

// writeFrame writes the payloads of one frame as packets with consecutive sequence numbers from
// seq and timestamp ts, with the marker bit on the last when markLast is set, stamping each payload
// that stampable accepts with the time just before it is written. hold, when not nil, is called
// with each payload's size before that and may block (the pacer); when it returns false the rest
// of the frame is not sent. It returns the next sequence number.
func writeFrame(write func(*rtp.Packet) error, pkt *rtp.Packet, payloads [][]byte, seq uint16, ts uint32,
	markLast bool, stampable func([]byte) bool, hold func(size int) bool, c *publisherCounters,
) uint16 {
	pkt.Timestamp = ts
	for i, payload := range payloads {
		if hold != nil && !hold(len(payload)) {
			return seq
		}
		pkt.SequenceNumber = seq
		seq++
		pkt.Marker = markLast && i == len(payloads)-1
		pkt.Payload = payload
		if stampable(payload) {
			writeStamp(payload, time.Now().UnixNano())
		}
		if err := write(pkt); err != nil {
			c.writeErrors.Add(1)
		}
	}
	return seq
}

func opusStampable(payload []byte) bool { return len(payload) >= minStampedPayload }

// readRTCP drains a sender's RTCP, which also feeds pion's interceptors, and turns PLI and FIR on
// the video sender into a keyframe on the next frame.
func (p *publisher) readRTCP(sender *webrtc.RTPSender, video bool) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := sender.Read(buf)
		if err != nil {
			return
		}
		if !video {
			continue
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				p.counters.keyframeRequests.Add(1)
				p.wantKeyframe.Store(true)
			}
		}
	}
}

// publisherSnapshot is a copy of the publisher's counters at one instant.
type publisherSnapshot struct {
	at                                     time.Time
	videoPackets, videoBytes, audioPackets uint64
	keyframes, keyframeRequests            uint64
	writeErrors                            uint64
}

// Failed reports whether the connection failed after it was up.
func (p *publisher) Failed() bool { return p.failed.Load() }

// pacerStats reports the pacer's settings and the video packets' waits inside the window. It may
// only be called after Close, which joins the video loop that owns the waits.
func (p *publisher) pacerStats() *PacerStats {
	s := &PacerStats{Factor: p.pacing, Wait: p.pacerWait.percentiles()}
	if p.pacing > 0 {
		s.RateBps = p.pacing * float64(p.bitrate)
		s.BurstMs = ms(pacerBurst)
	}
	return s
}

// writeDelays reports the time from the stamp to the socket of the packets sent inside the window.
// It may only be called after Close, which joins the send loops that own them.
func (p *publisher) writeDelays() *Percentiles {
	var all histogram
	all.merge(&p.writeDelay[0])
	all.merge(&p.writeDelay[1])
	pct := all.percentiles()
	return &pct
}

func (p *publisher) snapshot() publisherSnapshot { return p.counters.snapshot() }

func (c *publisherCounters) snapshot() publisherSnapshot {
	return publisherSnapshot{
		at:               time.Now(),
		videoPackets:     c.videoPackets.Load(),
		videoBytes:       c.videoBytes.Load(),
		audioPackets:     c.audioPackets.Load(),
		keyframes:        c.keyframes.Load(),
		keyframeRequests: c.keyframeRequests.Load(),
		writeErrors:      c.writeErrors.Load(),
	}
}
