// Package nodetest starts media nodes for tests: in-process, on 127.0.0.1, every port free, logs
// to the test's log, closed when the test ends.
package nodetest

import (
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/streamfleet/streamfleet/node"
)

// Config returns a node configuration with every listener on 127.0.0.1 port 0.
func Config() node.Config {
	cfg := node.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.WebRTC.ICEUDPAddr = "127.0.0.1:0"
	cfg.RTSP.Addr, cfg.RTSP.UDPRTPAddr, cfg.RTSP.UDPRTCPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.SRT.Addr = "127.0.0.1:0"
	return cfg
}

// Start runs a node built from Config(), changed by configure if not nil, and closes it when the
// test ends (failing the test if Close fails).
func Start(t testing.TB, configure func(*node.Config)) *node.Node {
	t.Helper()
	cfg := Config()
	if configure != nil {
		configure(&cfg)
	}
	logs := &Log{T: t}
	n, err := node.New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("node.Close: %v", err)
		}
		logs.Stop()
	})
	return n
}

// Log is an io.Writer for slog that writes to the test's log until Stop, and drops what comes
// after (a goroutine logging late must not make the test panic).
type Log struct {
	T    testing.TB
	mu   sync.Mutex
	done bool
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.T.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// Stop drops everything written from now on.
func (l *Log) Stop() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}
