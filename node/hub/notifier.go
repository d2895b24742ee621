package hub

import "sync/atomic"

// Notifier wakes one consumer goroutine that drains many readers, so an output serving many
// viewers wakes once per packet instead of once per viewer. The writer of a layer, after handing a
// packet to every reader, signals each distinct Notifier of those readers at most once; a
// Notifier already signalled and not yet drained costs the writer one atomic load.
//
// The consumer waits on C, then calls Clear before it drains its readers' queues: a packet queued
// after Clear signals C again, so none is left waiting.
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

// NewNotifiedReader is NewReader for a reader drained by the consumer of n: every packet queued to
// it signals n (once per packet written, however many of n's readers got it). Its C is drained
// without waiting on it: after C of n receives and Clear, every entry queued is in C.
func (t *Track) NewNotifiedReader(queue int, n *Notifier) *Reader {
	return t.newReader(queue, n)
}
