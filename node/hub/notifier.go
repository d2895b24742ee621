package hub

import "sync/atomic"

// Notifier wakes one consumer goroutine that drains many notified readers, so an output serving
// many viewers wakes once per packet instead of once per viewer. The writer of a layer, once the
// packet is in the track's ring, signals each distinct Notifier of the layer's notified readers
// once; a Notifier already signalled and not yet drained costs the writer one atomic load.
//
// The consumer waits on C, then calls Clear before it reads its readers (Reader.Next): a packet
// written after Clear signals C again, so none is left waiting.
type Notifier struct {
	pending atomic.Bool
	c       chan struct{}
}

// NewNotifier returns a Notifier for one consumer.
func NewNotifier() *Notifier { return &Notifier{c: make(chan struct{}, 1)} }

// C receives after a packet was queued to a reader of the Notifier.
func (n *Notifier) C() <-chan struct{} { return n.c }

// Clear re-arms the Notifier; the consumer calls it before draining.
func (n *Notifier) Clear() { n.pending.Store(false) }

// Notify signals the consumer (the writer's side; also for other wake-ups of the consumer).
func (n *Notifier) Notify() {
	if n.pending.Load() || n.pending.Swap(true) {
		return
	}
	select {
	case n.c <- struct{}{}:
	default:
	}
}

// NewNotifiedReader is NewReader for a reader drained by the consumer of n: every packet written to
// a layer it reads signals n (once per packet, however many of n's readers read that layer). Its
// packets are read with Next, which never waits: after C of n receives and Clear, Next returns
// every packet written until then. queue bounds how far behind the reader may fall (at most
// ringSize packets of the track).
func (t *Track) NewNotifiedReader(queue int, n *Notifier) *Reader {
	return t.newReader(queue, n)
}
