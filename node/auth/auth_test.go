package auth_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/streamfleet/streamfleet/internal/token"
	"github.com/streamfleet/streamfleet/node/auth"
	"github.com/streamfleet/streamfleet/node/auth/authtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newAuthorizer(t *testing.T, cfg auth.Config, logs *authtest.Logs) *auth.Authorizer {
	t.Helper()
	var log *slog.Logger
	if logs != nil {
		log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := auth.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func code(err error) string {
	var r *auth.Refusal
	if errors.As(err, &r) {
		return r.Code
	}
	return ""
}

func TestSignedTokens(t *testing.T) {
	for _, s := range authtest.Signers(t) {
		t.Run(s.Name, func(t *testing.T) {
			a := newAuthorizer(t, s.Config, nil)
			for _, action := range []token.Action{token.ActionPublish, token.ActionPlay} {
				req := auth.Request{Action: action, Stream: "live/x", Protocol: "whip", Token: s.Mint(t, "live/x", action)}
				g, err := a.Authorize(context.Background(), req)
				if err != nil || g.Claims == nil || g.Claims.Stream != "live/x" {
					t.Fatalf("%s with a valid token: %v", action, err)
				}
				g.End()
				for _, bad := range s.BadTokens(t, "live/x", action) {
					req.Token = bad.Token
					_, err := a.Authorize(context.Background(), req)
					if !errors.Is(err, auth.ErrRefused) || code(err) != bad.Code {
						t.Errorf("%s, %s token: %v, want %s", action, bad.Name, err, bad.Code)
					}
				}
			}
			if a.Stats().Allowed.Load() != 2 || a.Stats().Refused(auth.CodeTokenExpired) != 2 {
				t.Fatalf("stats: allowed %d, expired %d", a.Stats().Allowed.Load(), a.Stats().Refused(auth.CodeTokenExpired))
			}
		})
	}
}

func TestStaticTokens(t *testing.T) {
	s := authtest.Signers(t)[0]
	cfg := s.Config
	cfg.PublishToken = "pub-static"
	a := newAuthorizer(t, cfg, nil)
	cases := []struct {
		action token.Action
		tok    string
		code   string
	}{
		{token.ActionPublish, "pub-static", ""},
		{token.ActionPublish, s.Mint(t, "live/x", token.ActionPublish), ""},
		{token.ActionPublish, "pub-static2", auth.CodeTokenInvalid},
		{token.ActionPublish, "", auth.CodeTokenRequired},
		{token.ActionPlay, "pub-static", auth.CodeTokenInvalid}, // the publish token does not play
		{token.ActionPlay, s.Mint(t, "live/x", token.ActionPlay), ""},
		{token.ActionPlay, "a.b.c", auth.CodeTokenMalformed},
	}
	for _, tc := range cases {
		_, err := a.Authorize(context.Background(), auth.Request{Action: tc.action, Stream: "live/x", Token: tc.tok})
		if code(err) != tc.code || (tc.code == "") != (err == nil) {
			t.Errorf("%s %q: %v, want %q", tc.action, tc.tok, err, tc.code)
		}
	}

	open := newAuthorizer(t, auth.Config{PublishToken: "p"}, nil)
	if !open.Open(token.ActionPlay) || open.Open(token.ActionPublish) {
		t.Fatal("only play should be open")
	}
	if _, err := open.Authorize(context.Background(), auth.Request{Action: token.ActionPlay, Stream: "x"}); err != nil {
		t.Fatalf("open play: %v", err)
	}
}

func TestWebhook(t *testing.T) {
	hook := authtest.NewWebhook(t)
	logs := &authtest.Logs{}
	s := authtest.Signers(t)[0]
	cfg := s.Config
	cfg.WebhookURL, cfg.WebhookTimeout, cfg.NodeID = hook.URL, 300*time.Millisecond, "node-7"
	a := newAuthorizer(t, cfg, logs)
	req := auth.Request{Action: token.ActionPublish, Stream: "live/w", Protocol: "rtsp", User: "alice", Password: "pa55word-secret", ClientIP: "127.0.0.1"}

	// allowed by the webhook: the validate event carries every field; End sends invalidate
	g, err := a.Authorize(context.Background(), req)
	if err != nil || g.Session() == "" {
		t.Fatalf("webhook 200: %v", err)
	}
	v := hook.Wait(t, "validate", "live/w", time.Second)
	want := auth.WebhookEvent{Event: "validate", Action: "publish", Protocol: "rtsp", Stream: "live/w", User: "alice",
		Password: "pa55word-secret", ClientIP: "127.0.0.1", Session: g.Session(), Node: "node-7"}
	if v != want {
		t.Fatalf("validate event %+v, want %+v", v, want)
	}
	g.End()
	g.End() // once only
	inv := hook.Wait(t, "invalidate", "live/w", time.Second)
	if inv.Session != g.Session() || inv.Password != "" || inv.Token != "" || inv.User != "alice" || inv.Action != "publish" {
		t.Fatalf("invalidate event %+v", inv)
	}

	// a valid signed token needs no round trip, and its session no invalidate
	before := len(hook.Events())
	req2 := req
	req2.Token = s.Mint(t, "live/w", token.ActionPublish)
	g2, err := a.Authorize(context.Background(), req2)
	if err != nil || g2.Session() != "" {
		t.Fatalf("signed token with a webhook: %v", err)
	}
	g2.End()

	// non-2xx and a timeout refuse; an expired token is then refused by the webhook too
	for _, tc := range []struct {
		status int
		delay  time.Duration
		code   string
	}{
		{http.StatusForbidden, 0, auth.CodeWebhookRefused},
		{http.StatusUnauthorized, 0, auth.CodeWebhookRefused},
		{http.StatusFound, 0, auth.CodeWebhookRefused},
		{http.StatusInternalServerError, 0, auth.CodeWebhookRefused},
		{http.StatusOK, 2 * time.Second, auth.CodeWebhookError},
	} {
		hook.Set(tc.status, tc.delay)
		start := time.Now()
		_, err := a.Authorize(context.Background(), req)
		if code(err) != tc.code {
			t.Errorf("webhook %d after %s: %v, want %s", tc.status, tc.delay, err, tc.code)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("refusal took %s, longer than the timeout", el)
		}
	}
	if len(hook.Events()) != before+5 {
		t.Fatalf("%d events after the signed token, want 5 validates", len(hook.Events())-before)
	}
	a.Close()
	for _, secret := range []string{"pa55word-secret", authtest.Secret, "hook-url-secret", req2.Token} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("the log shows a secret %q:\n%s", secret, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "auth webhook failed") {
		t.Fatalf("the timeout was not logged:\n%s", logs.String())
	}
}

func TestConfig(t *testing.T) {
	for _, cfg := range []auth.Config{
		{TokenSecrets: []string{"short"}},
		{WebhookURL: "ftp://x/y"},
		{WebhookURL: "/relative"},
		{WebhookTimeout: -time.Second},
		{TokenPublicKeyFiles: []string{"/nonexistent.pem"}},
	} {
		if _, err := auth.New(cfg, nil); err == nil {
			t.Errorf("New(%+v) accepted it", cfg)
		} else if cfg.TokenSecrets != nil && strings.Contains(err.Error(), "short") {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}
