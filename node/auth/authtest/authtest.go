// Package authtest helps test authorization in the protocol servers: signing keys, a table of the
// tokens every protocol must refuse, and a recording auth webhook.
package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/internal/token"
	"github.com/streamfleet/streamfleet/node/auth"
)

// Secret is an HS256 secret for tests. Tests also check it never shows in logs.
const Secret = "test-secret-0123456789-abcdefghijklmnop"

// Signer is a key that mints tokens and the auth config that verifies them.
type Signer struct {
	Name string // "HS256" or "ES256"
	Key  token.Key
	// Config verifies the signer's tokens: an HS256 secret, or an ES256 public key PEM file.
	Config auth.Config
}

// Signers returns an HS256 signer and an ES256 one (its public key written to a temp file).
func Signers(t testing.TB) []Signer {
	t.Helper()
	hs, err := token.NewHS256Key([]byte(Secret))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	es, err := token.NewES256Key(priv)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := es.PublicPEM()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "token-pub.pem")
	if err := os.WriteFile(file, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return []Signer{
		{Name: "HS256", Key: hs, Config: auth.Config{TokenSecrets: []string{Secret}}},
		{Name: "ES256", Key: es, Config: auth.Config{TokenPublicKeyFiles: []string{file}}},
	}
}

// Mint mints a token for stream and action valid for an hour.
func (s Signer) Mint(t testing.TB, stream string, action token.Action) string {
	t.Helper()
	return mint(t, token.Claims{Stream: stream, Action: action, ExpiresAt: time.Now().Add(time.Hour)}, s.Key)
}

func mint(t testing.TB, c token.Claims, k token.Key) string {
	t.Helper()
	tok, err := token.Mint(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Bad is a token a node must refuse, and the refusal code it must give.
type Bad struct {
	Name  string
	Token string
	Code  string
}

// BadTokens are the tokens a node configured with s must refuse for action on stream: missing,
// expired, for another stream, for another action, and signed by another key.
func (s Signer) BadTokens(t testing.TB, stream string, action token.Action) []Bad {
	t.Helper()
	other := token.ActionPlay
	if action == token.ActionPlay {
		other = token.ActionPublish
	}
	var wrongKey token.Key
	if s.Key.Algorithm() == token.HS256 {
		wrongKey, _ = token.NewHS256Key([]byte("another-secret-0123456789-abcdefghij"))
	} else {
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		wrongKey, _ = token.NewES256Key(priv)
	}
	hour := time.Now().Add(time.Hour)
	return []Bad{
		{"missing", "", auth.CodeTokenRequired},
		{"expired", mint(t, token.Claims{Stream: stream, Action: action, ExpiresAt: time.Now().Add(-time.Minute)}, s.Key), auth.CodeTokenExpired},
		{"wrong stream", mint(t, token.Claims{Stream: stream + "-other", Action: action, ExpiresAt: hour}, s.Key), auth.CodeTokenStream},
		{"wrong action", mint(t, token.Claims{Stream: stream, Action: other, ExpiresAt: hour}, s.Key), auth.CodeTokenAction},
		{"wrong signature", mint(t, token.Claims{Stream: stream, Action: action, ExpiresAt: hour}, wrongKey), auth.CodeTokenSignature},
	}
}

// Webhook is a recording auth webhook: it answers validate events with Status (after Delay) and
// records every event.
type Webhook struct {
	URL string

	mu     sync.Mutex
	status int
	delay  time.Duration
	allow  func(auth.WebhookEvent) bool
	events []auth.WebhookEvent
	notify chan struct{}
}

// NewWebhook serves a webhook answering 200 until told otherwise; it stops with the test.
func NewWebhook(t testing.TB) *Webhook {
	w := &Webhook{status: http.StatusOK, notify: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(srv.Close)
	w.URL = srv.URL + "/auth?key=hook-url-secret"
	return w
}

func (w *Webhook) serve(rw http.ResponseWriter, r *http.Request) {
	var e auth.WebhookEvent
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&e) != nil {
		http.Error(rw, "bad event", http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.events = append(w.events, e)
	status, delay, allow := w.status, w.delay, w.allow
	w.mu.Unlock()
	if allow != nil && !allow(e) {
		status = http.StatusForbidden
	}
	select {
	case w.notify <- struct{}{}:
	default:
	}
	if e.Event == "validate" && delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if e.Event != "validate" {
		status = http.StatusOK
	}
	rw.WriteHeader(status)
}

// Set changes the answer to validate events.
func (w *Webhook) Set(status int, delay time.Duration) {
	w.mu.Lock()
	w.status, w.delay = status, delay
	w.mu.Unlock()
}

// SetAllow makes validate events that allow refuses answer 403 (nil: no filter).
func (w *Webhook) SetAllow(allow func(auth.WebhookEvent) bool) {
	w.mu.Lock()
	w.allow = allow
	w.mu.Unlock()
}

// Count is the number of events named name for stream that match (nil: all).
func (w *Webhook) Count(name, stream string, match func(auth.WebhookEvent) bool) int {
	n := 0
	for _, e := range w.Events() {
		if e.Event == name && e.Stream == stream && (match == nil || match(e)) {
			n++
		}
	}
	return n
}

// Events returns the events so far.
func (w *Webhook) Events() []auth.WebhookEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]auth.WebhookEvent(nil), w.events...)
}

// Wait waits up to timeout for an event named name for stream and returns it.
func (w *Webhook) Wait(t testing.TB, name, stream string, timeout time.Duration) auth.WebhookEvent {
	t.Helper()
	return w.WaitMatch(t, name, stream, nil, timeout)
}

// WaitMatch waits up to timeout for an event named name for stream that match accepts (nil: any).
func (w *Webhook) WaitMatch(t testing.TB, name, stream string, match func(auth.WebhookEvent) bool, timeout time.Duration) auth.WebhookEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		for _, e := range w.Events() {
			if e.Event == name && e.Stream == stream && (match == nil || match(e)) {
				return e
			}
		}
		select {
		case <-w.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %s event for %s within %s (events: %+v)", name, stream, timeout, w.Events())
		}
	}
}

// Logs is a concurrency-safe log sink, to check that secrets stay out of logs.
type Logs struct {
	mu  sync.Mutex
	buf []byte
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf = append(l.buf, p...)
	l.mu.Unlock()
	return len(p), nil
}

// String is everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}
