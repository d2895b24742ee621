package hub

import (
	"sync"
	"sync/atomic"
	"time"
)

// Keyframe request pacing per layer: a request is forwarded to the publisher only if none was sent
// in the last keyframeRequestMinInterval, or if the last one went unanswered for
// keyframeRequestRetry. A flash crowd of joins thus costs a few PLIs a second, not one per viewer.
const (
	keyframeRequestMinInterval = 200 * time.Millisecond
	keyframeRequestRetry       = time.Second
)

// KeyframeRequester asks the publisher of a layer for a keyframe (an RTCP PLI for WebRTC).
type KeyframeRequester func()

// Layer is one RTP stream of a track: the only layer of a plain track, or one simulcast RID or
// transcoder variant.
type Layer struct {
	track *Track
	rid   string

	// readers (plain: the writer pushes to each) and notified (read from the track's ring) are
	// copy-on-write, as is notifiers, the distinct Notifiers of notified: the writer loads them
	// once per packet and never waits for mu.
	readers   atomic.Pointer[[]*Reader]
	notified  atomic.Pointer[[]*Reader]
	notifiers atomic.Pointer[[]*Notifier]
	mu        sync.Mutex        // guards writes to readers, notified and notifiers, and uses
	uses      map[*Notifier]int // notified readers per Notifier

	history      history
	paddingShift uint16 // padding-only packets dropped so far; owned by the writer

	requester         atomic.Pointer[KeyframeRequester]
	lastRequestNanos  atomic.Int64
	requestAnswered   atomic.Bool
	lastKeyframeNanos atomic.Int64
	lastWaitNanos     atomic.Int64 // when a reader last asked for a keyframe
	deferred          atomic.Bool  // a deferred request is scheduled

	// Counters, read by metrics.
	packets            atomic.Uint64
	bytes              atomic.Uint64
	keyframes          atomic.Uint64
	keyframeRequests   atomic.Uint64 // asked for by readers
	keyframeRequestsTx atomic.Uint64 // forwarded to the publisher

	// bitrate over the last full window, bits per second; maintained by the writer.
	windowStartNanos int64
	windowBytes      uint64
	bitrate          atomic.Uint64
	lastPacketNanos  atomic.Int64
}

func newLayer(t *Track, rid string) *Layer {
	l := &Layer{track: t, rid: rid, uses: map[*Notifier]int{}}
	l.readers.Store(&[]*Reader{})
	l.notified.Store(&[]*Reader{})
	l.notifiers.Store(&[]*Notifier{})
	l.requestAnswered.Store(true)
	return l
}

// RID is the layer's RTP stream ID ("" for a track without simulcast).
func (l *Layer) RID() string { return l.rid }

// Track is the track the layer belongs to.
func (l *Layer) Track() *Track { return l.track }

// Bitrate is the layer's bitrate in bits per second over the last second of packets.
func (l *Layer) Bitrate() uint64 {
	if time.Now().UnixNano()-l.lastPacketNanos.Load() > int64(2*time.Second) {
		return 0
	}
	return l.bitrate.Load()
}

// SetKeyframeRequester sets how keyframes are asked of the layer's current publisher.
func (l *Layer) SetKeyframeRequester(fn KeyframeRequester) {
	if fn == nil {
		l.requester.Store(nil)
		return
	}
	l.requester.Store(&fn)
}

// WritePacket hands p to every reader of the layer. It is called by one ingest goroutine per layer,
// never blocks, and takes ownership of p: p must not be changed afterwards.
func (l *Layer) WritePacket(p *Packet) {
	if len(p.Payload) == 0 {
		// A padding-only packet (bandwidth probing) carries nothing for readers. Later packets are
		// renumbered so readers see no gap where it was.
		l.paddingShift++
		return
	}
	p.Header.SequenceNumber -= l.paddingShift
	now := time.Now().UnixNano()
	p.Layer = l
	p.ArrivalNanos = now
	p.Header.Extension = false
	p.Header.Extensions = nil
	p.Header.ExtensionProfile = 0
	p.Header.Padding = false
	p.Header.PaddingSize = 0
	p.Keyframe = keyframeStart(l.track.mime, p.Payload)

	size := uint64(len(p.Payload) + 12)
	l.packets.Add(1)
	l.bytes.Add(size)
	hs := &l.track.stream.hub.stats
	hs.PacketsIn.Add(1)
	hs.BytesIn.Add(size)
	l.lastPacketNanos.Store(now)
	l.windowBytes += size
	if elapsed := now - l.windowStartNanos; elapsed >= int64(time.Second) {
		if l.windowStartNanos != 0 {
			l.bitrate.Store(l.windowBytes * 8 * uint64(time.Second) / uint64(elapsed))
		}
		l.windowStartNanos, l.windowBytes = now, 0
	}
	if p.Keyframe && l.track.kind == KindVideo {
		l.keyframes.Add(1)
		l.lastKeyframeNanos.Store(now)
		l.requestAnswered.Store(true)
	}

	l.history.put(p)
	l.track.ring.put(p)
	for _, n := range *l.notifiers.Load() {
		n.Notify()
	}
	for _, r := range *l.readers.Load() {
		r.push(p)
	}
}

// RequestKeyframe asks the publisher for a keyframe on behalf of a reader. Requests are coalesced:
// one is forwarded at once only if none was sent in the last keyframeRequestMinInterval and none is
// still unanswered; otherwise one deferred request is sent when that interval (or the retry
// interval of the unanswered one) has passed, unless a keyframe arrived in the meantime. A flash
// crowd of joins thus costs a few PLIs a second, and no reader waits a whole GOP.
func (l *Layer) RequestKeyframe() {
	if l.track.kind != KindVideo {
		return
	}
	l.keyframeRequests.Add(1)
	l.track.stream.hub.stats.KeyframeRequests.Add(1)
	now := time.Now().UnixNano()
	l.lastWaitNanos.Store(now)
	l.sendKeyframeRequest(now)
}

func (l *Layer) sendKeyframeRequest(now int64) {
	last := l.lastRequestNanos.Load()
	since := time.Duration(now - last)
	answered := l.requestAnswered.Load()
	switch {
	case !answered && since < keyframeRequestRetry:
		l.deferKeyframeRequest(keyframeRequestRetry - since)
		return
	case answered && since < keyframeRequestMinInterval:
		l.deferKeyframeRequest(keyframeRequestMinInterval - since)
		return
	}
	if !l.lastRequestNanos.CompareAndSwap(last, now) {
		return // another reader just sent one
	}
	l.requestAnswered.Store(false)
	l.keyframeRequestsTx.Add(1)
	l.track.stream.hub.stats.KeyframeRequestsSent.Add(1)
	if fn := l.requester.Load(); fn != nil {
		(*fn)()
	}
}

// deferKeyframeRequest arranges one later request for the readers waiting now.
func (l *Layer) deferKeyframeRequest(after time.Duration) {
	if !l.deferred.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(after, func() {
		l.deferred.Store(false)
		if l.track.stream.isEnded() {
			return
		}
		if l.lastKeyframeNanos.Load() >= l.lastWaitNanos.Load() {
			return // a keyframe came after the last reader started waiting
		}
		l.sendKeyframeRequest(time.Now().UnixNano())
	})
}

// Retransmission returns the packet of the source SSRC ssrc with sequence number seq from the
// layer's shared history, or nil.
func (l *Layer) Retransmission(ssrc uint32, seq uint16) *Packet {
	return l.history.get(ssrc, seq)
}

func (l *Layer) addReader(r *Reader) {
	l.mu.Lock()
	defer l.mu.Unlock()
	list := &l.readers
	if n := r.notify; n != nil {
		list = &l.notified
		if l.uses[n]++; l.uses[n] == 1 {
			old := *l.notifiers.Load()
			next := append(append(make([]*Notifier, 0, len(old)+1), old...), n)
			l.notifiers.Store(&next)
		}
	}
	old := *list.Load()
	next := append(append(make([]*Reader, 0, len(old)+1), old...), r)
	list.Store(&next)
}

func (l *Layer) removeReader(r *Reader) {
	l.mu.Lock()
	defer l.mu.Unlock()
	list := &l.readers
	if n := r.notify; n != nil {
		list = &l.notified
		if l.uses[n]--; l.uses[n] == 0 {
			delete(l.uses, n)
			l.notifiers.Store(without(*l.notifiers.Load(), n))
		}
	}
	list.Store(without(*list.Load(), r))
}

// without is a copy of list without x.
func without[T comparable](list []T, x T) *[]T {
	next := make([]T, 0, len(list))
	for _, y := range list {
		if y != x {
			next = append(next, y)
		}
	}
	return &next
}

// ReaderCount is the number of readers attached to the layer.
func (l *Layer) ReaderCount() int { return len(*l.readers.Load()) + len(*l.notified.Load()) }

// LayerStats are a layer's counters.
type LayerStats struct {
	RID                  string
	Packets, Bytes       uint64
	Keyframes            uint64
	KeyframeRequests     uint64
	KeyframeRequestsSent uint64
	BitrateBitsPerSecond uint64
	Readers              int
}

// Stats returns the layer's counters.
func (l *Layer) Stats() LayerStats {
	return LayerStats{
		RID:                  l.rid,
		Packets:              l.packets.Load(),
		Bytes:                l.bytes.Load(),
		Keyframes:            l.keyframes.Load(),
		KeyframeRequests:     l.keyframeRequests.Load(),
		KeyframeRequestsSent: l.keyframeRequestsTx.Load(),
		BitrateBitsPerSecond: l.Bitrate(),
		Readers:              l.ReaderCount(),
	}
}
