package auth

import "errors"

// ErrRefused is wrapped by every refusal Authorize returns (a *Refusal).
var ErrRefused = errors.New("not authorized")

// ErrClosed is returned by Authorize once the authorizer is closed.
var ErrClosed = errors.New("authorizer closed")

// Refusal codes, as WHIP/WHEP error bodies, RTSP reason phrases, logs and metrics show them.
const (
	CodeTokenRequired    = "token_required"      // no credential at all
	CodeTokenInvalid     = "token_invalid"       // not the static token, and not a JWT to verify
	CodeTokenMalformed   = "token_malformed"     // a JWT that does not parse
	CodeTokenSignature   = "token_bad_signature" // no configured key verifies it
	CodeTokenExpired     = "token_expired"
	CodeTokenNotYetValid = "token_not_yet_valid"
	CodeTokenStream      = "token_wrong_stream"
	CodeTokenAction      = "token_wrong_action"
	CodeWebhookRefused   = "webhook_refused"     // the webhook answered, not with a 2xx
	CodeWebhookError     = "webhook_unavailable" // the webhook timed out or could not be reached
)

// Codes lists every refusal code, for metrics.
var Codes = []string{CodeTokenRequired, CodeTokenInvalid, CodeTokenMalformed, CodeTokenSignature, CodeTokenExpired,
	CodeTokenNotYetValid, CodeTokenStream, CodeTokenAction, CodeWebhookRefused, CodeWebhookError}

// Refusal is why a request was refused: a stable code and a message for the client. Neither ever
// holds a credential.
type Refusal struct {
	Code    string
	Message string
	err     error // the token sentinel, when a token was refused
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

// Unwrap gives ErrRefused and, for a token's refusal, the internal/token sentinel.
func (r *Refusal) Unwrap() []error {
	if r.err != nil {
		return []error{ErrRefused, r.err}
	}
	return []error{ErrRefused}
}
