package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/streamfleet/streamfleet/node"
)

func TestNodeFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown role", []string{"--role=bogus"}, nil, "unknown role"},
		{"role from env", nil, map[string]string{"STREAMFLEET_ROLE": "bogus"}, "unknown role"},
		{"bad public ip", []string{"--public-ip=not-an-ip"}, nil, "not an IP address"},
		{"bad grace from env", nil, map[string]string{"STREAMFLEET_GRACE": "soon"}, "STREAMFLEET_GRACE"},
		{"origin with upstream", []string{"--upstream=127.0.0.1:8554"}, nil, "an origin never pulls"},
		{"bad upstream", []string{"--role=edge", "--upstream=http://relay:8554"}, nil, "bad upstream"},
		{"no linger", []string{"--role=edge", "--upstream=relay:8554", "--pull-linger=0s"}, nil, "linger"},
		{"bad log level", []string{"--log-level=loud", "--http=127.0.0.1:0", "--ice-udp=127.0.0.1:0"}, nil, "log level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			err := runNode(context.Background(), tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := runNode(context.Background(), []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}

// TestNodeRunsUntilCancelled starts a real node on free ports and stops it with the context, as
// a signal does.
func TestNodeRunsUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := runNode(ctx, []string{"--http=127.0.0.1:0", "--ice-udp=127.0.0.1:0", "--rtsp=127.0.0.1:0", "--rtsp-udp-rtp=127.0.0.1:0", "--rtsp-udp-rtcp=127.0.0.1:0", "--log-level=error"})
	if err != nil {
		t.Fatalf("node: %v", err)
	}
}

func TestDevURLs(t *testing.T) {
	var b bytes.Buffer
	printDevURLs(&b, "http://127.0.0.1:8080", "http://127.0.0.1:8082", "127.0.0.1:8189", devTokens{}, rtspDevLines("127.0.0.1:8554", devTokens{})...)
	for _, want := range []string{"8080/publish?stream=live/test", "8082/watch?stream=live/test", "POST http://127.0.0.1:8080/whip/live/test",
		"POST http://127.0.0.1:8082/whep/live/test", "/metrics", "/healthz", "127.0.0.1:8189",
		"rtsp://127.0.0.1:8554/live/test", "-f rtsp"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("dev output lacks %q", want)
		}
	}
}

func TestConfigFilePrecedence(t *testing.T) {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	cfg := node.DefaultConfig()
	finish := nodeFlags(fs, &cfg)
	fs.String("log-level", "info", "")
	t.Setenv("STREAMFLEET_GRACE", "3s") // the environment beats the file
	if err := fs.Parse([]string{"--config", "../../streamfleet.sample.conf", "--id", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	if err := finish(); err != nil {
		t.Fatalf("sample config: %v", err)
	}
	if cfg.ID != "from-flag" || cfg.Role != node.RoleOrigin || cfg.HTTPAddr != ":8080" || cfg.Grace != 3*time.Second {
		t.Fatalf("precedence wrong: %+v", cfg)
	}
}

func TestConfigFileErrors(t *testing.T) {
	// A context that ends soon, so a config wrongly accepted cannot leave a node running.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	free := []string{"--http=127.0.0.1:0", "--ice-udp=127.0.0.1:0", "--rtsp=127.0.0.1:0", "--rtsp-udp-rtp=127.0.0.1:0", "--rtsp-udp-rtcp=127.0.0.1:0"}
	bad := filepath.Join(t.TempDir(), "bad.conf")
	for _, tc := range []struct{ text, want string }{
		{"no-equals-sign\n", "want 'flag = value'"},
		{"colour = blue\n", "unknown setting"},
		{"grace = soon\n", "grace"},
	} {
		if err := os.WriteFile(bad, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
		err := runNode(ctx, append([]string{"--config", bad}, free...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.text, err, tc.want)
		}
	}
	if err := runNode(ctx, append([]string{"--config", "/nonexistent.conf"}, free...)); err == nil {
		t.Error("a missing config file was accepted")
	}
}

// TestSetNodeGC: a node collects at nodeGCPercent unless GOGC is set, which wins.
func TestSetNodeGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	if setNodeGC(func(string) string { return "200" }) {
		t.Error("GOGC in the environment was overridden")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent %d after GOGC=200 in the environment, want it untouched", got)
	}
	if !setNodeGC(func(string) string { return "" }) {
		t.Error("no GOGC, but the node's default was not applied")
	}
	if got := debug.SetGCPercent(100); got != nodeGCPercent {
		t.Errorf("GC percent %d, want %d", got, nodeGCPercent)
	}
}
