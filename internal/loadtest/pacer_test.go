package loadtest

import (
	"context"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// fakeClock is a pacer's clock that only moves when the pacer sleeps.
type fakeClock struct {
	t      time.Time
	sleeps int
}

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.sleeps++
	c.t = c.t.Add(d)
	return nil
}

// fakePacer returns a pacer at factor × bitrate on a fake clock.
func fakePacer(bitrate Bitrate, factor float64) (*pacer, *fakeClock) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	p := newPacer(bitrate, factor)
	p.now, p.sleep = clock.now, clock.sleep
	return p, clock
}

// sendPaced writes one frame through the pacer as sendVideo does and returns the clock's time at
// each packet's write.
func sendPaced(ctx context.Context, p *pacer, clock *fakeClock, payloads [][]byte) []time.Time {
	var at []time.Time
	write := func(*rtp.Packet) error {
		at = append(at, clock.now())
		return nil
	}
	hold := func(size int) bool { return p.wait(ctx, size) == nil }
	var pkt rtp.Packet
	var c publisherCounters
	writeFrame(write, &pkt, payloads, 0, 0, true, h264Stampable, hold, &c)
	return at
}

// airtime is how long size bytes take at rate bit/s.
func airtime(size int, rate float64) time.Duration {
	return time.Duration(float64(size) * 8 / rate * 1e9)
}

// within1us reports whether a and b are within a microsecond (float rounding per packet).
func within1us(a, b time.Duration) bool { return (a - b).Abs() <= time.Microsecond }

func TestPacerSpreadsKeyframe(t *testing.T) {
	for _, bitrate := range []Bitrate{600_000, 2_000_000} {
		t.Run(bitrate.String(), func(t *testing.T) {
			rate := DefaultPacing * float64(bitrate)
			p, clock := fakePacer(bitrate, DefaultPacing)
			gen := newH264Generator(bitrate, VideoFPS, testGOP, 3)
			// Two keyframes a second apart: idle time is not saved up beyond the burst allowance.
			for range 2 {
				payloads, key := gen.nextFrame(true)
				if !key || len(payloads) < 10 {
					t.Fatalf("keyframe of %d packets", len(payloads))
				}
				start := clock.now()
				at := sendPaced(context.Background(), p, clock, payloads)
				if len(at) != len(payloads) {
					t.Fatalf("%d of %d packets written", len(at), len(payloads))
				}
				// Packet i leaves when the bytes before it, less the burst allowance, have drained.
				var before int
				for i, payload := range payloads {
					want := max(0, airtime(before, rate)-pacerBurst)
					if got := at[i].Sub(start); !within1us(got, want) {
						t.Errorf("packet %d left at +%v, want +%v", i, got, want)
					}
					before += len(payload)
				}
				size := before
				// The frame is on the wire after N·8/R less the burst allowance: N·8/R, give or take 5 ms.
				last := payloads[len(payloads)-1]
				took := at[len(at)-1].Sub(start) + airtime(len(last), rate)
				if want := airtime(size, rate); took < want-pacerBurst-time.Microsecond || took > want {
					t.Errorf("keyframe of %d bytes took %v at %.0f bit/s, want %v − at most %v", size, took, rate,
						want, pacerBurst)
				}
				t.Logf("keyframe %d bytes in %d packets: %v at %.2f Mbit/s", size, len(payloads), took, rate/1e6)
				clock.t = clock.t.Add(time.Second)
			}
		})
	}
}

func TestPacerSendsSmallFrameAtOnce(t *testing.T) {
	const bitrate = 2_000_000
	rate := DefaultPacing * bitrate
	p, clock := fakePacer(bitrate, DefaultPacing)
	// Three packets whose first two fit in the burst allowance (5 ms at 5 Mbit/s is 3125 bytes).
	payloads := make([][]byte, 3)
	for i := range payloads {
		payloads[i] = append([]byte{nalFUA}, make([]byte, maxRTPPayload-1)...)
	}
	if airtime(2*maxRTPPayload, rate) > pacerBurst {
		t.Fatalf("test frame does not fit the burst allowance")
	}
	start := clock.now()
	for i, at := range sendPaced(context.Background(), p, clock, payloads) {
		if !at.Equal(start) {
			t.Errorf("packet %d waited %v", i, at.Sub(start))
		}
	}
	if clock.sleeps != 0 {
		t.Errorf("pacer slept %d times", clock.sleeps)
	}
	// Right after it the allowance is used up: the next packet waits for the excess to drain.
	at := sendPaced(context.Background(), p, clock, payloads[:1])
	if want := airtime(3*maxRTPPayload, rate) - pacerBurst; !within1us(at[0].Sub(start), want) {
		t.Errorf("next packet left at +%v, want +%v", at[0].Sub(start), want)
	}
}

// TestPacerQueuesFramesBehindKeyframe: a delta frame due while a keyframe drains leaves after it,
// paced, with nothing dropped.
func TestPacerQueuesFramesBehindKeyframe(t *testing.T) {
	const bitrate = 600_000
	rate := DefaultPacing * bitrate
	p, clock := fakePacer(bitrate, DefaultPacing)
	gen := newH264Generator(bitrate, VideoFPS, testGOP, 4)
	key, _ := gen.nextFrame(true)
	var keyBytes int
	for _, payload := range key {
		keyBytes += len(payload)
	}
	start := clock.now()
	keyAt := sendPaced(context.Background(), p, clock, key)
	if clock.now().Sub(start) < time.Second/VideoFPS {
		t.Fatalf("keyframe drained in %v, within one frame interval: nothing to queue", clock.now().Sub(start))
	}
	delta, key2 := gen.nextFrame(false) // reuses the keyframe's payloads

	if key2 || len(delta) < 2 {
		t.Fatalf("delta frame: keyframe %v, %d packets", key2, len(delta))
	}
	deltaAt := sendPaced(context.Background(), p, clock, delta)
	if len(deltaAt) != len(delta) {
		t.Fatalf("%d of %d delta packets written", len(deltaAt), len(delta))
	}
	// The delta frame's first packet goes when the keyframe's bytes (less the allowance) drained.
	if want := airtime(keyBytes, rate) - pacerBurst; !within1us(deltaAt[0].Sub(start), want) {
		t.Errorf("delta frame left at +%v, want +%v (keyframe's last packet at +%v)", deltaAt[0].Sub(start), want,
			keyAt[len(keyAt)-1].Sub(start))
	}
	if gap, want := deltaAt[1].Sub(deltaAt[0]), airtime(len(delta[0]), rate); !within1us(gap, want) {
		t.Errorf("delta packets %v apart, want %v", gap, want)
	}
}

func TestPacerOffSendsBackToBack(t *testing.T) {
	p, clock := fakePacer(2_000_000, 0)
	gen := newH264Generator(2_000_000, VideoFPS, testGOP, 5)
	for range 3 {
		payloads, _ := gen.nextFrame(true)
		start := clock.now()
		at := sendPaced(context.Background(), p, clock, payloads)
		if len(at) != len(payloads) {
			t.Fatalf("%d of %d packets written", len(at), len(payloads))
		}
		for i := range at {
			if !at[i].Equal(start) {
				t.Fatalf("packet %d waited %v", i, at[i].Sub(start))
			}
		}
	}
	if clock.sleeps != 0 {
		t.Errorf("unpaced sender slept %d times", clock.sleeps)
	}
}

// TestPacerStopsWithContext: a frame stops at the first packet that would wait once ctx ended.
func TestPacerStopsWithContext(t *testing.T) {
	p, clock := fakePacer(600_000, DefaultPacing)
	gen := newH264Generator(600_000, VideoFPS, testGOP, 6)
	payloads, _ := gen.nextFrame(true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	at := sendPaced(ctx, p, clock, payloads)
	if len(at) == 0 || len(at) >= len(payloads) {
		t.Errorf("%d of %d packets written after cancel, want those within the burst allowance", len(at), len(payloads))
	}
}
