package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestMinter(t *testing.T) {
	k := hsKey(t, "m")
	m, err := NewMinter(k, MintPolicy{Now: func() time.Time { return t0 }, MaxTTL: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := m.MintJSON(strings.NewReader(`{"stream":"live/x","action":"play","ttl":"30m","sub":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !resp.ExpiresAt.Equal(t0.Add(30*time.Minute)) || resp.ID == "" || resp.Stream != "live/x" || resp.Action != "play" {
		t.Fatalf("response %+v", resp)
	}
	c, err := Verify(resp.Token, []Key{k}, "live/x", ActionPlay, t0.Add(29*time.Minute))
	if err != nil || c.Subject != "alice" || c.ID != resp.ID {
		t.Fatalf("minted token: %+v, %v", c, err)
	}
	if _, err := Verify(resp.Token, []Key{k}, "live/x", ActionPlay, t0.Add(30*time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("after its ttl: %v", err)
	}
	def, err := m.MintJSON(strings.NewReader(`{"stream":"live/*","action":"publish"}`))
	if err != nil || !def.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("default ttl: %+v, %v", def, err)
	}

	cases := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"malformed json", `{"stream":`, 400, "malformed_json"},
		{"unknown field", `{"stream":"a","action":"play","admin":true}`, 400, "malformed_json"},
		{"two values", `{"stream":"a","action":"play"}{}`, 400, "malformed_json"},
		{"bad stream", `{"stream":"a//b","action":"play"}`, 400, "invalid_stream"},
		{"no stream", `{"action":"play"}`, 400, "invalid_stream"},
		{"bad action", `{"stream":"a","action":"delete"}`, 400, "invalid_action"},
		{"bad ttl", `{"stream":"a","action":"play","ttl":"soon"}`, 400, "invalid_ttl"},
		{"negative ttl", `{"stream":"a","action":"play","ttl":"-1h"}`, 400, "invalid_ttl"},
		{"ttl under a second", `{"stream":"a","action":"play","ttl":"999ms"}`, 400, "invalid_ttl"},
		{"ttl too long", `{"stream":"a","action":"play","ttl":"3h"}`, 400, "ttl_too_long"},
		{"huge body", `{"stream":"` + strings.Repeat("a", 10000) + `","action":"play"}`, 413, "body_too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.MintJSON(strings.NewReader(tc.body))
			var re *RequestError
			if !errors.As(err, &re) || re.Status != tc.status || re.Code != tc.code {
				t.Fatalf("MintJSON = %v, want %d %s", err, tc.status, tc.code)
			}
			rec := httptest.NewRecorder()
			m.ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/tokens", strings.NewReader(tc.body)))
			var body RequestError
			if rec.Code != tc.status || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Code != tc.code || body.Message == "" {
				t.Fatalf("ServeHTTP: %d %s", rec.Code, rec.Body)
			}
		})
	}

	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/tokens", bytes.NewBufferString(`{"stream":"live/x","action":"publish"}`)))
	var ok MintResponse
	if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &ok) != nil || ok.Token == "" {
		t.Fatalf("ServeHTTP: %d %s", rec.Code, rec.Body)
	}
	if _, err := NewMinter(Key{}, MintPolicy{}); !errors.Is(err, ErrBadKey) {
		t.Fatalf("NewMinter without a key: %v", err)
	}
}

func TestAPIKeys(t *testing.T) {
	keys := NewAPIKeys("old-key", "", "new-key")
	if keys.Len() != 2 {
		t.Fatalf("Len = %d", keys.Len())
	}
	for got, want := range map[string]bool{"old-key": true, "new-key": true, "": false, "new-ke": false, "new-key2": false, "x": false} {
		if keys.Match(got) != want {
			t.Errorf("Match(%q) = %v", got, !want)
		}
	}
	var none *APIKeys
	if none.Match("x") || NewAPIKeys().Match("") {
		t.Fatal("an empty set allows")
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer new-key")
	if !keys.Allow(r) {
		t.Fatal("bearer key refused")
	}
	r = httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-API-Key", "old-key")
	if !keys.Allow(r) {
		t.Fatal("X-API-Key refused")
	}
	r.Header.Set("X-API-Key", "bad")
	if keys.Allow(r) {
		t.Fatal("bad key allowed")
	}
}
