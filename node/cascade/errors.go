package cascade

import "errors"

var (
	// ErrBadUpstream is returned for an upstream address that does not parse.
	ErrBadUpstream = errors.New("bad upstream")
	// ErrUpstreamUnavailable is returned when no upstream could be pulled from (refused, down, or
	// not answering), as opposed to every upstream answering that it lacks the stream
	// (hub.ErrStreamNotFound).
	ErrUpstreamUnavailable = errors.New("no upstream available")
	// ErrUnauthorized is returned when an upstream refuses the cluster secret (or its absence).
	ErrUnauthorized = errors.New("upstream refused the cluster credentials")
	// ErrBadSession is returned for an upstream session description this node cannot rebuild the
	// stream from.
	ErrBadSession = errors.New("upstream session description unusable")
	// ErrStalled is returned when an upstream stops sending packets.
	ErrStalled = errors.New("upstream stalled")
	// ErrClosed is returned once the puller is closed.
	ErrClosed = errors.New("puller closed")
)
