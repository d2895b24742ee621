package token

import "errors"

// Reasons Verify refuses a token. Each error Verify returns wraps exactly one of them.
var (
	// ErrMissing is returned for an empty token.
	ErrMissing = errors.New("token missing")
	// ErrMalformed is returned for a token that is not a JWT of this package's form (three
	// base64url parts, JSON header and claims, alg HS256 or ES256, the claims stream, action and
	// exp present and well-formed).
	ErrMalformed = errors.New("token malformed")
	// ErrBadSignature is returned when no configured key of the token's algorithm verifies it.
	ErrBadSignature = errors.New("token signature invalid")
	// ErrExpired is returned for a token whose exp has passed.
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid is returned for a token whose nbf has not come yet.
	ErrNotYetValid = errors.New("token not yet valid")
	// ErrWrongStream is returned for a token that does not cover the stream asked for.
	ErrWrongStream = errors.New("token is for another stream")
	// ErrWrongAction is returned for a token that grants another action (play for publish).
	ErrWrongAction = errors.New("token is for another action")
)

// Errors of key handling and minting.
var (
	// ErrBadKey is returned for a key that cannot be used (a short HS256 secret, a PEM that holds
	// no P-256 key, a public key given to Mint).
	ErrBadKey = errors.New("bad token key")
	// ErrBadClaims is returned by Mint for claims that would make a token nobody can use.
	ErrBadClaims = errors.New("bad token claims")
)
