package mpegts

import (
	"testing"
)

// TestPTSToRTPTenHours feeds 10 hours of 30 fps video and 48 kHz AAC (1024-sample frames) through
// the PTS-to-RTP conversion, with a PTS origin close to the 33-bit wrap so the timestamps wrap
// during the run (every 26.5 hours of PTS; the origin puts the wrap in the first hour). The two
// tracks' RTP times must stay within one video frame of each other and of the true time, with
// no cumulative error.
func TestPTSToRTPTenHours(t *testing.T) {
	const hours = 10
	origin := tsWrap - 90000*60*30 // 30 minutes before the wrap
	video := ptsToRTP{rate: 90000}
	audio := ptsToRTP{rate: 48000}
	var vExt, aExt int64 // unwrapped RTP timestamps, to compare
	var vPrev, aPrev uint32
	vStarted, aStarted := false, false
	unwrap := func(ext *int64, prev *uint32, started *bool, ts uint32) {
		if *started {
			*ext += int64(int32(ts - *prev))
		} else {
			*ext, *started = int64(ts), true
		}
		*prev = ts
	}
	wraps := 0
	lastPTS := origin
	frame := int64(0)
	audioFrame := int64(0)
	for frame < hours*3600*30 {
		// Exact PTS of video frame n is n*3000 ticks; AAC frame k is k*1024*90000/48000 = k*1920.
		vTrue := frame * 3000
		vPTS := (origin + vTrue) & tsMask
		if vPTS < lastPTS {
			wraps++
		}
		lastPTS = vPTS
		_, ts := video.convert(origin, vPTS)
		unwrap(&vExt, &vPrev, &vStarted, ts)
		for aTrue := audioFrame * 1920; aTrue <= vTrue; aTrue = audioFrame * 1920 {
			_, ats := audio.convert(origin, (origin+aTrue)&tsMask)
			unwrap(&aExt, &aPrev, &aStarted, ats)
			if want := audioFrame * 1024; aExt != want {
				t.Fatalf("audio frame %d: RTP %d, want %d (drift %d samples)", audioFrame, aExt, want, aExt-want)
			}
			audioFrame++
		}
		if want := vTrue; vExt != want {
			t.Fatalf("video frame %d: RTP %d, want %d", frame, vExt, want)
		}
		// Audio and video, in seconds, within one video frame.
		lastAudioTrue := (audioFrame - 1) * 1920
		skew := float64(vExt)/90000 - float64(aExt)/48000 - float64(vTrue-lastAudioTrue)/90000
		if skew > 1.0/30 || skew < -1.0/30 {
			t.Fatalf("frame %d: audio/video skew %.4fs", frame, skew)
		}
		frame++
	}
	if wraps != 1 {
		t.Errorf("PTS wrapped %d times, want 1", wraps)
	}
}

// TestPTSToRTPOddRates checks a clock rate that does not divide 90 kHz (44.1 kHz): the RTP time is
// always the exact PTS time rounded down, never an accumulation of rounded steps.
func TestPTSToRTPOddRates(t *testing.T) {
	c := ptsToRTP{rate: 44100}
	origin := int64(12345)
	for i := int64(0); i < 1_000_000; i++ {
		pts := origin + i*2090 // 1024/44100 s is 2089.795... ticks: irregular steps
		_, ts := c.convert(origin, pts&tsMask)
		if want := uint32(i * 2090 * 44100 / 90000); ts != want {
			t.Fatalf("step %d: RTP %d, want %d", i, ts, want)
		}
	}
}

func TestRTPToPTS(t *testing.T) {
	c := rtpToPTS{rate: 48000}
	start := uint32(0xffff0000) // wraps the 32-bit RTP clock quickly
	for i := int64(0); i < 100000; i++ {
		pts := c.convert(start+uint32(i*960), func() int64 { return 90000 })
		if want := 90000 + i*1800; pts != want {
			t.Fatalf("packet %d: PTS %d, want %d", i, pts, want)
		}
	}
}

func TestDiff33(t *testing.T) {
	for _, tt := range []struct{ a, b, want int64 }{
		{10, 5, 5}, {5, 10, -5}, {0, tsMask, 1}, {tsMask, 0, -1}, {100, tsMask - 99, 200},
	} {
		if got := diff33(tt.a, tt.b); got != tt.want {
			t.Errorf("diff33(%d, %d) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
