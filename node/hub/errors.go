package hub

import "errors"

var (
	// ErrStreamNotFound is returned when a reader asks for a stream that nobody publishes.
	ErrStreamNotFound = errors.New("stream not found")
	// ErrStreamBusy is returned when a second publisher asks for a stream that is live.
	ErrStreamBusy = errors.New("stream is already being published")
	// ErrNoTracks is returned when a publication declares no tracks.
	ErrNoTracks = errors.New("publication has no tracks")
	// ErrTooManyTracks is returned when a publication declares more than MaxTracks tracks.
	ErrTooManyTracks = errors.New("too many tracks")
	// ErrHubClosed is returned once the hub is closed.
	ErrHubClosed = errors.New("hub closed")
)
