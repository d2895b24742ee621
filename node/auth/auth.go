// Package auth decides whether a node lets a client publish or play, for every protocol server
// alike (WHIP, WHEP, SRT, RTSP). A request is allowed when nothing is configured for its action,
// or by the first of these that says yes:
//
//  1. the static token of its action (Config.PublishToken, PlayToken), compared in constant time:
//     for a cluster without a manager;
//  2. a signed token (internal/token JWT, HS256 or ES256) that one of the configured keys verifies
//     and that grants the action on the stream, checked locally with no round trip;
//  3. the webhook (Config.WebhookURL), asked with a "validate" event: only a 2xx allows, a timeout
//     or an error refuses. A session the webhook allowed gets an "invalidate" event when it ends.
//
// The refusal of the last mechanism tried is what the client sees (see the Code constants). No
// credential is ever logged or put in an error.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamfleet/streamfleet/internal/token"
)

// Config configures a node's authorizer.
type Config struct {
	// PublishToken and PlayToken, when set, are static shared tokens that allow publishing and
	// playing any stream.
	PublishToken string
	PlayToken    string
	// TokenSecrets are HS256 secrets (at least 32 bytes) that verify signed tokens; several allow
	// rotation (--token-key).
	TokenSecrets []string
	// TokenPublicKeyFiles are PEM files of ES256 public keys that verify signed tokens
	// (--token-pubkey).
	TokenPublicKeyFiles []string
	// Keys are further verification keys, for programs that hold them already.
	Keys []token.Key
	// WebhookURL, when set, is POSTed a JSON validate event for every request the local checks do
	// not allow, and an invalidate event when a session it allowed ends (--auth-webhook).
	WebhookURL string
	// WebhookTimeout bounds each webhook call (2s if zero).
	WebhookTimeout time.Duration
	// NodeID is sent to the webhook.
	NodeID string
	// Now is the clock for token expiry (time.Now if nil).
	Now func() time.Time
}

// DefaultWebhookTimeout is the webhook timeout when none is configured.
const DefaultWebhookTimeout = 2 * time.Second

// Validate checks the configuration (key files are read by New).
func (c Config) Validate() error {
	var errs []error
	for i, s := range c.TokenSecrets {
		if len(s) < token.MinSecretBytes {
			errs = append(errs, fmt.Errorf("token key %d: an HS256 secret needs at least %d bytes, got %d", i+1, token.MinSecretBytes, len(s)))
		}
	}
	if c.WebhookURL != "" {
		u, err := url.Parse(c.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, errors.New("auth webhook must be an absolute http:// or https:// URL"))
		}
	}
	if c.WebhookTimeout < 0 || c.WebhookTimeout > time.Minute {
		errs = append(errs, fmt.Errorf("auth webhook timeout %s out of range (0 to 1m)", c.WebhookTimeout))
	}
	return errors.Join(errs...)
}

// Request is what a protocol server knows of a client asking to publish or play.
type Request struct {
	Action token.Action
	Stream string
	// Protocol is "whip", "whep", "srt" or "rtsp".
	Protocol string
	// Token is the client's token (a static token or a JWT); User and Password are what the
	// protocol carries besides (RTSP Basic, SRT u=), for the webhook.
	Token    string
	User     string
	Password string
	ClientIP string
}

// Stats are the authorizer's counters.
type Stats struct {
	Allowed       atomic.Uint64
	WebhookCalls  atomic.Uint64 // validate and invalidate events sent
	WebhookErrors atomic.Uint64 // calls that timed out or failed (not a refusal)
	refused       sync.Map      // code -> *atomic.Uint64
}

// Refused is the number of requests refused with code.
func (s *Stats) Refused(code string) uint64 {
	if v, ok := s.refused.Load(code); ok {
		return v.(*atomic.Uint64).Load()
	}
	return 0
}

func (s *Stats) refuse(code string) {
	v, _ := s.refused.LoadOrStore(code, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
}

// Authorizer is a node's authorization decision. Its methods are safe for concurrent use.
type Authorizer struct {
	cfg     Config
	log     *slog.Logger
	publish [sha256.Size]byte // digests of the static tokens, if set
	play    [sha256.Size]byte
	keys    []token.Key
	hook    *webhook
	stats   Stats

	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup // invalidate calls in flight
}

// New validates cfg, reads its key files and returns the authorizer.
func New(cfg Config, log *slog.Logger) (*Authorizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("auth config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.WebhookTimeout == 0 {
		cfg.WebhookTimeout = DefaultWebhookTimeout
	}
	a := &Authorizer{cfg: cfg, log: log, keys: append([]token.Key(nil), cfg.Keys...)}
	if cfg.PublishToken != "" {
		a.publish = sha256.Sum256([]byte(cfg.PublishToken))
	}
	if cfg.PlayToken != "" {
		a.play = sha256.Sum256([]byte(cfg.PlayToken))
	}
	for _, s := range cfg.TokenSecrets {
		k, err := token.NewHS256Key([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("auth config: %w", err)
		}
		a.keys = append(a.keys, k)
	}
	for _, f := range cfg.TokenPublicKeyFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read token public key: %w", err)
		}
		k, err := token.ParseES256PEM(data)
		if err != nil {
			return nil, fmt.Errorf("token public key %s: %w", f, err)
		}
		a.keys = append(a.keys, k)
	}
	if cfg.WebhookURL != "" {
		a.hook = newWebhook(cfg.WebhookURL, cfg.WebhookTimeout, cfg.NodeID)
	}
	return a, nil
}

// Static returns an authorizer with only static tokens (empty: open), for protocol servers used
// without a node (tests, tools).
func Static(publishToken, playToken string) *Authorizer {
	a, err := New(Config{PublishToken: publishToken, PlayToken: playToken}, nil)
	if err != nil {
		panic(err) // static tokens cannot make the config invalid
	}
	return a
}

// Stats returns the counters.
func (a *Authorizer) Stats() *Stats { return &a.stats }

// Webhook reports whether a webhook is configured.
func (a *Authorizer) Webhook() bool { return a.hook != nil }

// Open reports whether action is allowed to anyone: nothing is configured that could refuse it.
func (a *Authorizer) Open(action token.Action) bool {
	return !a.hasStatic(action) && len(a.keys) == 0 && a.hook == nil
}

func (a *Authorizer) hasStatic(action token.Action) bool {
	if action == token.ActionPublish {
		return a.cfg.PublishToken != ""
	}
	return a.cfg.PlayToken != ""
}

// Grant is an allowed session. End it when the session ends.
type Grant struct {
	a       *Authorizer
	req     Request // without its secrets
	session string  // the webhook's session id; empty when the webhook was not asked
	ended   atomic.Bool
	// Claims are the verified token's claims, when a signed token allowed the request.
	Claims *token.Claims
}

// Authorize decides on req: a Grant, or a *Refusal (ErrRefused), or ErrClosed.
func (a *Authorizer) Authorize(ctx context.Context, req Request) (*Grant, error) {
	g, err := a.authorize(ctx, req)
	if err != nil {
		var r *Refusal
		if errors.As(err, &r) {
			a.stats.refuse(r.Code)
		}
		return nil, err
	}
	a.stats.Allowed.Add(1)
	return g, nil
}

func (a *Authorizer) authorize(ctx context.Context, req Request) (*Grant, error) {
	public := req
	public.Token, public.Password = "", ""
	if a.Open(req.Action) {
		return &Grant{a: a, req: public}, nil
	}
	local := a.checkLocal(req)
	if local.ok {
		return &Grant{a: a, req: public, Claims: local.claims}, nil
	}
	if a.hook == nil {
		return nil, local.refusal
	}
	session := newSessionID()
	status, err := a.hook.call(ctx, a.event("validate", req, session, true))
	a.stats.WebhookCalls.Add(1)
	switch {
	case err != nil:
		a.stats.WebhookErrors.Add(1)
		a.log.Warn("auth webhook failed: refusing", "stream", req.Stream, "action", req.Action, "proto", req.Protocol, "error", err)
		return nil, &Refusal{Code: CodeWebhookError, Message: "the authorization service did not answer"}
	case status < 200 || status > 299:
		msg := fmt.Sprintf("refused by the authorization service (%d)", status)
		if local.refusal != nil && local.refusal.Code != CodeTokenRequired {
			msg += "; " + local.refusal.Message
		}
		return nil, &Refusal{Code: CodeWebhookRefused, Message: msg}
	}
	return &Grant{a: a, req: public, session: session}, nil
}

// localResult is what the static tokens and the keys say: ok, or the refusal to give when no
// webhook is asked.
type localResult struct {
	ok      bool
	claims  *token.Claims
	refusal *Refusal
}

func (a *Authorizer) checkLocal(req Request) *localResult {
	static := a.hasStatic(req.Action)
	if !static && len(a.keys) == 0 {
		return &localResult{refusal: &Refusal{Code: CodeTokenRequired, Message: "the authorization service is required"}}
	}
	if req.Token == "" {
		return &localResult{refusal: &Refusal{Code: CodeTokenRequired, Message: "a token is required to " + string(req.Action), err: token.ErrMissing}}
	}
	if static {
		want := a.play
		if req.Action == token.ActionPublish {
			want = a.publish
		}
		got := sha256.Sum256([]byte(req.Token))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			return &localResult{ok: true}
		}
	}
	if len(a.keys) == 0 || !token.LooksLikeJWT(req.Token) {
		return &localResult{refusal: &Refusal{Code: CodeTokenInvalid, Message: "the token is not valid"}}
	}
	c, err := token.Verify(req.Token, a.keys, req.Stream, req.Action, a.cfg.Now())
	if err == nil {
		return &localResult{ok: true, claims: &c}
	}
	return &localResult{refusal: tokenRefusal(err)}
}

func tokenRefusal(err error) *Refusal {
	r := &Refusal{Message: err.Error()}
	for _, m := range []struct {
		sentinel error
		code     string
	}{
		{token.ErrMissing, CodeTokenRequired},
		{token.ErrMalformed, CodeTokenMalformed},
		{token.ErrBadSignature, CodeTokenSignature},
		{token.ErrExpired, CodeTokenExpired},
		{token.ErrNotYetValid, CodeTokenNotYetValid},
		{token.ErrWrongStream, CodeTokenStream},
		{token.ErrWrongAction, CodeTokenAction},
	} {
		if errors.Is(err, m.sentinel) {
			r.Code, r.err = m.code, m.sentinel
			return r
		}
	}
	r.Code = CodeTokenInvalid
	return r
}

// End ends the session the grant allowed: when the webhook allowed it, an invalidate event is
// sent in the background (Close waits for it). Safe on a nil grant; only the first call counts.
func (g *Grant) End() {
	if g == nil || g.session == "" || !g.ended.CompareAndSwap(false, true) {
		return
	}
	a := g.a
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.wg.Add(1)
	a.mu.Unlock()
	go func() {
		defer a.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.WebhookTimeout)
		defer cancel()
		status, err := a.hook.call(ctx, a.event("invalidate", g.req, g.session, false))
		a.stats.WebhookCalls.Add(1)
		if err != nil {
			a.stats.WebhookErrors.Add(1)
			a.log.Warn("auth webhook: invalidate failed", "stream", g.req.Stream, "session", g.session, "error", err)
		} else if status < 200 || status > 299 {
			a.log.Info("auth webhook: invalidate answered", "stream", g.req.Stream, "session", g.session, "status", status)
		}
	}()
}

// Session is the id the webhook knows the grant's session by (empty when it was not asked).
func (g *Grant) Session() string {
	if g == nil {
		return ""
	}
	return g.session
}

// Close waits for the invalidate events in flight (each bounded by the webhook timeout); later
// grants' End sends nothing.
func (a *Authorizer) Close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.wg.Wait()
}

func newSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
