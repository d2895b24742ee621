package token

import (
	"bytes"
	"errors"
	"strings"
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

// FuzzMintJSON feeds arbitrary bodies to the mint request logic: it must never panic, must refuse
// with a 4xx *RequestError, and must mint only tokens that verify and grant what was asked.
func FuzzMintJSON(f *testing.F) {
	k := hsKey(f, "m")
	m, err := NewMinter(k, MintPolicy{Now: func() time.Time { return t0 }})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		`{"stream":"live/x","action":"play","ttl":"1h","sub":"a"}`,
		`{"stream":"live/*","action":"publish"}`,
		`{"stream":"*","action":"play","ttl":"1ns"}`,
		`{"stream":"live/x","action":"play","ttl":"100000h"}`,
		`{"stream":"live/x","action":"play"} {}`,
		`{"stream":"live/x","action":"play","x":1}`,
		`{"stream":["a"],"action":"play"}`,
		`[]`, `null`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := m.MintJSON(bytes.NewReader(body))
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) || re.Status < 400 || re.Status > 499 || re.Code == "" {
				t.Fatalf("refusal %v is not a 4xx RequestError", err)
			}
			return
		}
		c, err := Verify(resp.Token, []Key{k}, strings.TrimSuffix(strings.TrimSuffix(resp.Stream, "*"), "/")+"/x", Action(resp.Action), t0)
		if resp.Stream != "*" && !strings.HasSuffix(resp.Stream, "/*") {
			c, err = Verify(resp.Token, []Key{k}, resp.Stream, Action(resp.Action), t0)
		}
		if err != nil || c.Stream != resp.Stream || !c.ExpiresAt.Equal(resp.ExpiresAt) {
			t.Fatalf("minted %+v does not verify: %+v, %v", resp, c, err)
		}
	})
}
