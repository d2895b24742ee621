package streammanager

import (
	"errors"
	"net/http"
)

// Sentinel errors.
var (
	// ErrInvalidConfig is wrapped by every error of Config.Validate.
	ErrInvalidConfig = errors.New("invalid manager config")
	// ErrNoCapacity: every eligible node is full.
	ErrNoCapacity = errors.New("no node has capacity")
	// ErrNoNode: no node of the needed role is in service.
	ErrNoNode = errors.New("no node in service")
	// ErrNodeNotFound: no such node.
	ErrNodeNotFound = errors.New("node not found")
)

// apiError is an error answer: an HTTP status and a stable {code, message} body.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func newError(status int, code, message string) *apiError {
	return &apiError{status: status, code: code, message: message}
}

// Stable error codes.
const (
	codeBadRequest        = "bad_request"
	codeInvalidStreamName = "invalid_stream_name"
	codeInvalidParameter  = "invalid_parameter"
	codeUnknownParameter  = "unknown_parameter"
	codeMalformedJSON     = "malformed_json"
	codeUnknownField      = "unknown_field"
	codeBodyTooLarge      = "body_too_large"
	codeUnsupportedMedia  = "unsupported_media_type"
	codeNotFound          = "not_found"
	codeNodeNotFound      = "node_not_found"
	codeMethodNotAllowed  = "method_not_allowed"
	codeUnauthorized      = "unauthorized"
	codeNoSigningKey      = "no_signing_key"
	codeNoCapacity        = "no_capacity"
	codeNoOrigin          = "no_origin"
	codeNoEdge            = "no_edge"
	codeUnavailable       = "unavailable"
)

// lookupError maps a balancing error to its answer.
func lookupError(err error, publish bool) *apiError {
	switch {
	case errors.Is(err, ErrNoCapacity):
		return newError(http.StatusServiceUnavailable, codeNoCapacity, "every eligible node is at capacity; try again shortly")
	case errors.Is(err, ErrNoNode) && publish:
		return newError(http.StatusServiceUnavailable, codeNoOrigin, "no origin is in service")
	case errors.Is(err, ErrNoNode):
		return newError(http.StatusServiceUnavailable, codeNoEdge, "no node serving viewers is in service")
	}
	return newError(http.StatusInternalServerError, "internal", err.Error())
}
