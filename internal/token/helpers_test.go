package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

// signHS256 builds a JWT by hand from raw header and claims JSON.
func signHS256(header, claims string, secret []byte) string {
	enc := base64.RawURLEncoding
	s := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(s))
	return s + "." + enc.EncodeToString(m.Sum(nil))
}
