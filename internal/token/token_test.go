package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func hsKey(t testing.TB, s string) Key {
	t.Helper()
	k, err := NewHS256Key([]byte(strings.Repeat(s, 32)[:32]))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func esKey(t testing.TB) Key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewES256Key(priv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mint(t testing.TB, c Claims, k Key) string {
	t.Helper()
	tok, err := Mint(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVerify(t *testing.T) {
	es := esKey(t)
	esPub, err := ParseES256PEM(must(es.PublicPEM()))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[Algorithm]struct{ sign, verify, other Key }{
		HS256: {hsKey(t, "a"), hsKey(t, "a"), hsKey(t, "b")},
		ES256: {es, esPub, esKey(t)},
	}
	play := Claims{Stream: "live/x", Action: ActionPlay, ExpiresAt: t0.Add(time.Hour)}
	for alg, k := range keys {
		cases := []struct {
			name   string
			tok    string
			keys   []Key
			stream string
			action Action
			want   error
		}{
			{"valid", mint(t, play, k.sign), []Key{k.verify}, "live/x", ActionPlay, nil},
			{"valid with rotation", mint(t, play, k.sign), []Key{k.other, k.verify}, "live/x", ActionPlay, nil},
			{"missing", "", []Key{k.verify}, "live/x", ActionPlay, ErrMissing},
			{"expired", mint(t, Claims{Stream: "live/x", Action: ActionPlay, ExpiresAt: t0}, k.sign), []Key{k.verify}, "live/x", ActionPlay, ErrExpired},
			{"not yet valid", mint(t, Claims{Stream: "live/x", Action: ActionPlay, NotBefore: t0.Add(time.Minute), ExpiresAt: t0.Add(time.Hour)}, k.sign), []Key{k.verify}, "live/x", ActionPlay, ErrNotYetValid},
			{"wrong stream", mint(t, play, k.sign), []Key{k.verify}, "live/y", ActionPlay, ErrWrongStream},
			{"wrong action", mint(t, play, k.sign), []Key{k.verify}, "live/x", ActionPublish, ErrWrongAction},
			{"wrong key", mint(t, play, k.sign), []Key{k.other}, "live/x", ActionPlay, ErrBadSignature},
			{"no key of the algorithm", mint(t, play, k.sign), nil, "live/x", ActionPlay, ErrBadSignature},
			{"prefix pattern", mint(t, Claims{Stream: "live/*", Action: ActionPlay, ExpiresAt: t0.Add(time.Hour)}, k.sign), []Key{k.verify}, "live/a/b", ActionPlay, nil},
			{"prefix pattern, other prefix", mint(t, Claims{Stream: "live/*", Action: ActionPlay, ExpiresAt: t0.Add(time.Hour)}, k.sign), []Key{k.verify}, "livex/a", ActionPlay, ErrWrongStream},
			{"any stream", mint(t, Claims{Stream: "*", Action: ActionPublish, ExpiresAt: t0.Add(time.Hour)}, k.sign), []Key{k.verify}, "a", ActionPublish, nil},
			{"garbage", "not a token", []Key{k.verify}, "live/x", ActionPlay, ErrMalformed},
			{"tampered claims", tamper(mint(t, play, k.sign), `{"stream":"*","action":"play","exp":9999999999}`), []Key{k.verify}, "live/x", ActionPlay, ErrBadSignature},
		}
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/%s", alg, tc.name), func(t *testing.T) {
				c, err := Verify(tc.tok, tc.keys, tc.stream, tc.action, t0)
				if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
					t.Fatalf("Verify = %v, want %v", err, tc.want)
				}
				if err == nil && c.ExpiresAt.IsZero() {
					t.Fatal("claims lack the expiry")
				}
				if err != nil && tc.tok != "" && strings.Contains(err.Error(), tc.tok) {
					t.Fatal("the error shows the token")
				}
			})
		}
	}
}

// Hand-made tokens: signed right, but with claims or headers Verify must refuse.
func TestVerifyRefusesOddTokens(t *testing.T) {
	k := hsKey(t, "a")
	cases := []struct {
		name   string
		header string
		claims string
		want   error
	}{
		{"alg none", `{"alg":"none","typ":"JWT"}`, `{"stream":"live/x","action":"play","exp":9999999999}`, ErrBadSignature},
		{"alg HS512", `{"alg":"HS512","typ":"JWT"}`, `{"stream":"live/x","action":"play","exp":9999999999}`, ErrBadSignature},
		{"no exp", `{"alg":"HS256"}`, `{"stream":"live/x","action":"play"}`, ErrMalformed},
		{"no stream", `{"alg":"HS256"}`, `{"action":"play","exp":9999999999}`, ErrMalformed},
		{"bad stream", `{"alg":"HS256"}`, `{"stream":"../x","action":"play","exp":9999999999}`, ErrMalformed},
		{"bad action", `{"alg":"HS256"}`, `{"stream":"live/x","action":"admin","exp":9999999999}`, ErrMalformed},
		{"exp a string", `{"alg":"HS256"}`, `{"stream":"live/x","action":"play","exp":"tomorrow"}`, ErrMalformed},
		{"claims not an object", `{"alg":"HS256"}`, `[1,2]`, ErrMalformed},
		{"valid", `{"alg":"HS256"}`, `{"stream":"live/x","action":"play","exp":9999999999}`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := signHS256(tc.header, tc.claims, k.secret)
			_, err := Verify(tok, []Key{k}, "live/x", ActionPlay, t0)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	cases := []struct {
		pattern, stream string
		want            bool
	}{
		{"live/x", "live/x", true},
		{"live/x", "live/x/y", false},
		{"live/*", "live/x", true},
		{"live/*", "live/x/y", true},
		{"live/*", "live", false},
		{"live/*", "live2/x", false},
		{"*", "anything", true},
		{"*", "", false},
		{"live*", "live2", false}, // not a pattern: compared as a name
	}
	for _, tc := range cases {
		if got := Covers(tc.pattern, tc.stream); got != tc.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tc.pattern, tc.stream, got, tc.want)
		}
	}
	for _, bad := range []string{"", "live/", "/*", "live/**", "a b", "live/*/x"} {
		if ValidatePattern(bad) == nil {
			t.Errorf("ValidatePattern(%q) accepted it", bad)
		}
	}
}

func TestKeys(t *testing.T) {
	if _, err := NewHS256Key([]byte("short")); !errors.Is(err, ErrBadKey) {
		t.Fatalf("short secret: %v", err)
	}
	es := esKey(t)
	pub, err := ParseES256PEM(must(es.PublicPEM()))
	if err != nil {
		t.Fatal(err)
	}
	if pub.CanSign() {
		t.Fatal("a public key signs")
	}
	if _, err := Mint(Claims{Stream: "a", Action: ActionPlay, ExpiresAt: t0}, pub); !errors.Is(err, ErrBadKey) {
		t.Fatalf("Mint with a public key: %v", err)
	}
	if _, err := ParseES256PEM([]byte("nothing")); !errors.Is(err, ErrBadKey) {
		t.Fatalf("no PEM: %v", err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewES256Key(p256); !errors.Is(err, ErrBadKey) {
		t.Fatalf("P-384 key: %v", err)
	}
	h := hsKey(t, "s")
	for _, s := range []string{fmt.Sprint(h), fmt.Sprintf("%v %+v %#v %s", h, h, h, h)} {
		if strings.Contains(s, "ssss") {
			t.Fatalf("a key prints its secret: %s", s)
		}
	}
	for _, c := range []Claims{
		{Stream: "live/x", Action: ActionPlay},                            // no expiry
		{Stream: "live/x", Action: "admin", ExpiresAt: t0},                // bad action
		{Stream: "live//x", Action: ActionPlay, ExpiresAt: t0},            // bad stream
		{Stream: "", Action: ActionPublish, ExpiresAt: t0.Add(time.Hour)}, // no stream
	} {
		if _, err := Mint(c, h); !errors.Is(err, ErrBadClaims) {
			t.Errorf("Mint(%+v) = %v, want ErrBadClaims", c, err)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func tamper(tok, claims string) string {
	parts := strings.Split(tok, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(claims))
	return strings.Join(parts, ".")
}
