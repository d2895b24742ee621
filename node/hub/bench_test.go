package hub

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pion/webrtc/v4"
)

// BenchmarkFanOut measures the hot path: one writer, many readers each drained by its own
// goroutine, as WebRTC outputs do. ns/pkt/reader is the writer's cost per packet per reader;
// allocs/op is per packet written, whatever the number of readers.
func BenchmarkFanOut(b *testing.B) {
	for _, bc := range []struct {
		codec   webrtc.RTPCodecCapability
		payload func(i int) []byte
		readers int
	}{
		{codecH264, h264Stream(100), 1000},
		{codecOpus, opusStream, 1000},
		{codecH264, h264Stream(100), 1},
	} {
		name := fmt.Sprintf("%s/readers=%d", bc.codec.MimeType, bc.readers)
		b.Run(name, func(b *testing.B) {
			h := New(Config{}, nil)
			defer h.Close()
			pub, err := h.Publish("live/bench", specsOf(bc.codec))
			if err != nil {
				b.Fatal(err)
			}
			track := pub.Stream().Tracks()[0]
			layer := track.Layer("")
			var wg sync.WaitGroup
			for range bc.readers {
				r := track.NewReader(0)
				wg.Go(func() {
					for {
						select {
						case <-r.C():
						case <-r.Done():
							return
						}
					}
				})
			}
			// Packets are made beforehand: the writer takes ownership of each, so they cannot be
			// reused, and making them is not the hub's cost.
			packets := make([]Packet, b.N)
			for i := range packets {
				packets[i] = *newPacket(1, uint16(i), uint32(i)*3000, bc.payload(i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range packets {
				layer.WritePacket(&packets[i])
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(bc.readers), "ns/pkt/reader")
			b.ReportMetric(float64(h.Stats().ReaderDrops.Load())/float64(b.N)/float64(bc.readers), "drops/pkt/reader")
			h.Close()
			wg.Wait()
		})
	}
}

// BenchmarkFanOutNotified is BenchmarkFanOut for readers drained by one consumer goroutine woken
// through a Notifier, as the WebRTC server's fan-out groups do (one per 64 viewers), reading the
// track's ring. The writer is held back while a group lags by more than a quarter of the ring, so
// nothing is dropped, and the time runs until every group has read every packet: ns/pkt/reader is
// the writer's and the consumers' cost together, per packet per reader, on all CPUs.
func BenchmarkFanOutNotified(b *testing.B) {
	const readers, perGroup = 1000, 64
	h := New(Config{}, nil)
	defer h.Close()
	pub, err := h.Publish("live/bench", specsOf(codecH264))
	if err != nil {
		b.Fatal(err)
	}
	track := pub.Stream().Tracks()[0]
	layer := track.Layer("")
	var wg sync.WaitGroup
	done := make(chan struct{})
	var progress []*atomic.Int64 // packets each group's readers have all read
	for g := 0; g < readers; g += perGroup {
		n := NewNotifier()
		rs := make([]*Reader, 0, perGroup)
		for range min(perGroup, readers-g) {
			rs = append(rs, track.NewNotifiedReader(ringSize, n))
		}
		read := new(atomic.Int64)
		progress = append(progress, read)
		wg.Go(func() {
			for {
				select {
				case <-n.C():
				case <-done:
					return
				}
				n.Clear()
				var last int64
				for _, r := range rs {
					for _, ok := r.Next(); ok; _, ok = r.Next() {
					}
					last = int64(r.Delivered())
				}
				read.Store(last)
			}
		})
	}
	slowest := func() int64 {
		least := int64(b.N)
		for _, p := range progress {
			least = min(least, p.Load())
		}
		return least
	}
	payload := h264Stream(100)
	packets := make([]Packet, b.N)
	for i := range packets {
		packets[i] = *newPacket(1, uint16(i), uint32(i)*3000, payload(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range packets {
		for int64(i)-slowest() > ringSize/4 {
			runtime.Gosched()
		}
		layer.WritePacket(&packets[i])
	}
	for slowest() < int64(b.N) {
		runtime.Gosched()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/readers, "ns/pkt/reader")
	b.ReportMetric(float64(h.Stats().ReaderDrops.Load())/float64(b.N)/readers, "drops/pkt/reader")
	close(done)
	h.Close()
	wg.Wait()
}
