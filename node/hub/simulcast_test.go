package hub

import (
	"testing"
	"time"

	"github.com/pion/rtp"
)

func TestSimulcastSwitch(t *testing.T) {
	for _, kind := range readerKinds {
		t.Run(kind.name, func(t *testing.T) {
			h := newTestHub(t, 0)
			track := mustPublish(t, h, "live/sim", codecH264).Stream().Tracks()[0]
			if track.BestLayer() != nil || len(track.Layers()) != 0 {
				t.Fatal("a new track has layers")
			}
			r := kind.newReader(track, 0) // before any layer

			q := track.Layer("q")
			if track.Layer("q") != q || q.RID() != "q" || q.Track() != track {
				t.Fatal("Layer(rid) does not return the one layer of that RID")
			}
			hi := track.Layer("h") // appears after the reader took q
			if got := track.Layers(); len(got) != 2 || got[0] != q || got[1] != hi {
				t.Fatalf("Layers() = %v, want [q h] in order of appearance", got)
			}
			if q.ReaderCount() != 1 || hi.ReaderCount() != 0 {
				t.Fatalf("readers q %d h %d: the waiting reader should take the first layer that appeared", q.ReaderCount(), hi.ReaderCount())
			}

			// Each layer is its own RTP stream.
			qSeq, hSeq := uint16(100), uint16(40000)
			writeQ := func(payload []byte) *Packet {
				p := newPacket(1, qSeq, uint32(qSeq)*3000, payload)
				qSeq++
				q.WritePacket(p)
				return p
			}
			writeH := func(payload []byte) *Packet {
				p := newPacket(2, hSeq, uint32(hSeq)*3000+12345, payload)
				hSeq++
				hi.WritePacket(p)
				return p
			}
			var delivered []Entry
			expect := func(step string, want ...*Packet) {
				t.Helper()
				got := queued(r)
				delivered = append(delivered, got...)
				if len(got) != len(want) {
					t.Fatalf("%s: got %s, want %d packets", step, describe(got), len(want))
				}
				for i := range got {
					if got[i].Packet != want[i] {
						t.Fatalf("%s: entry %d is %s", step, i, describe(got[i:i+1]))
					}
				}
			}

			writeQ(h264Slice)
			expect("q before its keyframe")
			k := writeQ(h264IDR)
			d := writeQ(h264Slice)
			writeH(h264IDR)
			expect("q from its keyframe, nothing of h", k, d)
			if r.Layer() != q {
				t.Fatalf("reader's layer %v, want q", r.Layer())
			}

			requests := hi.Stats().KeyframeRequests
			r.SwitchLayer(hi)
			if hi.ReaderCount() != 1 || hi.Stats().KeyframeRequests != requests+1 {
				t.Fatalf("SwitchLayer: h has %d readers, %d keyframe requests; want 1 and a new request", hi.ReaderCount(), hi.Stats().KeyframeRequests-requests)
			}
			writeH(h264Slice)
			d = writeQ(h264Slice)
			expect("until h's keyframe the reader stays on q", d)
			if r.Layer() != q {
				t.Fatal("reader left q before h's keyframe")
			}

			k = writeH(h264FUAStart)
			writeQ(h264IDR)
			d = writeH(h264FUAEnd)
			got := queued(r)
			delivered = append(delivered, got...)
			if len(got) != 2 || got[0].Packet != k || !got[0].Resync || got[1].Packet != d || got[1].Resync {
				t.Fatalf("switch: got %s, want h's keyframe with Resync, then h only", describe(got))
			}
			if r.Layer() != hi {
				t.Fatal("reader's layer is not h after the switch")
			}

			// The output leaves q once it sees the switch.
			if q.ReaderCount() != 1 {
				t.Fatalf("q has %d readers before Unsubscribe", q.ReaderCount())
			}
			r.Unsubscribe()
			if q.ReaderCount() != 0 || hi.ReaderCount() != 1 {
				t.Fatalf("after Unsubscribe: q %d readers, h %d; want 0 and 1", q.ReaderCount(), hi.ReaderCount())
			}

			// What the reader got becomes one continuous RTP stream.
			w := NewRewriter(90000)
			var out rtp.Header
			var lastSeq uint16
			var lastTS uint32
			for i, e := range delivered {
				if !w.Rewrite(e, outSSRC, outPT, &out) {
					t.Fatalf("entry %d refused by the rewriter", i)
				}
				if i > 0 && (out.SequenceNumber != lastSeq+1 || int32(out.Timestamp-lastTS) < 0) {
					t.Fatalf("entry %d: out seq %d ts %d after seq %d ts %d", i, out.SequenceNumber, out.Timestamp, lastSeq, lastTS)
				}
				lastSeq, lastTS = out.SequenceNumber, out.Timestamp
			}
		})
	}
}

func TestSwitchLayerIgnored(t *testing.T) {
	for _, kind := range readerKinds {
		t.Run(kind.name, func(t *testing.T) {
			h := newTestHub(t, 0)
			tracks := mustPublish(t, h, "live/ign", codecH264, codecH264).Stream().Tracks()
			a, b := tracks[0].Layer("a"), tracks[1].Layer("b")
			a2 := tracks[0].Layer("a2")
			for _, tc := range []struct {
				name   string
				target *Layer
			}{
				{"nil cancels a pending switch", nil},
				{"layer of another track", b},
				{"current layer cancels a pending switch", a},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := kind.newReader(tracks[0], 0)
					defer r.Close()
					r.SwitchLayer(a)
					a.WritePacket(newPacket(1, 1, 0, h264IDR))
					got := queued(r) // a notified reader takes its layer when it reads
					r.SwitchLayer(a2)
					r.SwitchLayer(tc.target)
					if r.pending.Load() != nil {
						t.Fatalf("pending switch to %v", r.pending.Load().RID())
					}
					a2.WritePacket(newPacket(2, 1, 0, h264IDR))
					b.WritePacket(newPacket(3, 1, 0, h264IDR))
					if got = append(got, queued(r)...); len(got) != 1 || got[0].Packet.Layer != a || r.Layer() != a {
						t.Errorf("got %s on layer %p, want a's keyframe only on %p", describe(got), r.Layer(), a)
					}
				})
			}
		})
	}
}

func TestBestLayer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rids    []string
		bitrate map[string]uint64 // bits per second, measured just now
		want    string
	}{
		{"single plain layer", []string{""}, nil, ""},
		{"q h m", []string{"q", "h", "m"}, nil, "h"},
		{"numeric", []string{"0", "2", "1"}, nil, "2"},
		{"low full", []string{"low", "full"}, nil, "full"},
		{"unknown RIDs keep the first", []string{"x", "y"}, nil, "x"},
		{"bitrate beats RID", []string{"q", "h"}, map[string]uint64{"q": 3_000_000, "h": 1_000_000}, "q"},
		{"a measured layer beats an idle one", []string{"h", "q"}, map[string]uint64{"q": 300_000}, "q"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHub(t, 0)
			track := mustPublish(t, h, "live/best", codecH264).Stream().Tracks()[0]
			for _, rid := range tc.rids {
				l := track.Layer(rid)
				if rate, ok := tc.bitrate[rid]; ok {
					l.bitrate.Store(rate)
					l.lastPacketNanos.Store(time.Now().UnixNano())
				}
			}
			if got := track.BestLayer(); got == nil || got.RID() != tc.want {
				t.Fatalf("BestLayer() = %v, want %q", got, tc.want)
			}
			r := track.NewReader(0)
			if p := r.pending.Load(); p == nil || p.RID() != tc.want {
				t.Errorf("a new reader waits for %v, want the best layer %q", p, tc.want)
			}
		})
	}
}

func TestLayerBitrate(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, 0)
	l := mustPublish(t, h, "live/rate", codecOpus).Stream().Tracks()[0].Layer("")
	if l.Bitrate() != 0 {
		t.Fatal("bitrate before any packet")
	}
	payload := make([]byte, 113) // 125 bytes with the header
	start := time.Now()
	for i := 0; time.Since(start) < 1100*time.Millisecond; i++ {
		l.WritePacket(newPacket(1, uint16(i), 0, payload))
		time.Sleep(10 * time.Millisecond)
	}
	// About 100 packets of 1,000 bits a second, less under a slow scheduler.
	if got := l.Bitrate(); got < 20_000 || got > 110_000 {
		t.Errorf("Bitrate() = %d, want about 100 kbit/s", got)
	}
	l.lastPacketNanos.Store(time.Now().Add(-3 * time.Second).UnixNano())
	if got := l.Bitrate(); got != 0 {
		t.Errorf("Bitrate() of an idle layer = %d, want 0", got)
	}
}
