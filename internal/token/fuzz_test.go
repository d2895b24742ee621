package token

import (
	"errors"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary tokens to Verify: it must never panic, must refuse with one of its
// sentinels, and must accept only what a configured key signed.
func FuzzVerify(f *testing.F) {
	k := hsKey(f, "f")
	es := esKey(f)
	f.Add(mint(f, Claims{Stream: "live/x", Action: ActionPlay, ExpiresAt: t0.Add(time.Hour)}, k))
	f.Add(mint(f, Claims{Stream: "live/*", Action: ActionPublish, ExpiresAt: t0.Add(time.Hour), NotBefore: t0, Subject: "u", ID: "j"}, es))
	f.Add(signHS256(`{"alg":"none"}`, `{"stream":"live/x","action":"play","exp":1}`, k.secret))
	f.Add(signHS256(`{"alg":"HS256"}`, `{"stream":"live/x","action":"play","exp":1e400}`, k.secret))
	f.Add(signHS256(`{"alg":"HS256","crit":["x"]}`, `{"stream":"live/x","action":"play","exp":-1,"nbf":null}`, k.secret))
	f.Add("a.b.c")
	f.Add("..")
	f.Add("eyJ.eyJ.")
	f.Add("")
	sentinels := []error{ErrMissing, ErrMalformed, ErrBadSignature, ErrExpired, ErrNotYetValid, ErrWrongStream, ErrWrongAction}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := Verify(tok, []Key{k, es}, "live/x", ActionPlay, t0)
		if err == nil {
			if c.Action != ActionPlay || !Covers(c.Stream, "live/x") || !t0.Before(c.ExpiresAt) {
				t.Fatalf("accepted claims that do not grant the request: %+v", c)
			}
			return
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error without a sentinel: %v", err)
	})
}
