package hub

import (
	"sync"
	"testing"
	"time"
)

// TestNotifierOncePerPacket: a consumer of many readers is signalled once per packet written, not
// once per reader, and after the signal every reader has the packet.
func TestNotifierOncePerPacket(t *testing.T) {
	h := newTestHub(t, time.Second)
	pub := mustPublish(t, h, "live/notify", codecOpus)
	track := pub.Stream().Tracks()[0]
	n := NewNotifier()
	readers := make([]*Reader, 10)
	for i := range readers {
		readers[i] = track.NewNotifiedReader(0, n)
	}
	plain := track.NewReader(0) // a reader without a Notifier is not affected
	layer := track.Layer("")
	for i := range 3 {
		select {
		case <-n.C():
			t.Fatalf("packet %d: signalled before it was written", i)
		default:
		}
		layer.WritePacket(newPacket(1, uint16(i), uint32(i)*960, opusFrame))
		select {
		case <-n.C():
		default:
			t.Fatalf("packet %d: not signalled", i)
		}
		select {
		case <-n.C():
			t.Fatalf("packet %d: signalled twice", i)
		default:
		}
		n.Clear()
		for j, r := range readers {
			if got := queued(r); len(got) != 1 || got[0].Packet.Header.SequenceNumber != uint16(i) {
				t.Fatalf("packet %d: reader %d read %v, want that packet", i, j, seqs(got))
			}
		}
	}
	if got := len(queued(plain)); got != 3 {
		t.Fatalf("plain reader got %d packets, want 3", got)
	}
	// Without Clear, further packets do not signal again: the consumer has not drained yet.
	layer.WritePacket(newPacket(1, 3, 3*960, opusFrame))
	<-n.C()
	layer.WritePacket(newPacket(1, 4, 4*960, opusFrame))
	select {
	case <-n.C():
		t.Fatal("signalled again before Clear")
	default:
	}
	for _, r := range readers {
		r.Close()
	}
}

// TestNotifierNoLostWakeup: a consumer that waits on C, clears and drains gets every packet of a
// concurrent writer, in order, without polling (run with -race) — or counts it dropped, if the
// writer laps the reader; the last packet is always read.
func TestNotifierNoLostWakeup(t *testing.T) {
	h := newTestHub(t, time.Second)
	pub := mustPublish(t, h, "live/notify", codecOpus)
	track := pub.Stream().Tracks()[0]
	n := NewNotifier()
	const packets, nreaders = 5000, 4
	readers := make([]*Reader, nreaders)
	for i := range readers {
		readers[i] = track.NewNotifiedReader(packets, n)
	}
	var wg sync.WaitGroup
	got := make([]int, nreaders)  // packets read
	next := make([]int, nreaders) // the lowest sequence number the next read may have
	wg.Go(func() {
		for {
			select {
			case <-n.C():
			case <-time.After(5 * time.Second):
				return // a lost wake-up: the counts below tell
			}
			n.Clear()
			for i, r := range readers {
				for e, ok := r.Next(); ok; e, ok = r.Next() {
					seq := int(e.Packet.Header.SequenceNumber)
					if seq < next[i] {
						t.Errorf("reader %d: packet %d out of order (want %d or later)", i, seq, next[i])
						return
					}
					next[i] = seq + 1
					got[i]++
				}
			}
			// Done only when every reader has the last: while the last reader is drained the
			// writer goes on, so the first ones may still have packets written after their turn.
			done := true
			for _, x := range next {
				done = done && x == packets
			}
			if done {
				return
			}
		}
	})
	layer := track.Layer("")
	for i := range packets {
		layer.WritePacket(newPacket(1, uint16(i), uint32(i)*960, opusFrame))
	}
	wg.Wait()
	for i, r := range readers {
		if next[i] != packets || uint64(got[i])+r.Dropped() != packets {
			t.Errorf("reader %d read %d and dropped %d of %d packets, the last read: %v", i, got[i], r.Dropped(), packets, next[i] == packets)
		}
	}
}

// TestNotifiedReaderClose: after Close a notified reader still reads what was written before it
// closed, and nothing written after, whatever its layers' neighbours on the ring write.
func TestNotifiedReaderClose(t *testing.T) {
	h := newTestHub(t, time.Second)
	track := mustPublish(t, h, "live/close", codecOpus).Stream().Tracks()[0]
	layer := track.Layer("")
	r := track.NewNotifiedReader(0, NewNotifier())
	other := track.NewNotifiedReader(0, NewNotifier()) // keeps the layer read
	for i := range 2 {
		layer.WritePacket(newPacket(1, uint16(i), 0, opusFrame))
	}
	r.Close()
	if !isClosed(r.Done()) {
		t.Fatal("Done open after Close")
	}
	for i := range 2 {
		layer.WritePacket(newPacket(1, uint16(2+i), 0, opusFrame))
	}
	if got := seqs(queued(r)); len(got) != 2 || got[0] != 0 || got[1] != 1 {
		t.Errorf("closed reader read %v, want [0 1]", got)
	}
	if got := seqs(queued(other)); len(got) != 4 {
		t.Errorf("open reader read %v, want 4 packets", got)
	}
	other.Close()
}
