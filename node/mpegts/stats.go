package mpegts

import "sync/atomic"

// Stats are the counters of the MPEG-TS conversion, shared by every ingest and muxer of a
// server; the node exports them as metrics.
type Stats struct {
	// TSErrors counts what an input carried that could not be used and was skipped: bytes
	// before a sync byte, broken packets or PES, access units that failed to packetize.
	TSErrors atomic.Uint64
	// BFrameRefusals counts inputs refused because their video had B-frames.
	BFrameRefusals atomic.Uint64
	// SkippedTracks counts input tracks left out for an unsupported codec.
	SkippedTracks atomic.Uint64
	// KeyframeRequests counts keyframe requests from readers of MPEG-TS inputs, which have no
	// way back to the encoder.
	KeyframeRequests atomic.Uint64
	// MuxersRunning is the number of running muxers (one per stream being read as MPEG-TS).
	MuxersRunning atomic.Int64
	// SubscriberDrops counts MPEG-TS chunks dropped because a subscriber fell behind.
	SubscriberDrops atomic.Uint64
	// MuxErrors counts RTP packets or frames a muxer could not convert.
	MuxErrors atomic.Uint64
}
