package mpegts

import "errors"

var (
	// ErrNoSupportedTrack is returned when an input or a stream has no track MPEG-TS can carry
	// here (H264, H265, AAC, Opus).
	ErrNoSupportedTrack = errors.New("no supported track")
	// ErrBFrames is returned when a video track has frames whose presentation order differs from
	// their decoding order (B-frames): WebRTC viewers cannot take them.
	ErrBFrames = errors.New("video has B-frames (PTS differs from DTS)")
	// ErrProbeTimeout is returned when the start of an input did not reveal its tracks in time.
	ErrProbeTimeout = errors.New("input did not reveal its tracks in time")
	// ErrInputUnusable is returned when an input carried no valid media for too long.
	ErrInputUnusable = errors.New("no valid media in the input for too long")
	// ErrMuxerClosed is returned when subscribing to a muxer that has stopped.
	ErrMuxerClosed = errors.New("muxer closed")
)
