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

	"github.com/streamfleet/streamfleet/streammanager"
)

// devControlPlane is the control plane of `streamfleet dev`: an embedded NATS server with
// JetStream (data under ./.streamfleet/nats) and a stream manager, the front door on addr.
type devControlPlane struct {
	nats    *server.Server
	manager *streammanager.Manager
	apiKey  string
}

func startDevControlPlane(ctx context.Context, log *slog.Logger, addr string) (*devControlPlane, error) {
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
	cp := &devControlPlane{nats: ns, apiKey: "dev-" + randomHex(12)}
	cfg.APIKeys = []string{cp.apiKey}
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
		"    NATS         " + cp.nats.ClientURL() + "   (JetStream data in .streamfleet/nats)",
	}
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
