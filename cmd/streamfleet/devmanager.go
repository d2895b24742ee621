package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/streamfleet/streamfleet/internal/token"
	"github.com/streamfleet/streamfleet/streammanager"
)

// devControlPlane is the control plane of `streamfleet dev`: an embedded NATS server with
// JetStream (data under ./.streamfleet/nats) and a stream manager, the front door on addr.
type devControlPlane struct {
	nats    *server.Server
	manager *streammanager.Manager
	apiKey  string
	// tokenSecret is the generated HS256 key the manager mints with and the dev nodes trust;
	// tokens are dev tokens minted with it for every stream ("*"), printed in the banner.
	tokenSecret string
	tokens      devTokens
}

// devTokens are a publish and a play token; empty when auth is off.
type devTokens struct{ Publish, Play string }

// query is "&token=" + the token for a page URL that already has a query ("" without one).
func query(tok string) string {
	if tok == "" {
		return ""
	}
	return "&token=" + tok
}

// startDevControlPlane starts NATS and the manager. The manager always mints tokens (with a
// generated key); with requireTokens the banner prints tokens for the nodes, which then require
// them, and without it the nodes are open and the banner's URLs carry none.
func startDevControlPlane(ctx context.Context, log *slog.Logger, addr string, requireTokens bool) (*devControlPlane, error) {
	dir := filepath.Join(".streamfleet", "nats")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dev: nats data folder: %w", err)
	}
	ns, err := server.NewServer(&server.Options{ServerName: "dev", Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, fmt.Errorf("dev: nats server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("dev: nats server did not start")
	}
	cfg := streammanager.DefaultConfig()
	cfg.ID, cfg.HTTPAddr, cfg.NATSURL = "dev-manager", addr, ns.ClientURL()
	cp := &devControlPlane{nats: ns, apiKey: "dev-" + randomHex(12), tokenSecret: randomHex(32)}
	cfg.APIKeys, cfg.TokenSecret = []string{cp.apiKey}, cp.tokenSecret
	if requireTokens {
		if cp.tokens, err = mintDevTokens(cp.tokenSecret); err != nil {
			ns.Shutdown()
			return nil, err
		}
	}
	m, err := streammanager.New(cfg, log)
	if err == nil {
		err = m.Start(ctx)
	}
	if err != nil {
		if m != nil {
			_ = m.Close()
		}
		ns.Shutdown()
		return nil, err
	}
	cp.manager = m
	return cp, nil
}

// lines are the control-plane lines of the dev banner.
func (cp *devControlPlane) lines() []string {
	u := cp.manager.URL()
	return []string{
		"  stream manager (the front door; WHIP/WHEP answered by 307 to a node):",
		"    dashboard    " + u + "/",
		"    lookups      GET " + u + "/api/v1/streams/live/test/publish   GET " + u + "/api/v1/streams/live/test/subscribe?protocol=webrtc",
		"    nodes        GET " + u + "/api/v1/nodes   streams GET " + u + "/api/v1/streams   cluster GET " + u + "/api/v1/cluster",
		"    admin key    " + cp.apiKey + "   (curl -X POST -H 'X-API-Key: " + cp.apiKey + "' " + u + "/api/v1/nodes/dev-edge/drain)",
		cp.tokenLine(),
		"    mint         curl -X POST -H 'X-API-Key: " + cp.apiKey + "' -H 'Content-Type: application/json' -d '{\"stream\":\"live/test\",\"action\":\"play\",\"ttl\":\"1h\"}' " + u + "/api/v1/tokens",
		"                 or: streamfleet token mint --key " + cp.tokenSecret + " --stream live/test --action play --ttl 1h",
		"    publish any  " + orNone(cp.tokens.Publish),
		"    play any     " + orNone(cp.tokens.Play),
		"    NATS         " + cp.nats.ClientURL() + "   (JetStream data in .streamfleet/nats)",
	}
}

func (cp *devControlPlane) tokenLine() string {
	if cp.tokens.Publish == "" {
		return "  tokens (the manager mints them; the dev nodes are open: run `streamfleet dev --auth` to require them):"
	}
	return "  tokens (the nodes verify signed tokens with the key the manager mints with; every publish and play needs one):"
}

func orNone(tok string) string {
	if tok == "" {
		return "(none needed)"
	}
	return tok
}

func (cp *devControlPlane) close() error {
	err := cp.manager.Close()
	cp.nats.Shutdown()
	cp.nats.WaitForShutdown()
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// mintDevTokens mints the banner's publish and play tokens for every stream, valid for a day.
func mintDevTokens(secret string) (devTokens, error) {
	key, err := token.NewHS256Key([]byte(secret))
	if err != nil {
		return devTokens{}, fmt.Errorf("dev: token key: %w", err)
	}
	now := time.Now()
	var t devTokens
	for _, a := range []struct {
		action token.Action
		out    *string
	}{{token.ActionPublish, &t.Publish}, {token.ActionPlay, &t.Play}} {
		if *a.out, err = token.Mint(token.Claims{Stream: "*", Action: a.action, IssuedAt: now, ExpiresAt: now.Add(24 * time.Hour), Subject: "dev"}, key); err != nil {
			return devTokens{}, fmt.Errorf("dev: mint a %s token: %w", a.action, err)
		}
	}
	return t, nil
}
