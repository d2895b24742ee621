package rtspserver

import "errors"

var (
	// ErrUnauthorized is returned when a client's token is missing or wrong.
	ErrUnauthorized = errors.New("missing or wrong token")
	// ErrNoSupportedMedia is returned when an ANNOUNCE offers no codec a stream may carry.
	ErrNoSupportedMedia = errors.New("no supported codec in the announced session")
	// ErrNothingToPlay is returned when a stream has no track RTSP can send.
	ErrNothingToPlay = errors.New("stream has no track RTSP can send")
	// ErrBadQuery is returned for a request URL whose query does not parse.
	ErrBadQuery = errors.New("malformed query")
	// ErrBadLayerMID is returned for a media of an all-layers session whose mid does not name a
	// track and layer.
	ErrBadLayerMID = errors.New("bad layer mid")
	// ErrDraining is returned for a new session while the node is draining.
	ErrDraining = errors.New("the node is draining")
	// ErrClosed is returned once the server is closed.
	ErrClosed = errors.New("rtsp server closed")
)
