// Package token is streamfleet's publish and play tokens: JWTs (RFC 7519) signed with HS256 or
// ES256 that grant one action on a stream or a family of streams until they expire. A stream
// manager (or an operator's own service) mints them with Mint; nodes check them with Verify, with no
// round trip to anyone.
//
// A token's claims:
//
//	stream  the stream name ("live/match1"), a prefix pattern ending in "/*" ("live/*": every
//	        stream under live/), or "*" (every stream)
//	action  "publish" or "play"
//	exp     expiry, seconds since the epoch (required)
//	nbf     not before (optional)
//	iat     issued at (optional, informational)
//	sub     the user the token was minted for (optional, informational)
//	jti     the token's id (optional), for an operator's audit trail
//
// The package also holds the constant-time API key check of the admin API (apikey.go) and the
// logic of the token-minting admin call (mint.go).
package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamfleet/streamfleet/internal/streamname"
)

// Action is what a token allows.
type Action string

// Actions.
const (
	ActionPublish Action = "publish"
	ActionPlay    Action = "play"
)

// ParseAction validates an action name.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case ActionPublish, ActionPlay:
		return a, nil
	}
	return "", fmt.Errorf("unknown action %q (want publish or play)", s)
}

// Claims are what a token says.
type Claims struct {
	// Stream is a stream name, a prefix pattern "a/b/*", or "*"; see Covers.
	Stream string
	Action Action
	// ExpiresAt is required; NotBefore and IssuedAt are optional (zero: absent).
	ExpiresAt time.Time
	NotBefore time.Time
	IssuedAt  time.Time
	// Subject names the user; ID is the token's own id. Both optional.
	Subject string
	ID      string
}

// wireClaims is the JSON form of Claims.
type wireClaims struct {
	Stream string `json:"stream"`
	Action string `json:"action"`
	jwt.RegisteredClaims
}

// ValidatePattern checks a stream pattern: a stream name, a name followed by "/*", or "*".
func ValidatePattern(p string) error {
	if p == "*" {
		return nil
	}
	if prefix, ok := strings.CutSuffix(p, "/*"); ok {
		_, err := streamname.Parse(prefix)
		return err
	}
	_, err := streamname.Parse(p)
	return err
}

// Covers reports whether pattern covers stream: the same name, a name under the prefix of a
// "prefix/*" pattern (at any depth, never the prefix itself), or anything for "*".
func Covers(pattern, stream string) bool {
	if pattern == "*" {
		return stream != ""
	}
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok && strings.HasSuffix(prefix, "/") {
		return len(stream) > len(prefix) && strings.HasPrefix(stream, prefix)
	}
	return pattern == stream
}

// Algorithm names a signature algorithm.
type Algorithm string

// Algorithms.
const (
	HS256 Algorithm = "HS256"
	ES256 Algorithm = "ES256"
)

// MinSecretBytes is the shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least as
// long as the hash (32 bytes).
const MinSecretBytes = 32

// Key signs or verifies tokens: an HS256 secret, or an ES256 (P-256) private or public key.
type Key struct {
	alg    Algorithm
	secret []byte
	priv   *ecdsa.PrivateKey
	pub    *ecdsa.PublicKey
}

// Algorithm is the key's algorithm.
func (k Key) Algorithm() Algorithm { return k.alg }

// CanSign reports whether Mint can use the key (an HS256 secret or an ES256 private key).
func (k Key) CanSign() bool { return k.secret != nil || k.priv != nil }

// String never shows the key material.
func (k Key) String() string {
	if k.alg == "" {
		return "token.Key(none)"
	}
	return "token.Key(" + string(k.alg) + ")"
}

// GoString never shows the key material either (%#v).
func (k Key) GoString() string { return k.String() }

// NewHS256Key makes an HS256 key from a shared secret of at least MinSecretBytes bytes.
func NewHS256Key(secret []byte) (Key, error) {
	if len(secret) < MinSecretBytes {
		return Key{}, fmt.Errorf("%w: an HS256 secret needs at least %d bytes, got %d", ErrBadKey, MinSecretBytes, len(secret))
	}
	return Key{alg: HS256, secret: append([]byte(nil), secret...)}, nil
}

// NewES256Key wraps a P-256 private key (which signs and verifies).
func NewES256Key(priv *ecdsa.PrivateKey) (Key, error) {
	if priv == nil || priv.Curve != elliptic.P256() {
		return Key{}, fmt.Errorf("%w: ES256 needs a P-256 key", ErrBadKey)
	}
	return Key{alg: ES256, priv: priv, pub: &priv.PublicKey}, nil
}

// NewES256PublicKey wraps a P-256 public key (which only verifies).
func NewES256PublicKey(pub *ecdsa.PublicKey) (Key, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return Key{}, fmt.Errorf("%w: ES256 needs a P-256 key", ErrBadKey)
	}
	return Key{alg: ES256, pub: pub}, nil
}

// ParseES256PEM reads an ES256 key from PEM: a public key ("PUBLIC KEY", PKIX), which verifies,
// or a private key ("EC PRIVATE KEY" SEC 1, or "PRIVATE KEY" PKCS #8), which signs too. The first
// PEM block that holds a key is used.
func ParseES256PEM(data []byte) (Key, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return Key{}, fmt.Errorf("%w: no PEM block with an EC key", ErrBadKey)
		}
		switch block.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return Key{}, fmt.Errorf("%w: public key: %v", ErrBadKey, err)
			}
			pub, ok := k.(*ecdsa.PublicKey)
			if !ok {
				return Key{}, fmt.Errorf("%w: the public key is not an EC key", ErrBadKey)
			}
			return NewES256PublicKey(pub)
		case "EC PRIVATE KEY":
			priv, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return Key{}, fmt.Errorf("%w: EC private key: %v", ErrBadKey, err)
			}
			return NewES256Key(priv)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return Key{}, fmt.Errorf("%w: private key: %v", ErrBadKey, err)
			}
			priv, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return Key{}, fmt.Errorf("%w: the private key is not an EC key", ErrBadKey)
			}
			return NewES256Key(priv)
		}
	}
}

// PublicPEM renders the public half of an ES256 key as a PKIX "PUBLIC KEY" PEM block, for the
// nodes' --token-pubkey file.
func (k Key) PublicPEM() ([]byte, error) {
	if k.pub == nil {
		return nil, fmt.Errorf("%w: not an ES256 key", ErrBadKey)
	}
	der, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// Mint signs claims with key. The claims need a valid stream pattern, an action and an expiry.
func Mint(c Claims, key Key) (string, error) {
	if err := ValidatePattern(c.Stream); err != nil {
		return "", fmt.Errorf("%w: stream: %v", ErrBadClaims, err)
	}
	if _, err := ParseAction(string(c.Action)); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadClaims, err)
	}
	if c.ExpiresAt.IsZero() {
		return "", fmt.Errorf("%w: no expiry", ErrBadClaims)
	}
	w := wireClaims{Stream: c.Stream, Action: string(c.Action)}
	w.ExpiresAt = jwt.NewNumericDate(c.ExpiresAt)
	if !c.NotBefore.IsZero() {
		w.NotBefore = jwt.NewNumericDate(c.NotBefore)
	}
	if !c.IssuedAt.IsZero() {
		w.IssuedAt = jwt.NewNumericDate(c.IssuedAt)
	}
	w.Subject, w.ID = c.Subject, c.ID
	var (
		method  jwt.SigningMethod
		signKey any
	)
	switch {
	case key.alg == HS256 && key.secret != nil:
		method, signKey = jwt.SigningMethodHS256, key.secret
	case key.alg == ES256 && key.priv != nil:
		method, signKey = jwt.SigningMethodES256, key.priv
	default:
		return "", fmt.Errorf("%w: %s cannot sign (an HS256 secret or an ES256 private key is needed)", ErrBadKey, key)
	}
	s, err := jwt.NewWithClaims(method, w).SignedString(signKey)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// MaxTokenBytes bounds the tokens Verify reads: a real one is a few hundred bytes.
const MaxTokenBytes = 4096

var parser = jwt.NewParser(
	jwt.WithValidMethods([]string{string(HS256), string(ES256)}),
	jwt.WithoutClaimsValidation(), // times are checked against the caller's now, below
)

// Verify checks that tok is signed by one of keys and grants action on stream at now. The error
// wraps ErrMissing, ErrMalformed, ErrBadSignature, ErrExpired, ErrNotYetValid, ErrWrongStream or
// ErrWrongAction, in that order of checking; it never contains the token or a key.
func Verify(tok string, keys []Key, stream string, action Action, now time.Time) (Claims, error) {
	if tok == "" {
		return Claims{}, ErrMissing
	}
	if len(tok) > MaxTokenBytes {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxTokenBytes)
	}
	var w wireClaims
	_, err := parser.ParseWithClaims(tok, &w, func(t *jwt.Token) (any, error) {
		set := jwt.VerificationKeySet{}
		for _, k := range keys {
			switch {
			case t.Method.Alg() == string(HS256) && k.alg == HS256:
				set.Keys = append(set.Keys, k.secret)
			case t.Method.Alg() == string(ES256) && k.alg == ES256:
				set.Keys = append(set.Keys, k.pub)
			}
		}
		if len(set.Keys) == 0 {
			return nil, fmt.Errorf("no %s key is configured", t.Method.Alg())
		}
		return set, nil
	})
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenMalformed):
		return Claims{}, ErrMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable), errors.Is(err, jwt.ErrTokenSignatureInvalid):
		// no key of the token's algorithm, an algorithm other than HS256/ES256, or no key matched
		return Claims{}, ErrBadSignature
	default:
		return Claims{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	c, err := w.claims()
	if err != nil {
		return Claims{}, err
	}
	switch {
	case !now.Before(c.ExpiresAt):
		return c, fmt.Errorf("%w at %s", ErrExpired, c.ExpiresAt.UTC().Format(time.RFC3339))
	case !c.NotBefore.IsZero() && now.Before(c.NotBefore):
		return c, fmt.Errorf("%w until %s", ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339))
	case !Covers(c.Stream, stream):
		return c, ErrWrongStream
	case c.Action != action:
		return c, fmt.Errorf("%w: it grants %s, not %s", ErrWrongAction, c.Action, action)
	}
	return c, nil
}

// claims checks the signed claims' form.
func (w *wireClaims) claims() (Claims, error) {
	if err := ValidatePattern(w.Stream); err != nil {
		return Claims{}, fmt.Errorf("%w: bad stream claim", ErrMalformed)
	}
	a, err := ParseAction(w.Action)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: bad action claim", ErrMalformed)
	}
	if w.ExpiresAt == nil {
		return Claims{}, fmt.Errorf("%w: no exp claim", ErrMalformed)
	}
	c := Claims{Stream: w.Stream, Action: a, ExpiresAt: w.ExpiresAt.Time, Subject: w.Subject, ID: w.ID}
	if w.NotBefore != nil {
		c.NotBefore = w.NotBefore.Time
	}
	if w.IssuedAt != nil {
		c.IssuedAt = w.IssuedAt.Time
	}
	return c, nil
}

// LooksLikeJWT reports whether s has the shape of a JWT (three dot-separated parts), to tell a
// token from a static shared secret without parsing it.
func LooksLikeJWT(s string) bool {
	return strings.Count(s, ".") == 2 && len(s) >= 5
}
