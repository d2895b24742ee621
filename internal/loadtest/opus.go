package loadtest

import (
	"math/rand/v2"
	"time"
)

// Shape of the synthetic Opus audio: one 20 ms frame per packet at AudioBitrate.
const (
	opusFrameDuration = 20 * time.Millisecond
	opusClockRate     = 48_000
	opusFrameSamples  = opusClockRate * int(opusFrameDuration/time.Millisecond) / 1000
	opusPayloadSize   = AudioBitrate / 8 * int(opusFrameDuration/time.Millisecond) / 1000
	// opusTOC is configuration 31 (CELT-only, fullband, 20 ms), mono, one frame (RFC 6716 3.1).
	opusTOC = 31 << 3
)

// newOpusPayload returns a buffer shaped like one Opus packet of the synthetic audio: a TOC byte
// and non-zero filler. The publisher reuses it for every packet, restamping its tail each time.
func newOpusPayload(seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, ^seed))
	p := make([]byte, max(opusPayloadSize, minStampedPayload))
	p[0] = opusTOC
	for i := 1; i < len(p); i++ {
		p[i] = byte(1 + rng.IntN(255))
	}
	return p
}
