package hub

import (
	"sync"
	"sync/atomic"
)

// The track's ring, for notified readers. A reader with a channel costs the writer a channel send
// per packet, and its consumer a receive: each touches the reader's channel from both goroutines,
// so for a viewer on another core every packet moves two or three cache lines between the cores,
// and the writer spends its time on each reader before any consumer is woken. A track instead
// keeps its latest packets, of every layer, in one ring in arrival order; a notified reader is a
// position in it, read by its consumer alone (Reader.Next). The writer stores each packet once and
// wakes the consumers; every reader then reads the same slot, shared and not written again.

// ringSize is how many of a track's latest packets its ring holds: a notified reader may fall
// this far behind at most (its queue bound is clamped to it). A power of two.
const ringSize = 1024

// ring holds a track's latest packets. Each layer's ingest goroutine writes (under mu); any number
// of consumers read without locking.
type ring struct {
	mu    sync.Mutex
	head  atomic.Uint64 // positions written so far; the next packet's position
	slots [ringSize]atomic.Pointer[Packet]
}

// put stores p at the next position. p.pos is set before p is published.
func (r *ring) put(p *Packet) {
	r.mu.Lock()
	pos := r.head.Load()
	p.pos = pos
	r.slots[pos%ringSize].Store(p)
	r.head.Store(pos + 1)
	r.mu.Unlock()
}

// at is the packet at position pos, or nil if it was overwritten (or not written yet).
func (r *ring) at(pos uint64) *Packet {
	p := r.slots[pos%ringSize].Load()
	if p == nil || p.pos != pos {
		return nil
	}
	return p
}

// Next returns the notified reader's next packet, or false when it has read everything written so
// far. Only the reader's consumer calls it. A reader more than its queue bound behind has fallen
// behind: what it missed of its layer is dropped (counted), and it goes on from the newest packet
// — video from its next keyframe, which is asked for.
func (r *Reader) Next() (Entry, bool) {
	ring := &r.track.ring
	for {
		head := ring.head.Load()
		if end := r.end.Load(); end != 0 {
			head = min(head, end-1) // closed
		}
		if r.next >= head {
			return Entry{}, false
		}
		if head-r.next > r.bound {
			r.overrun(head)
			continue
		}
		p := ring.at(r.next)
		if p == nil { // overwritten since head was read: the writer lapped the reader
			r.overrun(ring.head.Load())
			continue
		}
		r.next++
		resync, ok := r.admit(p)
		if !ok {
			continue
		}
		r.delivered.Add(1)
		return Entry{Packet: p, Resync: resync}, true
	}
}

// overrun moves a reader that fell behind to the newest packet, the one before head, counting the
// packets of its layer it skips (a position already overwritten counts as one).
func (r *Reader) overrun(head uint64) {
	head-- // the newest is kept: audio resumes with it, video from its next keyframe
	ring := &r.track.ring
	cur := r.current.Load()
	if cur == nil {
		// It fell behind before its first keyframe: the layer it was to start on is its own now,
		// so what it skips until a keyframe counts as lost too.
		if cur = r.pending.Load(); cur != nil {
			r.current.Store(cur)
			r.pending.CompareAndSwap(cur, nil)
		}
	}
	if cur == nil {
		r.next = head // nothing it reads was written
		return
	}
	var lost uint64
	for pos := r.next; pos < head; pos++ {
		if p := ring.at(pos); p == nil || p.Layer == cur {
			lost++
		}
	}
	r.next = head
	if lost == 0 {
		return
	}
	r.dropped.Add(lost)
	r.track.stream.hub.stats.ReaderDrops.Add(lost)
	if r.track.kind == KindVideo {
		r.needKeyframe.Store(true)
		cur.RequestKeyframe()
	}
}
