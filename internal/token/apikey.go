package token

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// APIKeys is the set of API keys admin calls may present. The zero value holds none and allows
// nothing. It keeps only SHA-256 digests, so a key's length does not show in the compare's timing
// and a heap dump does not hold the keys.
type APIKeys struct {
	digests [][sha256.Size]byte
}

// NewAPIKeys holds keys (empty strings are skipped), several for rotation.
func NewAPIKeys(keys ...string) *APIKeys {
	a := &APIKeys{}
	for _, k := range keys {
		if k != "" {
			a.digests = append(a.digests, sha256.Sum256([]byte(k)))
		}
	}
	return a
}

// Len is the number of keys held.
func (a *APIKeys) Len() int {
	if a == nil {
		return 0
	}
	return len(a.digests)
}

// Match reports whether got is one of the keys, in time that depends on neither which key matched
// nor how much of it.
func (a *APIKeys) Match(got string) bool {
	if a == nil || got == "" {
		return false
	}
	d := sha256.Sum256([]byte(got))
	match := 0
	for i := range a.digests {
		match |= subtle.ConstantTimeCompare(d[:], a.digests[i][:])
	}
	return match == 1
}

// FromRequest returns the API key an HTTP request presents: "Authorization: Bearer <key>", or the
// X-API-Key header. Empty when there is none.
func FromRequest(r *http.Request) string {
	if k := strings.TrimSpace(r.Header.Get("X-API-Key")); k != "" {
		return k
	}
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(v)
	}
	return ""
}

// Allow reports whether r presents one of the keys.
func (a *APIKeys) Allow(r *http.Request) bool { return a.Match(FromRequest(r)) }
