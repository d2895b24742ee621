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
	// ErrClosed is returned once the server is closed.
	ErrClosed = errors.New("rtsp server closed")
)
