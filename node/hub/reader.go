package hub

import (
	"sync"
	"sync/atomic"
)

// DefaultReaderQueue is the default bound of a reader's queue, in packets: about half a second of
// 2 Mbps video.
const DefaultReaderQueue = 256

// Entry is one packet as delivered to a reader.
type Entry struct {
	Packet *Packet
	// Resync is set on the keyframe that resumes a reader after it lost packets, or that switches
	// it to another layer: outputs renumber from here so the loss leaves no sequence gap.
	Resync bool
}

// Reader receives the packets of one track, from one layer at a time, through a bounded queue. The
// writer never waits for it: when the queue is full the packet is dropped, counted, and the reader
// skips to the next keyframe. A plain reader's queue is a channel (C); a notified reader's is its
// position in the track's ring (Next, ring.go), and its Notifier is signalled instead.
type Reader struct {
	track  *Track
	queue  chan Entry // nil for a notified reader
	done   chan struct{}
	notify *Notifier // signalled after a packet is written to the reader's layer, or nil

	// A notified reader's position in the track's ring and its queue bound, in ring positions;
	// next is its consumer's alone. end is 1 + the ring's head when it closed (0 while open): what
	// was written before stays readable, nothing after.
	next, bound uint64
	end         atomic.Uint64

	current atomic.Pointer[Layer] // the layer being delivered
	pending atomic.Pointer[Layer] // a layer to switch to on its next keyframe

	needKeyframe atomic.Bool
	dropped      atomic.Uint64
	delivered    atomic.Uint64

	closeOnce sync.Once
	// mu guards subscribed and closed, and is held while the reader is added to or removed from
	// a layer, so a layer's readers always match subscribed. Lock order: Reader.mu, then Layer.mu.
	mu         sync.Mutex
	subscribed []*Layer
	closed     bool
}

// C delivers a plain reader's packets (a notified reader's come from Next; its C is nil).
func (r *Reader) C() <-chan Entry { return r.queue }

// Done is closed when the stream ends or the reader is closed.
func (r *Reader) Done() <-chan struct{} { return r.done }

// Track is the track being read.
func (r *Reader) Track() *Track { return r.track }

// Layer is the layer currently delivered.
func (r *Reader) Layer() *Layer { return r.current.Load() }

// Dropped is the number of packets this reader lost because it fell behind.
func (r *Reader) Dropped() uint64 { return r.dropped.Load() }

// Delivered is the number of packets queued to this reader.
func (r *Reader) Delivered() uint64 { return r.delivered.Load() }

// push queues p to a plain reader; it runs on the writer's goroutine and never blocks.
func (r *Reader) push(p *Packet) {
	resync, ok := r.admit(p)
	if !ok {
		return
	}
	select {
	case r.queue <- Entry{Packet: p, Resync: resync}:
		r.delivered.Add(1)
	default:
		r.drop(p)
		if r.track.kind == KindVideo {
			r.needKeyframe.Store(true)
			p.Layer.RequestKeyframe()
		}
	}
}

// admit tells whether the reader takes p, a packet of one of its track's layers, and whether p
// resyncs it: the reader's own layer's packets once it has a keyframe, and the keyframe of a layer
// it is switching to, which makes that layer its own.
func (r *Reader) admit(p *Packet) (resync, ok bool) {
	if l := p.Layer; l != r.current.Load() {
		if l != r.pending.Load() || !p.Keyframe {
			return false, false
		}
		// Switch on the target layer's keyframe. The reader's own goroutine unsubscribes from the
		// old layer when it sees the switch.
		r.current.Store(l)
		r.pending.CompareAndSwap(l, nil)
		r.needKeyframe.Store(false)
		return true, true
	}
	if r.needKeyframe.Load() {
		if !p.Keyframe {
			r.drop(p)
			return false, false
		}
		r.needKeyframe.Store(false)
		return true, true
	}
	return false, true
}

// SwitchLayer makes the reader move to layer l at l's next keyframe (at once if it has nothing yet).
func (r *Reader) SwitchLayer(l *Layer) {
	if l == nil || l.track != r.track || l == r.current.Load() {
		r.pending.Store(nil)
		return
	}
	if !r.subscribe(l) {
		return // closed
	}
	r.pending.Store(l)
	l.RequestKeyframe()
}

// Unsubscribe detaches the reader from every layer other than the one it currently reads. Outputs
// call it after a switch (an Entry whose packet comes from a new layer).
func (r *Reader) Unsubscribe() {
	cur, pend := r.current.Load(), r.pending.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := r.subscribed[:0]
	for _, l := range r.subscribed {
		if l == cur || l == pend {
			keep = append(keep, l)
		} else {
			l.removeReader(r)
		}
	}
	r.subscribed = keep
}

// subscribe attaches the reader to l; it returns false once the reader is closed.
func (r *Reader) subscribe(l *Layer) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	for _, x := range r.subscribed {
		if x == l {
			return true
		}
	}
	r.subscribed = append(r.subscribed, l)
	l.addReader(r)
	return true
}

// Close detaches the reader. Packets already queued stay readable; nothing more arrives.
func (r *Reader) Close() {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		for _, l := range r.subscribed {
			l.removeReader(r)
		}
		r.subscribed = nil
		r.mu.Unlock()
		if r.notify != nil {
			r.end.Store(r.track.ring.head.Load() + 1)
		}
		r.track.removeReader(r)
		close(r.done)
	})
}

func (r *Reader) drop(p *Packet) {
	r.dropped.Add(1)
	p.Layer.track.stream.hub.stats.ReaderDrops.Add(1)
}
