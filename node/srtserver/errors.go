package srtserver

import "errors"

var (
	// ErrMissingStreamID is returned for a connection request without a streamid.
	ErrMissingStreamID = errors.New("missing streamid")
	// ErrBadStreamID is returned for a streamid that does not parse or names no valid stream.
	ErrBadStreamID = errors.New("invalid streamid")
	// ErrBadMode is returned for an m= other than publish or request.
	ErrBadMode = errors.New("unsupported streamid mode")
)
