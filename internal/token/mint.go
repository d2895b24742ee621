package token

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// MintRequest is the JSON body of the admin call that mints a token (POST /api/v1/tokens):
//
//	{"stream": "live/x", "action": "play", "ttl": "1h", "sub": "alice"}
//
// stream is a name, "prefix/*" or "*"; action is publish or play; ttl is a Go duration ("90s",
// "1h"), the policy's default when empty; sub is optional.
type MintRequest struct {
	Stream  string `json:"stream"`
	Action  string `json:"action"`
	TTL     string `json:"ttl,omitempty"`
	Subject string `json:"sub,omitempty"`
}

// MintResponse is the answer: the token and what it grants.
type MintResponse struct {
	Token     string    `json:"token"`
	Stream    string    `json:"stream"`
	Action    string    `json:"action"`
	ExpiresAt time.Time `json:"expires_at"`
	ID        string    `json:"jti"`
}

// RequestError is a refused mint request, for a {code, message} body with Status.
type RequestError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *RequestError) Error() string { return e.Code + ": " + e.Message }

// MintPolicy bounds what Minter issues.
type MintPolicy struct {
	// DefaultTTL is the lifetime of a token whose request names none (1h if zero).
	DefaultTTL time.Duration
	// MaxTTL caps a requested lifetime (24h if zero).
	MaxTTL time.Duration
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// MaxMintRequestBytes bounds a mint request body.
const MaxMintRequestBytes = 4096

// Minter is the logic of the token-minting admin call: a JSON request in, a token out.
type Minter struct {
	key    Key
	policy MintPolicy
}

// NewMinter mints with key, which must be able to sign.
func NewMinter(key Key, policy MintPolicy) (*Minter, error) {
	if !key.CanSign() {
		return nil, fmt.Errorf("%w: %s cannot sign", ErrBadKey, key)
	}
	if policy.DefaultTTL <= 0 {
		policy.DefaultTTL = time.Hour
	}
	if policy.MaxTTL <= 0 {
		policy.MaxTTL = 24 * time.Hour
	}
	if policy.DefaultTTL > policy.MaxTTL {
		return nil, fmt.Errorf("token default ttl %s exceeds the max ttl %s", policy.DefaultTTL, policy.MaxTTL)
	}
	if policy.Now == nil {
		policy.Now = time.Now
	}
	return &Minter{key: key, policy: policy}, nil
}

func badRequest(code, msg string) *RequestError {
	return &RequestError{Status: http.StatusBadRequest, Code: code, Message: msg}
}

// MintJSON reads one MintRequest from body (at most MaxMintRequestBytes, no unknown fields, nothing
// after it) and mints its token. A refused request is a *RequestError.
func (m *Minter) MintJSON(body io.Reader) (MintResponse, error) {
	data, err := io.ReadAll(io.LimitReader(body, MaxMintRequestBytes+1))
	if err != nil {
		return MintResponse{}, badRequest("bad_body", "the body could not be read")
	}
	if len(data) > MaxMintRequestBytes {
		return MintResponse{}, &RequestError{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
			Message: fmt.Sprintf("the request exceeds %d bytes", MaxMintRequestBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var req MintRequest
	if err := dec.Decode(&req); err != nil {
		return MintResponse{}, badRequest("malformed_json", "the body is not a token request: "+err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return MintResponse{}, badRequest("malformed_json", "the body holds more than one JSON value")
	}
	return m.Mint(req)
}

// Mint mints the token req asks for. A refused request is a *RequestError.
func (m *Minter) Mint(req MintRequest) (MintResponse, error) {
	if err := ValidatePattern(req.Stream); err != nil {
		return MintResponse{}, badRequest("invalid_stream", "stream must be a stream name, \"prefix/*\" or \"*\": "+err.Error())
	}
	action, err := ParseAction(req.Action)
	if err != nil {
		return MintResponse{}, badRequest("invalid_action", err.Error())
	}
	ttl := m.policy.DefaultTTL
	if req.TTL != "" {
		// a token's times are whole seconds: a shorter ttl would mint an expired token
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl < time.Second {
			return MintResponse{}, badRequest("invalid_ttl", fmt.Sprintf("ttl %q is not a duration of at least 1s, such as \"90s\" or \"1h\"", req.TTL))
		}
	}
	if ttl < time.Second {
		return MintResponse{}, badRequest("invalid_ttl", "ttl must be at least 1s")
	}
	if ttl > m.policy.MaxTTL {
		return MintResponse{}, badRequest("ttl_too_long", fmt.Sprintf("ttl %s exceeds the maximum of %s", ttl, m.policy.MaxTTL))
	}
	if len(req.Subject) > 256 {
		return MintResponse{}, badRequest("invalid_sub", "sub is longer than 256 bytes")
	}
	now := m.policy.Now()
	c := Claims{Stream: req.Stream, Action: action, IssuedAt: now, ExpiresAt: now.Add(ttl), Subject: req.Subject, ID: newID()}
	tok, err := Mint(c, m.key)
	if err != nil {
		return MintResponse{}, &RequestError{Status: http.StatusInternalServerError, Code: "internal", Message: "the token could not be signed"}
	}
	return MintResponse{Token: tok, Stream: c.Stream, Action: string(c.Action), ExpiresAt: c.ExpiresAt.Truncate(time.Second).UTC(), ID: c.ID}, nil
}

// ServeHTTP answers a mint request: 201 with a MintResponse, or a {code, message} error. It does
// not check an API key: wrap it in the admin API's check.
func (m *Minter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	resp, err := m.MintJSON(r.Body)
	if err != nil {
		var re *RequestError
		if !errors.As(err, &re) {
			re = &RequestError{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
		}
		w.WriteHeader(re.Status)
		_ = json.NewEncoder(w).Encode(re)
		return
	}
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(resp)
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
