package hub

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

func TestLayerDeliversInOrderSharedPackets(t *testing.T) {
	for _, kind := range readerKinds {
		t.Run(kind.name, func(t *testing.T) {
			for _, tc := range []struct {
				name     string
				codec    webrtc.RTPCodecCapability
				payload  func(i int) []byte
				readers  int
				packets  int
				firstSeq uint16
			}{
				{"video one reader", codecH264, h264Stream(30), 1, 100, 1000},
				{"video many readers across sequence wrap", codecH264, h264Stream(30), 8, 500, 65300},
				{"audio many readers", codecOpus, opusStream, 8, 500, 0},
			} {
				t.Run(tc.name, func(t *testing.T) {
					h := newTestHub(t, 0)
					track := mustPublish(t, h, "live/order", tc.codec).Stream().Tracks()[0]
					layer := track.Layer("")
					readers := make([]*Reader, tc.readers)
					for i := range readers {
						readers[i] = kind.newReader(track, tc.packets)
					}
					sent := make([]*Packet, tc.packets)
					for i := range sent {
						sent[i] = newPacket(0x1234, tc.firstSeq+uint16(i), uint32(i)*3000, tc.payload(i))
						layer.WritePacket(sent[i])
					}
					for ri, r := range readers {
						got := queued(r)
						if len(got) != len(sent) {
							t.Fatalf("reader %d got %d packets, want %d", ri, len(got), len(sent))
						}
						for i, e := range got {
							if e.Packet != sent[i] {
								t.Fatalf("reader %d entry %d: packet %p (seq %d), want the written packet %p (seq %d)",
									ri, i, e.Packet, e.Packet.Header.SequenceNumber, sent[i], sent[i].Header.SequenceNumber)
							}
							if e.Resync && i > 0 {
								t.Errorf("reader %d entry %d: Resync without a loss", ri, i)
							}
						}
						if r.Dropped() != 0 || r.Delivered() != uint64(len(sent)) {
							t.Errorf("reader %d: dropped %d delivered %d, want 0 and %d", ri, r.Dropped(), r.Delivered(), len(sent))
						}
					}
					if st := layer.Stats(); st.Packets != uint64(tc.packets) || st.Readers != tc.readers {
						t.Errorf("layer stats %+v, want %d packets and %d readers", st, tc.packets, tc.readers)
					}
				})
			}
		})
	}
}

// TestLayerOrderAcrossGoroutines reads on other goroutines while the writer writes: whatever a
// reader gets is in order and the written packet itself, and what it does not get is counted.
func TestLayerOrderAcrossGoroutines(t *testing.T) {
	for _, tc := range []struct {
		name    string
		codec   webrtc.RTPCodecCapability
		payload func(i int) []byte
	}{
		{"video", codecH264, h264Stream(25)},
		{"audio", codecOpus, opusStream},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const packets, readers = 5000, 4
			h := newTestHub(t, 0)
			pub := mustPublish(t, h, "live/goroutines", tc.codec)
			track := pub.Stream().Tracks()[0]
			layer := track.Layer("")
			sent := make([]*Packet, packets)
			for i := range sent {
				sent[i] = newPacket(7, uint16(i), uint32(i)*960, tc.payload(i))
			}
			var wg sync.WaitGroup
			errs := make(chan error, readers)
			for range readers {
				r := track.NewReader(64)
				wg.Go(func() {
					received, last := 0, -1
					check := func(e Entry) error {
						i := int(e.Packet.Header.SequenceNumber)
						if i <= last || e.Packet != sent[i] {
							return fmt.Errorf("got seq %d after %d (same packet: %v)", i, last, e.Packet == sent[i])
						}
						last = i
						received++
						return nil
					}
					for {
						select {
						case e := <-r.C():
							if err := check(e); err != nil {
								errs <- err
								return
							}
						case <-r.Done():
							// Packets queued before the end stay readable.
							for _, e := range queued(r) {
								if err := check(e); err != nil {
									errs <- err
									return
								}
							}
							if got := uint64(received) + r.Dropped(); got != packets {
								errs <- fmt.Errorf("received %d + dropped %d = %d, want %d", received, r.Dropped(), got, packets)
								return
							}
							errs <- nil
							return
						}
					}
				})
			}
			for _, p := range sent {
				layer.WritePacket(p)
			}
			pub.End()
			wg.Wait()
			for range readers {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestNewReaderStartsOnKeyframe(t *testing.T) {
	for _, kind := range readerKinds {
		t.Run(kind.name, func(t *testing.T) {
			for _, tc := range []struct {
				name  string
				codec webrtc.RTPCodecCapability
				// readerFirst attaches the reader before the layer exists.
				readerFirst bool
				payloads    [][]byte
				want        []int // indices of payloads delivered
			}{
				{"h264 single NAL IDR", codecH264, false, [][]byte{h264Slice, h264Slice, h264IDR, h264Slice, h264Slice}, []int{2, 3, 4}},
				{"h264 reader before layer", codecH264, true, [][]byte{h264Slice, h264IDR, h264Slice}, []int{1, 2}},
				{"h264 fragmented IDR", codecH264, false, [][]byte{h264Slice, h264FUAStart, h264FUAMiddle, h264FUAEnd, h264Slice}, []int{1, 2, 3, 4}},
				{"h264 joins in the middle of a keyframe", codecH264, false,
					[][]byte{h264FUAMiddle, h264FUAEnd, h264Slice, h264STAPAKey, h264FUAStart, h264FUAEnd}, []int{3, 4, 5}},
				{"h264 no keyframe", codecH264, false, [][]byte{h264Slice, h264FUAMiddle, h264Slice}, nil},
				{"vp8", codecVP8, false, [][]byte{vp8Delta, vp8Key, vp8Delta}, []int{1, 2}},
				{"audio starts at once", codecOpus, false, [][]byte{opusFrame, opusFrame, opusFrame}, []int{0, 1, 2}},
				{"audio reader before layer", codecOpus, true, [][]byte{opusFrame, opusFrame}, []int{0, 1}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					h := newTestHub(t, 0)
					track := mustPublish(t, h, "live/join", tc.codec).Stream().Tracks()[0]
					var r *Reader
					if tc.readerFirst {
						r = kind.newReader(track, 0)
					}
					layer := track.Layer("")
					if !tc.readerFirst {
						r = kind.newReader(track, 0)
					}
					sent := make([]*Packet, len(tc.payloads))
					for i, payload := range tc.payloads {
						sent[i] = newPacket(1, uint16(100+i), 0, payload)
						layer.WritePacket(sent[i])
					}
					got := queued(r)
					var gotIdx []int
					for _, e := range got {
						gotIdx = append(gotIdx, slices.Index(sent, e.Packet))
					}
					if !slices.Equal(gotIdx, tc.want) {
						t.Fatalf("delivered packets %v, want %v", gotIdx, tc.want)
					}
					if len(got) > 0 {
						if !got[0].Packet.Keyframe {
							t.Errorf("first packet delivered is not a keyframe start")
						}
						if r.Layer() != layer {
							t.Errorf("reader's layer %p, want %p", r.Layer(), layer)
						}
					}
					if r.Dropped() != 0 || h.Stats().ReaderDrops.Load() != 0 {
						t.Errorf("a joining reader counted %d drops (hub %d): waiting for the first keyframe is not a loss",
							r.Dropped(), h.Stats().ReaderDrops.Load())
					}
				})
			}
		})
	}
}

// slowReaderCase is a reader with a queue of queue packets that reads nothing while burst packets
// are written: a keyframe, then delta frames.
type slowReaderCase struct {
	name          string
	codec         webrtc.RTPCodecCapability
	key, delta    []byte
	queue, burst  int
	needsKeyframe bool
}

var slowReaderCases = []slowReaderCase{
	{"video", codecH264, h264IDR, h264Slice, 4, 20, true},
	{"video queue of one", codecH264, h264STAPAKey, h264FUAMiddle, 1, 10, true},
	{"vp8", codecVP8, vp8Key, vp8Delta, 8, 9, true},
	{"audio", codecOpus, opusFrame, opusFrame, 4, 20, false},
}

func TestSlowReader(t *testing.T) {
	for _, tc := range slowReaderCases {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHub(t, 0)
			track := mustPublish(t, h, "live/slow", tc.codec).Stream().Tracks()[0]
			layer := track.Layer("")
			fast := track.NewReader(1000)
			slow := track.NewReader(tc.queue)
			var all []*Packet
			seq := uint16(0)
			write := func(payload []byte) *Packet {
				p := newPacket(9, seq, uint32(seq)*3000, payload)
				seq++
				all = append(all, p)
				layer.WritePacket(p)
				return p
			}
			// The fast reader drains as it goes; the slow one never does.
			var fastGot []*Packet
			drainFast := func() {
				for _, e := range queued(fast) {
					fastGot = append(fastGot, e.Packet)
				}
			}

			requestsBefore := layer.Stats().KeyframeRequests
			write(tc.key)
			for range tc.burst - 1 {
				write(tc.delta)
				drainFast()
			}
			wantDropped := uint64(tc.burst - tc.queue)
			if got := slow.Dropped(); got != wantDropped {
				t.Fatalf("slow reader dropped %d, want %d", got, wantDropped)
			}
			if got := h.Stats().ReaderDrops.Load(); got != wantDropped {
				t.Fatalf("hub ReaderDrops %d, want %d", got, wantDropped)
			}
			if tc.needsKeyframe {
				// Falling behind asks for a keyframe once, not once per lost packet.
				if got := layer.Stats().KeyframeRequests - requestsBefore; got != 1 {
					t.Errorf("slow reader asked for %d keyframes, want 1", got)
				}
			}
			backlog := queued(slow)
			if len(backlog) != tc.queue {
				t.Fatalf("slow reader's queue held %d, want %d", len(backlog), tc.queue)
			}
			for i, e := range backlog {
				if e.Packet != all[i] {
					t.Fatalf("slow reader's entry %d is seq %d, want %d", i, e.Packet.Header.SequenceNumber, i)
				}
			}

			// Drained, the slow reader resumes: video only at a keyframe.
			wantDropped += slowReaderResumes(t, tc, slow, write, drainFast)
			if got := slow.Dropped(); got != wantDropped {
				t.Errorf("slow reader dropped %d in all, want %d", got, wantDropped)
			}
			if got := h.Stats().ReaderDrops.Load(); got != wantDropped {
				t.Errorf("hub ReaderDrops %d, want %d", got, wantDropped)
			}
			if fast.Dropped() != 0 || !slices.Equal(fastGot, all) {
				t.Errorf("fast reader dropped %d and got %d of %d packets", fast.Dropped(), len(fastGot), len(all))
			}
		})
	}
}

// slowReaderResumes checks a slow reader that reads again: three delta frames reach it if it is
// audio and none if it is video, which then resumes with the next keyframe, marked Resync, and the
// packet after it. write writes a packet, drain lets the other readers read; it returns how many
// packets the slow reader dropped meanwhile.
func slowReaderResumes(t *testing.T, tc slowReaderCase, slow *Reader, write func([]byte) *Packet, drain func()) uint64 {
	t.Helper()
	for range 3 {
		write(tc.delta)
	}
	drain()
	var dropped uint64
	resumed := queued(slow)
	if tc.needsKeyframe {
		if len(resumed) != 0 {
			t.Fatalf("video reader resumed on a delta frame: %v", seqs(resumed))
		}
		dropped = 3
	} else if len(resumed) != 3 || resumed[0].Resync {
		t.Fatalf("audio reader got %s, want 3 packets without resync", describe(resumed))
	}
	key := write(tc.key)
	resumed = queued(slow) // a queue of one holds one packet
	next := write(tc.delta)
	drain()
	resumed = append(resumed, queued(slow)...)
	if tc.needsKeyframe && (len(resumed) != 2 || resumed[0].Packet != key || !resumed[0].Resync || resumed[1].Packet != next || resumed[1].Resync) {
		t.Fatalf("after the keyframe the slow reader got %s, want the keyframe with Resync then the next packet", describe(resumed))
	}
	return dropped
}

func describe(entries []Entry) string {
	s := ""
	for _, e := range entries {
		s += fmt.Sprintf("[seq %d key %v resync %v]", e.Packet.Header.SequenceNumber, e.Packet.Keyframe, e.Resync)
	}
	return s
}

// TestKeyframeRequestCoalescing joins 1,000 viewers within a second: the publisher is asked a
// handful of times in that second, whether it answers with keyframes or not.
func TestKeyframeRequestCoalescing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		answer  bool // the publisher answers each request with a keyframe
		maxSent int
	}{
		{"publisher answers", true, 5},
		{"publisher never answers", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const viewers, batches, window = 1000, 20, time.Second
			h := newTestHub(t, 0)
			track := mustPublish(t, h, "live/crowd", codecH264).Stream().Tracks()[0]
			layer := track.Layer("")
			var mu sync.Mutex
			var calls []time.Time
			asked := make(chan struct{}, 1)
			layer.SetKeyframeRequester(func() {
				mu.Lock()
				calls = append(calls, time.Now())
				mu.Unlock()
				select {
				case asked <- struct{}{}:
				default:
				}
			})
			// The ingest goroutine: a delta frame every 10ms, a keyframe when asked and answering.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				seq := uint16(0)
				for {
					payload := h264Slice
					select {
					case <-stop:
						return
					case <-tick.C:
					case <-asked:
						if tc.answer {
							payload = h264IDR
						}
					}
					layer.WritePacket(newPacket(1, seq, uint32(seq)*3000, payload))
					seq++
				}
			})
			start := time.Now()
			readers := make([]*Reader, 0, viewers)
			for b := range batches {
				for range viewers / batches {
					readers = append(readers, track.NewReader(1024))
				}
				time.Sleep(time.Until(start.Add(time.Duration(b+1) * (window - 50*time.Millisecond) / batches)))
			}
			time.Sleep(time.Until(start.Add(window)))
			close(stop)
			wg.Wait()

			mu.Lock()
			sent := 0
			for _, c := range calls {
				if c.Before(start.Add(window)) {
					sent++
				}
			}
			mu.Unlock()
			t.Logf("%d joins within %v: %d keyframe requests sent", viewers, window, sent)
			if sent < 1 || sent > tc.maxSent {
				t.Errorf("publisher was asked %d times in %v, want 1..%d", sent, window, tc.maxSent)
			}
			st := layer.Stats()
			if st.KeyframeRequests < viewers || st.KeyframeRequestsSent < uint64(sent) {
				t.Errorf("layer stats: %d asked, %d sent; want ≥ %d asked and ≥ %d sent", st.KeyframeRequests, st.KeyframeRequestsSent, viewers, sent)
			}
			if hs := h.Stats(); hs.KeyframeRequestsSent.Load() < st.KeyframeRequestsSent || hs.KeyframeRequests.Load() != st.KeyframeRequests {
				t.Errorf("hub stats: %d asked, %d sent; want %d and ≥ %d", hs.KeyframeRequests.Load(), hs.KeyframeRequestsSent.Load(), st.KeyframeRequests, st.KeyframeRequestsSent)
			}
			if tc.answer {
				// Every viewer but those who joined after the last keyframe has started.
				started := 0
				for _, r := range readers {
					if len(r.C()) > 0 {
						started++
					}
				}
				if started < viewers/2 {
					t.Errorf("only %d of %d viewers started", started, viewers)
				}
			}
		})
	}
}

// TestKeyframeRequestPacing sets the time of the last request back instead of sleeping.
func TestKeyframeRequestPacing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ago      time.Duration // since the previous request was sent
		answered bool          // a keyframe arrived since
		want     bool          // the new request is sent
	}{
		{"at once, unanswered", 0, false, false},
		{"at once, answered", 0, true, false},
		{"within the minimum interval, answered", keyframeRequestMinInterval - 50*time.Millisecond, true, false},
		{"after the minimum interval, answered", keyframeRequestMinInterval + 50*time.Millisecond, true, true},
		{"after the minimum interval, unanswered", keyframeRequestMinInterval + 50*time.Millisecond, false, false},
		{"before the retry interval, unanswered", keyframeRequestRetry - 50*time.Millisecond, false, false},
		{"after the retry interval, unanswered", keyframeRequestRetry + 50*time.Millisecond, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHub(t, 0)
			layer := mustPublish(t, h, "live/pace", codecH264).Stream().Tracks()[0].Layer("")
			var calls atomic.Int64
			layer.SetKeyframeRequester(func() { calls.Add(1) })
			layer.RequestKeyframe()
			if calls.Load() != 1 {
				t.Fatalf("first request: %d calls, want 1", calls.Load())
			}
			if tc.answered {
				layer.WritePacket(newPacket(1, 1, 0, h264IDR))
			}
			layer.lastRequestNanos.Add(-int64(tc.ago))
			layer.RequestKeyframe()
			if got := calls.Load() == 2; got != tc.want {
				t.Errorf("second request sent at once: %v, want %v", got, tc.want)
			}
		})
	}
}

// TestKeyframeRequestRetry waits out the retry interval on the real clock.
func TestKeyframeRequestRetry(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, 0)
	layer := mustPublish(t, h, "live/retry", codecH264).Stream().Tracks()[0].Layer("")
	var calls atomic.Int64
	layer.SetKeyframeRequester(func() { calls.Add(1) })
	// Long enough for one retry whatever the scheduler does, too short for a second one.
	wait := keyframeRequestRetry + 300*time.Millisecond
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		layer.RequestKeyframe()
		time.Sleep(20 * time.Millisecond)
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("no keyframe in %v: %d requests sent, want 2 (the first and one retry)", wait, got)
	}
}

func TestKeyframeRequestOnlyForVideo(t *testing.T) {
	h := newTestHub(t, 0)
	layer := mustPublish(t, h, "live/audio", codecOpus).Stream().Tracks()[0].Layer("")
	layer.SetKeyframeRequester(func() { t.Error("keyframe requested of an audio layer") })
	layer.RequestKeyframe()
	r := layer.Track().NewReader(1)
	for i := range 10 {
		layer.WritePacket(newPacket(1, uint16(i), 0, opusFrame))
	}
	if r.Dropped() != 9 {
		t.Errorf("dropped %d, want 9", r.Dropped())
	}
	if st := layer.Stats(); st.KeyframeRequests != 0 || st.KeyframeRequestsSent != 0 || st.Keyframes != 0 {
		t.Errorf("audio layer stats %+v: want no keyframes or requests", st)
	}
}

func TestConcurrentJoinLeave(t *testing.T) {
	for _, kind := range readerKinds {
		t.Run(kind.name, func(t *testing.T) {
			for _, tc := range []struct {
				name string
				// growLayers makes the publisher add layers while readers come and go, so readers waiting
				// for a first layer are switched to it while they close.
				growLayers bool
			}{
				{"live layers", false},
				{"layers appearing", true},
			} {
				t.Run(tc.name, func(t *testing.T) {
					const joiners, rounds = 16, 200
					h := newTestHub(t, 0)
					pub := mustPublish(t, h, "live/churn", codecH264, codecOpus)
					video, audio := pub.Stream().Tracks()[0], pub.Stream().Tracks()[1]
					var layers []*Layer
					if !tc.growLayers {
						layers = []*Layer{video.Layer("q"), video.Layer("h"), audio.Layer("")}
					}

					// The publisher runs until the readers are done.
					stop := make(chan struct{})
					var publisher sync.WaitGroup
					var written atomic.Uint64
					publisher.Go(func() {
						for i := 0; ; i++ {
							select {
							case <-stop:
								return
							default:
							}
							if tc.growLayers {
								video.Layer(fmt.Sprint(i))
								audio.Layer(fmt.Sprint(i))
								time.Sleep(100 * time.Microsecond)
								continue
							}
							// Both video layers get keyframes now and then.
							p := newPacket(1, uint16(i), uint32(i)*3000, h264Stream(7)(i))
							layers[(i/5)%2].WritePacket(p)
							layers[2].WritePacket(newPacket(2, uint16(i), uint32(i)*960, opusFrame))
							written.Add(2)
						}
					})
					var wg sync.WaitGroup
					var delivered atomic.Uint64
					for g := range joiners {
						wg.Go(func() {
							for i := range rounds {
								track := video
								if (g+i)%3 == 0 {
									track = audio
								}
								r := kind.newReader(track, g%4+1)
								if ls := track.Layers(); len(ls) > 1 && i%2 == 0 {
									r.SwitchLayer(ls[(i/2)%len(ls)])
								}
								runtime.Gosched()
								for _, e := range queued(r) {
									if e.Packet.Layer.Track() != track {
										t.Errorf("reader of track %d got a packet of track %d", track.Index(), e.Packet.Layer.Track().Index())
									}
									delivered.Add(1)
								}
								r.Unsubscribe()
								r.Close()
								if !isClosed(r.Done()) {
									t.Error("reader's Done is open after Close")
								}
							}
						})
					}
					wg.Wait()
					close(stop)
					publisher.Wait()

					if n := pub.Stream().ReaderCount(); n != 0 {
						t.Errorf("stream has %d readers after all closed", n)
					}
					for _, track := range pub.Stream().Tracks() {
						for _, l := range track.Layers() {
							if n := l.ReaderCount(); n != 0 {
								t.Errorf("track %d layer %q holds %d closed readers", track.Index(), l.RID(), n)
							}
						}
					}
					if got := h.Stats().PacketsIn.Load(); got != written.Load() {
						t.Errorf("hub counted %d packets in, want %d", got, written.Load())
					}
					t.Logf("%d packets read by %d short-lived readers", delivered.Load(), joiners*rounds)
				})
			}
		})
	}
}

// TestSwitchLayerAfterClose is the interleaving TestConcurrentJoinLeave provokes when a layer
// appears while a reader waiting for one closes: the switch must not attach the closed reader.
func TestSwitchLayerAfterClose(t *testing.T) {
	h := newTestHub(t, 0)
	track := mustPublish(t, h, "live/late", codecH264).Stream().Tracks()[0]
	layer := track.Layer("")
	r := track.NewReader(4)
	r.Close()
	r.SwitchLayer(layer)
	if n := layer.ReaderCount(); n != 0 {
		t.Fatalf("a closed reader was attached to a layer (%d readers)", n)
	}
	layer.WritePacket(newPacket(1, 1, 0, h264IDR))
	if got := queued(r); len(got) != 0 {
		t.Errorf("a closed reader received %d packets", len(got))
	}
}

func TestPaddingOnlyPacketsDropped(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []uint16 // sequence numbers written; those in padding carry no payload
		pad  []uint16
		want []uint16 // sequence numbers readers see
	}{
		{"no padding", []uint16{10, 11, 12}, nil, []uint16{10, 11, 12}},
		{"one in the middle", []uint16{10, 11, 12, 13}, []uint16{11}, []uint16{10, 11, 12}},
		{"runs of padding", []uint16{10, 11, 12, 13, 14, 15, 16}, []uint16{11, 13, 14}, []uint16{10, 11, 12, 13}},
		{"padding first", []uint16{5, 6, 7}, []uint16{5}, []uint16{5, 6}},
		{"across wrap", []uint16{65534, 65535, 0, 1}, []uint16{65535}, []uint16{65534, 65535, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHub(t, 0)
			layer := mustPublish(t, h, "live/pad", codecOpus).Stream().Tracks()[0].Layer("")
			r := layer.Track().NewReader(0)
			for _, seq := range tc.in {
				p := newPacket(3, seq, uint32(seq)*960, opusFrame)
				if slices.Contains(tc.pad, seq) {
					p.Payload = nil
					p.Header.Padding = true
					p.Header.PaddingSize = 200
				}
				layer.WritePacket(p)
			}
			got := queued(r)
			if !slices.Equal(seqs(got), tc.want) {
				t.Fatalf("readers saw %v, want %v", seqs(got), tc.want)
			}
			for _, e := range got {
				if len(e.Packet.Payload) == 0 {
					t.Errorf("seq %d: padding-only packet delivered", e.Packet.Header.SequenceNumber)
				}
				// A NACK for the renumbered sequence finds the packet the reader got.
				if p := layer.Retransmission(3, e.Packet.Header.SequenceNumber); p != e.Packet {
					t.Errorf("Retransmission(%d) = %p, want %p", e.Packet.Header.SequenceNumber, p, e.Packet)
				}
			}
			if n := h.Stats().PacketsIn.Load(); n != uint64(len(tc.want)) {
				t.Errorf("PacketsIn %d, want %d (padding does not count)", n, len(tc.want))
			}
		})
	}
}

func TestWritePacketNormalizesHeader(t *testing.T) {
	h := newTestHub(t, 0)
	layer := mustPublish(t, h, "live/hdr", codecH264).Stream().Tracks()[0].Layer("h")
	p := newPacket(5, 77, 1234, h264IDR)
	p.Header.Marker = true
	p.Header.Padding, p.Header.PaddingSize = true, 4
	if err := p.Header.SetExtension(3, []byte{0x01, 0x02}); err != nil {
		t.Fatal(err)
	}
	before := time.Now().UnixNano()
	layer.WritePacket(p)
	want := rtp.Header{Version: 2, Marker: true, PayloadType: 96, SequenceNumber: 77, Timestamp: 1234, SSRC: 5}
	if p.Header.Extension || p.Header.Extensions != nil || p.Header.ExtensionProfile != 0 || p.Header.Padding || p.Header.PaddingSize != 0 {
		t.Errorf("header after WritePacket %+v, want extensions and padding removed: %+v", p.Header, want)
	}
	if p.Header.SequenceNumber != 77 || p.Header.Timestamp != 1234 || p.Header.SSRC != 5 || !p.Header.Marker {
		t.Errorf("header after WritePacket %+v, want %+v", p.Header, want)
	}
	if p.Layer != layer || !p.Keyframe || p.ArrivalNanos < before || p.ArrivalNanos > time.Now().UnixNano() {
		t.Errorf("packet layer %p keyframe %v arrival %d: want %p, true, now", p.Layer, p.Keyframe, p.ArrivalNanos, layer)
	}
	if got, want := p.MarshalSize(), 12+len(h264IDR); got != want {
		t.Errorf("MarshalSize %d, want %d", got, want)
	}
}

func TestHistory(t *testing.T) {
	h := newTestHub(t, 0)
	layer := mustPublish(t, h, "live/nack", codecH264).Stream().Tracks()[0].Layer("")
	const ssrc, n = 0xabc, 3 * historySize / 2
	first := uint16(64500) // the sequence wraps
	written := map[uint16]*Packet{}
	for i := range n {
		seq := first + uint16(i)
		p := newPacket(ssrc, seq, 0, h264Slice)
		written[seq] = p
		layer.WritePacket(p)
	}
	last := first + n - 1
	for _, tc := range []struct {
		name string
		ssrc uint32
		seq  uint16
		want *Packet
	}{
		{"latest", ssrc, last, written[last]},
		{"recent", ssrc, last - 10, written[last-10]},
		{"oldest kept", ssrc, last - historySize + 1, written[last-historySize+1]},
		{"just overwritten", ssrc, last - historySize, nil},
		{"first, long overwritten", ssrc, first, nil},
		{"other SSRC", ssrc + 1, last, nil},
		{"never written", ssrc, last + 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := layer.Retransmission(tc.ssrc, tc.seq); got != tc.want {
				t.Errorf("Retransmission(%#x, %d) = %p, want %p", tc.ssrc, tc.seq, got, tc.want)
			}
		})
	}
}

// TestSlowNotifiedReader: a notified reader that falls more than its queue behind loses what it
// missed, counted, and goes on from the newest packet — video from the next keyframe, asked for
// once — while a reader that keeps up loses nothing.
func TestSlowNotifiedReader(t *testing.T) {
	lapped := slowReaderCase{"audio lapped by the ring", codecOpus, opusFrame, opusFrame, ringSize, ringSize + 10, false}
	for _, tc := range append(slices.Clone(slowReaderCases), lapped) {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHub(t, 0)
			track := mustPublish(t, h, "live/slow", tc.codec).Stream().Tracks()[0]
			layer := track.Layer("")
			n := NewNotifier()
			fast := track.NewNotifiedReader(ringSize, n)
			slow := track.NewNotifiedReader(tc.queue, n)
			var all, fastGot []*Packet
			seq := uint16(0)
			write := func(payload []byte) *Packet {
				p := newPacket(9, seq, uint32(seq)*3000, payload)
				seq++
				all = append(all, p)
				layer.WritePacket(p)
				for _, e := range queued(fast) {
					fastGot = append(fastGot, e.Packet)
				}
				return p
			}
			requestsBefore := layer.Stats().KeyframeRequests
			write(tc.key)
			for range tc.burst - 1 {
				write(tc.delta)
			}
			got := queued(slow)
			wantDropped := uint64(tc.burst - 1) // all but the newest
			if tc.needsKeyframe {
				wantDropped++ // the newest is a delta frame
				if len(got) != 0 {
					t.Fatalf("slow video reader went on with %s, want nothing before a keyframe", describe(got))
				}
				if got := layer.Stats().KeyframeRequests - requestsBefore; got != 1 {
					t.Errorf("slow reader asked for %d keyframes, want 1", got)
				}
			} else if len(got) != 1 || got[0].Packet != all[len(all)-1] {
				t.Fatalf("slow audio reader went on with %s, want the newest packet", describe(got))
			}
			if got := slow.Dropped(); got != wantDropped {
				t.Fatalf("slow reader dropped %d, want %d", got, wantDropped)
			}
			if got := h.Stats().ReaderDrops.Load(); got != wantDropped {
				t.Fatalf("hub ReaderDrops %d, want %d", got, wantDropped)
			}

			// Keeping up again, it resumes: video only at a keyframe.
			wantDropped += slowReaderResumes(t, tc, slow, write, func() {})
			if got := slow.Dropped(); got != wantDropped {
				t.Errorf("slow reader dropped %d in all, want %d", got, wantDropped)
			}
			if fast.Dropped() != 0 || !slices.Equal(fastGot, all) {
				t.Errorf("fast reader dropped %d and got %d of %d packets", fast.Dropped(), len(fastGot), len(all))
			}
		})
	}
}
