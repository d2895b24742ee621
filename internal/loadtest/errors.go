package loadtest

import (
	"context"
	"errors"
)

var (
	// ErrInvalidConfig is returned by Config.Validate and Run for a bad configuration.
	ErrInvalidConfig = errors.New("invalid loadtest config")
	// ErrUnexpectedStatus means a WHIP or WHEP POST was not answered with 201 Created.
	ErrUnexpectedStatus = errors.New("unexpected HTTP status")
	// ErrInvalidAnswer means the server's SDP answer could not be applied.
	ErrInvalidAnswer = errors.New("invalid SDP answer")
	// ErrConnectTimeout means ICE and DTLS did not complete within Config.ConnectTimeout.
	ErrConnectTimeout = errors.New("connection not established in time")
	// ErrConnectionFailed means ICE or DTLS failed.
	ErrConnectionFailed = errors.New("connection failed")

	// errHTTP marks transport errors of the WHIP/WHEP exchange (refused, reset, timeout).
	errHTTP = errors.New("http request failed")
)

// Failure causes, as counted in SubscriberCounts.FailureCauses.
const (
	causeHTTP          = "http"
	causeHTTPStatus    = "http_status"
	causeInvalidAnswer = "invalid_answer"
	causeTimeout       = "ice_dtls_timeout"
	causeFailed        = "ice_dtls_failed"
	causeSetup         = "setup"
)

// failureCause names the class of a session setup error.
func failureCause(err error) string {
	switch {
	case errors.Is(err, ErrUnexpectedStatus):
		return causeHTTPStatus
	case errors.Is(err, ErrInvalidAnswer):
		return causeInvalidAnswer
	case errors.Is(err, ErrConnectTimeout), errors.Is(err, context.DeadlineExceeded):
		return causeTimeout
	case errors.Is(err, ErrConnectionFailed):
		return causeFailed
	case errors.Is(err, errHTTP):
		return causeHTTP
	default:
		return causeSetup
	}
}
